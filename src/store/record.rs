//! The values the store persists: image records and what they are made of.
//!
//! The byte layout of each type is normative and documented in
//! `schema/store.md`; a field added or reordered here is a format change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Corruption;

use crate::types::{ContentHash, ImageFormat, ImageId, Timestamp};

/// One file that holds an image's content. Identical files share one record.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    /// The canonical (absolute, resolved) path.
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    /// The file's modification time when it was indexed.
    pub mtime: Timestamp,
}

/// A label attached to an image with a score (zero-shot labels use the
/// softmax probability).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Tag {
    /// The label.
    pub label: String,
    /// Its score.
    pub score: f32,
}

/// Where an image that has no local file comes from: a row of a LAION /
/// clip-retrieval shard, whose identity (the record's path) is its URL, or
/// its key when it has no URL. Kept in the store's `sources` tree beside the
/// record (`schema/store.md`, format 6); every field is optional, as in
/// LAION's metadata.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ImageSource {
    /// The image's URL.
    pub url: Option<String>,
    /// Its caption (LAION's alt text).
    pub caption: Option<String>,
    /// The shard's key of the row (clip-retrieval's `key`, e.g. `000000012`).
    pub key: Option<String>,
}

impl ImageSource {
    /// Whether it says nothing (no field set): such a source is not stored.
    pub fn is_empty(&self) -> bool {
        self.url.is_none() && self.caption.is_none() && self.key.is_none()
    }
}

/// Everything a database knows about one image.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image's id.
    pub id: ImageId,
    /// The files with this content; the first is the canonical one.
    pub files: Vec<FileEntry>,
    /// BLAKE3 of the file bytes.
    pub content_hash: ContentHash,
    /// The file size in bytes.
    pub byte_size: u64,
    /// Width in pixels (after EXIF orientation).
    pub width: u32,
    /// Height in pixels (after EXIF orientation).
    pub height: u32,
    /// The file format.
    pub format: ImageFormat,
    /// When the image was first added.
    pub added: Timestamp,
    /// Labels with scores.
    pub tags: Vec<Tag>,
    /// The L2-normalised embedding.
    pub vector: Vec<f32>,
    /// The store sequence number of the last change to this record.
    pub seq: u64,
    /// The store sequence number at which `vector` was set.
    pub vector_seq: u64,
}

impl ImageRecord {
    /// The canonical path (the first file's).
    pub fn path(&self) -> &Path {
        &self.files[0].path
    }

    /// The newest modification time among the files.
    pub fn mtime(&self) -> Timestamp {
        self.files.iter().map(|f| f.mtime).max().unwrap_or_default()
    }
}

/// Paths are stored as their raw bytes, so that file names that are not
/// UTF-8 survive (on Unix; elsewhere they must be Unicode).
mod path_bytes {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&super::path_to_bytes(path))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let bytes = <Vec<u8>>::deserialize(d)?;
        super::path_from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

/// The bytes a path is stored and keyed as.
pub(crate) fn path_to_bytes(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// The inverse of [`path_to_bytes`].
pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> Result<PathBuf, Corruption> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
    #[cfg(not(unix))]
    {
        String::from_utf8(bytes)
            .map(PathBuf::from)
            .map_err(|_| Corruption::PathNotUnicode)
    }
}

/// A folder a watcher keeps the database equal to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedRoot {
    /// The folder (canonical).
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    /// When it was added.
    pub added: Timestamp,
    /// The file system (`st_dev`) the folder was on when added, 0 when
    /// unknown: a root found on another one (an empty mount point, its disk
    /// unmounted) is not the folder that was indexed.
    pub device: u64,
}

/// A change a file system watcher reported. Paths may be relative (to the
/// current directory) and need not exist any more.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileEvent {
    /// A file or folder appeared.
    Created(PathBuf),
    /// A file's content (or a folder's entries) changed.
    Changed(PathBuf),
    /// A file or folder went away.
    Deleted(PathBuf),
    /// A file or folder moved from one path to another.
    Renamed {
        /// The path before.
        from: PathBuf,
        /// The path after.
        to: PathBuf,
    },
}

/// A queued [`FileEvent`] as the store keeps it: a plain struct, as every
/// stored value is (`schema/store.md`, `queue`).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    /// 0 created, 1 changed, 2 deleted, 3 renamed.
    kind: u8,
    /// The path (a rename's old path).
    #[serde(with = "path_bytes")]
    path: PathBuf,
    /// A rename's new path; empty otherwise.
    #[serde(with = "path_bytes")]
    to: PathBuf,
}

impl From<&FileEvent> for StoredEvent {
    fn from(event: &FileEvent) -> StoredEvent {
        let (kind, path, to) = match event {
            FileEvent::Created(path) => (0, path, None),
            FileEvent::Changed(path) => (1, path, None),
            FileEvent::Deleted(path) => (2, path, None),
            FileEvent::Renamed { from, to } => (3, from, Some(to)),
        };
        StoredEvent {
            kind,
            path: path.clone(),
            to: to.cloned().unwrap_or_default(),
        }
    }
}

impl StoredEvent {
    /// The event, or `None` for a kind this build does not know.
    pub(crate) fn into_event(self) -> Option<FileEvent> {
        Some(match self.kind {
            0 => FileEvent::Created(self.path),
            1 => FileEvent::Changed(self.path),
            2 => FileEvent::Deleted(self.path),
            3 => FileEvent::Renamed {
                from: self.path,
                to: self.to,
            },
            _ => return None,
        })
    }
}
