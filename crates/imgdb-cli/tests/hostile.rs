//! The hostile-image corpus (`fixtures/hostile/`, made by
//! `scripts/fixtures/make_hostile_corpus.py`): an ingest of it beside real
//! photos ends with exit 1, every file has the outcome `EXPECTED.tsv` gives
//! it (indexed, or failed with that kind and a reason that names the
//! problem once), every photo is indexed, and `imgdb check` is clean.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{copy_dir, root};
use serde_json::Value;

fn imgdb(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgdb"))
        .arg("--db")
        .arg(db)
        .arg("--model")
        .arg(root().join("fixtures/models/tiny-clip"))
        .args(args)
        .env_remove("IMGDB_DB")
        .env_remove("IMGDB_MODEL")
        .output()
        .unwrap()
}

/// File name → `indexed` or `failed KIND`.
fn expected() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("fixtures/hostile/EXPECTED.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let (file, outcome) = line.split_once('\t').unwrap();
            (file.to_string(), outcome.to_string())
        })
        .collect()
}

#[test]
fn every_hostile_file_fails_alone_and_the_rest_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, db) = (dir.path().join("library"), dir.path().join("db"));
    copy_dir(&root().join("fixtures/hostile"), &folder.join("hostile"));
    copy_dir(&root().join("fixtures/photos"), &folder.join("photos"));
    let expected = expected();
    let photos = std::fs::read_dir(folder.join("photos"))
        .unwrap()
        .filter(|e| imgdb::has_image_extension(&e.as_ref().unwrap().path()))
        .count();
    assert!(photos >= 6, "{photos} photos");

    let ingest = imgdb(&db, &["ingest", folder.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&ingest.stderr);
    assert_eq!(ingest.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report: Value = String::from_utf8(ingest.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["event"] == "done")
        .expect("a done event");
    let failed = expected
        .values()
        .filter(|o| o.starts_with("failed"))
        .count();
    assert_eq!(report["failed"], failed, "{report}");
    assert_eq!(
        report["indexed"],
        expected.len() - failed + photos,
        "{report}"
    );

    let failures = imgdb(&db, &["failures", "--json"]);
    assert_eq!(failures.status.code(), Some(0));
    let mut outcomes: BTreeMap<String, String> = expected
        .keys()
        .map(|file| (file.clone(), "indexed".to_string()))
        .collect();
    for line in String::from_utf8(failures.stdout).unwrap().lines() {
        let failure: Value = serde_json::from_str(line).unwrap();
        let path = Path::new(failure["path"].as_str().unwrap());
        assert!(path.starts_with(folder.join("hostile")), "{failure}");
        let message = failure["message"].as_str().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        // Said once: no path in the message, no cause repeated.
        assert!(!message.contains(name), "{failure}");
        let parts: Vec<&str> = message.split(": ").collect();
        assert!(parts.windows(2).all(|w| w[0] != w[1]), "{failure}");
        assert!(message.len() > 10, "{failure}");
        outcomes.insert(
            name.to_string(),
            format!("failed {}", failure["kind"].as_str().unwrap()),
        );
    }
    assert_eq!(outcomes, expected);

    // Querying by a file that failed gives the same reason and the exit
    // code of its kind (schema/cli.md), never a crash.
    for (name, outcome) in &expected {
        let Some(kind) = outcome.strip_prefix("failed ") else {
            continue;
        };
        let file = folder.join("hostile").join(name);
        let query = imgdb(&db, &["query", "--image", file.to_str().unwrap()]);
        let code = match kind {
            "unsupported" | "corrupt" => 4,
            "too_large" => 2,
            other => panic!("no exit code known for {other}"),
        };
        let stderr = String::from_utf8_lossy(&query.stderr);
        assert_eq!(query.status.code(), Some(code), "{name}: {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }

    let check = imgdb(&db, &["check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
