//! Errors of export and import (clip-retrieval's layout).

use std::path::PathBuf;

use super::ErrorKind;

/// An export could not be written or an import read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// A `.npy` file could not be read or written.
    #[error("{path}: cannot read or write .npy")]
    Npy {
        /// The file.
        path: PathBuf,
        /// ndarray-npy's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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

impl ExchangeError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExchangeError::Npy { .. } => ErrorKind::Io,
            ExchangeError::Json { .. } | ExchangeError::Inconsistent { .. } => ErrorKind::Corrupt,
        }
    }
}
