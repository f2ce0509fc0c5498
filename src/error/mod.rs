//! The errors of imgdb: one narrow error per layer (model, image, hub,
//! exchange, …) folded into the one [`Error`] every public function
//! returns, and [`ErrorKind`], the small stable classification callers
//! branch on.
//!
//! This is a bottom layer: it imports only the domain types (`types.rs`)
//! and the embedding space. Variants name what was found and what was
//! expected, and keep the underlying error as their `source`.

mod exchange;
mod hub;
mod image;
mod model;
mod store;

use std::path::PathBuf;

pub use exchange::{ExchangeError, ExchangeProblem, NpyProblem};
pub use hub::HubError;
pub use image::ImageError;
pub use model::{ModelError, ModelProblem, SearchedPlace, SearchedPlaces, TensorRole, TowerKind};
pub use store::{Corruption, SnapshotError, StoreError};

use crate::space::EmbeddingSpace;
use crate::types::{IndexMemory, ModelVariant};

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
    #[error("{path} is not an imgdb database: it is not empty and has no format marker")]
    NotADatabase {
        /// The directory that was opened.
        path: PathBuf,
    },

    /// Another process (or another handle in this process) has the database open.
    #[error("database {path} is in use by another process (it holds <db>/lock)")]
    InUse {
        /// The database directory.
        path: PathBuf,
        /// The locking error of the database's lock file.
        #[source]
        source: std::io::Error,
    },

    /// A reindex of the database is under way in this process.
    #[error("database {path} is being re-indexed: {during}")]
    Reindexing {
        /// The database directory.
        path: PathBuf,
        /// What could not be done meanwhile.
        during: ReindexConflict,
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

    /// The caller asked for an index memory mode other than the one the
    /// database was created with (it is chosen at creation).
    #[error(
        "database {path} was created with the {recorded} index memory mode, not {requested}; \
         the mode is chosen when a database is created (export and import into a new one to change it)"
    )]
    IndexMemoryMismatch {
        /// The database directory.
        path: PathBuf,
        /// The mode recorded at creation.
        recorded: IndexMemory,
        /// The mode asked for.
        requested: IndexMemory,
    },

    /// The database holds vectors of the caller's model, but made by another
    /// variant of its weights (fp32 and int8, say): close, not equal.
    #[error(
        "database {path} holds embeddings of the {stored} weights of this model, but the \
         encoder runs its {given} weights; load the {stored} variant, accept the mix \
         (`--accept-variant`: vectors of the two are close, not equal), or `imgdb reindex`"
    )]
    VariantMismatch {
        /// The database directory.
        path: PathBuf,
        /// The variant recorded at creation.
        stored: ModelVariant,
        /// The caller's variant.
        given: ModelVariant,
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

    /// The database directory is damaged (its marker or what the store
    /// records about the database).
    #[error("{path}: corrupt {what}: {problem}")]
    Corrupt {
        /// The file or database concerned.
        path: PathBuf,
        /// Which persisted thing is corrupt.
        what: &'static str,
        /// What was wrong with it.
        problem: Corruption,
    },

    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// An index snapshot could not be written.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),

    /// A file system operation failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Too little free space on the disk to open a database for writing:
    /// refused before anything is written, so that a full disk cannot
    /// leave the store half-written.
    #[error(
        "only {available} bytes are free on the disk of {path}, below the {required} a database needs to open; free some space and try again"
    )]
    LowDiskSpace {
        /// The database.
        path: PathBuf,
        /// The bytes free.
        available: u64,
        /// The margin asked for.
        required: u64,
    },

    /// The image with this id does not exist.
    #[error("no image with id {id}")]
    UnknownImage {
        /// The id asked for.
        id: crate::ImageId,
    },

    /// An image with this id already exists.
    #[error("an image with id {id} already exists")]
    ImageExists {
        /// The id.
        id: crate::ImageId,
    },

    /// A model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] ModelError),

    /// An image file cannot be used.
    #[error("image {}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ImageError,
    },

    /// A model download failed.
    #[error(transparent)]
    Hub(#[from] HubError),

    /// An export or import failed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

/// What a reindex under way stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReindexConflict {
    /// A write: writes are refused until the new database is swapped in.
    Write,
    /// A second reindex.
    SecondReindex,
    /// The swap: calls still held the old database when it was due (an
    /// open `records()` iterator, say); the old database was kept.
    SwapBlocked,
}

impl std::fmt::Display for ReindexConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReindexConflict::Write => "writes are refused until the new database is swapped in",
            ReindexConflict::SecondReindex => "another reindex is under way",
            ReindexConflict::SwapBlocked => {
                "the new database could not be swapped in: calls held the old one \
                 (an open records() iterator?); the old database was kept"
            }
        })
    }
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

/// What kind of failure an [`Error`] is: a small, stable set that callers
/// branch on (the CLI maps it to exit codes, the daemon to HTTP statuses),
/// instead of matching variants or messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// What was named does not exist: a database, an image, a model, a file.
    NotFound,
    /// The caller's input is wrong: a parameter, a vector, an argument.
    InvalidInput,
    /// The database is open elsewhere; trying again later may work.
    InUse,
    /// The request contradicts what exists: another model's database, an
    /// id that is taken.
    Conflict,
    /// Persisted data or a downloaded file is damaged.
    Corrupt,
    /// A format or version this build does not read, or a provider it
    /// cannot start.
    Unsupported,
    /// The input is over a limit (an image's pixels, say).
    TooLarge,
    /// The model or ONNX Runtime cannot be used.
    Model,
    /// The file system failed (a full disk, permissions).
    Io,
    /// A download failed.
    Network,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::NotFound,
        ErrorKind::InvalidInput,
        ErrorKind::InUse,
        ErrorKind::Conflict,
        ErrorKind::Corrupt,
        ErrorKind::Unsupported,
        ErrorKind::TooLarge,
        ErrorKind::Model,
        ErrorKind::Io,
        ErrorKind::Network,
    ];

    /// Every kind's name, comma-separated, for messages that list them.
    pub fn names() -> String {
        ErrorKind::ALL.map(|kind| kind.name()).join(", ")
    }

    /// The kind's persisted code (in failure records). Codes are forever: a
    /// new kind takes a new code.
    pub const fn code(self) -> u8 {
        match self {
            ErrorKind::NotFound => 0,
            ErrorKind::InvalidInput => 1,
            ErrorKind::InUse => 2,
            ErrorKind::Conflict => 3,
            ErrorKind::Corrupt => 4,
            ErrorKind::Unsupported => 5,
            ErrorKind::TooLarge => 6,
            ErrorKind::Model => 7,
            ErrorKind::Io => 8,
            ErrorKind::Network => 9,
        }
    }

    /// The kind with this persisted code.
    pub fn from_code(code: u8) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The kind with this [name](Self::name).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A short lowercase name (`not_found`, `in_use`, …) for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::InUse => "in_use",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Model => "model",
            ErrorKind::Io => "io",
            ErrorKind::Network => "network",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// Persisted as its code (see `ImageFormat` in types.rs for why not derived).
impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<ErrorKind, D::Error> {
        let code = u8::deserialize(d)?;
        ErrorKind::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error kind code {code}")))
    }
}

/// Why a file could not be indexed: the kind of failure and what went wrong,
/// without the file's path (which the record or report already holds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureReason {
    /// The kind, for filtering (`imgdb failures --kind unsupported`).
    pub kind: ErrorKind,
    /// The error and its causes, `: `-separated.
    pub message: String,
}

impl FailureReason {
    /// The reason `error` gives for the file it concerns.
    pub fn of(error: &Error) -> FailureReason {
        let messages = match error {
            // Their own message is only the path: the causes say what happened.
            Error::Image { source, .. } => messages(source),
            Error::Io { source, .. } => messages(source),
            other => other.messages(),
        };
        FailureReason {
            kind: error.kind(),
            message: messages.join(": "),
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl Error {
    /// The kind of failure, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::UnknownImage { .. } => ErrorKind::NotFound,
            Error::NotADatabase { .. }
            | Error::DimensionMismatch { .. }
            | Error::InvalidVector { .. }
            | Error::InvalidParameter { .. } => ErrorKind::InvalidInput,
            Error::InUse { .. } | Error::Reindexing { .. } => ErrorKind::InUse,
            Error::SpaceMismatch { .. }
            | Error::IndexMemoryMismatch { .. }
            | Error::VariantMismatch { .. }
            | Error::ImageExists { .. } => ErrorKind::Conflict,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::UnsupportedFormat { .. } => ErrorKind::Unsupported,
            Error::Io { .. } | Error::LowDiskSpace { .. } => ErrorKind::Io,
            Error::Store(e) => e.kind(),
            Error::Snapshot(e) => e.kind(),
            Error::Model(e) => e.kind(),
            Error::Image { source, .. } => source.kind(),
            Error::Hub(e) => e.kind(),
            Error::Exchange(e) => e.kind(),
        }
    }

    /// The error's message, then each cause's, outermost first. A cause
    /// whose message its parent already ends with is left out (several
    /// decoders print their source inside their own message).
    pub fn messages(&self) -> Vec<String> {
        messages(self)
    }

    /// [`messages`](Self::messages) on one line, `: `-separated (for logs
    /// and fallback notes, where there is no room for a list).
    pub fn chain(&self) -> String {
        self.messages().join(": ")
    }

    /// Wraps an image problem with the file it concerns.
    pub(crate) fn image(path: impl Into<PathBuf>) -> impl FnOnce(ImageError) -> Error {
        let path = path.into();
        move |source| Error::Image { path, source }
    }

    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// The messages of `error` and its causes (see [`Error::messages`]).
pub(crate) fn messages(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.last().is_some_and(|last| last.ends_with(&text)) {
            out.push(text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn messages_skip_causes_their_parent_already_printed() {
        let error = Error::Io {
            path: "/x".into(),
            source: std::io::Error::other(Repeats(std::io::Error::other("inner"))),
        };
        assert_eq!(error.chain(), "I/O error on /x: outer: inner");
        assert_eq!(error.kind(), ErrorKind::Io);
    }

    #[test]
    fn image_errors_keep_the_path_out_of_their_message() {
        let error = Error::image("/photos/a.gif")(ImageError::Empty);
        assert_eq!(
            error.messages(),
            ["image /photos/a.gif", "image has no pixels"]
        );
        assert_eq!(error.kind(), ErrorKind::Corrupt);
    }
}
