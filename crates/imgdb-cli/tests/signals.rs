//! Ctrl-C (SIGINT) during `imgdb reindex`: the command stops between
//! batches, exits 130, keeps the old database as it was and leaves no
//! partial rebuild beside it; the next reindex completes. (Ctrl-C during
//! an ingest is in `cli.rs`.)

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{micro_model, root};
use serde_json::Value;

/// `imgdb --db <dir>/db --model MODEL`, with a cache of its own.
fn imgdb(dir: &Path, model: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgdb"));
    command
        .arg("--db")
        .arg(dir.join("db"))
        .arg("--model")
        .arg(model)
        .env("IMGDB_CACHE", dir.join("cache"))
        .env_remove("IMGDB_MODEL")
        .env_remove("IMGDB_DB")
        .env_remove("IMGDB_LOG");
    command
}

fn stats(dir: &Path, model: &Path) -> Value {
    let output = imgdb(dir, model)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn ctrl_c_stops_a_reindex_and_keeps_the_old_database() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = root().join("fixtures/models/tiny-clip");
    let micro = micro_model(dir.path());
    // 600 images of distinct content: many encoder batches to interrupt.
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for n in 0..600u32 {
        let pixel = image::Rgb([(n % 256) as u8, (n / 256) as u8 * 60, 128]);
        image::RgbImage::from_pixel(8, 8, pixel)
            .save(photos.join(format!("{n:03}.png")))
            .unwrap();
    }
    let ingested = imgdb(dir.path(), &tiny)
        .args(["ingest", &photos.to_string_lossy()])
        .output()
        .unwrap();
    assert_eq!(ingested.status.code(), Some(0));

    // `-v` logs each re-encoded batch: interrupted after the first.
    let mut child = imgdb(dir.path(), &micro)
        .args(["-v", "reindex"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("re-encoded ") {
        assert!(stderr.read_line(&mut seen).unwrap() > 0, "{seen}");
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    stderr.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        seen.contains("stopping: discarding the partial re-index, the old database is kept"),
        "{seen}"
    );
    assert!(
        seen.contains("reindex stopped: the database was kept as it was"),
        "{seen}"
    );
    assert!(!dir.path().join("db.reindex").exists());

    // The old database, whole, of the old model.
    let old = stats(dir.path(), &tiny);
    assert_eq!(
        (old["images"].as_u64(), old["dim"].as_u64()),
        (Some(600), Some(64)),
        "{old}"
    );
    let check = imgdb(dir.path(), &tiny).arg("check").output().unwrap();
    assert_eq!(check.status.code(), Some(0));

    let reindexed = imgdb(dir.path(), &micro).arg("reindex").output().unwrap();
    assert_eq!(
        reindexed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reindexed.stderr)
    );
    let new = stats(dir.path(), &micro);
    assert_eq!(
        (new["images"].as_u64(), new["dim"].as_u64()),
        (Some(600), Some(32)),
        "{new}"
    );
}
