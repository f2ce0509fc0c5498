//! Paths are bytes, not text: files whose names are not UTF-8 (legal on
//! Linux, common on old disks) are indexed, taken as arguments, printed by
//! `--paths` and in listings byte for byte, and carried losslessly in JSON
//! as `{"bytes": BASE64}` (schema/cli.md).

#![cfg(unix)]

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::root;
use serde_json::Value;

fn imgdb(db: &Path, args: &[&OsStr]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_imgdb"))
        .arg("--db")
        .arg(db)
        .arg("--model")
        .arg(root().join("fixtures/models/tiny-clip"))
        .args(args)
        .env_remove("IMGDB_DB")
        .env_remove("IMGDB_MODEL")
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

#[test]
fn non_utf8_paths_go_in_and_come_out_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, db) = (dir.path().join("photos"), dir.path().join("db"));
    std::fs::create_dir(&photos).unwrap();
    // "café.jpg" in Latin-1, and a broken file named in Latin-1 too.
    let photo = photos.join(OsStr::from_bytes(b"caf\xe9.jpg"));
    let broken = photos.join(OsStr::from_bytes(b"d\xe9fectueux.png"));
    std::fs::copy(root().join("fixtures/photos/astronaut.jpg"), &photo).unwrap();
    std::fs::copy(
        root().join("fixtures/photos/coffee.jpg"),
        photos.join("coffee.jpg"),
    )
    .unwrap();
    std::fs::write(&broken, b"not a png").unwrap();

    let ingest = imgdb(&db, &[os("ingest"), photos.as_os_str()]);
    assert_eq!(ingest.status.code(), Some(1));

    // An image term of any bytes, with and without a weight.
    let mut weighted = photo.as_os_str().to_owned();
    weighted.push("::2");
    for term in [photo.as_os_str(), &weighted] {
        let paths = imgdb(&db, &[os("query"), os("--image"), term, os("--paths")]);
        assert_eq!(paths.status.code(), Some(0));
        let lines: Vec<&[u8]> = paths.stdout.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 3, "two hits and the final newline");
        assert_eq!(
            lines[0],
            photo.as_os_str().as_bytes(),
            "itself first, byte for byte"
        );
        assert_eq!(lines[1], photos.join("coffee.jpg").as_os_str().as_bytes());
    }

    let json = imgdb(
        &db,
        &[os("query"), os("--image"), photo.as_os_str(), os("--json")],
    );
    let hits: Vec<Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 2);
    let encoded = hits[0]["path"]["bytes"].as_str().expect("a bytes object");
    assert_eq!(decode(encoded), photo);
    assert_eq!(hits[1]["path"], photos.join("coffee.jpg").to_str().unwrap());

    let failures = imgdb(&db, &[os("failures")]);
    let mut expected = broken.as_os_str().as_bytes().to_vec();
    expected.extend_from_slice(b": not a supported image (unsupported)\n");
    assert_eq!(failures.stdout, expected);
}

/// Standard base64, decoded here so that the test does not trust the
/// encoder it checks.
fn decode(text: &str) -> PathBuf {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut held = 0;
    let mut bytes = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        bits = bits << 6 | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        held += 6;
        if held >= 8 {
            held -= 8;
            bytes.push((bits >> held) as u8);
        }
    }
    PathBuf::from(OsStr::from_bytes(&bytes))
}
