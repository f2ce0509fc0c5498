//! Errors of fetching a model from the Hugging Face hub.

use super::ErrorKind;

/// A model download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The hub could not be reached or refused a file.
    #[error("cannot download {file} of {repo} from the hub (HF_ENDPOINT sets another hub)")]
    Download {
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
    Checksum {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// The checksum the hub names the file by.
        expected: String,
        /// The checksum of what arrived.
        actual: String,
    },
}

impl HubError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HubError::Download { .. } => ErrorKind::Network,
            HubError::Checksum { .. } => ErrorKind::Corrupt,
        }
    }
}
