//! The database directory's format marker and process lock.
//!
//! `imgdb.format` is written first when a database is created and read
//! first when one is opened: it tells an imgdb database from any other
//! directory and carries the format version, checked before the store is
//! touched, so that a newer format is refused rather than guessed at.
//! Layout (`schema/store.md`): 8 magic bytes `89 49 4D 47 44 42 0D 0A`
//! ("\x89IMGDB\r\n", PNG-style: a text-mode copy breaks it visibly), the
//! version as u32 little-endian, and a CRC-32 of those 12 bytes, LE.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::{FORMAT_MARKER_FILE, FORMAT_OLDEST_SUPPORTED_VERSION, FORMAT_VERSION};

const MAGIC: [u8; 8] = *b"\x89IMGDB\r\n";
const LOCK_FILE: &str = "lock";

/// Writes the marker of a new database into `root`, durably.
pub(crate) fn create(root: &Path) -> Result<()> {
    let path = root.join(FORMAT_MARKER_FILE);
    let tmp = root.join(format!("{FORMAT_MARKER_FILE}.tmp"));
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    let mut file = File::create(&tmp).map_err(Error::io(&tmp))?;
    file.write_all(&bytes).map_err(Error::io(&tmp))?;
    file.sync_all().map_err(Error::io(&tmp))?;
    fs::rename(&tmp, &path).map_err(Error::io(&path))?;
    File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(root))
}

/// Reads the marker of `root` and checks its version; returns the version.
pub(crate) fn check(root: &Path) -> Result<u32> {
    let path = root.join(FORMAT_MARKER_FILE);
    let bytes = fs::read(&path).map_err(Error::io(&path))?;
    let corrupt = |problem| Error::Corrupt {
        path: path.clone(),
        what: "format marker",
        problem,
    };
    if bytes.len() != 16 || bytes[..8] != MAGIC {
        return Err(corrupt(
            "not an imgdb format marker (wrong length or magic bytes)",
        ));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&bytes[..12]) {
        return Err(corrupt("checksum mismatch"));
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

    #[test]
    fn marker_round_trips_and_refuses_damage_and_newer_versions() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        assert_eq!(check(dir.path()).unwrap(), FORMAT_VERSION);

        let path = dir.path().join(FORMAT_MARKER_FILE);
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[9] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(check(dir.path()), Err(Error::Corrupt { .. })));

        let mut newer = MAGIC.to_vec();
        newer.extend_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        newer.extend_from_slice(&crc32fast::hash(&newer).to_le_bytes());
        fs::write(&path, &newer).unwrap();
        match check(dir.path()) {
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
