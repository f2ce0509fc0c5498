//! Injected storage failures (`tests/common/storage.rs`): a failed write,
//! fsync or rename, or a full disk, while a snapshot or the format marker
//! is written, and a failed store commit. Each must give the caller an
//! error, lose nothing acknowledged, and leave a database that reopens
//! clean.

mod common;

use std::path::Path;

use common::storage::{Fault, Faulty, Kind};
use common::{image, space};
use imgdb::{CommitStage, Db, DbOptions, Error};

const DIM: usize = 16;

fn options(storage: &Faulty) -> DbOptions {
    Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
        .background_maintenance(false)
        .storage(storage.shared())
}

fn insert(db: &Db, range: std::ops::Range<u64>) -> imgdb::Result<Vec<imgdb::ImageId>> {
    db.insert(&space(DIM as u32), range.map(|n| image(n, DIM)).collect())
}

/// Reopens with the real filesystem and checks that images `0..count` are
/// all there, indexed, and that the database is consistent.
fn assert_reopens_clean(path: &Path, count: u64) {
    let db = Db::open(path).unwrap();
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(db.stats().unwrap().images as u64, count);
    for n in 0..count {
        let record = db
            .get_by_path(&image(n, DIM).path)
            .unwrap()
            .unwrap_or_else(|| panic!("image {n} was lost"));
        assert!(db.vector(record.id).is_some(), "image {n} is not indexed");
    }
}

/// Every step of a snapshot: the faults a checkpoint must survive.
fn snapshot_faults() -> Vec<Fault> {
    let mut faults = vec![
        Fault::Nth(Kind::Rename, 0),
        Fault::DiskFullAfter(0),
        Fault::DiskFullAfter(10_000),
    ];
    // A snapshot writes and fsyncs 4 files, then fsyncs 2 folders.
    faults.extend((0..4).map(|n| Fault::Nth(Kind::Write, n)));
    faults.extend((0..6).map(|n| Fault::Nth(Kind::Sync, n)));
    faults
}

#[test]
fn a_failed_checkpoint_is_an_error_and_loses_nothing() {
    for fault in snapshot_faults() {
        println!("fault: {fault:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let storage = Faulty::new();
        let db = options(&storage).open(&path).unwrap();
        insert(&db, 0..300).unwrap();
        db.checkpoint().unwrap();
        insert(&db, 300..400).unwrap();

        storage.arm(fault);
        assert!(db.checkpoint().is_err(), "{fault:?} went unreported");
        storage.clear();
        // The database goes on: writes work and are durable.
        insert(&db, 400..450).unwrap();
        drop(db);
        assert_reopens_clean(&path, 450);
    }
}

#[test]
fn a_failed_close_is_an_error_and_loses_nothing() {
    for fault in [Fault::Nth(Kind::Rename, 0), Fault::DiskFullAfter(5_000)] {
        println!("fault: {fault:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let storage = Faulty::new();
        let db = options(&storage).open(&path).unwrap();
        insert(&db, 0..200).unwrap();
        storage.arm(fault);
        assert!(db.close().is_err(), "{fault:?} went unreported");
        assert_reopens_clean(&path, 200);
    }
}

#[test]
fn a_failed_marker_write_fails_the_creation_and_a_retry_succeeds() {
    for fault in [
        Fault::Nth(Kind::Write, 0),
        Fault::Nth(Kind::Sync, 0),
        Fault::Nth(Kind::Sync, 1),
        Fault::Nth(Kind::Rename, 0),
        Fault::DiskFullAfter(4),
    ] {
        println!("fault: {fault:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let storage = Faulty::new();
        storage.arm(fault);
        assert!(
            matches!(options(&storage).open(&path), Err(Error::Io { .. })),
            "{fault:?} went unreported"
        );
        storage.clear();
        let db = options(&storage).open(&path).unwrap();
        insert(&db, 0..10).unwrap();
        drop(db);
        assert_reopens_clean(&path, 10);
    }
}

/// `Db::write`'s recovery (`resync`) from a commit that failed before the
/// store was touched (not stored) or after its transaction (stored, the
/// writer not knowing it): the index must match the store either way.
#[test]
fn a_failed_store_commit_leaves_the_database_consistent() {
    for (stage, stored) in [(CommitStage::Before, false), (CommitStage::Applied, true)] {
        println!("stage: {stage:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let storage = Faulty::new();
        let db = options(&storage).open(&path).unwrap();
        insert(&db, 0..100).unwrap();
        storage.arm(Fault::Nth(Kind::Commit(stage), 0));
        assert!(insert(&db, 100..164).is_err());
        // Later writes work, and get fresh ids.
        let later = insert(&db, 164..200).unwrap();
        assert!(db.verify().unwrap().is_clean());
        let failed = db.get_by_path(&image(130, DIM).path).unwrap();
        assert_eq!(failed.is_some(), stored);
        if let Some(record) = failed {
            assert!(db.vector(record.id).is_some(), "stored but not indexed");
            assert!(!later.contains(&record.id), "an id was handed out twice");
        }
        drop(db);

        let db = Db::open(&path).unwrap();
        assert!(db.verify().unwrap().is_clean());
        let expected = if stored { 200 } else { 136 };
        assert_eq!(db.stats().unwrap().images, expected);
        for n in (0..100).chain(164..200) {
            assert!(db.get_by_path(&image(n, DIM).path).unwrap().is_some());
        }
    }
}
