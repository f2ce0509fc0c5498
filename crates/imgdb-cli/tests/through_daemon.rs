//! The everyday commands while `imgdb daemon` holds the database: `query`,
//! `stats`, `failures`, `tag`, `rm` and `ingest` go through its API and
//! print what the direct command prints (compared with the API's own
//! answers and with the direct command on a copy of the database made
//! before the daemon started); the other commands say the daemon holds the
//! database; an address file left by a dead daemon is ignored.
//!
//! Each test starts the real daemon (`imgdb daemon … --listen
//! 127.0.0.1:0`) with the tiny fixture model and stops it with SIGTERM.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{copy_dir, root};
use imgdb_daemon::address::Address;
use imgdb_daemon::client::Client;
use serde_json::{Value, json};

/// A database indexed directly from a copy of the photos (with one
/// broken file), and a copy of that database made before any daemon.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let world = World { dir };
        copy_dir(&root().join("fixtures/photos"), &world.photos());
        std::fs::remove_file(world.photos().join("ATTRIBUTION.md")).unwrap();
        std::fs::write(world.photos().join("broken.jpg"), b"\xff\xd8 not a jpeg").unwrap();
        let ingest = world.run(&world.db(), &["ingest", world.photos().to_str().unwrap()]);
        // The broken file fails; the photos are stored.
        assert_eq!(ingest.status.code(), Some(1), "the direct ingest");
        copy_dir(&world.db(), &world.copy());
        world
    }

    fn photos(&self) -> PathBuf {
        self.dir.path().join("photos")
    }

    /// The database the daemon holds.
    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// The copy the direct commands open.
    fn copy(&self) -> PathBuf {
        self.dir.path().join("copy")
    }

    fn photo(&self, name: &str) -> String {
        self.photos()
            .join(name)
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }

    /// `imgdb --db DB --model tiny-clip ARGS`.
    fn run(&self, db: &Path, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_imgdb"))
            .arg("--db")
            .arg(db)
            .arg("--model")
            .arg(model())
            .args(args)
            .env("IMGDB_CACHE", self.dir.path().join("cache"))
            .env_remove("IMGDB_MODEL")
            .env_remove("IMGDB_DB")
            .env_remove("IMGDB_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!(
            "$ imgdb --db {} {}\n{}{stderr}",
            db.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
        );
        assert!(
            !stderr.contains("in use"),
            "no command reports a database in use: {stderr}"
        );
        output
    }

    /// The same command through the daemon and directly on the copy:
    /// both outputs, which must have the same exit code.
    fn both(&self, args: &[&str]) -> (Output, Output) {
        let through = self.run(&self.db(), args);
        let direct = self.run(&self.copy(), args);
        assert_eq!(through.status.code(), direct.status.code(), "{args:?}");
        (through, direct)
    }

    /// The same command through the daemon and directly: same exit code,
    /// same stdout, same stderr.
    fn same(&self, args: &[&str]) -> Output {
        let (through, direct) = self.both(args);
        assert_eq!(text(&through.stdout), text(&direct.stdout), "{args:?}");
        assert_eq!(text(&through.stderr), text(&direct.stderr), "{args:?}");
        through
    }
}

fn model() -> PathBuf {
    root().join("fixtures/models/tiny-clip")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A running daemon over the world's database, watching its photos.
struct Daemon {
    child: Child,
    client: Client,
}

impl Daemon {
    fn start(world: &World) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_imgdb"))
            .arg("daemon")
            .arg("--db")
            .arg(world.db())
            .arg("--model")
            .arg(model())
            .arg("--watch")
            .arg(world.photos())
            .args(["--listen", "127.0.0.1:0"])
            .env("IMGDB_CACHE", world.dir.path().join("cache"))
            .env_remove("IMGDB_TOKEN")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            if let Some(client) = Client::connect(&world.db()) {
                break client;
            }
            assert!(Instant::now() < deadline, "no daemon.json in time");
            std::thread::sleep(Duration::from_millis(100));
        };
        let images = json_lines(&world.run(&world.copy(), &["stats", "--json"]))[0]["images"]
            .as_u64()
            .unwrap();
        assert_eq!(images, 6);
        let daemon = Daemon { child, client };
        daemon.settle(images);
        daemon
    }

    /// Waits until the queue is empty and the database holds `images`.
    fn settle(&self, images: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.client.status().unwrap();
            if status["queued"] == json!(0)
                && status["indexing"] == json!(false)
                && status["images"] == json!(images)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not settle: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        if !std::thread::panicking() {
            assert!(
                status.success(),
                "the daemon stops cleanly on SIGTERM: {status}"
            );
        }
    }
}

#[test]
fn queries_through_the_daemon_print_what_the_direct_query_prints() {
    let world = World::new();
    let daemon = Daemon::start(&world);
    let photos = world.photos();
    let photos = photos.to_str().unwrap();

    // Text queries: the same lines, scores and paths as the direct query.
    let lines = world.same(&["query", "a cat"]);
    assert_eq!(text(&lines.stdout).lines().count(), 6);
    assert!(text(&lines.stdout).starts_with("  1  "));
    let paths = world.same(&["query", "a rocket", "--paths", "-k", "3"]);
    assert_eq!(text(&paths.stdout).lines().count(), 3);
    world.same(&[
        "query",
        "--text",
        "a cup of coffee::2",
        "--minus",
        "a flower",
    ]);

    // --json: the API's objects, field by field.
    let through = json_lines(&world.same(&["query", "a cat", "--json"]));
    let api = daemon
        .client
        .query(&json!({"text": "a cat", "k": 10}))
        .unwrap();
    assert_eq!(through.len(), api.len());
    for (cli, api) in through.iter().zip(&api) {
        assert_eq!(
            cli.as_object().unwrap().len(),
            api.as_object().unwrap().len()
        );
        for (field, value) in api.as_object().unwrap() {
            assert_eq!(&cli[field], value, "{field}");
        }
    }

    // Filters.
    let under = world.same(&[
        "query", "a photo", "--under", photos, "--format", "png", "--json",
    ]);
    let under = json_lines(&under);
    assert!(!under.is_empty());
    assert!(under.iter().all(|r| r["format"] == "png"));
    let filtered = world.same(&[
        "query",
        "a photo",
        "--min-width",
        "100",
        "--min-height",
        "100",
        "--after",
        "2000-01-01",
        "--before",
        "2100-01-01T00:00:00Z",
        "-k",
        "4",
        "--min-score=-1",
        "--ef",
        "50",
    ]);
    assert_eq!(text(&filtered.stdout).lines().count(), 4);
    let none = world.same(&["query", "a photo", "--tag", "no such tag"]);
    assert!(none.stdout.is_empty());

    // An image term mixed with text: the image's bytes travel, re-encoded
    // by the daemon, so scores may differ from the stored vector's in the
    // last bits; the ranking does not.
    let chelsea = world.photo("chelsea.png");
    let mix = [
        "query",
        "--image",
        &chelsea,
        "--text",
        "a cat::0.5",
        "--json",
    ];
    let (through, direct) = world.both(&mix);
    let (through, direct) = (json_lines(&through), json_lines(&direct));
    assert_eq!(through.len(), direct.len());
    assert_eq!(
        through[0]["path"],
        json!(chelsea),
        "the image finds itself first"
    );
    for (t, d) in through.iter().zip(&direct) {
        assert_eq!(t["path"], d["path"]);
        let (t, d) = (t["score"].as_f64().unwrap(), d["score"].as_f64().unwrap());
        assert!((t - d).abs() < 1e-4, "{t} vs {d}");
    }

    // Errors: the same messages and exit codes.
    let missing = world.same(&["query", "--image", "/no/such/file.jpg"]);
    assert_eq!(missing.status.code(), Some(6));
    let usage = world.same(&["query", "x", "--format", "nope"]);
    assert_eq!(usage.status.code(), Some(2));
    let nothing = world.same(&["query"]);
    assert_eq!(nothing.status.code(), Some(2));
    drop(daemon);
}

#[test]
fn stats_failures_tag_rm_and_ingest_go_through_the_daemon() {
    let world = World::new();
    let daemon = Daemon::start(&world);

    // stats: the API's object; the lines of the direct command (but the
    // store's sizes, which differ between two copies of a store).
    let stats = json_lines(&world.run(&world.db(), &["stats", "--json"]));
    assert_eq!(stats, vec![daemon.client.stats().unwrap()]);
    let (through, direct) = world.both(&["stats"]);
    let figures = |output: &Output| -> Vec<String> {
        text(&output.stdout)
            .lines()
            .filter(|l| !l.starts_with("store") && !l.starts_with("snapshot"))
            .map(String::from)
            .collect()
    };
    assert_eq!(figures(&through), figures(&direct));
    assert_eq!(text(&through.stdout).lines().count(), 9);
    assert!(text(&through.stdout).starts_with("images        6\n"));

    // failures: the broken file, as the API and the direct command say.
    let failures = json_lines(&world.same(&["failures", "--json"]));
    assert_eq!(failures, daemon.client.failures(None).unwrap());
    assert_eq!(failures.len(), 1);
    let broken = world.same(&["failures"]);
    assert!(text(&broken.stdout).starts_with(&world.photo("broken.jpg")));
    let kind = failures[0]["kind"].as_str().unwrap();
    assert_eq!(
        world.same(&["failures", "--kind", kind]).stdout,
        broken.stdout
    );
    assert!(world.same(&["failures", "--kind", "io"]).stdout.is_empty());
    assert_eq!(
        world.same(&["failures", "--kind", "bogus"]).status.code(),
        Some(2)
    );

    // tag: the same count, and the same tags found afterwards.
    let labels = world.dir.path().join("labels.txt");
    std::fs::write(&labels, "cat\nrocket\ncoffee\n").unwrap();
    let labels = labels.to_str().unwrap();
    let tagged = world.same(&["tag", "--labels", labels]);
    assert_eq!(text(&tagged.stdout), "tagged 6 images\n");
    let tagged = world.same(&["tag", "--labels", labels, "--json"]);
    assert_eq!(json_lines(&tagged), vec![json!({"tagged": 6})]);
    world.same(&["query", "a photo", "--tag", "rocket"]);
    assert_eq!(
        world.same(&["tag", "--labels", "/no/labels"]).status.code(),
        Some(2)
    );

    // rm: one file, then a path that is not indexed (exit 1 on both).
    let rocket = world.photo("rocket.jpg");
    let removed = world.same(&["rm", &rocket]);
    assert_eq!(text(&removed.stdout), "removed 1 files\n");
    assert_eq!(daemon.client.stats().unwrap()["images"], json!(5));
    let nowhere = world.dir.path().join("nowhere.jpg");
    let not_indexed = world.same(&["rm", nowhere.to_str().unwrap()]);
    assert_eq!(not_indexed.status.code(), Some(1));
    assert!(text(&not_indexed.stderr).starts_with("not indexed: "));

    // ingest: queued, indexed by the daemon, waited for.
    let ingest = world.run(&world.db(), &["ingest", &rocket]);
    assert_eq!(ingest.status.code(), Some(0));
    assert!(
        text(&ingest.stdout)
            .starts_with("queued 1 paths; the imgdb daemon has indexed them: 1 indexed"),
        "{}",
        text(&ingest.stdout)
    );
    assert_eq!(daemon.client.status().unwrap()["queued"], json!(0));
    assert_eq!(daemon.client.stats().unwrap()["images"], json!(6));
    let again = json_lines(&world.run(&world.db(), &["ingest", &rocket, "--json"]));
    assert_eq!(again[0]["event"], "done");
    assert_eq!(again[0]["queued"], json!(1));
    // A new failing file: exit 1, its failure on stderr.
    std::fs::write(world.photos().join("broken2.jpg"), b"\xff\xd8 no").unwrap();
    let broken = world.run(&world.db(), &["ingest", &world.photo("broken2.jpg")]);
    assert_eq!(broken.status.code(), Some(1));
    let stderr = text(&broken.stderr);
    assert!(
        stderr.contains(&format!("failed: {}: ", world.photo("broken2.jpg"))),
        "{stderr}"
    );
    // Outside the watched roots: refused, naming them (exit 2).
    let outside = world.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::copy(
        world.photos().join("coffee.jpg"),
        outside.join("coffee.jpg"),
    )
    .unwrap();
    let refused = world.run(&world.db(), &["ingest", outside.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    let message = text(&refused.stderr);
    assert!(
        message.contains("only indexes under its watched roots"),
        "{message}"
    );
    assert!(message.contains(&world.photo("")), "{message}");
    assert_eq!(daemon.client.stats().unwrap()["images"], json!(6));

    // A command that must open the database says who holds it.
    let check = world.run(&world.db(), &["check"]);
    assert_eq!(check.status.code(), Some(3));
    let expected = format!(
        "error: the imgdb daemon (pid {}, {}) holds this database: stop it first, or use its API\n",
        daemon.child.id(),
        daemon.client.url()
    );
    assert_eq!(text(&check.stderr), expected);
    drop(daemon);

    // Once it stopped, the commands open the database again.
    assert!(!world.db().join("daemon.json").exists());
    let after = json_lines(&world.run(&world.db(), &["stats", "--json"]));
    assert_eq!(after[0]["images"], json!(6));
}

#[test]
fn a_stale_address_file_of_a_dead_daemon_is_ignored() {
    let world = World::new();
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    Address {
        version: 1,
        url: "http://127.0.0.1:9".into(),
        pid,
        token: None,
    }
    .write(&world.db())
    .unwrap();
    let stats = world.run(&world.db(), &["stats", "--json"]);
    assert_eq!(stats.status.code(), Some(0));
    assert_eq!(json_lines(&stats)[0]["images"], json!(6));
    let query = world.run(&world.db(), &["query", "a cat", "-k", "2"]);
    assert_eq!(query.status.code(), Some(0));
    assert_eq!(
        query.stdout,
        world
            .run(&world.copy(), &["query", "a cat", "-k", "2"])
            .stdout
    );
    assert_eq!(world.run(&world.db(), &["check"]).status.code(), Some(0));
}
