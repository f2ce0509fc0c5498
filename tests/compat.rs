//! Format compatibility: every frozen database under `fixtures/databases/`
//! (one per format version, never rewritten) opens with this build,
//! migrated to the current format where it is older, answers queries with
//! the model it was written with, and passes the consistency check.

mod common;

use common::{copy_dir, root};
use imgdb::{Db, Encoder, EncoderOptions, ErrorKind, FORMAT_VERSION, IndexOrigin, Query};

/// A copy of the frozen database of `version` (opening writes to it).
fn frozen(version: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join(format!("fixtures/databases/v{version}")),
        &dir.path().join("db"),
    );
    dir
}

/// The tiny model the frozen databases were written with.
fn tiny_model() -> Encoder {
    Encoder::load(
        root().join("fixtures/models/tiny-clip"),
        &EncoderOptions::default(),
    )
    .unwrap()
}

/// What `scripts/fixtures/make_frozen_db.sh` wrote, read back through
/// `db`: counts, the snapshot, typed failures said once, tags, answers and
/// a clean check. Returns the failures, for comparison after a reopen.
fn assert_frozen_content(db: &Db, encoder: &Encoder) -> Vec<(std::path::PathBuf, imgdb::Failure)> {
    let stats = db.stats().unwrap();
    assert_eq!(stats.format_version, FORMAT_VERSION);
    // Every frozen database was created resident (before format 6 no mode
    // was recorded, and that reads as resident).
    assert_eq!(stats.index_memory, imgdb::IndexMemory::Resident);
    assert_eq!((stats.images, stats.files, stats.failures), (8, 8, 2));
    assert!(
        matches!(stats.origin, IndexOrigin::Snapshot { replayed: 0, .. }),
        "the frozen snapshot still loads: {:?}",
        stats.origin
    );

    let failures = db.failures().unwrap();
    let reason = |name: &str| {
        let (path, failure) = failures
            .iter()
            .find(|(path, _)| path.ends_with(name))
            .unwrap_or_else(|| panic!("no failure for {name}: {failures:?}"));
        assert!(
            !failure.reason.message.contains(&*path.to_string_lossy()),
            "{failure:?}"
        );
        failure.reason.clone()
    };
    let notes = reason("notes.jpg");
    assert_eq!(notes.kind, ErrorKind::Unsupported, "{notes:?}");
    assert!(
        notes.message.starts_with("not a supported image"),
        "{notes:?}"
    );
    let truncated = reason("truncated.png");
    assert_eq!(truncated.kind, ErrorKind::Corrupt, "{truncated:?}");
    assert!(
        truncated.message.starts_with("cannot decode image"),
        "{truncated:?}"
    );

    // Tags and vectors as written: every image has its top zero-shot label.
    let labels = db.labels().unwrap();
    assert_eq!(
        labels.iter().map(|(_, n)| n).sum::<usize>(),
        8,
        "{labels:?}"
    );
    let hits = db
        .query(encoder, &Query::text("a red circle").k(2))
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter().all(|hit| hit
            .path
            .to_string_lossy()
            .contains("large_red_circle_on_white")),
        "{hits:?}"
    );
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    failures
}

/// Opens a copy of the frozen database of `version`, checks its content,
/// closes it, and checks that the marker was rewritten exactly when the
/// version is older than the current one; then reopens it. Returns the
/// copy and its failures, for more checks on it.
fn opens_and_answers(
    version: u32,
) -> (tempfile::TempDir, Vec<(std::path::PathBuf, imgdb::Failure)>) {
    let dir = frozen(version);
    let path = dir.path().join("db");
    let marker = std::fs::read(path.join("imgdb.format")).unwrap();
    let encoder = tiny_model();
    let db = Db::options()
        .space(encoder.space().clone())
        .open(&path)
        .unwrap();
    let failures = assert_frozen_content(&db, &encoder);
    db.close().unwrap();
    let rewritten = std::fs::read(path.join("imgdb.format")).unwrap() != marker;
    assert_eq!(
        rewritten,
        version < FORMAT_VERSION,
        "marker of format {version}"
    );
    let again = Db::open(&path).unwrap();
    assert_eq!(again.stats().unwrap().format_version, FORMAT_VERSION);
    assert_eq!(again.failures().unwrap(), failures);
    drop(again);
    (dir, failures)
}

#[test]
fn format_6_opens_as_it_is_and_answers() {
    opens_and_answers(6);
}

/// Format 6 only added the `sources` tree: the migration records the
/// version and rewrites nothing; the tree starts empty and takes the
/// sources of LAION rows imported afterwards.
#[test]
fn format_5_opens_migrated_and_takes_imported_sources() {
    let (dir, _) = opens_and_answers(5);
    let encoder = tiny_model();
    let db = Db::open(dir.path().join("db")).unwrap();
    let sources = |db: &Db| {
        db.records()
            .filter(|record| db.source(record.as_ref().unwrap().id).unwrap().is_some())
            .count()
    };
    assert_eq!(sources(&db), 0);
    assert_eq!(
        db.import(&encoder, &root().join("fixtures/laion")).unwrap(),
        6
    );
    assert_eq!((db.stats().unwrap().images, sources(&db)), (14, 6));
    assert!(db.verify().unwrap().is_clean());
}

/// Format 5 records the model variant in the embedding space: the
/// migration rewrites the space of every older database as fp32, the only
/// variant there was.
#[test]
fn format_4_opens_migrated_as_fp32_and_answers() {
    let (dir, _) = opens_and_answers(4);
    let db = Db::open(dir.path().join("db")).unwrap();
    assert_eq!(db.space().variant, imgdb::ModelVariant::Fp32);
    assert_eq!(&db.space(), tiny_model().space());
}

/// Format 4 only added the daemon's trees: the migration records the
/// version and rewrites nothing; the new trees start empty.
#[test]
fn format_3_opens_migrated_and_answers() {
    let (dir, _) = opens_and_answers(3);
    let db = Db::open(dir.path().join("db")).unwrap();
    assert!(db.watched_roots().unwrap().is_empty());
    assert_eq!(db.queued_len(), 0);
}

/// Format 3 only added image format codes: the migration records the
/// version and rewrites nothing.
#[test]
fn format_2_opens_migrated_and_answers() {
    opens_and_answers(2);
}

#[test]
fn format_1_opens_migrated_and_answers() {
    let (dir, failures) = opens_and_answers(1);
    let path = dir.path().join("db");

    // A crash after the store's migration but before the marker's rewrite
    // (the marker still says 1): the next open finishes it.
    let marker = root().join("fixtures/databases/v1/imgdb.format");
    std::fs::copy(&marker, path.join("imgdb.format")).unwrap();
    let finished = Db::open(&path).unwrap();
    assert_eq!(finished.stats().unwrap().format_version, FORMAT_VERSION);
    assert_eq!(finished.failures().unwrap(), failures);
    drop(finished);
    assert_ne!(
        std::fs::read(path.join("imgdb.format")).unwrap(),
        std::fs::read(&marker).unwrap(),
        "the marker was rewritten"
    );
}

/// A new format version comes with its frozen database (and a test here).
#[test]
fn every_format_version_has_a_frozen_database() {
    for version in imgdb::FORMAT_OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION {
        let folder = root().join(format!("fixtures/databases/v{version}"));
        assert!(
            folder.join("imgdb.format").is_file(),
            "{} is missing",
            folder.display()
        );
    }
}
