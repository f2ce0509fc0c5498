//! A reindex interrupted at each step of its swap (`src/db/swap.rs`): the
//! folders a crash leaves are finished or discarded by the next open, no
//! image is lost, and the next reindex works.
//!
//! Each test lays out what a crash at one step leaves on disk, from a real
//! old database (the fixture photos, tiny model) and a real rebuilt one (a
//! copy reindexed with the micro model): the swap's steps are renames, so
//! a crash leaves exactly one of these layouts.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, micro_model, root};
use imgdb::ingest::IngestOptions;
use imgdb::{CancelToken, Db, EmbeddingSpace, Encoder, EncoderOptions, ImageId};

/// The file that marks `<db>.reindex` as complete (documented in swap.rs).
const COMPLETE_MARKER: &str = "reindex-complete";

/// `<dir>/db` (tiny model) and a complete rebuilt copy of it (micro model)
/// at `<dir>/rebuilt/db`, with the encoders and what both hold.
struct Setup {
    dir: tempfile::TempDir,
    tiny: Encoder,
    micro: Encoder,
    paths: Vec<(PathBuf, ImageId)>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        copy_dir(&root().join("fixtures/photos"), &photos);
        std::fs::remove_file(photos.join("ATTRIBUTION.md")).unwrap();
        let photos = photos.canonicalize().unwrap();
        let options = EncoderOptions::default();
        let tiny = Encoder::load(root().join("fixtures/models/tiny-clip"), &options).unwrap();
        let micro = Encoder::load(micro_model(dir.path()), &options).unwrap();
        let db = Db::open_or_create(dir.path().join("db"), tiny.space().clone()).unwrap();
        let report = db
            .ingest(&tiny, &[photos], &IngestOptions::default(), &mut ())
            .unwrap();
        assert_eq!(report.indexed, 6, "{:?}", report.failures);
        let paths = db.paths_under(Path::new("/")).unwrap();
        db.close().unwrap();
        let rebuilt = dir.path().join("rebuilt/db");
        copy_dir(&dir.path().join("db"), &rebuilt);
        let db = Db::open(&rebuilt).unwrap();
        let report = db.reindex(&micro, &CancelToken::new(), |_, _| {}).unwrap();
        assert_eq!((report.reindexed, report.cancelled), (6, false));
        drop(db);
        Setup {
            dir,
            tiny,
            micro,
            paths,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        self.dir.path().join(format!("db{suffix}"))
    }

    /// Puts the rebuilt database at `to`, marked complete or not.
    fn place_rebuilt(&self, to: &Path, complete: bool) {
        copy_dir(&self.dir.path().join("rebuilt/db"), to);
        if complete {
            std::fs::write(to.join(COMPLETE_MARKER), b"").unwrap();
        }
    }

    /// Opens the database and checks it holds every image, of `space`.
    fn assert_opens_whole(&self, space: &EmbeddingSpace) {
        let db = Db::open(self.db()).unwrap();
        assert_eq!(db.space(), *space);
        assert_eq!(db.paths_under(Path::new("/")).unwrap(), self.paths);
        let report = db.verify().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.records, 6);
    }

    /// What is beside and inside the database folder after the open.
    fn leftovers(&self) -> Vec<&'static str> {
        [
            (self.sibling(".reindex"), "db.reindex"),
            (self.sibling(".reindex-old"), "db.reindex-old"),
            (self.db().join(COMPLETE_MARKER), "db/reindex-complete"),
        ]
        .into_iter()
        .filter(|(path, _)| path.exists())
        .map(|(_, name)| name)
        .collect()
    }

    /// The next reindex (back to the tiny model) swaps in, and leaves
    /// nothing beside the database.
    fn assert_next_reindex_works(&self) {
        let db = Db::open(self.db()).unwrap();
        let report = db
            .reindex(&self.tiny, &CancelToken::new(), |_, _| {})
            .unwrap();
        assert_eq!((report.reindexed, report.cancelled), (6, false));
        drop(db);
        assert!(self.leftovers().is_empty(), "{:?}", self.leftovers());
        self.assert_opens_whole(self.tiny.space());
    }
}

#[test]
fn a_crash_while_the_new_database_fills_keeps_the_old_one() {
    let s = Setup::new();
    // A rebuilt database without its complete marker: still filling.
    s.place_rebuilt(&s.sibling(".reindex"), false);
    s.assert_opens_whole(s.tiny.space());
    // Left for the next reindex to discard.
    assert_eq!(s.leftovers(), ["db.reindex"]);
    s.assert_next_reindex_works();
}

#[test]
fn a_crash_before_the_old_database_is_set_aside_keeps_it() {
    let s = Setup::new();
    // Complete, but the old database still in place (step 2: closing it).
    s.place_rebuilt(&s.sibling(".reindex"), true);
    s.assert_opens_whole(s.tiny.space());
    assert_eq!(s.leftovers(), ["db.reindex"]);
    s.assert_next_reindex_works();
}

#[test]
fn a_crash_after_the_old_database_is_set_aside_finishes_the_swap() {
    let s = Setup::new();
    // Step 3 done: the old database renamed aside, the new one waiting.
    std::fs::rename(s.db(), s.sibling(".reindex-old")).unwrap();
    s.place_rebuilt(&s.sibling(".reindex"), true);
    s.assert_opens_whole(s.micro.space());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    s.assert_next_reindex_works();
}

#[test]
fn a_crash_after_the_new_database_is_renamed_in_finishes_the_swap() {
    let s = Setup::new();
    // Step 4 half done: the new database renamed in, its marker and the
    // old one not yet removed.
    std::fs::rename(s.db(), s.sibling(".reindex-old")).unwrap();
    s.place_rebuilt(&s.db(), true);
    s.assert_opens_whole(s.micro.space());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    s.assert_next_reindex_works();
}

#[test]
fn a_crash_before_the_old_database_is_removed_finishes_the_swap() {
    let s = Setup::new();
    // Step 4 all but done: only the old database is left to remove.
    std::fs::rename(s.db(), s.sibling(".reindex-old")).unwrap();
    s.place_rebuilt(&s.db(), false);
    s.assert_opens_whole(s.micro.space());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    s.assert_next_reindex_works();
}
