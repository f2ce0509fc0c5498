//! The one error type of imgdb.
//!
//! Every fallible function in the crate returns [`Result`]. Variants name what
//! was found and what was expected, and keep the underlying error as their
//! `source`, so that a user sees both the imgdb-level meaning and the cause.

use std::path::PathBuf;

use crate::model::{Device, Layout, SearchedPlaces};
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

    /// An image with this id already exists.
    #[error("an image with id {id} already exists")]
    ImageExists {
        /// The id.
        id: crate::ImageId,
    },

    /// A `.npy` file could not be read or written.
    #[error("{path}: cannot read or write .npy")]
    Npy {
        /// The file.
        path: PathBuf,
        /// ndarray-npy's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Downloading from the Hugging Face hub failed.
    #[error("cannot download {file} of {repo} from the hub (HF_ENDPOINT sets another hub)")]
    Hub {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// hf-hub's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A downloaded file does not match its checksum; it was deleted.
    #[error(
        "{file} of {repo} does not match its checksum (expected {expected}, got {actual}); it was deleted"
    )]
    HubChecksum {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// The checksum the hub names the file by.
        expected: String,
        /// The checksum of what arrived.
        actual: String,
    },

    /// No ONNX Runtime library was found.
    #[error("ONNX Runtime {version} was not found; looked in:{searched}\nto fix: {fix}")]
    RuntimeNotFound {
        /// The version needed.
        version: &'static str,
        /// Every place tried, with what was there.
        searched: SearchedPlaces,
        /// The command that installs it.
        fix: &'static str,
    },

    /// The ONNX Runtime library could not be loaded (wrong file or version).
    #[error("cannot load ONNX Runtime from {path}")]
    RuntimeLoad {
        /// The library file.
        path: PathBuf,
        /// ort's error.
        #[source]
        source: ort::LoadDynamicError,
    },

    /// ONNX Runtime failed on a model file.
    #[error("ONNX Runtime failed on {path}")]
    Onnx {
        /// The model file (or runtime library).
        path: PathBuf,
        /// ort's error.
        #[source]
        source: ort::Error,
    },

    /// The execution provider asked for cannot start here.
    #[error(
        "execution provider `{device}` could not start; GPU providers need the onnxruntime-gpu library \
         (scripts/fetch-onnxruntime.sh --gpu) with CUDA 13 and cuDNN 9; or use --device cpu, or auto"
    )]
    Provider {
        /// The device asked for.
        device: Device,
        /// ort's error.
        #[source]
        source: ort::Error,
    },

    /// No model folder was given and none was pulled.
    #[error(
        "no model: give a model folder (a CLIP model in ONNX form, see schema/model.md; \
         `--model DIR` or IMGDB_MODEL), or run `imgdb model pull` to fetch one into {}",
        cache.display()
    )]
    NoModel {
        /// The model cache that was looked in.
        cache: PathBuf,
    },

    /// A model folder is incomplete or inconsistent.
    #[error("model {path}: {problem}")]
    Model {
        /// The folder or file concerned.
        path: PathBuf,
        /// What is wrong.
        problem: ModelProblem,
    },

    /// The encoder was loaded without the tower this call needs
    /// (see [`EncoderOptions::towers`](crate::EncoderOptions::towers)).
    #[error("the {tower} tower was not loaded (EncoderOptions::towers)")]
    TowerNotLoaded {
        /// The tower the call needs.
        tower: TowerKind,
    },

    /// A model configuration file is not valid JSON.
    #[error("model configuration {path} is not valid JSON")]
    ModelConfig {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The tokenizer failed to load or to encode.
    #[error("tokenizer {path} failed")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers crate's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A file that is not an image imgdb reads.
    #[error("{path}: not a supported image{}", format.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    UnsupportedImage {
        /// The file.
        path: PathBuf,
        /// The format recognised, if any.
        format: Option<String>,
    },

    /// An image over the decode limits (a decompression bomb, say).
    #[error("{path}: image of {width}x{height} pixels is over the limit of {max_pixels} pixels")]
    ImageTooLarge {
        /// The file.
        path: PathBuf,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The limit.
        max_pixels: u64,
    },

    /// An image without pixels.
    #[error("{path}: image has no pixels")]
    EmptyImage {
        /// The file.
        path: PathBuf,
    },

    /// An image that does not decode.
    #[error("{path}: cannot decode image")]
    ImageDecode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },

    /// A JPEG that libjpeg cannot decode.
    #[error("{path}: cannot decode JPEG: {problem}")]
    JpegDecode {
        /// The file.
        path: PathBuf,
        /// libjpeg's message.
        problem: String,
    },
}

/// One of a CLIP model's two towers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TowerKind {
    /// The image tower.
    Image,
    /// The text tower.
    Text,
}

impl std::fmt::Display for TowerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TowerKind::Image => "image",
            TowerKind::Text => "text",
        })
    }
}

/// Which tensor of a model a problem concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorRole {
    /// The image tower's input.
    ImageInput,
    /// The image tower's output.
    ImageOutput,
    /// The text tower's token input.
    TextInput,
    /// The text tower's output.
    TextOutput,
}

impl std::fmt::Display for TensorRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TensorRole::ImageInput => "image input",
            TensorRole::ImageOutput => "image output",
            TensorRole::TextInput => "text input",
            TensorRole::TextOutput => "text output",
        })
    }
}

/// What is wrong with a model folder.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ModelProblem {
    /// The path is not a folder.
    NotAFolder,
    /// No known layout matches the files.
    UnknownLayout {
        /// The entries found.
        found: Vec<String>,
    },
    /// A file the layout needs is missing.
    MissingFile {
        /// The layout recognised.
        layout: Layout,
    },
    /// A configuration key is missing.
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A configuration key has a value imgdb cannot use.
    BadKey {
        /// The key.
        key: &'static str,
    },
    /// No tensor has a name imgdb knows for this role.
    UnknownTensor {
        /// The role.
        role: TensorRole,
        /// The names the model has.
        found: Vec<String>,
        /// The names accepted.
        accepted: Vec<String>,
    },
    /// The model has inputs imgdb cannot feed.
    UnexpectedInputs {
        /// The inputs the model has.
        found: Vec<String>,
        /// What was expected.
        expected: &'static str,
    },
    /// A tensor has the wrong type or shape.
    WrongTensor {
        /// The tensor.
        name: String,
        /// Its type and shape.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An output is not a `[batch, dim]` matrix.
    WrongOutputShape {
        /// Its shape.
        found: Vec<usize>,
    },
    /// The towers give vectors of different dimensions.
    TowerMismatch {
        /// The image tower's dimension.
        image: usize,
        /// The text tower's dimension.
        text: usize,
    },
}

impl std::fmt::Display for ModelProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelProblem::NotAFolder => f.write_str("not a folder"),
            ModelProblem::UnknownLayout { found } => write!(
                f,
                "not a model folder: expected onnx/vision_model.onnx + onnx/text_model.onnx (Hugging Face), \
                 a vision and a text folder with model.onnx (Qdrant), or visual/ + textual/ (Immich); found {found:?}"
            ),
            ModelProblem::MissingFile { layout } => {
                write!(f, "missing; the {layout} layout needs it")
            }
            ModelProblem::MissingKey { key } => write!(f, "missing key `{key}`"),
            ModelProblem::BadKey { key } => write!(f, "key `{key}` has a value imgdb cannot use"),
            ModelProblem::UnknownTensor {
                role,
                found,
                accepted,
            } => {
                write!(
                    f,
                    "no {role} tensor: the model has {found:?}, imgdb accepts {accepted:?}"
                )
            }
            ModelProblem::UnexpectedInputs { found, expected } => {
                write!(f, "inputs {found:?}, but imgdb feeds {expected}")
            }
            ModelProblem::WrongTensor {
                name,
                found,
                expected,
            } => {
                write!(f, "tensor `{name}` is {found}, expected {expected}")
            }
            ModelProblem::WrongOutputShape { found } => {
                write!(f, "output of shape {found:?}, expected [batch, dim]")
            }
            ModelProblem::TowerMismatch { image, text } => write!(
                f,
                "the towers disagree: images give {image}-dimensional vectors, texts {text}-dimensional"
            ),
        }
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

impl Error {
    /// The kind of failure, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::UnknownImage { .. } | Error::NoModel { .. } => {
                ErrorKind::NotFound
            }
            Error::NotADatabase { .. }
            | Error::DimensionMismatch { .. }
            | Error::InvalidVector { .. }
            | Error::InvalidParameter { .. }
            | Error::TowerNotLoaded { .. } => ErrorKind::InvalidInput,
            Error::InUse { .. } => ErrorKind::InUse,
            Error::SpaceMismatch { .. } | Error::ImageExists { .. } => ErrorKind::Conflict,
            Error::Corrupt { .. }
            | Error::Decode { .. }
            | Error::HubChecksum { .. }
            | Error::EmptyImage { .. }
            | Error::ImageDecode { .. }
            | Error::JpegDecode { .. } => ErrorKind::Corrupt,
            Error::UnsupportedFormat { .. }
            | Error::UnsupportedImage { .. }
            | Error::Provider { .. } => ErrorKind::Unsupported,
            Error::ImageTooLarge { .. } | Error::Encode { .. } => ErrorKind::TooLarge,
            Error::RuntimeNotFound { .. }
            | Error::RuntimeLoad { .. }
            | Error::Onnx { .. }
            | Error::Model { .. }
            | Error::ModelConfig { .. }
            | Error::Tokenizer { .. } => ErrorKind::Model,
            Error::Store { source, .. } => match source {
                sled::Error::Io(_) => ErrorKind::Io,
                sled::Error::Corruption { .. } => ErrorKind::Corrupt,
                sled::Error::Unsupported(_) => ErrorKind::Unsupported,
                _ => ErrorKind::Io,
            },
            Error::IndexDump { .. } | Error::Io { .. } | Error::Npy { .. } => ErrorKind::Io,
            Error::Hub { .. } => ErrorKind::Network,
        }
    }

    /// The error and all its causes on one line, `: `-separated (for failure
    /// records and fallback notes, where there is no room for a list).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
