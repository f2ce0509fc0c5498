//! Maintenance off the write path: snapshots run beside writes and
//! searches, on the database's own thread or the caller's, and describe
//! exactly what they froze. A snapshot is held open deterministically by a
//! storage that waits at one of its files (`tests/common/storage.rs`).

mod common;

use std::process::Command;

use common::storage::Faulty;
use common::{image, seed, space, unit_vector};
use imgdb::{Db, DbOptions, ImageId, IndexOrigin, SearchOptions};

const DIM: usize = 16;

fn options(storage: &Faulty) -> DbOptions {
    Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
        .storage(storage.shared())
}

fn insert(db: &Db, range: std::ops::Range<u64>) -> Vec<ImageId> {
    db.insert(&space(DIM as u32), range.map(|n| image(n, DIM)).collect())
        .unwrap()
}

/// The nearest image to image `n`'s own vector.
fn nearest(db: &Db, n: u64) -> ImageId {
    db.search(&unit_vector(n, DIM), &SearchOptions::default())
        .unwrap()[0]
        .id
}

/// The child half of the next test: a write and a search complete while a
/// checkpoint is held inside its snapshot; then it exits without running
/// destructors (no final snapshot), as a crash would.
#[test]
fn held_snapshot_child() {
    let Ok(path) = std::env::var("IMGDB_HELD_SNAPSHOT_DB") else {
        return;
    };
    let storage = Faulty::new();
    let db = options(&storage)
        .background_maintenance(false)
        .open(&path)
        .unwrap();
    insert(&db, 0..500);
    let gate = storage.hold("rows.bin");
    let checkpoint = {
        let db = db.clone();
        std::thread::spawn(move || db.checkpoint())
    };
    gate.wait_reached();
    // The snapshot is under way: writes and searches go on.
    let ids = insert(&db, 500..564);
    assert_eq!(nearest(&db, 530), ids[30]);
    assert_eq!(nearest(&db, 7), ImageId(8));
    gate.release();
    checkpoint.join().unwrap().unwrap();
    std::process::exit(0);
}

#[test]
fn a_write_completes_while_a_snapshot_runs_and_the_snapshot_claims_only_what_it_froze() {
    seed("held snapshot", 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["held_snapshot_child", "--exact", "--nocapture"])
        .env("IMGDB_HELD_SNAPSHOT_DB", &path)
        .status()
        .unwrap();
    assert!(status.success());
    let db = Db::open(&path).unwrap();
    // The snapshot holds the 500 images it froze; the write made during it
    // is replayed from the change log, which it must not have pruned.
    assert!(
        matches!(
            db.index_origin(),
            IndexOrigin::Snapshot { replayed: 64, .. }
        ),
        "{:?}",
        db.index_origin()
    );
    assert_eq!(db.stats().unwrap().images, 564);
    assert!(db.verify().unwrap().is_clean());
}

#[test]
fn the_maintenance_thread_snapshots_beside_writes_and_closing_waits_for_it() {
    seed("background snapshot", 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let storage = Faulty::new();
    let db = options(&storage).snapshot_every(100).open(&path).unwrap();
    let gate = storage.hold("rows.bin");
    // Due after this write: the thread starts a snapshot and is held in it.
    insert(&db, 0..128);
    gate.wait_reached();
    for start in (128..448).step_by(64) {
        insert(&db, start..start + 64);
    }
    assert_eq!(
        nearest(&db, 400),
        db.get_by_path(&image(400, DIM).path).unwrap().unwrap().id
    );
    // Dropping the last handle waits for the held snapshot, then closes:
    // released from another thread, the reopen below finds it unlocked.
    let release = std::thread::spawn(move || gate.release());
    drop(db);
    release.join().unwrap();
    let db = Db::open(&path).unwrap();
    assert!(
        matches!(db.index_origin(), IndexOrigin::Snapshot { replayed: 0, .. }),
        "{:?}",
        db.index_origin()
    );
    assert_eq!(db.stats().unwrap().images, 448);
    assert!(db.verify().unwrap().is_clean());
}

#[test]
fn compaction_in_the_background_keeps_every_live_image() {
    seed("background compaction", 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let storage = Faulty::new();
    let db = options(&storage).compact_ratio(0.2).open(&path).unwrap();
    let ids = insert(&db, 0..400);
    db.delete(&ids[..150]).unwrap();
    insert(&db, 400..450);
    db.checkpoint().unwrap();
    let stats = db.stats().unwrap();
    assert_eq!((stats.index_points, stats.tombstones), (300, 0));
    for n in (150..450).step_by(37) {
        let id = db.get_by_path(&image(n, DIM).path).unwrap().unwrap().id;
        assert_eq!(nearest(&db, n), id);
    }
    assert!(db.verify().unwrap().is_clean());
}

/// Polls `db` until the graph's search copy lags by at most `rows`.
fn wait_for_delta_at_most(db: &Db, rows: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let delta = db.stats().unwrap().delta_points;
        if delta <= rows || std::time::Instant::now() > deadline {
            return delta;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_maintenance_thread_refreshes_the_search_copy_and_searches_walk_it() {
    seed("background refresh", 0);
    let dir = tempfile::tempdir().unwrap();
    let storage = Faulty::new();
    // No snapshot (it refreshes too) and no exact scan: what is found below
    // was found by walking the copy the thread refreshed.
    let db = options(&storage)
        .snapshot_every(1_000_000)
        .exact_scan_rows(0)
        .open(dir.path().join("db"))
        .unwrap();
    let ids: Vec<ImageId> = (0..3000)
        .step_by(64)
        .flat_map(|start| insert(&db, start..(start + 64).min(3000)))
        .collect();
    // Writes refresh the copy themselves only past four refresh sizes (4096
    // rows here): a smaller delta after 3000 rows is the thread's work.
    let delta = wait_for_delta_at_most(&db, 1100);
    assert!(delta <= 1100, "the copy still lacks {delta} rows");
    let covered = 3000 - delta as u64;
    for n in (0..covered).step_by(97) {
        assert_eq!(nearest(&db, n), ids[n as usize], "image {n}");
    }
    assert!(db.verify().unwrap().is_clean());
}

#[test]
fn without_the_thread_a_write_bounds_the_delta_and_a_checkpoint_refreshes() {
    seed("bounded delta", 0);
    let dir = tempfile::tempdir().unwrap();
    let storage = Faulty::new();
    let db = options(&storage)
        .background_maintenance(false)
        .snapshot_every(1_000_000)
        .exact_scan_rows(0)
        .open(dir.path().join("db"))
        .unwrap();
    let mut ids = Vec::new();
    for start in (0..6000).step_by(64) {
        ids.extend(insert(&db, start..(start + 64).min(6000)));
        let delta = db.stats().unwrap().delta_points;
        assert!(delta <= 4 * 1024 + 64, "{delta} rows after {start}");
    }
    for n in (0..6000).step_by(151) {
        assert_eq!(nearest(&db, n), ids[n as usize], "image {n}");
    }
    db.checkpoint().unwrap();
    assert_eq!(db.stats().unwrap().delta_points, 0);
    for n in (0..6000).step_by(151) {
        assert_eq!(nearest(&db, n), ids[n as usize], "image {n}");
    }
}

#[test]
fn delta_rows_sets_the_refresh_size() {
    seed("delta rows", 0);
    let dir = tempfile::tempdir().unwrap();
    let storage = Faulty::new();
    let db = options(&storage)
        .background_maintenance(false)
        .snapshot_every(1_000_000)
        .exact_scan_rows(0)
        .delta_rows(100)
        .open(dir.path().join("db"))
        .unwrap();
    let mut ids = Vec::new();
    for start in (0..2000).step_by(64) {
        ids.extend(insert(&db, start..(start + 64).min(2000)));
        // A write refreshes past four refresh sizes: 400 rows here, where
        // the default (4 × 1 024) would leave all 2 000 in the delta.
        let delta = db.stats().unwrap().delta_points;
        assert!(delta <= 4 * 100 + 64, "{delta} rows after {start}");
    }
    // Through the graph (no exact scan), every sampled image is among the
    // ten nearest to its own vector. First place is not asserted: on
    // uniform random vectors a graph walk over quantized codes may rank a
    // near neighbour first.
    let options = SearchOptions {
        k: 10,
        ef: Some(200),
        ..Default::default()
    };
    for n in (0..2000).step_by(97) {
        let hits = db.search(&unit_vector(n, DIM), &options).unwrap();
        assert!(
            hits.iter().any(|hit| hit.id == ids[n as usize]),
            "image {n} not among {hits:?}"
        );
    }
}
