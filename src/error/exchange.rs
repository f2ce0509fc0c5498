//! Errors of export and import (clip-retrieval's layout).

use std::path::PathBuf;

use super::{ErrorKind, VectorProblem};

/// An export could not be written or an import read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// A `.npy` file's header could not be read.
    #[error("{path}: not a readable .npy header")]
    Npy {
        /// The file.
        path: PathBuf,
        /// ndarray-npy's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A `.npy` file is not the `[rows, dim]` float32 or float16 array
    /// an export holds.
    #[error("{path}: {problem}")]
    NpyLayout {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: NpyProblem,
    },

    /// The vectors of a shard are not of the model's dimension: they were
    /// made by another model (name the model of their space).
    #[error(
        "{path}: vectors of dimension {found}, but the model {model} makes vectors of dimension \
         {expected}; import needs the model whose space they are in"
    )]
    Dimension {
        /// The `.npy` file.
        path: PathBuf,
        /// Its second axis.
        found: usize,
        /// The model's dimension.
        expected: usize,
        /// The model's id.
        model: String,
    },

    /// A row's vector cannot be stored (NaN, an infinity, or all zeros).
    #[error("{path}: row {row}: {problem}")]
    BadVector {
        /// The `.npy` file.
        path: PathBuf,
        /// The row (from 0).
        row: u64,
        /// What is wrong with it.
        problem: VectorProblem,
    },

    /// A Parquet metadata file could not be read or written.
    #[error("{path}: cannot read or write Parquet")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The parquet crate's error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// The Parquet reader panicked on a metadata file (a file it cannot
    /// read): contained, and reported as this file's error.
    #[error("{path}: the Parquet reader failed on this file: {message}")]
    ParquetPanicked {
        /// The file.
        path: PathBuf,
        /// The panic's message.
        message: String,
    },

    /// A metadata file lacks every column that could name its rows.
    #[error("{path}: no column `image_path`, `url` or `key` to name the rows by")]
    NoIdentityColumn {
        /// The metadata file.
        path: PathBuf,
    },

    /// A metadata row has no value that names it (`image_path`, `url` and
    /// `key` all null).
    #[error("{path}: row {row} has no image_path, url or key")]
    NoIdentity {
        /// The metadata file.
        path: PathBuf,
        /// The row (from 0).
        row: u64,
    },

    /// A metadata value is not of its column's type.
    #[error("{path}: row {row}: column `{column}` is not {expected}")]
    ColumnType {
        /// The metadata file.
        path: PathBuf,
        /// The row (from 0).
        row: u64,
        /// The column.
        column: String,
        /// What it must hold.
        expected: &'static str,
    },

    /// An image's path is not UTF-8, which a Parquet string column cannot
    /// hold.
    #[error("{path}: not UTF-8, cannot be exported")]
    NotUtf8 {
        /// The image's path.
        path: PathBuf,
    },

    /// A manifest or metadata line is not the JSON it must be.
    #[error("{path}: not valid export JSON")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The files of an export do not fit together.
    #[error("{path}: {problem}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        problem: ExchangeProblem,
    },
}

/// What does not fit together in an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeProblem {
    /// The manifest's fingerprint is not 64 hexadecimal digits.
    BadFingerprint,
    /// The manifest names a model variant imgdb does not know.
    BadVariant,
    /// The manifest is of an export format this build does not read.
    NewerFormat {
        /// The manifest's version.
        found: u32,
        /// The newest this build reads.
        newest: u32,
    },
    /// A shard has fewer vectors than metadata lines.
    FewerVectors,
    /// A shard has fewer metadata lines than vectors.
    FewerLines,
}

impl std::fmt::Display for ExchangeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExchangeProblem::BadFingerprint => {
                "the manifest's fingerprint is not 64 hexadecimal digits"
            }
            ExchangeProblem::BadVariant => "the manifest names an unknown model variant",
            ExchangeProblem::NewerFormat { found, newest } => {
                return write!(
                    f,
                    "export format {found} is newer than this build reads ({newest}); upgrade imgdb"
                );
            }
            ExchangeProblem::FewerVectors => "fewer vectors than metadata lines",
            ExchangeProblem::FewerLines => "fewer metadata lines than vectors",
        })
    }
}

/// What is wrong with the layout of a `.npy` file of vectors.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NpyProblem {
    /// Its element type is not float32 or float16 (the descriptor found).
    Dtype(String),
    /// Its array is stored in Fortran (column-major) order.
    FortranOrder,
    /// Its array is not two-dimensional (the shape found).
    Shape(Vec<usize>),
    /// The file's length is not its header's plus `rows × dim` elements.
    Length {
        /// The length the header implies.
        expected: u64,
        /// The file's length.
        found: u64,
    },
}

impl std::fmt::Display for NpyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NpyProblem::Dtype(found) => {
                write!(f, "elements of type {found}, not float32 or float16")
            }
            NpyProblem::FortranOrder => f.write_str("Fortran order: rows must be contiguous"),
            NpyProblem::Shape(shape) => write!(f, "shape {shape:?}, not [rows, dim]"),
            NpyProblem::Length { expected, found } => {
                write!(f, "{found} bytes where the header implies {expected}")
            }
        }
    }
}

impl ExchangeError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExchangeError::Npy { .. } => ErrorKind::Io,
            ExchangeError::Json { .. }
            | ExchangeError::Inconsistent { .. }
            | ExchangeError::NpyLayout { .. }
            | ExchangeError::Parquet { .. }
            | ExchangeError::ParquetPanicked { .. }
            | ExchangeError::NoIdentityColumn { .. }
            | ExchangeError::NoIdentity { .. }
            | ExchangeError::ColumnType { .. } => ErrorKind::Corrupt,
            ExchangeError::Dimension { .. }
            | ExchangeError::BadVector { .. }
            | ExchangeError::NotUtf8 { .. } => ErrorKind::InvalidInput,
        }
    }
}
