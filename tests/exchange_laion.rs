//! Import of LAION / clip-retrieval shards (`fixtures/laion/`: float16
//! vectors of the tiny model's space, Parquet metadata written by pyarrow,
//! see `scripts/fixtures/make_laion_fixtures.py`): rows named by their URL
//! (or key), searchable by vector and by text, their URL and caption kept;
//! a shard of another dimension refused by name; an import that failed
//! midway run again without duplicates; and an export that numpy and
//! pyarrow read back (`tests/python/read_export.py`).

mod common;

use std::path::{Path, PathBuf};

use imgdb::{
    Db, Encoder, EncoderOptions, Error, ExchangeError, ImageSource, Query, SearchOptions,
    VectorProblem, WriteBatch, WriteOp,
};

const RED_CIRCLE: &str = "https://example.com/laion/red-circle.jpg";
const BLUE_SQUARE: &str = "https://example.com/laion/blue-square.jpg";

fn encoder() -> Encoder {
    Encoder::load(
        common::root().join("fixtures/models/tiny-clip"),
        &EncoderOptions::default(),
    )
    .unwrap()
}

fn laion() -> PathBuf {
    common::root().join("fixtures/laion")
}

fn imported(dir: &Path, encoder: &Encoder) -> Db {
    let db = Db::open_or_create(dir.join("db"), encoder.space().clone()).unwrap();
    let mut reports = Vec::new();
    let rows = db
        .import_with(encoder, &laion(), |done, total| reports.push((done, total)))
        .unwrap();
    assert_eq!(rows, 6);
    assert_eq!(reports.last(), Some(&(6, 6)), "progress: {reports:?}");
    db
}

fn all_sources(db: &Db) -> Vec<(PathBuf, Option<ImageSource>)> {
    db.records()
        .map(|record| {
            let record = record.unwrap();
            (record.path().to_path_buf(), db.source(record.id).unwrap())
        })
        .collect()
}

#[test]
fn laion_rows_are_named_by_url_and_found_by_text_and_by_vector() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = imported(dir.path(), &encoder);
    assert_eq!(db.stats().unwrap().images, 6);

    let hits = db.query(&encoder, &Query::text("a red circle")).unwrap();
    assert_eq!(hits[0].path, Path::new(RED_CIRCLE));
    assert_eq!(
        hits[0].source,
        Some(ImageSource {
            url: Some(RED_CIRCLE.into()),
            caption: Some("a large red circle on white".into()),
            key: Some("000000000".into()),
        })
    );
    // Width from an int32 column, height null (0) in shard 0.
    assert_eq!((hits[0].record.width, hits[0].record.height), (224, 0));

    // The row with a null URL is named by its key.
    let triangle = db.get_by_path(Path::new("000000001")).unwrap().unwrap();
    let source = db.source(triangle.id).unwrap().unwrap();
    assert_eq!(
        (source.url, source.caption.as_deref()),
        (None, Some("a small green triangle"))
    );
    // A row's own vector finds it first (shard 1: int64 widths, double heights).
    let square = db
        .get_by_path(Path::new("https://example.com/laion/blue-triangle.jpg"))
        .unwrap()
        .unwrap();
    assert_eq!((square.width, square.height), (224, 224));
    let found = db
        .search(&square.vector, &SearchOptions::default())
        .unwrap();
    assert_eq!(found[0].id, square.id);
    assert!(found[0].score > 0.999, "{}", found[0].score);
    // float16 vectors are normalised on the way in.
    let norm: f32 = square.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
}

/// A source goes with its record: deleted in the same transaction, so the
/// consistency check finds no orphan.
#[test]
fn deleting_an_imported_image_removes_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = imported(dir.path(), &encoder);
    let record = db.get_by_path(Path::new(RED_CIRCLE)).unwrap().unwrap();
    assert!(db.source(record.id).unwrap().is_some());
    assert_eq!(db.delete(&[record.id]).unwrap(), 1);
    assert_eq!(db.source(record.id).unwrap(), None);
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(all_sources(&db).len(), 5);
}

#[test]
fn a_source_is_committed_with_its_image_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
    let dim = encoder.space().dim as usize;
    let source = |url: &str| ImageSource {
        url: Some(url.into()),
        caption: Some("a caption".into()),
        key: None,
    };
    let image = |url: &str, n| imgdb::NewImage {
        path: PathBuf::from(url),
        ..common::image(n, dim)
    };
    // The source of a path the same batch inserts lands with the image.
    let mut batch = WriteBatch::new();
    batch.insert(image(RED_CIRCLE, 1));
    batch.push(WriteOp::SetSource {
        path: RED_CIRCLE.into(),
        source: source(RED_CIRCLE),
    });
    let ids = db.write(encoder.space(), batch).unwrap();
    let id = ids[0].unwrap();
    assert_eq!(db.source(id).unwrap(), Some(source(RED_CIRCLE)));
    // One failing operation fails the batch: neither the image nor any
    // source of it is stored.
    let mut batch = WriteBatch::new();
    batch.insert(image(BLUE_SQUARE, 2));
    batch.push(WriteOp::SetSource {
        path: BLUE_SQUARE.into(),
        source: source(BLUE_SQUARE),
    });
    batch.push(WriteOp::SetSource {
        path: "https://example.com/never-inserted.jpg".into(),
        source: source("x"),
    });
    let err = db.write(encoder.space(), batch).unwrap_err();
    assert_eq!(err.kind(), imgdb::ErrorKind::InvalidInput, "{err}");
    assert_eq!(db.get_by_path(Path::new(BLUE_SQUARE)).unwrap(), None);
    assert_eq!(
        all_sources(&db),
        vec![(PathBuf::from(RED_CIRCLE), Some(source(RED_CIRCLE)))]
    );
    assert!(db.verify().unwrap().is_clean());
}

/// A source whose record is gone (written behind the library's back) is
/// reported by the consistency check.
#[test]
fn the_check_reports_an_orphan_source() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    imported(dir.path(), &encoder).close().unwrap();
    common::damage_store(&dir.path().join("db"), |store| {
        let sources = store.open_tree("sources").unwrap();
        // Three `None`s: an empty ImageSource (schema/store.md).
        sources.insert(999u64.to_be_bytes(), &[0u8, 0, 0]).unwrap();
    });
    let db = Db::open(dir.path().join("db")).unwrap();
    let report = db.verify().unwrap();
    assert_eq!(
        report.problems,
        [imgdb::Problem::OrphanSource {
            id: imgdb::ImageId(999)
        }]
    );
}

#[test]
fn a_second_import_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = imported(dir.path(), &encoder);
    let before = all_sources(&db);
    assert_eq!(db.import(&encoder, &laion()).unwrap(), 6);
    assert_eq!(db.stats().unwrap().images, 6);
    assert_eq!(all_sources(&db), before);
}

#[test]
fn a_shard_of_another_dimension_is_refused_by_name_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
    let err = db
        .import(&encoder, &common::root().join("fixtures/laion-dim32"))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Exchange(ExchangeError::Dimension {
                found: 32,
                expected: 64,
                ..
            })
        ),
        "{message}"
    );
    assert!(
        message.contains("img_emb_0.npy") && message.contains("dimension 32"),
        "{message}"
    );
    assert_eq!(db.stats().unwrap().images, 0);
}

/// The offset of row `row`, column 0, in a float16 `.npy` file of rows of
/// `dim` elements.
fn f16_offset(file: &[u8], rows: usize, dim: usize, row: usize) -> usize {
    file.len() - rows * dim * 2 + row * dim * 2
}

#[test]
fn an_import_that_failed_midway_runs_again_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("laion");
    common::copy_dir(&laion(), &shards);
    let second = shards.join("img_emb/img_emb_1.npy");
    let good = std::fs::read(&second).unwrap();
    let mut bad = good.clone();
    let at = f16_offset(&bad, 2, 64, 1);
    bad[at..at + 2].copy_from_slice(&half_nan());
    std::fs::write(&second, &bad).unwrap();

    let encoder = encoder();
    let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
    let err = db.import(&encoder, &shards).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Exchange(ExchangeError::BadVector {
                row: 1,
                problem: VectorProblem::NotFinite,
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("img_emb_1.npy: row 1"), "{err}");
    // Shard 0 was committed before the bad row of shard 1 was met.
    assert_eq!(db.stats().unwrap().images, 4);

    std::fs::write(&second, &good).unwrap();
    assert_eq!(db.import(&encoder, &shards).unwrap(), 6);
    assert_eq!(db.stats().unwrap().images, 6);
    let sources = all_sources(&db);
    assert_eq!(sources.iter().filter(|(_, s)| s.is_some()).count(), 6);
}

/// A damaged Parquet file (cut short, or its middle overwritten) is an
/// error naming it, never a crash; the shards before it are kept.
#[test]
fn a_damaged_parquet_file_is_an_error_naming_it() {
    let encoder = encoder();
    let original = std::fs::read(laion().join("metadata/metadata_1.parquet")).unwrap();
    let mut scribbled = original.clone();
    let middle = scribbled.len() / 2;
    scribbled[8..middle].fill(0xA5);
    for damaged in [original[..original.len() / 2].to_vec(), scribbled] {
        let dir = tempfile::tempdir().unwrap();
        let shards = dir.path().join("laion");
        common::copy_dir(&laion(), &shards);
        std::fs::write(shards.join("metadata/metadata_1.parquet"), damaged).unwrap();
        let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
        let err = db.import(&encoder, &shards).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Exchange(
                    ExchangeError::Parquet { .. } | ExchangeError::ParquetPanicked { .. }
                )
            ),
            "{err}"
        );
        assert!(err.to_string().contains("metadata_1.parquet"), "{err}");
        assert_eq!(db.stats().unwrap().images, 4);
    }
}

/// A float16 NaN, little-endian.
fn half_nan() -> [u8; 2] {
    0x7E00u16.to_le_bytes()
}

/// A float32 `.npy` file of `rows` (as numpy writes it, version 1.0).
fn npy_f32(rows: &[Vec<f32>]) -> Vec<u8> {
    let dim = rows.first().map_or(0, Vec::len);
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}",
        rows.len()
    );
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    let mut file = b"\x93NUMPY\x01\x00".to_vec();
    file.extend_from_slice(&u16::try_from(dict.len() + pad + 1).unwrap().to_le_bytes());
    file.extend_from_slice(dict.as_bytes());
    file.extend(std::iter::repeat_n(b' ', pad));
    file.push(b'\n');
    for x in rows.iter().flatten() {
        file.extend_from_slice(&x.to_le_bytes());
    }
    file
}

/// A folder in the layout of export formats 1 and 2 (JSON Lines metadata,
/// float32 vectors) still imports; a row without any name is refused.
#[test]
fn json_lines_metadata_of_older_exports_still_imports() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let seed = common::seed("exchange_laion_jsonl", 5);
    let vectors: Vec<Vec<f32>> = (0..3).map(|n| common::unit_vector(seed + n, 64)).collect();
    let old = dir.path().join("old");
    std::fs::create_dir_all(old.join("img_emb")).unwrap();
    std::fs::create_dir_all(old.join("metadata")).unwrap();
    std::fs::write(old.join("img_emb/img_emb_0.npy"), npy_f32(&vectors)).unwrap();
    let lines = [
        r#"{"image_path": "/photos/a.jpg", "width": 10, "height": 20, "format": "jpeg"}"#,
        r#"{"image_path": "/photos/b.png", "tags": [{"label": "cat", "score": 0.5}]}"#,
        r#"{"url": "https://example.com/c.jpg", "caption": "c"}"#,
    ];
    std::fs::write(old.join("metadata/metadata_0.jsonl"), lines.join("\n")).unwrap();
    let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
    assert_eq!(db.import(&encoder, &old).unwrap(), 3);
    let a = db.get_by_path(Path::new("/photos/a.jpg")).unwrap().unwrap();
    assert_eq!((a.width, a.height, a.format.name()), (10, 20, "jpeg"));
    assert_eq!(db.source(a.id).unwrap(), None);
    let c = db
        .get_by_path(Path::new("https://example.com/c.jpg"))
        .unwrap()
        .unwrap();
    assert_eq!(
        db.source(c.id).unwrap().unwrap().caption.as_deref(),
        Some("c")
    );

    std::fs::write(
        old.join("metadata/metadata_0.jsonl"),
        [lines[0], lines[1], r#"{"caption": "nameless"}"#].join("\n"),
    )
    .unwrap();
    let err = db.import(&encoder, &old).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Exchange(ExchangeError::NoIdentity { row: 2, .. })
        ),
        "{err}"
    );
}

#[test]
fn an_export_round_trip_keeps_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = imported(dir.path(), &encoder);
    let out = dir.path().join("export");
    db.export(&out).unwrap();
    assert!(out.join("metadata/metadata_0.parquet").is_file());
    // Parquet is preferred: a JSON Lines file beside it is not read.
    std::fs::write(out.join("metadata/metadata_0.jsonl"), "not JSON\n").unwrap();
    let other = Db::open_or_create(dir.path().join("other"), encoder.space().clone()).unwrap();
    assert_eq!(other.import(&encoder, &out).unwrap(), 6);
    assert_eq!(all_sources(&other), all_sources(&db));
}

/// The Python of `scripts/fetch-python-exchange.sh` (numpy and pyarrow),
/// which `scripts/test.sh` names in `IMGDB_TEST_PYTHON`; `None` (the test
/// skips) outside it, but under CI its absence is a failure.
fn python() -> Option<PathBuf> {
    match std::env::var_os("IMGDB_TEST_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None if std::env::var_os("CI").is_some() => {
            panic!("IMGDB_TEST_PYTHON is not set: run the tests through scripts/test.sh")
        }
        None => None,
    }
}

#[test]
fn numpy_and_pyarrow_read_an_export() {
    let Some(python) = python() else {
        println!("SKIPPED: IMGDB_TEST_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = imported(dir.path(), &encoder);
    let out = dir.path().join("export");
    let report = db
        .export_with(
            &out,
            &imgdb::ExportOptions {
                shard_rows: 4,
                ..imgdb::ExportOptions::default()
            },
        )
        .unwrap();
    assert_eq!(report.shards, 2);
    let run = std::process::Command::new(&python)
        .arg(common::root().join("tests/python/read_export.py"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (read["shards"].as_u64(), read["rows"].as_u64()),
        (Some(2), Some(6))
    );
    for column in [
        "image_path",
        "url",
        "caption",
        "key",
        "content_hash",
        "width",
        "tags",
    ] {
        assert!(
            read["columns"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == column),
            "{column}: {}",
            read["columns"]
        );
    }
    let rows = &read["rows_by_path"];
    assert_eq!(rows[RED_CIRCLE]["caption"], "a large red circle on white");
    assert_eq!(rows[BLUE_SQUARE]["caption"], serde_json::Value::Null);
    assert_eq!(rows["000000001"]["url"], serde_json::Value::Null);
    assert_eq!(rows["000000001"]["key"], "000000001");
    let record = db.get_by_path(Path::new(RED_CIRCLE)).unwrap().unwrap();
    // numpy's float32 values, as Python floats in JSON: equal as float32.
    let head: Vec<f32> = rows[RED_CIRCLE]["vector_head"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(head, record.vector[..4]);
}
