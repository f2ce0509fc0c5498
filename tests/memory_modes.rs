//! The index memory modes: a compact database answers exactly as a resident
//! one with the same images, before and after a snapshot, a reopen and more
//! writes, while holding only the vectors written since its last snapshot in
//! memory; the mode is recorded at creation and enforced on open; a damaged
//! vector file of a compact snapshot means a rebuild, as for any snapshot.

mod common;

use common::storage::{Fault, Faulty, Kind};
use std::fs;

use common::{graph_walk, image, seed, snapshot_dir, space, unit_vector};
use imgdb::{
    Db, DbOptions, ErrorKind, Hit, IndexMemory, IndexOrigin, RebuildReason, SearchOptions,
    SnapshotProblem,
};

const DIM: usize = 48;

fn options(memory: IndexMemory) -> DbOptions {
    graph_walk(DIM as u32)
        .index_memory(memory)
        .background_maintenance(false)
}

fn fill(db: &Db, range: std::ops::Range<u64>) {
    let images = range.map(|n| image(n, DIM)).collect();
    db.insert(&space(DIM as u32), images).unwrap();
}

/// The answers to 60 queries near stored images, by graph walk.
fn answers(db: &Db, seed: u64) -> Vec<Vec<Hit>> {
    (0..60u64)
        .map(|q| {
            // Half the queries are stored vectors, half random directions.
            let query = if q % 2 == 0 {
                image((seed + q * 37) % 900, DIM).vector
            } else {
                unit_vector(seed * 1000 + q, DIM)
            };
            let options = SearchOptions {
                k: 10,
                ef: Some(32),
                ..SearchOptions::default()
            };
            db.search(&query, &options).unwrap()
        })
        .collect()
}

/// Opens an existing database as [`options`] would, naming no mode: the
/// recorded one applies.
fn reopen(path: &std::path::Path) -> Db {
    Db::options()
        .space(space(DIM as u32))
        .exact_scan_rows(0)
        .delta_rows(0)
        .background_maintenance(false)
        .open(path)
        .unwrap()
}

fn vector_bytes(rows: usize) -> usize {
    rows * DIM * 4
}

#[test]
fn a_compact_database_answers_as_a_resident_one_and_keeps_only_new_vectors_in_memory() {
    let seed = seed("memory_modes", 5);
    let dir = tempfile::tempdir().unwrap();
    let (resident_path, compact_path) = (dir.path().join("resident"), dir.path().join("compact"));
    let resident = options(IndexMemory::Resident).open(&resident_path).unwrap();
    let compact = options(IndexMemory::Compact).open(&compact_path).unwrap();
    // Under 1 024 rows the graph is built one row at a time, the same
    // graph in both: their answers can be compared one for one.
    for db in [&resident, &compact] {
        fill(db, 0..900);
    }
    // Before any snapshot, the compact index holds its vectors in memory too.
    let stats = compact.stats().unwrap();
    assert_eq!(stats.index_memory, IndexMemory::Compact);
    assert!(stats.resident_vector_bytes >= vector_bytes(900));
    assert_eq!(answers(&compact, seed), answers(&resident, seed));

    for db in [&resident, &compact] {
        db.checkpoint().unwrap();
    }
    assert_eq!(
        compact.stats().unwrap().resident_vector_bytes,
        0,
        "the snapshot's vectors are served from its file"
    );
    assert!(resident.stats().unwrap().resident_vector_bytes >= vector_bytes(900));
    let after_snapshot = answers(&resident, seed);
    assert_eq!(answers(&compact, seed), after_snapshot);

    // Reopened: the snapshot's vectors are mapped, not read into memory.
    drop(compact);
    let compact = reopen(&compact_path);
    assert!(matches!(
        compact.index_origin(),
        IndexOrigin::Snapshot { replayed: 0, .. }
    ));
    let stats = compact.stats().unwrap();
    assert_eq!(
        stats.index_memory,
        IndexMemory::Compact,
        "the mode is the recorded one"
    );
    assert_eq!(stats.resident_vector_bytes, 0);
    assert_eq!(answers(&compact, seed), after_snapshot);

    // New rows live in memory until the next snapshot maps them too.
    for db in [&resident, &compact] {
        fill(db, 900..1000);
    }
    let new_rows = compact.stats().unwrap().resident_vector_bytes;
    assert!(
        (vector_bytes(100)..=2 * vector_bytes(100)).contains(&new_rows),
        "{new_rows} bytes for 100 new rows"
    );
    assert_eq!(answers(&compact, seed), answers(&resident, seed));
    compact.checkpoint().unwrap();
    assert_eq!(compact.stats().unwrap().resident_vector_bytes, 0);
    assert_eq!(answers(&compact, seed), answers(&resident, seed));
    for id in [1, 700, 999] {
        let id = imgdb::ImageId(id);
        assert_eq!(compact.vector(id), resident.vector(id), "vector of {id:?}");
    }

    // A reopened resident index holds every vector in memory of its own.
    drop(resident);
    let resident = reopen(&resident_path);
    let stats = resident.stats().unwrap();
    assert_eq!(stats.index_memory, IndexMemory::Resident);
    assert!(stats.resident_vector_bytes >= vector_bytes(1000));
    assert_eq!(answers(&resident, seed), answers(&compact, seed));
    assert_eq!(
        resident.vector(imgdb::ImageId(999)),
        compact.vector(imgdb::ImageId(999))
    );
}

#[test]
fn the_mode_is_chosen_at_creation_and_another_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = options(IndexMemory::Compact).open(&path).unwrap();
    fill(&db, 0..10);
    drop(db);
    let err = options(IndexMemory::Resident)
        .open(&path)
        .err()
        .expect("a resident open of a compact database");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let message = err.to_string();
    assert!(
        message.contains("compact") && message.contains("resident"),
        "{message}"
    );
    // Unset opens whatever was recorded; a database of no recorded mode
    // (created before modes existed: tests/compat.rs) is resident.
    let db = Db::open(&path).unwrap();
    assert_eq!(db.stats().unwrap().index_memory, IndexMemory::Compact);
    let resident = Db::open_or_create(dir.path().join("other"), space(DIM as u32)).unwrap();
    assert_eq!(
        resident.stats().unwrap().index_memory,
        IndexMemory::Resident
    );
}

#[test]
fn a_damaged_vector_file_of_a_compact_snapshot_means_a_rebuild_with_the_same_answers() {
    let seed = seed("memory_modes_damage", 9);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Exact scans (1 500 rows are below the scan threshold): the rebuilt
    // graph need not be the same graph, the answers must be the same.
    let exact = || {
        Db::options()
            .space(space(DIM as u32))
            .create_if_missing(true)
            .index_memory(IndexMemory::Compact)
            .background_maintenance(false)
    };
    let db = exact().open(&path).unwrap();
    fill(&db, 0..1500);
    db.checkpoint().unwrap();
    let before = answers(&db, seed);
    drop(db);
    let vectors = snapshot_dir(&path).join("vectors.f32");
    let mut bytes = fs::read(&vectors).unwrap();
    bytes[4 * DIM * 700 + 8] ^= 0x10;
    fs::write(&vectors, bytes).unwrap();
    let db = exact().open(&path).unwrap();
    assert_eq!(
        db.index_origin(),
        IndexOrigin::Rebuilt {
            reason: RebuildReason::Corrupt {
                problem: SnapshotProblem::Checksum {
                    file: "vectors.f32".into()
                }
            }
        }
    );
    assert_eq!(answers(&db, seed), before);
    assert!(db.verify().unwrap().is_clean());
}

#[test]
fn a_failed_mapping_keeps_the_vectors_in_memory_and_on_open_means_a_rebuild() {
    let seed = seed("memory_modes_map_fault", 13);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let storage = Faulty::new();
    let open = || {
        options(IndexMemory::Compact)
            .storage(storage.shared())
            .open(&path)
            .unwrap()
    };
    let db = open();
    fill(&db, 0..900);
    // The snapshot is written; only its mapping fails: the rows stay in memory.
    storage.arm(Fault::Nth(Kind::Map, 0));
    db.checkpoint().unwrap();
    assert!(db.stats().unwrap().resident_vector_bytes >= vector_bytes(900));
    // The next snapshot maps them.
    fill(&db, 900..950);
    let before = answers(&db, seed);
    db.checkpoint().unwrap();
    assert_eq!(db.stats().unwrap().resident_vector_bytes, 0);
    assert_eq!(
        &answers(&db, seed)[..],
        &before[..],
        "the same answers once mapped"
    );
    drop(db);
    // A snapshot whose vectors cannot be mapped on open is not used.
    storage.arm(Fault::Nth(Kind::Map, 0));
    let db = open();
    assert!(
        matches!(
            db.index_origin(),
            IndexOrigin::Rebuilt {
                reason: RebuildReason::Corrupt {
                    problem: SnapshotProblem::Unreadable { .. }
                }
            }
        ),
        "{:?}",
        db.index_origin()
    );
    assert_eq!(db.stats().unwrap().index_points, 950);
    assert!(db.verify().unwrap().is_clean());
}
