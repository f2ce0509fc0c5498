//! Crash safety: a writer killed with SIGKILL at random moments loses
//! nothing it had acknowledged, and the database reopens consistent.
//!
//! The child is this test binary re-run on `crash_child`. It inserts
//! batches (and deletes a few images, and checkpoints now and then, so that
//! kills also land inside snapshot writes) and prints a line after each call
//! returns. The parent kills it after a random delay, reopens the database
//! and checks every acknowledged image. `IMGDB_CRASH_ROUNDS` sets the number
//! of kills (default 20; `scripts/crash-soak.sh` runs hundreds).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{image, seed, space};
use imgdb::{Db, ImageId, SearchOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 32;

fn open(path: &str) -> Db {
    // Frequent snapshots, so that kills land inside them too.
    Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
        .snapshot_every(150)
        .open(path)
        .unwrap()
}

/// The writer. Protocol, one line each, printed after the call returned:
/// `ins FIRST COUNT` (images FIRST.. were inserted), `try-del N` (about to
/// delete image N), `del N` (deleted).
#[test]
fn crash_child() {
    let Ok(path) = std::env::var("IMGDB_CRASH_DB") else {
        return;
    };
    let first: u64 = std::env::var("IMGDB_CRASH_FIRST").unwrap().parse().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(first);
    let db = open(&path);
    let out = std::io::stdout();
    let mut next = first;
    loop {
        let count = rng.random_range(1..40);
        let images = (next..next + count).map(|n| image(n, DIM)).collect();
        db.insert(&space(DIM as u32), images).unwrap();
        writeln!(out.lock(), "ins {next} {count}").unwrap();
        next += count;
        if rng.random_bool(0.2) && next > first + 1 {
            let victim = rng.random_range(first..next);
            writeln!(out.lock(), "try-del {victim}").unwrap();
            if let Some(record) = db.get_by_path(&image(victim, DIM).path).unwrap() {
                db.delete(&[record.id]).unwrap();
            }
            writeln!(out.lock(), "del {victim}").unwrap();
        }
        if rng.random_bool(0.05) {
            db.checkpoint().unwrap();
        }
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
    let path = dir.path().join("db").to_string_lossy().into_owned();
    // Image number -> present (acknowledged insert) or maybe deleted.
    let mut present: BTreeSet<u64> = BTreeSet::new();
    let mut maybe_deleted: BTreeSet<u64> = BTreeSet::new();
    let mut deleted: BTreeSet<u64> = BTreeSet::new();
    let mut ids: HashMap<u64, ImageId> = HashMap::new();

    for round in 0..rounds {
        let first = 1 + round * 1_000_000;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("IMGDB_CRASH_DB", &path)
            .env("IMGDB_CRASH_FIRST", first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement (the open may rebuild), then
        // let the writer run for a random while.
        let started = Instant::now();
        let first_line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the child writes");
        let mut lines = vec![first_line];
        std::thread::sleep(Duration::from_millis(rng.random_range(5..400)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());

        let mut acked_inserts = 0;
        for line in &lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["ins", from, count] => {
                    let (from, count): (u64, u64) = (from.parse().unwrap(), count.parse().unwrap());
                    present.extend(from..from + count);
                    acked_inserts += count;
                }
                ["try-del", n] => {
                    maybe_deleted.insert(n.parse().unwrap());
                }
                ["del", n] => {
                    let n: u64 = n.parse().unwrap();
                    maybe_deleted.remove(&n);
                    present.remove(&n);
                    deleted.insert(n);
                }
                _ => {} // the test harness's own output
            }
        }

        let db = open(&path);
        for &n in &present {
            let img = image(n, DIM);
            let record = db.get_by_path(&img.path).unwrap();
            if maybe_deleted.contains(&n) && record.is_none() {
                continue;
            }
            let record =
                record.unwrap_or_else(|| panic!("round {round}: acknowledged image {n} is lost"));
            if let Some(id) = ids.insert(n, record.id) {
                assert_eq!(id, record.id, "image {n} changed id");
            }
            let norm = img.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            for (a, b) in record.vector.iter().zip(&img.vector) {
                assert!((a - b / norm).abs() < 1e-6, "image {n}: vector changed");
            }
            let hits = db
                .search(&record.vector, &SearchOptions::default())
                .unwrap();
            assert_eq!(
                hits[0].id, record.id,
                "round {round}: image {n} is not its own nearest"
            );
        }
        for &n in &deleted {
            assert!(
                db.get_by_path(&image(n, DIM).path).unwrap().is_none(),
                "deleted image {n} is back"
            );
        }
        let report = db.verify().unwrap();
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        println!(
            "round {round}: killed after {:?}, {acked_inserts} inserts acknowledged, {} images, index {:?}",
            started.elapsed(),
            report.records,
            db.index_origin()
        );
        // Closing writes a snapshot: the next child starts from it, and may
        // be killed while writing the next one.
        drop(db);
    }
}
