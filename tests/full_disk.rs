//! A real full disk: a small tmpfs filled by inserts until a write fails.
//! Opening on the full disk is refused before anything is written (however
//! often it is tried), and once space is freed every acknowledged image is
//! there and the database is consistent.
//!
//! Mounting a tmpfs needs root (CI runs as root). Elsewhere the test says
//! that it skipped, unless `IMGDB_REQUIRE_TMPFS` is set, which makes a
//! failed mount a failure (CI sets it).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{image, space};
use imgdb::{Db, DbOptions, Error, ErrorKind};

/// Vectors wide enough that a few hundred images fill a few megabytes.
const DIM: usize = 512;
const MARGIN: u64 = 256 << 10;

/// A tmpfs of `megabytes`, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(megabytes: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Tmpfs { dir });
        }
        assert!(
            std::env::var_os("IMGDB_REQUIRE_TMPFS").is_none(),
            "IMGDB_REQUIRE_TMPFS is set but a tmpfs could not be mounted"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn options() -> DbOptions {
    Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
        .snapshot_every(100)
        .min_free_space(MARGIN)
}

/// Every file under `dir` with its size.
fn listing(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), entry.metadata().unwrap().len());
            }
        }
    }
    files
}

#[test]
fn a_full_disk_loses_nothing_acknowledged_and_reopens_once_freed() {
    let Some(disk) = Tmpfs::mount(16) else {
        return;
    };
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 8 << 20]).unwrap();
    let path = disk.path().join("db");

    let db = options().open(&path).unwrap();
    let mut acknowledged = 0u64;
    let error = loop {
        let batch = (acknowledged..acknowledged + 25)
            .map(|n| image(n, DIM))
            .collect();
        match db.insert(&space(DIM as u32), batch) {
            Ok(ids) => acknowledged += ids.len() as u64,
            Err(e) => break e,
        }
        assert!(acknowledged < 100_000, "the disk never filled");
    };
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
    assert!(
        acknowledged >= 100,
        "only {acknowledged} images before the disk filled"
    );
    eprintln!("{acknowledged} images acknowledged before the disk filled: {error}");
    drop(db);

    // A restart loop on the full disk: refused each time, nothing written.
    let before = listing(&path);
    for _ in 0..3 {
        match options().open(&path) {
            Err(Error::LowDiskSpace {
                available,
                required,
                ..
            }) => {
                assert!(available < required, "{available} < {required}");
                assert_eq!(required, MARGIN);
            }
            other => panic!("an open on a full disk gave {:?}", other.map(|_| ())),
        }
        assert_eq!(listing(&path), before, "a refused open changed the files");
    }

    std::fs::remove_file(&ballast).unwrap();
    let db = options().open(&path).unwrap();
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    let stored = db.stats().unwrap().images as u64;
    // The batch in flight when the disk filled is all or nothing.
    assert!(
        stored == acknowledged || stored == acknowledged + 25,
        "{stored} stored, {acknowledged} acknowledged"
    );
    for n in 0..acknowledged {
        let record = db
            .get_by_path(&image(n, DIM).path)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged image {n} was lost"));
        let (stored, given) = (db.vector(record.id).unwrap(), image(n, DIM).vector);
        let cosine = stored.iter().zip(&given).map(|(a, b)| a * b).sum::<f32>()
            / given.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(cosine > 0.99999, "image {n}: cosine {cosine}");
    }
    // And it takes writes again.
    db.insert(&space(DIM as u32), vec![image(1_000_000, DIM)])
        .unwrap();
    db.close().unwrap();
}

#[test]
fn an_interrupted_store_snapshot_does_not_stop_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = options().open(&path).unwrap();
    db.insert(&space(DIM as u32), (0..10).map(|n| image(n, DIM)).collect())
        .unwrap();
    db.close().unwrap();
    // What sled leaves when the disk fills while it writes its snapshot.
    let leftover = path.join("store/snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&leftover, b"").unwrap();
    let db = options().open(&path).unwrap();
    assert_eq!(db.stats().unwrap().images, 10);
    assert!(db.verify().unwrap().is_clean());
    assert!(!leftover.exists());
}
