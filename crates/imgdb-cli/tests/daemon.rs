//! The daemon's lifecycle and the messy folders it watches, with real
//! processes: `imgdb daemon` is started on a temporary database and root,
//! files are copied, written slowly, saved atomically, moved, deleted and
//! unmounted under it, and everything is checked through its HTTP API
//! (ids, paths, counts, query results). It is stopped with SIGTERM or
//! killed with SIGKILL and restarted on the same database.
//!
//! Each test has its own temporary folder and port, so they run in
//! parallel; each prints how long its steps took.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The settle time the tests' daemons run with (`[indexing] settle_ms`).
const SETTLE: Duration = Duration::from_millis(300);

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first image of a class of the shapes fixture (the tiny model knows
/// red circles, green triangles and blue squares).
fn shape(class: &str) -> PathBuf {
    repo()
        .join("fixtures/eval/shapes")
        .join(class)
        .join("0.png")
}

fn photo(name: &str) -> PathBuf {
    repo().join("fixtures/photos").join(name)
}

/// A temporary folder, canonical (the daemon stores canonical paths).
fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap();
    (dir, path)
}

/// An 8×8 PNG whose colour is determined by `n` (distinct for n < 65 536).
fn tiny_png(n: u32, path: &Path) {
    let pixel = image::Rgb([(n % 256) as u8, (n / 256 % 256) as u8, 128]);
    image::RgbImage::from_pixel(8, 8, pixel).save(path).unwrap();
}

/// A running `imgdb daemon` on `<dir>/db`, watching `<dir>/photos`, its
/// stderr in `<dir>/daemon-N.log`.
struct Daemon {
    child: Child,
    url: String,
    pid: u32,
    db: PathBuf,
    log: PathBuf,
    agent: ureq::Agent,
}

/// How to start one.
struct Start<'a> {
    dir: &'a Path,
    /// More TOML for the `[indexing]` table.
    indexing: &'a str,
    /// Run inside a user namespace where at most this many inotify watches
    /// can be added.
    inotify_watches: Option<u32>,
}

impl<'a> Start<'a> {
    fn new(dir: &'a Path) -> Start<'a> {
        Start {
            dir,
            indexing: "",
            inotify_watches: None,
        }
    }
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Daemon::with(Start::new(dir))
    }

    fn with(start: Start<'_>) -> Daemon {
        let dir = start.dir;
        let config = dir.join("daemon.toml");
        fs::write(
            &config,
            format!(
                "[indexing]\nsettle_ms = {}\nroot_check_secs = 1\n{}\n",
                SETTLE.as_millis(),
                start.indexing
            ),
        )
        .unwrap();
        let log = (0..)
            .map(|n| dir.join(format!("daemon-{n}.log")))
            .find(|path| !path.exists())
            .unwrap();
        let binary = env!("CARGO_BIN_EXE_imgdb");
        let mut command = match start.inotify_watches {
            None => Command::new(binary),
            Some(limit) => {
                let mut command = Command::new("unshare");
                command.args([
                    "--user",
                    "--map-root-user",
                    "sh",
                    "-c",
                    &format!(
                        "echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\""
                    ),
                    binary,
                ]);
                command
            }
        };
        command
            .arg("--db")
            .arg(dir.join("db"))
            .arg("--model")
            .arg(repo().join("fixtures/models/tiny-clip"))
            .arg("daemon")
            .arg("--config")
            .arg(&config)
            .arg("--watch")
            .arg(dir.join("photos"))
            .args(["--listen", "127.0.0.1:0"])
            .env("IMGDB_CACHE", dir.join("cache"))
            .env("IMGDB_LOG", "imgdb=info,imgdb_daemon=info,warn")
            .env_remove("IMGDB_MODEL")
            .env_remove("IMGDB_DB")
            .env_remove("IMGDB_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let mut child = command.spawn().unwrap();
        let db = dir.join("db");
        // The address file names this process once it listens (one left
        // by a killed daemon names another).
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the daemon exited before listening ({status}):\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(bytes) = fs::read(db.join("daemon.json"))
                && let Ok(address) = serde_json::from_slice::<Value>(&bytes)
                && address["pid"] == json!(child.id())
            {
                break address;
            }
            assert!(Instant::now() < deadline, "the daemon never listened");
            std::thread::sleep(Duration::from_millis(50));
        };
        Daemon {
            pid: child.id(),
            child,
            url: address["url"].as_str().unwrap().to_string(),
            db,
            log,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }

    fn get(&self, path: &str) -> Value {
        self.agent
            .get(&format!("{}{path}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_json()
            .unwrap()
    }

    fn status(&self) -> Value {
        self.get("/v1/status")
    }

    /// The results of a text query.
    fn query(&self, text: &str, k: usize) -> Vec<Value> {
        let response = self
            .agent
            .post(&format!("{}/v1/query", self.url))
            .send_json(json!({"text": text, "k": k}))
            .unwrap_or_else(|e| panic!("POST /v1/query: {e}"));
        assert_eq!(response.status(), 200);
        let body: Value = response.into_json().unwrap();
        body["results"].as_array().unwrap().clone()
    }

    /// Every indexed image (its path → the result), by a query for all.
    fn all(&self) -> Vec<Value> {
        self.query("a photo", 1000)
    }

    /// The first-listed path of each image a query for all returns.
    fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .all()
            .iter()
            .map(|hit| PathBuf::from(hit["path"].as_str().unwrap()))
            .collect();
        paths.sort();
        paths
    }

    /// The result whose path is `path`.
    fn hit(&self, path: &Path) -> Option<Value> {
        self.all()
            .into_iter()
            .find(|hit| hit["path"].as_str() == path.to_str())
    }

    /// Polls the status until `condition` holds; the status then.
    fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if condition(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; status {status:#}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every root is watched and nothing is queued or being
    /// indexed (twice, a root check apart, so that the reconcile queued at
    /// start or a burst still settling is not missed).
    fn wait_idle(&self, timeout: Duration) -> Value {
        let idle = |s: &Value| {
            s["queued"] == 0
                && s["indexing"] == false
                && s["roots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["state"] == "watching")
        };
        self.wait_until(timeout, "idle", idle);
        std::thread::sleep(Duration::from_millis(1200));
        self.wait_until(timeout, "idle", idle)
    }

    fn root_state(status: &Value) -> &str {
        status["roots"][0]["state"].as_str().unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's peak resident memory (VmHWM), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {}", self.pid);
    }

    /// SIGTERM, then waits for the exit (SIGKILL and a panic after 60 s).
    fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reaps it.
    fn kill(mut self) {
        self.signal("KILL");
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn count(status: &Value, key: &str) -> u64 {
    status[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {status}"))
}

fn photos(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    fs::create_dir_all(&photos).unwrap();
    photos
}

#[test]
fn a_copied_file_is_found_a_renamed_one_keeps_its_id_a_deleted_one_is_gone() {
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    let daemon = Daemon::start(&dir);
    daemon.wait_idle(Duration::from_secs(30));

    let circle = photos.join("circle.png");
    let copied = Instant::now();
    fs::copy(shape("large_red_circle_on_white"), &circle).unwrap();
    let hit = loop {
        if let Some(hit) = daemon.hit(&circle) {
            break hit;
        }
        assert!(
            copied.elapsed() < Duration::from_secs(10),
            "{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let found_in = copied.elapsed();
    println!("a copied-in image was queryable after {found_in:?}");
    assert!(found_in < Duration::from_secs(10));
    let id = hit["id"].as_u64().unwrap();
    let status = daemon.wait_idle(Duration::from_secs(10));
    assert_eq!(
        (count(&status, "images"), count(&status, "indexed")),
        (1, 1)
    );

    let renamed = photos.join("renamed.png");
    fs::rename(&circle, &renamed).unwrap();
    let status = daemon.wait_until(Duration::from_secs(10), "the rename", |s| {
        count(s, "linked") >= 1 && s["queued"] == 0
    });
    assert_eq!(daemon.paths(), std::slice::from_ref(&renamed));
    let hit = daemon.hit(&renamed).unwrap();
    assert_eq!(hit["id"].as_u64(), Some(id), "a renamed file keeps its id");
    assert_eq!(
        (
            count(&status, "images"),
            count(&status, "linked"),
            count(&status, "indexed")
        ),
        (1, 1, 1),
        "linked, not encoded again"
    );

    fs::remove_file(&renamed).unwrap();
    let status = daemon.wait_until(Duration::from_secs(10), "the deletion", |s| {
        s["images"] == 0
    });
    assert!(daemon.all().is_empty());
    assert_eq!(count(&status, "files"), 0);
    assert_eq!(count(&status, "failed"), 0);
    assert!(daemon.stop().success());
}

/// A PNG of seeded noise, `width`×`height`, as bytes (large enough to be
/// written in many chunks).
fn noise_png(seed: u64, width: u32, height: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let image = image::RgbImage::from_fn(width, height, |_, _| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let bytes = (state >> 24).to_le_bytes();
        image::Rgb([bytes[0], bytes[1], bytes[2]])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

/// Writes `bytes` to `path` in `chunks` pieces, flushed, sleeping `pause`
/// between them (`long_pause` once, in the middle, if given).
fn write_slowly(
    path: &Path,
    bytes: &[u8],
    chunks: usize,
    pause: Duration,
    long_pause: Option<Duration>,
) {
    let mut file = fs::File::create(path).unwrap();
    let size = bytes.len().div_ceil(chunks);
    for (n, chunk) in bytes.chunks(size).enumerate() {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        file.sync_data().unwrap();
        match long_pause {
            Some(long) if n == chunks / 2 => std::thread::sleep(long),
            _ => std::thread::sleep(pause),
        }
    }
}

#[test]
fn a_file_still_being_written_is_indexed_once_complete() {
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    let daemon = Daemon::start(&dir);
    daemon.wait_idle(Duration::from_secs(30));
    let seed = 20_261_201;
    println!("seed {seed}");

    // The common case: pauses shorter than the settle time.
    let slow = photos.join("slow.png");
    let png = noise_png(seed, 320, 240);
    let started = Instant::now();
    write_slowly(&slow, &png, 14, SETTLE / 2, None);
    println!(
        "wrote {} bytes in 14 chunks over {:?}",
        png.len(),
        started.elapsed()
    );
    let status = daemon.wait_until(Duration::from_secs(10), "the slow file", |s| {
        s["images"] == 1 && s["queued"] == 0
    });
    let status = if status["indexing"] == true {
        daemon.wait_idle(Duration::from_secs(10))
    } else {
        status
    };
    let hit = daemon.hit(&slow).expect("the slow file is indexed");
    assert_eq!(
        (hit["width"].as_u64(), hit["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(hit["bytes"].as_u64(), Some(png.len() as u64));
    assert_eq!(
        (count(&status, "indexed"), count(&status, "failed")),
        (1, 0),
        "indexed once, never read half-written"
    );
    assert_eq!(daemon.get("/v1/failures")["failures"], json!([]));

    // A writer that stalls longer than the settle time once: a half file
    // may be read then and fail, but the complete one replaces it.
    let stalled = photos.join("stalled.png");
    let png = noise_png(seed + 1, 320, 240);
    write_slowly(&stalled, &png, 14, SETTLE / 2, Some(SETTLE * 3));
    daemon.wait_until(Duration::from_secs(15), "the stalled file", |s| {
        s["images"] == 2 && s["failures"] == 0 && s["queued"] == 0
    });
    let hit = daemon.hit(&stalled).expect("the stalled file is indexed");
    assert_eq!(
        (hit["width"].as_u64(), hit["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(hit["bytes"].as_u64(), Some(png.len() as u64));
    let status = daemon.status();
    println!(
        "a writer stalled for {:?}: {} failed reads on the way, {} failures left",
        SETTLE * 3,
        count(&status, "failed"),
        count(&status, "failures")
    );
    assert_eq!(daemon.get("/v1/failures")["failures"], json!([]));
    assert!(daemon.stop().success());
}

#[test]
fn an_editors_atomic_save_replaces_the_image_at_the_same_path() {
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    let target = photos.join("photo.jpg");
    fs::copy(photo("astronaut.jpg"), &target).unwrap();
    let daemon = Daemon::start(&dir);
    let status = daemon.wait_idle(Duration::from_secs(30));
    assert_eq!(count(&status, "images"), 1);
    let before = daemon.hit(&target).unwrap();

    let temporary = photos.join(".photo.jpg.tmp4821");
    fs::copy(photo("coffee.jpg"), &temporary).unwrap();
    fs::rename(&temporary, &target).unwrap();
    let hash = before["content_hash"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        if let Some(hit) = daemon.hit(&target)
            && hit["content_hash"] != hash
        {
            break hit;
        }
        assert!(
            Instant::now() < deadline,
            "never re-indexed:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = daemon.wait_idle(Duration::from_secs(10));
    assert_eq!(
        daemon.paths(),
        std::slice::from_ref(&target),
        "one image, at the same path"
    );
    assert_eq!(count(&status, "images"), 1);
    assert_eq!(
        after["bytes"].as_u64(),
        Some(fs::metadata(photo("coffee.jpg")).unwrap().len())
    );
    assert_eq!(count(&status, "failed"), 0);
    assert_eq!(daemon.get("/v1/failures")["failures"], json!([]));
    assert!(daemon.stop().success());
}

/// Thousands of files moved in at once, then more copied in one by one;
/// queries are answered all along.
///
/// 10 000 files, the size of a folder of photos copied in at once; on 2
/// cores shared with this file's other tests they take 50–65 s to index
/// (about 80 s for the whole test, peak RSS 226–263 MiB).
/// `IMGDB_DAEMON_FILES=N` runs another count.
#[test]
fn thousands_of_files_moved_in_at_once_are_all_indexed_in_bounded_memory() {
    const ONE_BY_ONE: u32 = 1_000;
    let moved_count: u32 = std::env::var("IMGDB_DAEMON_FILES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    assert!(
        moved_count + ONE_BY_ONE < 65_536,
        "tiny_png repeats colours"
    );
    println!("{moved_count} files moved in, then {ONE_BY_ONE} copied one by one");
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    fs::copy(shape("large_red_circle_on_white"), photos.join("first.png")).unwrap();
    let staging = dir.join("staging");
    let batch = staging.join("batch");
    fs::create_dir_all(&batch).unwrap();
    let generated = Instant::now();
    for n in 0..moved_count + ONE_BY_ONE {
        tiny_png(n, &batch.join(format!("{n:05}.png")));
    }
    println!(
        "generated {} PNGs in {:?}",
        moved_count + ONE_BY_ONE,
        generated.elapsed()
    );
    let singles = staging.join("singles");
    fs::create_dir_all(&singles).unwrap();
    for n in moved_count..moved_count + ONE_BY_ONE {
        let name = format!("{n:05}.png");
        fs::rename(batch.join(&name), singles.join(&name)).unwrap();
    }
    let daemon = Daemon::start(&dir);
    daemon.wait_until(Duration::from_secs(30), "the first image", |s| {
        s["images"] == 1
    });
    daemon.wait_idle(Duration::from_secs(30));

    let moved = Instant::now();
    fs::rename(&batch, photos.join("batch")).unwrap();
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    let status = loop {
        let status = daemon.status();
        if count(&status, "images") == u64::from(moved_count) + 1 && status["queued"] == 0 {
            break status;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(240),
            "not indexed in 240 s: {status}\n{}",
            daemon.log()
        );
        // A query while the batch is applied: answered, with results.
        if status["queued"] != 0 {
            let asked = Instant::now();
            let results = daemon.query("a red circle", 5);
            slowest = slowest.max(asked.elapsed());
            assert!(!results.is_empty());
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let took = moved.elapsed();
    println!(
        "{moved_count} files moved in: indexed in {took:?} ({:.0}/s); {answered} queries answered \
         meanwhile, the slowest in {slowest:?}",
        f64::from(moved_count) / took.as_secs_f64()
    );
    assert!(answered > 0, "no query was made while indexing");
    assert_eq!(count(&status, "failed"), 0);

    // The same, file by file, as fast as they come.
    let copied = Instant::now();
    let into = photos.join("singles");
    fs::create_dir(&into).unwrap();
    for n in moved_count..moved_count + ONE_BY_ONE {
        let name = format!("{n:05}.png");
        fs::copy(singles.join(&name), into.join(&name)).unwrap();
    }
    let total = u64::from(moved_count + ONE_BY_ONE) + 1;
    let status = daemon.wait_until(Duration::from_secs(120), "the copied files", |s| {
        count(s, "images") == total && s["queued"] == 0
    });
    println!(
        "{ONE_BY_ONE} files copied in one by one: indexed in {:?}",
        copied.elapsed()
    );
    assert_eq!(count(&status, "files"), total);
    assert_eq!(count(&status, "failed"), 0);
    let peak = daemon.peak_rss();
    println!("the daemon's peak RSS: {} MiB", peak >> 20);
    assert!(peak < 1536 << 20, "peak RSS {} MiB", peak >> 20);
    assert!(daemon.stop().success());
}

#[test]
fn a_moved_folder_keeps_its_ids_and_a_deleted_one_takes_its_images() {
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    let classes = [
        ("trip", "large_red_circle_on_white"),
        ("trip", "large_green_triangle_on_white"),
        ("trip", "large_blue_square_on_white"),
        ("keep", "small_red_circle_on_gray"),
        ("junk", "small_green_triangle_on_black"),
        ("junk", "small_blue_square_on_black"),
    ];
    for (folder, class) in classes {
        fs::create_dir_all(photos.join(folder)).unwrap();
        fs::copy(
            shape(class),
            photos.join(folder).join(format!("{class}.png")),
        )
        .unwrap();
    }
    let daemon = Daemon::start(&dir);
    let status = daemon.wait_idle(Duration::from_secs(30));
    assert_eq!(count(&status, "images"), 6);
    let id_of = |path: &Path| daemon.hit(path).map(|hit| hit["id"].as_u64().unwrap());
    let trip: Vec<(String, u64)> = classes[..3]
        .iter()
        .map(|(folder, class)| {
            let name = format!("{class}.png");
            let id = id_of(&photos.join(folder).join(&name)).unwrap();
            (name, id)
        })
        .collect();

    let moved = Instant::now();
    fs::rename(photos.join("trip"), photos.join("2024 trip")).unwrap();
    let status = daemon.wait_until(Duration::from_secs(10), "the moved folder", |s| {
        count(s, "linked") >= 3 && s["queued"] == 0
    });
    println!("a moved folder was applied in {:?}", moved.elapsed());
    for (name, id) in &trip {
        assert_eq!(
            id_of(&photos.join("2024 trip").join(name)),
            Some(*id),
            "{name}"
        );
        assert_eq!(id_of(&photos.join("trip").join(name)), None, "{name}");
    }
    assert_eq!(
        (
            count(&status, "images"),
            count(&status, "linked"),
            count(&status, "indexed")
        ),
        (6, 3, 6),
        "linked, not encoded again"
    );

    fs::remove_dir_all(photos.join("junk")).unwrap();
    let status = daemon.wait_until(Duration::from_secs(10), "the deleted folder", |s| {
        s["images"] == 4
    });
    let paths = daemon.paths();
    assert!(
        paths.iter().all(|p| !p.starts_with(photos.join("junk"))),
        "{paths:?}"
    );
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with(photos.join("2024 trip")))
            .count(),
        3
    );
    assert!(paths.contains(&photos.join("keep/small_red_circle_on_gray.png")));
    // The move's old paths were removed too (3), then the folder's 2.
    assert_eq!(count(&status, "removed"), 3 + 2);
    assert!(daemon.stop().success());
}

#[test]
fn a_root_renamed_away_is_unavailable_and_nothing_is_deleted() {
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    fs::copy(shape("large_red_circle_on_white"), photos.join("a.png")).unwrap();
    fs::copy(shape("large_green_triangle_on_white"), photos.join("b.png")).unwrap();
    let daemon = Daemon::start(&dir);
    daemon.wait_idle(Duration::from_secs(30));
    let before = daemon.paths();
    assert_eq!(before.len(), 2);

    let away = dir.join("photos-away");
    let renamed = Instant::now();
    fs::rename(&photos, &away).unwrap();
    daemon.wait_until(Duration::from_secs(5), "unavailable", |s| {
        Daemon::root_state(s) == "unavailable"
    });
    println!("the root was unavailable after {:?}", renamed.elapsed());
    fs::copy(shape("large_blue_square_on_white"), away.join("c.png")).unwrap();
    // Several root checks and indexer passes later, nothing is gone.
    std::thread::sleep(Duration::from_secs(3));
    let status = daemon.status();
    assert_eq!(Daemon::root_state(&status), "unavailable");
    assert_eq!(
        (count(&status, "images"), count(&status, "removed")),
        (2, 0)
    );
    assert_eq!(daemon.paths(), before, "queries still return them");

    fs::rename(&away, &photos).unwrap();
    let back = Instant::now();
    let status = daemon.wait_until(Duration::from_secs(10), "back and reconciled", |s| {
        Daemon::root_state(s) == "watching" && s["images"] == 3 && s["queued"] == 0
    });
    println!(
        "back, and the file added meanwhile indexed, after {:?}",
        back.elapsed()
    );
    assert_eq!(count(&status, "removed"), 0);
    assert!(daemon.hit(&photos.join("c.png")).is_some());
    assert!(daemon.stop().success());
}

/// Runs `mount`/`umount` and says whether it worked.
fn mount(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts a folder when dropped (a failing test leaves no mount behind).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while mount(&["umount", &self.0.to_string_lossy()]) {}
    }
}

#[test]
fn an_unmounted_disk_is_unavailable_and_nothing_is_deleted() {
    let required = std::env::var("IMGDB_REQUIRE_TMPFS").is_ok_and(|v| v == "1");
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    let target = photos.to_string_lossy().into_owned();
    if !mount(&["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", &target]) {
        assert!(
            !required,
            "IMGDB_REQUIRE_TMPFS=1 but a tmpfs cannot be mounted here"
        );
        eprintln!("SKIPPED: the unmounted-disk case needs to mount a tmpfs (run as root)");
        return;
    }
    let _unmount = Unmount(photos.clone());
    let names = ["a.png", "b.png"];
    let sources = [
        shape("large_red_circle_on_white"),
        shape("large_blue_square_on_white"),
    ];
    for (name, source) in names.iter().zip(&sources) {
        fs::copy(source, photos.join(name)).unwrap();
    }
    let daemon = Daemon::start(&dir);
    daemon.wait_idle(Duration::from_secs(30));
    let ids: Vec<Value> = names
        .iter()
        .map(|name| daemon.hit(&photos.join(name)).unwrap()["id"].clone())
        .collect();

    assert!(mount(&["umount", &target]));
    let unmounted = Instant::now();
    daemon.wait_until(Duration::from_secs(5), "unavailable", |s| {
        Daemon::root_state(s) == "unavailable"
    });
    println!("unmounted: unavailable after {:?}", unmounted.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    let status = daemon.status();
    assert_eq!(Daemon::root_state(&status), "unavailable");
    assert_eq!(
        (count(&status, "images"), count(&status, "removed")),
        (2, 0)
    );
    assert_eq!(daemon.all().len(), 2, "queries still return them");

    // The disk comes back with the same files: mounted and filled beside
    // the root, then moved onto it at once (as a disk plugged in again is).
    let staging = dir.join("staging");
    fs::create_dir(&staging).unwrap();
    let staged = staging.to_string_lossy().into_owned();
    assert!(mount(&[
        "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", &staged
    ]));
    let _unmount_staging = Unmount(staging.clone());
    for (name, source) in names.iter().zip(&sources) {
        fs::copy(source, staging.join(name)).unwrap();
    }
    assert!(mount(&["mount", "--move", &staged, &target]));
    let moved_in = Instant::now();
    daemon.wait_until(Duration::from_secs(10), "watching again", |s| {
        Daemon::root_state(s) == "watching"
    });
    println!("mounted again: watching after {:?}", moved_in.elapsed());
    let status = daemon.wait_idle(Duration::from_secs(10));
    let same_images = |status: &Value| {
        let again: Vec<Value> = names
            .iter()
            .map(|name| daemon.hit(&photos.join(name)).expect(name)["id"].clone())
            .collect();
        assert_eq!(again, ids, "the same images");
        assert_eq!(count(status, "images"), 2);
        assert_eq!(count(status, "removed"), 0);
    };
    same_images(&status);
    assert_eq!(count(&status, "indexed"), 2, "nothing encoded again");

    // Unmounted again; then mounted empty, and the same files copied back
    // at once (new mtimes, same content).
    assert!(mount(&["umount", &target]));
    daemon.wait_until(Duration::from_secs(5), "unavailable", |s| {
        Daemon::root_state(s) == "unavailable"
    });
    assert!(mount(&[
        "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", &target
    ]));
    for (name, source) in names.iter().zip(&sources) {
        fs::copy(source, photos.join(name)).unwrap();
    }
    daemon.wait_until(Duration::from_secs(10), "watching again", |s| {
        Daemon::root_state(s) == "watching"
    });
    let status = daemon.wait_idle(Duration::from_secs(10));
    same_images(&status);
    println!(
        "copied back: {} indexed, {} linked since start",
        count(&status, "indexed"),
        count(&status, "linked")
    );
    assert!(daemon.stop().success());
}

#[test]
fn a_root_past_the_inotify_watch_limit_is_polled() {
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    for n in 0..10 {
        fs::create_dir(photos.join(format!("album-{n}"))).unwrap();
    }
    fs::copy(
        shape("large_red_circle_on_white"),
        photos.join("album-0/a.png"),
    )
    .unwrap();
    let daemon = Daemon::with(Start {
        indexing: "rescan_secs = 2",
        inotify_watches: Some(3),
        ..Start::new(&dir)
    });
    let status = daemon.wait_until(Duration::from_secs(30), "polling", |s| {
        Daemon::root_state(s) == "polling" && s["images"] == 1
    });
    assert_eq!(count(&status, "failed"), 0);
    let log = daemon.log();
    assert!(
        log.contains("the inotify watch limit is reached (raise fs.inotify.max_user_watches)"),
        "{log}"
    );
    let added = Instant::now();
    fs::copy(
        shape("large_green_triangle_on_white"),
        photos.join("album-7/b.png"),
    )
    .unwrap();
    daemon.wait_until(Duration::from_secs(15), "the rescan", |s| s["images"] == 2);
    println!(
        "a file added to a polled root was indexed after {:?}",
        added.elapsed()
    );
    assert!(daemon.hit(&photos.join("album-7/b.png")).is_some());
    assert_eq!(Daemon::root_state(&daemon.status()), "polling");
    assert!(daemon.stop().success());
}

#[test]
fn sigterm_exits_cleanly_and_a_restart_encodes_nothing_again() {
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    for class in [
        "large_red_circle_on_white",
        "large_green_triangle_on_white",
        "large_blue_square_on_white",
    ] {
        fs::copy(shape(class), photos.join(format!("{class}.png"))).unwrap();
    }
    let daemon = Daemon::start(&dir);
    let status = daemon.wait_idle(Duration::from_secs(30));
    assert_eq!(
        (count(&status, "images"), count(&status, "indexed")),
        (3, 3)
    );
    let before = daemon.all();
    let db = daemon.db.clone();
    let stopping = Instant::now();
    let exit = daemon.stop();
    println!("stopped on SIGTERM in {:?}", stopping.elapsed());
    assert_eq!(exit.code(), Some(0), "exit 0 on SIGTERM");
    assert!(
        !db.join("daemon.json").exists(),
        "the address file is removed"
    );

    let started = Instant::now();
    let daemon = Daemon::start(&dir);
    let status = daemon.wait_idle(Duration::from_secs(30));
    println!("restarted and reconciled in {:?}", started.elapsed());
    assert_eq!(count(&status, "images"), 3);
    assert_eq!(
        (count(&status, "indexed"), count(&status, "linked")),
        (0, 0),
        "nothing encoded again"
    );
    let ids = |hits: &[Value]| {
        let mut ids: Vec<u64> = hits.iter().map(|h| h["id"].as_u64().unwrap()).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids(&daemon.all()), ids(&before));
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn a_kill_during_a_large_ingest_loses_nothing() {
    const FILES: u32 = 2_000;
    let (_tmp, dir) = temp();
    let photos = photos(&dir);
    let batch = dir.join("batch");
    fs::create_dir(&batch).unwrap();
    for n in 0..FILES {
        tiny_png(n, &batch.join(format!("{n:05}.png")));
    }
    let daemon = Daemon::start(&dir);
    daemon.wait_idle(Duration::from_secs(30));
    let moved = Instant::now();
    fs::rename(&batch, photos.join("batch")).unwrap();
    let mut queried = false;
    let status = daemon.wait_until(Duration::from_secs(120), "200 indexed", |s| {
        if !queried && count(s, "images") > 0 && s["queued"] != 0 {
            // Answered while indexing.
            assert!(!daemon.query("a red circle", 3).is_empty());
            queried = true;
        }
        count(s, "indexed") > 200
    });
    assert_ne!(status["queued"], 0, "killed while events are queued");
    daemon.kill();
    println!(
        "killed after {:?}, with {} indexed",
        moved.elapsed(),
        count(&status, "indexed")
    );

    let restarted = Instant::now();
    let daemon = Daemon::start(&dir);
    let status = daemon.wait_until(Duration::from_secs(120), "all indexed", |s| {
        count(s, "images") == u64::from(FILES) && s["queued"] == 0
    });
    println!("restarted and finished in {:?}", restarted.elapsed());
    let on_disk = fs::read_dir(photos.join("batch")).unwrap().count() as u64;
    assert_eq!(count(&status, "images"), on_disk);
    assert_eq!(count(&status, "files"), on_disk);
    assert_eq!(count(&status, "failed"), 0);
    assert!(
        count(&status, "indexed") < u64::from(FILES),
        "what was indexed before the kill is kept: {status}"
    );
    let db = daemon.db.clone();
    assert!(daemon.stop().success());
    let check = Command::new(env!("CARGO_BIN_EXE_imgdb"))
        .arg("--db")
        .arg(&db)
        .arg("check")
        .env_remove("IMGDB_DB")
        .env_remove("IMGDB_MODEL")
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
