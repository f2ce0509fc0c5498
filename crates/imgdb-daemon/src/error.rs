//! The daemon's errors: what stops it from starting or running. Errors of
//! single requests are answered to their client (`api::ApiError`) and
//! never stop it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the daemon cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The library failed (opening the database, loading the model…).
    #[error(transparent)]
    Imgdb(#[from] imgdb::Error),
    /// The config file cannot be read.
    #[error("cannot read the config file {}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the documented keys.
    #[error("config file {}", path.display())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A setting is out of its range.
    #[error("the setting {key} must be {expected}")]
    BadSetting {
        /// The key.
        key: &'static str,
        /// Its range.
        expected: &'static str,
    },
    /// An address off loopback without a token.
    #[error(
        "listening on {listen} (not loopback) requires a token: give --token or `token` in the config file"
    )]
    TokenRequired {
        /// The address.
        listen: SocketAddr,
    },
    /// An empty token would let anyone in.
    #[error("the token is empty")]
    EmptyToken,
    /// A folder to watch is not there.
    #[error("cannot watch {}", path.display())]
    Root {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP listener or the runtime failed.
    #[error("cannot serve on {listen}")]
    Serve {
        /// The address.
        listen: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the address file in the database folder failed.
    #[error("cannot write {}", path.display())]
    AddressFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
