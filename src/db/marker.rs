//! The database directory's format marker and process lock.
//!
//! `imgdb.format` is written first when a database is created and read
//! first when one is opened: it tells an imgdb database from any other
//! directory and carries the format version, checked before the store is
//! touched, so that a newer format is refused rather than guessed at.
//! Layout (`schema/store.md`): 8 magic bytes `89 49 4D 47 44 42 0D 0A`
//! ("\x89IMGDB\r\n", PNG-style: a text-mode copy breaks it visibly), the
//! version as u32 little-endian, and a CRC-32 of those 12 bytes, LE.

//!
//! The marker's file operations go through the database's [`Storage`], so
//! that tests can fail them; the lock is a real file lock and cannot.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Corruption, Error, Result};
use crate::fsio::{self, Storage};

/// The database format version this build writes (the store layout of
/// `schema/store.md`; its "Version history" says what each version changed).
/// A change to any persisted layout of the store bumps it, with a migration
/// in `migrate.rs` and a frozen database in `fixtures/databases/`.
pub const FORMAT_VERSION: u32 = 6;

/// The oldest database format version this build opens (and migrates).
pub const FORMAT_OLDEST_SUPPORTED_VERSION: u32 = 1;

/// The file that marks a directory as an imgdb database.
pub const FORMAT_MARKER_FILE: &str = "imgdb.format";

const MAGIC: [u8; 8] = *b"\x89IMGDB\r\n";
const LOCK_FILE: &str = "lock";

/// Writes the marker of a new database into `root`, durably. On failure
/// nothing is left behind, so that a retry finds the directory as it was.
pub(crate) fn create(storage: &dyn Storage, root: &Path) -> Result<()> {
    let written = write(storage, root, FORMAT_VERSION);
    if written.is_err() {
        // Best effort: the error to report is the first one.
        let _ = storage.remove_file(&root.join(FORMAT_MARKER_FILE));
    }
    written
}

/// Replaces the marker of `root` with one of `version`, atomically (written
/// aside, synced, renamed, directory synced).
pub(crate) fn write(storage: &dyn Storage, root: &Path, version: u32) -> Result<()> {
    let path = root.join(FORMAT_MARKER_FILE);
    let tmp = root.join(format!("{FORMAT_MARKER_FILE}.tmp"));
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    let written = fsio::write_synced(storage, &tmp, &bytes)
        .map_err(Error::io(&tmp))
        .and_then(|()| storage.rename(&tmp, &path).map_err(Error::io(&path)))
        .and_then(|()| storage.sync_dir(root).map_err(Error::io(root)));
    if written.is_err() {
        let _ = storage.remove_file(&tmp);
    }
    written
}

/// Reads the marker of `root` and checks its version; returns the version.
pub(crate) fn check(storage: &dyn Storage, root: &Path) -> Result<u32> {
    let path = root.join(FORMAT_MARKER_FILE);
    let bytes = fsio::read(storage, &path).map_err(Error::io(&path))?;
    let corrupt = |problem| Error::Corrupt {
        path: path.clone(),
        what: "format marker",
        problem,
    };
    if bytes.len() != 16 || bytes[..8] != MAGIC {
        return Err(corrupt(Corruption::MarkerLayout));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&bytes[..12]) {
        return Err(corrupt(Corruption::MarkerChecksum));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(FORMAT_OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION).contains(&found) {
        return Err(Error::UnsupportedFormat {
            path: root.to_path_buf(),
            found,
            oldest: FORMAT_OLDEST_SUPPORTED_VERSION,
            newest: FORMAT_VERSION,
        });
    }
    Ok(found)
}

/// Takes the database's exclusive lock, without waiting: a second opener,
/// in this process or another, gets [`Error::InUse`] at once. The lock lives
/// as long as the returned file.
pub(crate) fn lock(root: &Path) -> Result<File> {
    let path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::InUse {
            path: root.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
        }),
        Err(TryLockError::Error(source)) => Err(Error::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsio::LocalStorage;
    use std::fs;

    #[test]
    fn marker_round_trips_and_refuses_damage_and_newer_versions() {
        let dir = tempfile::tempdir().unwrap();
        create(&LocalStorage, dir.path()).unwrap();
        assert_eq!(check(&LocalStorage, dir.path()).unwrap(), FORMAT_VERSION);

        let path = dir.path().join(FORMAT_MARKER_FILE);
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[9] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            check(&LocalStorage, dir.path()),
            Err(Error::Corrupt { .. })
        ));

        let mut newer = MAGIC.to_vec();
        newer.extend_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        newer.extend_from_slice(&crc32fast::hash(&newer).to_le_bytes());
        fs::write(&path, &newer).unwrap();
        match check(&LocalStorage, dir.path()) {
            Err(Error::UnsupportedFormat { found, newest, .. }) => {
                assert_eq!((found, newest), (FORMAT_VERSION + 1, FORMAT_VERSION));
            }
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    #[test]
    fn a_second_lock_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(Error::InUse { .. })));
        drop(held);
        lock(dir.path()).unwrap();
    }
}
