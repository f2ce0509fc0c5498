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

#[test]
fn format_1_opens_migrated_and_answers() {
    let dir = frozen(1);
    let path = dir.path().join("db");
    let encoder = Encoder::load(
        root().join("fixtures/models/tiny-clip"),
        &EncoderOptions::default(),
    )
    .unwrap();
    let db = Db::options()
        .space(encoder.space().clone())
        .open(&path)
        .unwrap();
    let stats = db.stats().unwrap();
    assert_eq!(stats.format_version, FORMAT_VERSION);
    assert_eq!((stats.images, stats.files, stats.failures), (8, 8, 2));
    assert!(
        matches!(stats.origin, IndexOrigin::Snapshot { replayed: 0, .. }),
        "the v1 snapshot still loads: {:?}",
        stats.origin
    );

    // Failure records of format 1 (free text that repeated the path) come
    // back typed and said once.
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
        .query(&encoder, &Query::text("a red circle").k(2))
        .unwrap();
    assert!(
        hits.iter().all(|hit| hit
            .path
            .to_string_lossy()
            .contains("large_red_circle_on_white")),
        "{hits:?}"
    );
    assert!(db.verify().unwrap().is_clean());
    db.close().unwrap();

    // Migrated once: the next open finds the current format.
    let again = Db::open(&path).unwrap();
    assert_eq!(again.stats().unwrap().format_version, FORMAT_VERSION);
    assert_eq!(again.failures().unwrap(), failures);
    drop(again);

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
