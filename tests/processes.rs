//! Two processes and one database: while one holds it, a second opener is
//! refused at once with [`Error::InUse`]; once the holder closes it, or is
//! killed, the database opens again with everything it held.
//!
//! The holder is this test binary re-run on `holder_child`.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{image, space};
use imgdb::{Db, Error, ErrorKind};

const DIM: usize = 8;

/// Opens the database named by `IMGDB_HOLD_DB`, prints `open`, and holds
/// it until its standard input closes; then closes it and prints `closed`.
#[test]
fn holder_child() {
    let Ok(path) = std::env::var("IMGDB_HOLD_DB") else {
        return;
    };
    let db = Db::open(&path).unwrap();
    println!("open");
    std::io::stdin().read_to_end(&mut Vec::new()).unwrap();
    db.close().unwrap();
    println!("closed");
}

/// A database of three images, closed.
fn database(path: &Path) {
    let db = Db::open_or_create(path, space(DIM as u32)).unwrap();
    let images = (1..=3).map(|n| image(n, DIM)).collect();
    db.insert(&space(DIM as u32), images).unwrap();
    db.close().unwrap();
}

/// Starts a holder of `path` and returns once it has the database open.
fn hold(path: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["holder_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("IMGDB_HOLD_DB", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // libtest writes its own words around the child's: look for ours.
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0; 1];
    while !String::from_utf8_lossy(&seen).contains("open\n") {
        assert_eq!(out.read(&mut byte).unwrap(), 1, "the holder ended early");
        seen.push(byte[0]);
    }
    child.stdout = Some(out);
    child
}

/// Asserts that opening `path` fails at once with [`Error::InUse`].
fn assert_in_use(path: &Path) {
    let started = Instant::now();
    let Err(e) = Db::open(path) else {
        panic!("a second process opened the database");
    };
    let elapsed = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::InUse, "{e}");
    assert!(
        matches!(&e, Error::InUse { path: p, .. } if p == path),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "database {} is in use by another process",
            path.display()
        )),
        "{e}"
    );
    // The database lock is taken without waiting (sled's own lock, waited
    // for up to 10 s, is only reached by the holder of the first).
    assert!(
        elapsed < Duration::from_secs(2),
        "refused after {elapsed:?}"
    );
}

fn assert_whole(path: &Path) {
    let db = Db::open(path).unwrap();
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.records, 3);
    for n in 1..=3 {
        assert!(db.get_by_path(&image(n, DIM).path).unwrap().is_some());
    }
}

#[test]
fn a_second_process_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    database(&path);
    let mut holder = hold(&path);
    assert_in_use(&path);
    // Closing its standard input tells the holder to close the database.
    drop(holder.stdin.take());
    let mut rest = String::new();
    holder
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert!(holder.wait().unwrap().success());
    assert!(rest.contains("closed\n"), "{rest}");
    assert_whole(&path);
}

#[test]
fn a_killed_holder_leaves_no_lock_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    database(&path);
    let mut holder = hold(&path);
    assert_in_use(&path);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The lock file is still there; the kernel released its lock.
    assert!(path.join("lock").exists());
    let started = Instant::now();
    assert_whole(&path);
    assert!(started.elapsed() < Duration::from_secs(5));
}
