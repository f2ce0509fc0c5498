//! The one error type of imgdb.
//!
//! Every fallible function in the crate returns [`Result`]. Variants name what
//! was found and what was expected, and keep the underlying error as their
//! `source`, so that a user sees both the imgdb-level meaning and the cause.

use std::path::PathBuf;

use crate::space::EmbeddingSpace;

/// The result type of every fallible imgdb function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in imgdb.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path does not exist and creation was not asked for.
    #[error("no imgdb database at {path}")]
    NotFound {
        /// The database directory.
        path: PathBuf,
    },

    /// The path exists but is not an imgdb database (no format marker).
    #[error(
        "{path} is not an imgdb database: it is not empty and has no `{marker}` file",
        marker = crate::FORMAT_MARKER_FILE
    )]
    NotADatabase {
        /// The directory that was opened.
        path: PathBuf,
    },

    /// Another process (or another handle in this process) has the database open.
    #[error("database {path} is in use by another process (sled holds its lock)")]
    InUse {
        /// The database directory.
        path: PathBuf,
        /// The locking error reported by the store.
        #[source]
        source: std::io::Error,
    },

    /// The database was written by a format version this build cannot read.
    #[error(
        "database {path} has format version {found}; this build of imgdb reads versions {oldest} to {newest}"
    )]
    UnsupportedFormat {
        /// The database directory.
        path: PathBuf,
        /// The version recorded in the database.
        found: u32,
        /// The oldest version this build reads.
        oldest: u32,
        /// The newest version this build reads and writes.
        newest: u32,
    },

    /// The database holds vectors of another embedding space than the one given.
    #[error(
        "database {path} holds embeddings of {stored}, but the model gives {given}; \
         use the model the database was built with, or `imgdb reindex` to re-encode it"
    )]
    SpaceMismatch {
        /// The database directory.
        path: PathBuf,
        /// The space recorded at creation.
        stored: Box<EmbeddingSpace>,
        /// The space of the caller.
        given: Box<EmbeddingSpace>,
    },

    /// A vector does not have the dimension of the database.
    #[error("vector has {found} dimensions, the database holds {expected}-dimensional vectors")]
    DimensionMismatch {
        /// The database's dimension.
        expected: usize,
        /// The vector's dimension.
        found: usize,
    },

    /// A vector that cannot be normalised: NaN, infinite or all zeros.
    #[error("invalid vector: {problem}")]
    InvalidVector {
        /// What is wrong with it.
        problem: VectorProblem,
    },

    /// A parameter is outside its valid range.
    #[error("invalid parameter `{name}` = {value}: {expected}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },

    /// A persisted file or value does not have the layout it must have.
    #[error("{path}: corrupt {what}: {problem}")]
    Corrupt {
        /// The file (or database) holding the value.
        path: PathBuf,
        /// Which persisted thing is corrupt.
        what: &'static str,
        /// What was wrong with it.
        problem: &'static str,
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

    /// The embedded store (sled) failed.
    #[error("store error in {path}")]
    Store {
        /// The database directory.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: sled::Error,
    },

    /// The HNSW library failed to write its graph.
    #[error("cannot write the index snapshot in {path}")]
    IndexDump {
        /// The snapshot directory.
        path: PathBuf,
        /// The HNSW library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A file system operation failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The image with this id does not exist.
    #[error("no image with id {id}")]
    UnknownImage {
        /// The id asked for.
        id: crate::ImageId,
    },
}

/// Why a vector was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VectorProblem {
    /// It contains NaN or an infinity.
    NotFinite,
    /// All of its components are zero, so it has no direction.
    Zero,
}

impl std::fmt::Display for VectorProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VectorProblem::NotFinite => "it contains NaN or infinite components",
            VectorProblem::Zero => "all of its components are zero",
        })
    }
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
