//! Whether a watched root is there: a folder that exists, on the file
//! system it was indexed on. A root that fails this (a removed folder, an
//! unmounted disk leaving its empty mount point) is unavailable, and
//! nothing under it may be removed from the database.

use std::path::Path;

/// The file system (`st_dev`) a folder is on, if it is a folder.
pub fn device_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    metadata.is_dir().then(|| metadata.dev())
}

/// Whether a root recorded on `device` (0: unknown) is there now.
pub fn is_available(path: &Path, device: u64) -> bool {
    device_of(path).is_some_and(|now| device == 0 || now == device)
}
