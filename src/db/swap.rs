//! Replacing a database by a rebuilt one under its open handle
//! ([`Db::rebuild`]), crash-safely, while queries go on.
//!
//! The new database is built beside the old one (`<db>.reindex`) while the
//! old one keeps answering (writes are refused: they would not reach the new
//! one), and swapped in only when complete:
//!
//! 1. `<db>.reindex/reindex-complete` is written: the new one is whole;
//! 2. new calls wait, calls under way finish, and the old database is
//!    closed (final snapshot, sled and the lock released);
//! 3. `<db>` is renamed to `<db>.reindex-old`;
//! 4. `<db>.reindex` is renamed to `<db>`, the marker and the old one
//!    removed, and the new one is opened under its final path for every
//!    clone of the handle.
//!
//! A crash before 1 leaves the old database as it was (the stale folder is
//! discarded by the next rebuild); one after 3 is finished by the next open
//! ([`finish_interrupted`]). What fills the new database (re-encoding, in
//! `crate::reindex`) is the caller's; this module owns only the mechanics.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Db, DbOptions, Slot, open_database};
use crate::error::{Error, ReindexConflict, Result};
use crate::space::EmbeddingSpace;

/// Marks a `<db>.reindex` folder as complete, ready to be swapped in.
const COMPLETE_MARKER: &str = "reindex-complete";

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    db.with_file_name(name)
}

/// Completes a swap a crash interrupted after step 3: either `db` is gone
/// and a complete rebuilt database waits beside it (step 4 to do), or the
/// rebuilt one is in place already and only its marker and the old database
/// are left to remove (`db` beside `<db>.reindex-old` happens only then).
/// Anything else is left alone.
pub(super) fn finish_interrupted(db: &Path) -> Result<()> {
    let new = sibling(db, ".reindex");
    let old = sibling(db, ".reindex-old");
    if !db.exists() {
        if !new.join(COMPLETE_MARKER).is_file() {
            return Ok(());
        }
        std::fs::rename(&new, db).map_err(Error::io(db))?;
    } else if !old.exists() {
        return Ok(());
    }
    let marker = db.join(COMPLETE_MARKER);
    if marker.exists() {
        std::fs::remove_file(&marker).map_err(Error::io(db))?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(Error::io(&old))?;
    }
    Ok(())
}

/// How long the swap waits for calls under way on the old database (an
/// open [`Db::records`] iterator counts) before it gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Db {
    /// Rebuilds this database as a new one of `space` and swaps it in under
    /// every clone of the handle: `fill` gets this handle (still on the old
    /// database) and the new, empty one, and returns whether it completed.
    /// Writes to the old database fail with [`Error::Reindexing`] meanwhile. A
    /// complete rebuild is swapped in (see the module's steps); an incomplete
    /// one (cancelled, say) is discarded and the old database stays, taking
    /// writes again. Returns whether the swap happened.
    pub(crate) fn rebuild(
        &self,
        space: &EmbeddingSpace,
        fill: impl FnOnce(&Db, &Db) -> Result<bool>,
    ) -> Result<bool> {
        let old = self.current()?;
        old.refuse_writes()?;
        let built = self.build_beside(space, fill);
        if !matches!(built, Ok(true)) {
            old.accept_writes();
            return built;
        }
        drop(old);
        self.swap_in(space)?;
        Ok(true)
    }

    /// Steps before 1: builds the new database and marks it complete, or
    /// removes it when `fill` did not complete.
    fn build_beside(
        &self,
        space: &EmbeddingSpace,
        fill: impl FnOnce(&Db, &Db) -> Result<bool>,
    ) -> Result<bool> {
        let new_path = sibling(self.path(), ".reindex");
        if new_path.exists() {
            // A rebuild that never completed.
            std::fs::remove_dir_all(&new_path).map_err(Error::io(&new_path))?;
        }
        let new = DbOptions::new()
            .space(space.clone())
            .create_if_missing(true)
            .open(&new_path)?;
        let filled = fill(self, &new);
        // Closed either way: it must not be open when removed or renamed.
        new.close()?;
        if !filled? {
            std::fs::remove_dir_all(&new_path).map_err(Error::io(&new_path))?;
            return Ok(false);
        }
        std::fs::write(new_path.join(COMPLETE_MARKER), b"").map_err(Error::io(&new_path))?;
        Ok(true)
    }

    /// Steps 2 to 4. Holds the handle's write lock throughout, so that no
    /// call starts on the old database once it is being closed.
    fn swap_in(&self, space: &EmbeddingSpace) -> Result<()> {
        let path = self.path();
        let new_path = sibling(path, ".reindex");
        let mut slot = self
            .shared
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Slot::Open(open) = &*slot else {
            unreachable!("rebuild() started on an open database")
        };
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while Arc::strong_count(open) > 1 {
            if Instant::now() > deadline {
                // A caller holds the old database and may be waiting for a
                // new call behind this lock: give up rather than deadlock.
                open.accept_writes();
                std::fs::remove_dir_all(&new_path).map_err(Error::io(&new_path))?;
                return Err(Error::Reindexing {
                    path: path.to_path_buf(),
                    during: ReindexConflict::SwapBlocked,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let lost = Slot::Lost {
            space: space.clone(),
            origin: open.origin.clone(),
        };
        // The last holder: dropping it closes the old database.
        drop(std::mem::replace(&mut *slot, lost));
        let aside = sibling(path, ".reindex-old");
        let swapped = std::fs::rename(path, &aside)
            .map_err(Error::io(path))
            .and_then(|()| finish_interrupted(path));
        // Whatever the path holds now: the new database, or the old one if
        // the rename failed (then the next open or rebuild sorts it out).
        let mut options = self.shared.options.clone();
        if swapped.is_ok() {
            options = options.space(space.clone());
        }
        *slot = Slot::Open(Arc::new(open_database(path, options)?));
        swapped
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
        let handle = Db::open(&db).unwrap();
        let clone = handle.clone();
        // Writes are refused while it runs, and taken again when it did not
        // complete.
        let mut refused = false;
        let rebuilt = handle.rebuild(&other, |old, _| {
            refused = old.write(&space(), crate::WriteBatch::new()).is_err();
            Ok(false)
        });
        assert!(!rebuilt.unwrap() && refused);
        assert!(!stale.exists());
        assert_eq!(clone.space(), space());
        clone.write(&space(), crate::WriteBatch::new()).unwrap();

        // Swapped in under the open handle, for its clones too.
        assert!(handle.rebuild(&other, |_, _| Ok(true)).unwrap());
        assert_eq!(clone.space(), other);
        drop((handle, clone));
        assert_eq!(Db::open(&db).unwrap().space(), other);

        // Interrupted after the old one was set aside: the open finishes it.
        std::fs::rename(&db, sibling(&db, ".reindex-old")).unwrap();
        Db::open_or_create(&stale, space())
            .unwrap()
            .close()
            .unwrap();
        std::fs::write(stale.join(COMPLETE_MARKER), b"").unwrap();
        let reopened = Db::open(&db).unwrap();
        assert_eq!(reopened.space(), space());
        assert!(!stale.exists() && !sibling(&db, ".reindex-old").exists());
        assert!(reopened.verify().unwrap().is_clean());
    }
}
