//! Replacing a database by a rebuilt one ([`Db::rebuild`]), crash-safely.
//!
//! The new database is built beside the old one (`<db>.reindex`) and
//! swapped in only when complete:
//!
//! 1. `<db>.reindex/reindex-complete` is written: the new one is whole;
//! 2. `<db>` is renamed to `<db>.reindex-old`;
//! 3. `<db>.reindex` is renamed to `<db>`, the marker and the old one removed.
//!
//! A crash before 1 leaves the old database as it was (the stale folder is
//! discarded by the next rebuild); one after 2 is finished by the next open
//! ([`finish_interrupted`]). What fills the new database (re-encoding, in
//! `crate::reindex`) is the caller's; this module owns only the mechanics.

use std::path::{Path, PathBuf};

use super::{Db, DbOptions};
use crate::error::{Error, Result};
use crate::space::EmbeddingSpace;

/// Marks a `<db>.reindex` folder as complete, ready to be swapped in.
const COMPLETE_MARKER: &str = "reindex-complete";

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    db.with_file_name(name)
}

/// Completes a swap a crash interrupted: `db` is gone, and a complete
/// rebuilt database waits beside it. Anything else is left alone.
pub(super) fn finish_interrupted(db: &Path) -> Result<()> {
    let new = sibling(db, ".reindex");
    if db.exists() || !new.join(COMPLETE_MARKER).is_file() {
        return Ok(());
    }
    std::fs::rename(&new, db).map_err(Error::io(db))?;
    std::fs::remove_file(db.join(COMPLETE_MARKER)).map_err(Error::io(db))?;
    let old = sibling(db, ".reindex-old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(Error::io(&old))?;
    }
    Ok(())
}

impl Db {
    /// Rebuilds the closed database at `path` as a new one of `space`:
    /// `fill` gets the old database and the new, empty one, and returns
    /// whether it completed. A complete rebuild is swapped in (see the
    /// module's steps); an incomplete one (cancelled, say) is discarded and
    /// the old database stays. Returns whether the swap happened.
    pub(crate) fn rebuild(
        path: &Path,
        space: &EmbeddingSpace,
        fill: impl FnOnce(&Db, &Db) -> Result<bool>,
    ) -> Result<bool> {
        let old = Db::open(path)?;
        let new_path = sibling(path, ".reindex");
        if new_path.exists() {
            // A rebuild that never completed.
            std::fs::remove_dir_all(&new_path).map_err(Error::io(&new_path))?;
        }
        let new = DbOptions::new()
            .space(space.clone())
            .create_if_missing(true)
            .open(&new_path)?;
        let complete = fill(&old, &new)?;
        new.close()?;
        old.close()?;
        if !complete {
            std::fs::remove_dir_all(&new_path).map_err(Error::io(&new_path))?;
            return Ok(false);
        }
        std::fs::write(new_path.join(COMPLETE_MARKER), b"").map_err(Error::io(&new_path))?;
        let aside = sibling(path, ".reindex-old");
        std::fs::rename(path, &aside).map_err(Error::io(path))?;
        finish_interrupted(path)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> EmbeddingSpace {
        EmbeddingSpace::named("swap-test", 4)
    }

    #[test]
    fn a_stale_incomplete_rebuild_is_left_alone_and_a_complete_one_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        Db::open_or_create(&db, space()).unwrap().close().unwrap();

        // Interrupted before the complete marker: the old database opens as
        // it was, and the next rebuild discards the stale folder.
        let stale = sibling(&db, ".reindex");
        std::fs::create_dir_all(stale.join("junk")).unwrap();
        Db::open(&db).unwrap().close().unwrap();
        assert!(stale.exists());
        let other = EmbeddingSpace::named("swap-test-2", 4);
        assert!(!Db::rebuild(&db, &other, |_, _| Ok(false)).unwrap());
        assert!(!stale.exists());
        assert_eq!(*Db::open(&db).unwrap().space(), space());

        // Interrupted after the old one was set aside: the open finishes it.
        assert!(Db::rebuild(&db, &other, |_, _| Ok(true)).unwrap());
        assert_eq!(*Db::open(&db).unwrap().space(), other);
        std::fs::rename(&db, sibling(&db, ".reindex-old")).unwrap();
        Db::open_or_create(&stale, space())
            .unwrap()
            .close()
            .unwrap();
        std::fs::write(stale.join(COMPLETE_MARKER), b"").unwrap();
        let reopened = Db::open(&db).unwrap();
        assert_eq!(*reopened.space(), space());
        assert!(!stale.exists() && !sibling(&db, ".reindex-old").exists());
        assert!(reopened.verify().unwrap().is_clean());
    }
}
