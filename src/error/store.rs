//! Errors of the persistent layers: the sled store, the database directory
//! and the index snapshots, and [`Corruption`], what was found damaged.

use std::path::PathBuf;

use super::ErrorKind;

/// The store (sled) failed, or a value in it does not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled failed.
    #[error("store error in {path}")]
    Sled {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },

    /// A persisted value failed to decode.
    #[error("{path}: corrupt {what}")]
    Decode {
        /// The database holding the value.
        path: PathBuf,
        /// Which persisted thing is corrupt.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: bincode::error::DecodeError,
    },

    /// A value failed to encode (a value larger than the size limit).
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: bincode::error::EncodeError,
    },

    /// A key or value does not have the layout `schema/store.md` gives it.
    #[error("{path}: corrupt {what}: {problem}")]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// Which persisted thing is corrupt.
        what: &'static str,
        /// What was wrong with it.
        problem: Corruption,
    },
}

impl StoreError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Sled { source, .. } => match source {
                sled::Error::Corruption { .. } => ErrorKind::Corrupt,
                sled::Error::Unsupported(_) => ErrorKind::Unsupported,
                _ => ErrorKind::Io,
            },
            StoreError::Decode { .. } | StoreError::Corrupt { .. } => ErrorKind::Corrupt,
            StoreError::Encode { .. } => ErrorKind::TooLarge,
        }
    }
}

/// Writing an index snapshot failed (reading one never fails: a snapshot
/// that does not load is a rebuild, see `RebuildReason`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A file operation on the snapshot failed (a full disk, say).
    #[error("cannot write the index snapshot: I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl SnapshotError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Io
    }
}

/// What was found damaged in a persisted thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// Bytes follow a value that decoded completely.
    TrailingBytes,
    /// An image id is not 8 bytes.
    IdLength,
    /// A change-log key is not 16 bytes.
    LogKeyLength,
    /// A content-hash key is not 40 bytes.
    HashKeyLength,
    /// A tag key is shorter than a label, its separator and an id.
    TagKeyLength,
    /// A label is not UTF-8.
    LabelNotUtf8,
    /// A stored path is not Unicode on a system whose paths must be.
    PathNotUnicode,
    /// The format marker has the wrong length or magic bytes.
    MarkerLayout,
    /// The format marker does not match its checksum.
    MarkerChecksum,
    /// The database's creation did not complete (no embedding space).
    CreationIncomplete,
    /// The store's format version differs from the format marker's.
    VersionMismatch,
    /// No index parameters are recorded.
    NoIndexParams,
    /// No database id is recorded.
    NoDatabaseId,
    /// sled panicked while opening the store.
    StorePanicked,
    /// The store ends before changes the index snapshot covers: it lost
    /// acknowledged writes (truncated, or replaced by an older copy).
    StoreBehindIndex,
    /// A queued file event has a kind this build does not know.
    UnknownEventKind,
    /// The recorded index memory mode has a code this build does not know.
    UnknownIndexMemory,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Corruption::TrailingBytes => "trailing bytes after the value",
            Corruption::IdLength => "an id is not 8 bytes",
            Corruption::LogKeyLength => "a key is not 16 bytes",
            Corruption::HashKeyLength => "a key is not 40 bytes",
            Corruption::TagKeyLength => "a key is too short",
            Corruption::LabelNotUtf8 => "a label is not UTF-8",
            Corruption::PathNotUnicode => "a path is not Unicode",
            Corruption::MarkerLayout => "not an imgdb format marker (wrong length or magic bytes)",
            Corruption::MarkerChecksum => "checksum mismatch",
            Corruption::CreationIncomplete => {
                "its creation did not complete (no embedding space recorded); \
                 remove the directory and create it again"
            }
            Corruption::VersionMismatch => {
                "the store's format version differs from the format marker's"
            }
            Corruption::NoIndexParams => "no index parameters recorded",
            Corruption::NoDatabaseId => "no database id recorded",
            Corruption::StorePanicked => "sled panicked while opening it",
            Corruption::UnknownEventKind => "a queued file event of an unknown kind",
            Corruption::UnknownIndexMemory => "an index memory mode of an unknown code",
            Corruption::StoreBehindIndex => {
                "it lacks changes the index snapshot covers (it was truncated or replaced \
                 by an older copy); restore it, or remove the index folder to open what is left"
            }
        })
    }
}
