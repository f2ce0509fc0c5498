//! Crash safety: a writer killed with SIGKILL at random moments loses
//! nothing it had acknowledged, a batch it was writing is all there or not
//! at all, and the database reopens consistent — also when the kill lands
//! while the writer was still opening (recovering) the database.
//!
//! The child is this test binary re-run on `crash_child`. It inserts
//! batches, deletes a few images and checkpoints now and then (so that
//! kills also land inside snapshot writes), and reports on its own channel:
//! a log file named by `IMGDB_CRASH_LOG`, one `write` per line, announcing
//! each call before it starts and acknowledging it once it returned. The
//! kill timer starts at the first acknowledged insert; every fourth round
//! instead kills the child a moment after it announced its open, while it
//! replays the change log of the crash before (each child opens the
//! database exactly as the last kill left it).
//!
//! After each kill the parent opens a copy of the crash image and checks it:
//! every acknowledged image with its id and vector, the batch in flight all
//! or nothing, acknowledged deletes gone, a delete in flight settled, the
//! exact number of records, a clean `verify`, and each image found by a
//! graph search (exact scans are switched off) with its own vector: every
//! new image, and a tenth of the older ones, each round.
//! `IMGDB_CRASH_ROUNDS` sets the number of kills (default 20;
//! `scripts/crash-soak.sh` runs hundreds).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{copy_dir, image, seed, space};
use imgdb::{Db, ImageId, IndexParams, SearchOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 32;

/// Image numbers of round `r` start at `1 + r * ROUND_SPAN`: no two
/// children ever insert the same image.
const ROUND_SPAN: u64 = 1_000_000;

fn open(path: &Path) -> Db {
    Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
        // Frequent snapshots, so that kills land inside them too.
        .snapshot_every(150)
        // A cheap graph, so that a kill during an insert often lands in the
        // store commit rather than in the graph insert after it.
        .index_params(IndexParams {
            m: 8,
            ef_construction: 32,
            ef_search: 64,
        })
        // Every search walks the graph: an exact scan would find each image
        // even in a broken graph.
        .exact_scan_rows(0)
        .open(path)
        .unwrap()
}

/// The child's report channel. SIGKILL ends the process, not the machine:
/// a line handed to `write` is in the page cache the parent reads, so no
/// fsync is needed, only no buffer in the process that dies with it.
struct Log(File);

impl Log {
    fn line(&mut self, line: std::fmt::Arguments<'_>) {
        self.0.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

/// The writer. Protocol, one line each: `opening`, then `open MICROS` once
/// the open (and its replay) returned; `try-ins FIRST COUNT` before an
/// insert of images FIRST.., `ins FIRST COUNT` after it returned;
/// `try-del N` and `del N` around the delete of image N; `checkpoint`
/// before a checkpoint.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var("IMGDB_CRASH_DB") else {
        return;
    };
    let first: u64 = std::env::var("IMGDB_CRASH_FIRST").unwrap().parse().unwrap();
    let log = std::env::var("IMGDB_CRASH_LOG").unwrap();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut log = Log(file);
    let mut rng = ChaCha8Rng::seed_from_u64(first);
    log.line(format_args!("opening"));
    let started = Instant::now();
    let db = open(Path::new(&path));
    log.line(format_args!("open {}", started.elapsed().as_micros()));
    let mut next = first;
    loop {
        let count = rng.random_range(1..40);
        let images = (next..next + count).map(|n| image(n, DIM)).collect();
        log.line(format_args!("try-ins {next} {count}"));
        db.insert(&space(DIM as u32), images).unwrap();
        log.line(format_args!("ins {next} {count}"));
        next += count;
        if rng.random_bool(0.2) && next > first + 1 {
            let victim = rng.random_range(first..next);
            log.line(format_args!("try-del {victim}"));
            if let Some(record) = db.get_by_path(&image(victim, DIM).path).unwrap() {
                db.delete(&[record.id]).unwrap();
            }
            log.line(format_args!("del {victim}"));
        }
        if rng.random_bool(0.05) {
            log.line(format_args!("checkpoint"));
            db.checkpoint().unwrap();
        }
    }
}

/// What one child reported before it was killed.
#[derive(Debug, Default)]
struct Reported {
    /// `open MICROS`: the open returned after this long.
    opened: Option<u64>,
    /// Acknowledged inserts: (first image, count).
    inserted: Vec<(u64, u64)>,
    /// Acknowledged deletes.
    deleted: Vec<u64>,
    /// The insert announced and never acknowledged.
    insert_in_flight: Option<(u64, u64)>,
    /// The delete announced and never acknowledged.
    delete_in_flight: Option<u64>,
    /// Where the kill landed: after which line.
    last: String,
}

impl Reported {
    /// Parses a child's log; every line must be complete and known.
    fn parse(log: &str) -> Reported {
        assert!(
            log.is_empty() || log.ends_with('\n'),
            "a line was cut: {log:?}"
        );
        let mut reported = Reported::default();
        let number = |s: &str| -> u64 { s.parse().unwrap() };
        for line in log.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["opening"] | ["checkpoint"] => {}
                ["open", micros] => reported.opened = Some(number(micros)),
                ["try-ins", first, count] => {
                    reported.insert_in_flight = Some((number(first), number(count)));
                }
                ["ins", first, count] => {
                    let batch = (number(first), number(count));
                    assert_eq!(reported.insert_in_flight.take(), Some(batch), "{line}");
                    reported.inserted.push(batch);
                }
                ["try-del", n] => reported.delete_in_flight = Some(number(n)),
                ["del", n] => {
                    assert_eq!(reported.delete_in_flight.take(), Some(number(n)), "{line}");
                    reported.deleted.push(number(n));
                }
                _ => panic!("unknown line from the child: {line:?}"),
            }
        }
        reported.last = log.lines().last().unwrap_or("(nothing)").to_string();
        reported
    }

    /// Where the kill landed, in words.
    fn landed(&self) -> &'static str {
        match self.last.split(' ').next() {
            Some("opening") => "during the open",
            Some("try-ins") => "inside an insert",
            Some("try-del") => "inside a delete",
            Some("checkpoint") => "inside a checkpoint",
            _ => "between calls",
        }
    }
}

/// The fate of every image the children touched, as the parent knows it.
#[derive(Default)]
struct Expected {
    /// Acknowledged and not deleted.
    present: BTreeSet<u64>,
    /// Deleted, or in a batch that did not reach the store.
    absent: BTreeSet<u64>,
    /// The id each present image was first seen with.
    ids: HashMap<u64, ImageId>,
}

impl Expected {
    /// Takes in what a child acknowledged.
    fn acknowledge(&mut self, reported: &Reported) {
        for &(first, count) in &reported.inserted {
            self.present.extend(first..first + count);
        }
        for n in &reported.deleted {
            if self.present.remove(n) {
                self.absent.insert(*n);
            }
        }
    }

    /// Settles what the child was doing when killed, from what `db` holds:
    /// the insert in flight must be whole or absent, the delete in flight
    /// either done or not. Returns whether the insert in flight landed.
    fn settle(&mut self, db: &Db, reported: &Reported, round: u64) -> Option<bool> {
        if let Some(n) = reported.delete_in_flight
            && self.present.contains(&n)
            && db.get_by_path(&image(n, DIM).path).unwrap().is_none()
        {
            self.present.remove(&n);
            self.absent.insert(n);
        }
        let (first, count) = reported.insert_in_flight?;
        let batch = first..first + count;
        let found = batch
            .clone()
            .filter(|&n| db.get_by_path(&image(n, DIM).path).unwrap().is_some())
            .count() as u64;
        assert!(
            found == 0 || found == count,
            "round {round}: {found} of the {count} images of the batch in flight at {first}"
        );
        if found == count {
            self.present.extend(batch);
        } else {
            self.absent.extend(batch);
        }
        Some(found == count)
    }

    /// Checks `db` holds exactly what is expected; returns its image count.
    /// Images numbered above `searched_from` are all searched for, a tenth
    /// of the others.
    fn check(&mut self, db: &Db, round: u64, searched_from: u64) -> usize {
        let report = db.verify().unwrap();
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        assert_eq!(
            report.records,
            self.present.len(),
            "round {round}: images in the database"
        );
        for &n in &self.absent {
            assert!(
                db.get_by_path(&image(n, DIM).path).unwrap().is_none(),
                "round {round}: image {n}, deleted or never acknowledged, is there"
            );
        }
        let mut records = Vec::with_capacity(self.present.len());
        for &n in &self.present {
            let img = image(n, DIM);
            let record = db
                .get_by_path(&img.path)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged image {n} is lost"));
            let id = *self.ids.entry(n).or_insert(record.id);
            assert_eq!(id, record.id, "round {round}: image {n} changed id");
            // The stored vectors are normalised; `image` gives unit vectors.
            for (a, b) in record.vector.iter().zip(&img.vector) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "round {round}: image {n}: vector changed"
                );
            }
            records.push((n, record));
        }
        // Every image in the graph's search copy, none left to the exact
        // scan of the newest rows.
        db.checkpoint().unwrap();
        assert_eq!(db.stats().unwrap().delta_points, 0);
        let nearest = SearchOptions {
            k: 1,
            ..SearchOptions::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(round);
        for (n, record) in records
            .iter()
            .filter(|(n, _)| *n > searched_from || rng.random_bool(0.1))
        {
            let hits = db.search(&record.vector, &nearest).unwrap();
            assert_eq!(
                hits.first().map(|h| h.id),
                Some(record.id),
                "round {round}: image {n} is not its own nearest"
            );
        }
        report.records
    }
}

/// Polls the child's log until `until` holds for it; fails if the child
/// exits first (with what it printed) or takes over a minute.
fn wait_for(child: &mut Child, log: &Path, stderr: &Path, until: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if until(&std::fs::read_to_string(log).unwrap_or_default()) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = std::fs::read_to_string(stderr).unwrap_or_default();
            panic!("the child exited ({status}) before it was killed:\n{stderr}");
        }
        assert!(Instant::now() < deadline, "the child is stuck");
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn killed_writers_lose_nothing_acknowledged() {
    let rounds: u64 = std::env::var("IMGDB_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed = seed("crash", 5);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let copy = dir.path().join("check");
    let mut expected = Expected::default();
    // The shortest open seen (µs): kills meant to land during an open come
    // within half of it.
    let mut open_micros: Option<u64> = None;
    let (mut open_kills, mut landed_in_open, mut in_flight) = (0, 0, [0, 0]);

    for round in 0..rounds {
        let log = dir.path().join(format!("round-{round}.log"));
        let stderr = dir.path().join(format!("round-{round}.stderr"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--test-threads=1"])
            .env("IMGDB_CRASH_DB", &path)
            .env("IMGDB_CRASH_FIRST", (1 + round * ROUND_SPAN).to_string())
            .env("IMGDB_CRASH_LOG", &log)
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let kill_in_open = round % 4 == 3 && open_micros.is_some();
        if kill_in_open {
            wait_for(&mut child, &log, &stderr, |log| log.starts_with("opening"));
            let micros = rng.random_range(0..open_micros.unwrap() / 2);
            std::thread::sleep(Duration::from_micros(micros));
        } else {
            // The timer starts at the first acknowledged write.
            wait_for(&mut child, &log, &stderr, |log| log.contains("\nins "));
            std::thread::sleep(Duration::from_millis(rng.random_range(5..200)));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "{}",
            std::fs::read_to_string(&stderr).unwrap()
        );
        let reported = Reported::parse(&std::fs::read_to_string(&log).unwrap());
        if kill_in_open {
            open_kills += 1;
            landed_in_open += usize::from(reported.opened.is_none());
        } else {
            assert!(
                !reported.inserted.is_empty(),
                "round {round}: killed before any acknowledgement"
            );
        }
        if let Some(micros) = reported.opened {
            open_micros = Some(open_micros.map_or(micros, |m| m.min(micros)).max(2));
        }
        expected.acknowledge(&reported);

        // The check opens a copy, so that the next child opens the crash
        // image itself and replays what this one left.
        if copy.exists() {
            std::fs::remove_dir_all(&copy).unwrap();
        }
        copy_dir(&path, &copy);
        let db = open(&copy);
        let origin = db.index_origin();
        let settled = expected.settle(&db, &reported, round);
        if let Some(landed) = settled {
            in_flight[usize::from(landed)] += 1;
        }
        // Every image of this round, and a sample of the older ones: the
        // test stays linear in its rounds.
        let images = expected.check(&db, round, round * ROUND_SPAN);
        drop(db);
        println!(
            "round {round}: killed {} after {:?} (open took {:?} µs, {} batches acknowledged, \
             batch in flight {}), {images} images, reopened from {origin:?}",
            reported.landed(),
            started.elapsed(),
            reported.opened,
            reported.inserted.len(),
            match settled {
                None => "none",
                Some(true) => "committed",
                Some(false) => "not committed",
            },
        );
    }

    // The last crash image itself, as the next user would open it.
    let db = open(&path);
    expected.check(&db, rounds, 0);
    println!(
        "{open_kills} kills meant for the open, {landed_in_open} landed there; \
         batches in flight: {} not committed, {} committed",
        in_flight[0], in_flight[1]
    );
    if open_kills > 0 {
        assert!(landed_in_open > 0, "no kill landed during an open");
    }
    if rounds >= 10 {
        assert!(
            in_flight.iter().sum::<u32>() > 0,
            "no kill landed in an insert"
        );
    }
}
