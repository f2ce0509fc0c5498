//! Bad input gets a distinct, clear error and loses nothing already stored.

mod common;

use std::fs;

use common::{image, space};
use imgdb::{Db, EmbeddingSpace, Error, ErrorKind, IndexParams, VectorProblem};

const DIM: usize = 16;

fn new_db(dir: &tempfile::TempDir) -> Db {
    let db = Db::open_or_create(dir.path().join("db"), space(DIM as u32)).unwrap();
    db.insert(&space(DIM as u32), (0..20).map(|n| image(n, DIM)).collect())
        .unwrap();
    db
}

fn assert_untouched(db: &Db) {
    let stats = db.stats().unwrap();
    assert_eq!((stats.images, stats.index_points), (20, 20));
    assert!(db.verify().unwrap().is_clean());
}

#[test]
fn a_wrong_dimension_is_refused_and_the_batch_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir);
    let mut bad = image(100, DIM);
    bad.vector.push(0.5);
    let err = db
        .insert(&space(DIM as u32), vec![image(99, DIM), bad])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                expected: 16,
                found: 17
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "vector has 17 dimensions, the database holds 16-dimensional vectors"
    );
    assert!(db.get_by_path(&image(99, DIM).path).unwrap().is_none());
    assert_untouched(&db);
    let err = db.search(&[1.0; 3], &Default::default()).unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { .. }), "{err}");
}

#[test]
fn nan_infinite_and_zero_vectors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir);
    for (value, problem) in [
        (f32::NAN, VectorProblem::NotFinite),
        (f32::INFINITY, VectorProblem::NotFinite),
        (0.0, VectorProblem::Zero),
    ] {
        let mut bad = image(100, DIM);
        bad.vector = if value == 0.0 {
            vec![0.0; DIM]
        } else {
            let mut v = bad.vector;
            v[3] = value;
            v
        };
        let err = db.insert(&space(DIM as u32), vec![bad]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidVector { problem: p } if p == problem),
            "{value}: {err}"
        );
        let err = db.search(&[value; DIM], &Default::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidVector { .. }), "{err}");
    }
    assert_untouched(&db);
}

#[test]
fn another_embedding_space_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir);
    let other = EmbeddingSpace::named("other-model", DIM as u32);
    let err = db.insert(&other, vec![image(100, DIM)]).unwrap_err();
    assert!(matches!(err, Error::SpaceMismatch { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("test-space") && message.contains("other-model"),
        "{message}"
    );
    assert_untouched(&db);
    drop(db);

    let err = Db::open_or_create(dir.path().join("db"), other)
        .err()
        .unwrap();
    assert!(matches!(err, Error::SpaceMismatch { .. }), "{err}");
    let db = Db::open(dir.path().join("db")).unwrap();
    assert_untouched(&db);
}

#[test]
fn a_directory_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("holiday.jpg"), b"not a database").unwrap();
    let err = Db::open_or_create(dir.path(), space(DIM as u32))
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotADatabase { .. }), "{err}");
    assert_eq!(
        fs::read(dir.path().join("holiday.jpg")).unwrap(),
        b"not a database"
    );

    let err = Db::open(dir.path().join("missing")).err().unwrap();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(
        !dir.path().join("missing").exists(),
        "opening must not create"
    );

    let file = dir.path().join("holiday.jpg");
    let err = Db::open_or_create(&file, space(DIM as u32)).err().unwrap();
    assert!(matches!(err, Error::NotADatabase { .. }), "{err}");
}

#[test]
fn a_newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_db(&dir));
    let marker = dir.path().join("db").join(imgdb::FORMAT_MARKER_FILE);
    let mut bytes = fs::read(&marker).unwrap();
    bytes[8..12].copy_from_slice(&(imgdb::FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32(&bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    fs::write(&marker, bytes).unwrap();
    let err = Db::open(dir.path().join("db")).err().unwrap();
    assert!(
        matches!(err, Error::UnsupportedFormat { found, .. } if found == imgdb::FORMAT_VERSION + 1),
        "{err}"
    );
}

#[test]
fn a_second_open_says_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(&dir);
    let err = Db::open(dir.path().join("db")).err().unwrap();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    drop(db);
    assert_untouched(&Db::open(dir.path().join("db")).unwrap());
}

#[test]
fn a_truncated_store_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_db(&dir));
    let store = dir.path().join("db").join("store");
    let mut damaged = 0;
    for entry in walk(&store) {
        let len = fs::metadata(&entry).unwrap().len();
        if len > 0 {
            fs::OpenOptions::new()
                .write(true)
                .open(&entry)
                .unwrap()
                .set_len(len / 3)
                .unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    match Db::open(dir.path().join("db")) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
        // Opening is only right with everything that was acknowledged: a
        // store that lost images (or all of them) must be refused, since
        // an empty database that verifies clean would be silent loss.
        Ok(db) => assert_untouched(&db),
    }
}

#[test]
fn a_store_that_lost_acknowledged_writes_is_refused() {
    for kept in [0.1, 0.5] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_or_create(dir.path().join("db"), space(DIM as u32)).unwrap();
        for batch in 0..4 {
            let images = (batch * 5..(batch + 1) * 5)
                .map(|n| image(n, DIM))
                .collect();
            db.insert(&space(DIM as u32), images).unwrap();
        }
        drop(db);
        // sled's log cut short: it recovers the batches before the cut
        // (none of them at 10%) and opens cleanly, but the index snapshot
        // covers all four.
        let log = dir.path().join("db").join("store").join("db");
        let len = fs::metadata(&log).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len((len as f64 * kept) as u64)
            .unwrap();
        let err = Db::open(dir.path().join("db")).err().unwrap();
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    problem: imgdb::Corruption::StoreBehindIndex,
                    ..
                }
            ),
            "{kept}: {err}"
        );
        assert!(err.to_string().contains("index snapshot"), "{err}");
    }
}

#[test]
fn out_of_range_index_parameters_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
        .index_params(IndexParams {
            m: 300,
            ..IndexParams::default()
        })
        .open(dir.path().join("db"))
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::InvalidParameter { name: "m", .. }),
        "{err}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn crc32(bytes: &[u8]) -> u32 {
    // The IEEE CRC-32 of the marker, computed bitwise to keep tests free of
    // the library's own implementation.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
