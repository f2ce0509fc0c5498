//! BLAKE3 digests of model files, remembered across runs.
//!
//! Fingerprinting a model means hashing every tower file: hundreds of
//! megabytes for a ViT-B/32, most of a one-shot query's start-up. The cache
//! keeps one small entry per file, keyed by its canonical path and valid
//! while the file's size, modification time, change time and inode are
//! unchanged (what git's index trusts). A cache that cannot be read or
//! written is never an error: the file is hashed instead.

use std::fs;
use std::path::Path;

use tracing::debug;

use crate::error::{Error, Result};

/// Format tag of an entry; a different first line means "hash again".
const ENTRY_VERSION: &str = "imgdb-digest 1";

/// The BLAKE3 digest of the file at `path`, from `cache` when it holds a
/// current entry for it.
pub(crate) fn file_digest(path: &Path, cache: Option<&Path>) -> Result<[u8; 32]> {
    let metadata = fs::metadata(path).map_err(Error::io(path))?;
    let stamp = stamp(&metadata);
    let entry = cache.and_then(|dir| {
        let canonical = path.canonicalize().ok()?;
        let key = blake3::hash(canonical.as_os_str().as_encoded_bytes());
        Some(dir.join(key.to_hex().as_str()))
    });
    if let Some(entry) = &entry
        && let Some(digest) = read_entry(entry, &stamp)
    {
        return Ok(digest);
    }
    let file = fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(Error::io(path))?;
    let digest = *hasher.finalize().as_bytes();
    if let Some(entry) = &entry
        && let Err(e) = write_entry(entry, &stamp, &digest)
    {
        debug!("cannot cache the digest of {}: {e}", path.display());
    }
    Ok(digest)
}

/// What must be unchanged for a cached digest to hold.
fn stamp(metadata: &fs::Metadata) -> String {
    let nanos = |t: std::io::Result<std::time::SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    #[cfg(unix)]
    let (ctime, inode) = {
        use std::os::unix::fs::MetadataExt;
        (
            (metadata.ctime() as i128) * 1_000_000_000 + i128::from(metadata.ctime_nsec()),
            metadata.ino(),
        )
    };
    #[cfg(not(unix))]
    let (ctime, inode) = (0i128, 0u64);
    format!(
        "{} {} {ctime} {inode}",
        metadata.len(),
        nanos(metadata.modified())
    )
}

fn read_entry(entry: &Path, stamp: &str) -> Option<[u8; 32]> {
    let text = fs::read_to_string(entry).ok()?;
    let mut lines = text.lines();
    if lines.next()? != ENTRY_VERSION || lines.next()? != stamp {
        return None;
    }
    let hash = blake3::Hash::from_hex(lines.next()?).ok()?;
    Some(*hash.as_bytes())
}

fn write_entry(entry: &Path, stamp: &str, digest: &[u8; 32]) -> std::io::Result<()> {
    let dir = entry.parent().expect("an entry lies in the cache folder");
    fs::create_dir_all(dir)?;
    // Written aside and renamed: a reader never sees half an entry.
    let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
    let hex = blake3::Hash::from_bytes(*digest).to_hex();
    fs::write(&tmp, format!("{ENTRY_VERSION}\n{stamp}\n{hex}\n"))?;
    fs::rename(&tmp, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_digests_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("digests");
        let file = dir.path().join("model.onnx");
        fs::write(&file, b"first").unwrap();
        let first = file_digest(&file, Some(&cache)).unwrap();
        assert_eq!(first, *blake3::hash(b"first").as_bytes());
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 1);
        // A hit: the entry is what answers (a forged entry shows it).
        let entry = fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = fs::read_to_string(&entry).unwrap();
        let forged = blake3::hash(b"forged").to_hex();
        let lines: Vec<&str> = text.lines().collect();
        fs::write(&entry, format!("{}\n{}\n{forged}\n", lines[0], lines[1])).unwrap();
        assert_eq!(
            file_digest(&file, Some(&cache)).unwrap(),
            *blake3::hash(b"forged").as_bytes()
        );
        // A changed file (size and times differ) is hashed again.
        fs::write(&file, b"second, longer").unwrap();
        assert_eq!(
            file_digest(&file, Some(&cache)).unwrap(),
            *blake3::hash(b"second, longer").as_bytes()
        );
        // No cache: always hashed.
        assert_eq!(
            file_digest(&file, None).unwrap(),
            *blake3::hash(b"second, longer").as_bytes()
        );
    }
}
