//! The daemon's configuration: a TOML file (every key optional, unknown
//! keys refused), with command-line flags over it. `schema/daemon.md`
//! documents each key and its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::DaemonError;

/// Everything the daemon runs with.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The database folder (default: `imgdb::resolve::database_path`).
    pub db: Option<PathBuf>,
    /// The model folder (default: `imgdb::resolve::model_folder`).
    pub model: Option<PathBuf>,
    /// `cpu`, `cuda`, `tensorrt` or `auto` (default: `IMGDB_DEVICE`, else cpu).
    pub device: Option<String>,
    /// The model's variant: `fp32`, `fp16`, `int8`, ..., or `auto` (default:
    /// `IMGDB_MODEL_VARIANT`, else fp32).
    pub model_variant: Option<String>,
    /// Let another variant of the database's model read and write it.
    pub accept_variant: bool,
    /// Where the HTTP API listens. Default `127.0.0.1:7474`; any address
    /// that is not loopback requires a token.
    pub listen: SocketAddr,
    /// The bearer token every request must carry (required off loopback).
    pub token: Option<String>,
    /// Folders to add to the watched roots (kept in the database, so a
    /// restart needs none).
    pub watch: Vec<PathBuf>,
    /// Origins allowed to call the API from a browser (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// Request limits.
    pub limits: Limits,
    /// How indexing runs.
    pub indexing: Indexing,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            db: None,
            model: None,
            device: None,
            model_variant: None,
            accept_variant: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 7474)),
            token: None,
            watch: Vec::new(),
            cors_origins: Vec::new(),
            limits: Limits::default(),
            indexing: Indexing::default(),
        }
    }
}

/// Limits on what a client may ask.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest request body (an upload included), in bytes.
    pub max_body_bytes: usize,
    /// The deepest nesting of a JSON body.
    pub max_json_depth: usize,
    /// The most results one query may ask for.
    pub max_k: usize,
    /// Seconds before a request is answered 408.
    pub request_timeout_secs: u64,
    /// Requests served at once; more wait.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 32 << 20,
            max_json_depth: 32,
            max_k: 1000,
            request_timeout_secs: 30,
            max_concurrent_requests: 64,
        }
    }
}

impl Limits {
    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// How the watcher and the indexer work.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Indexing {
    /// Milliseconds a path must be quiet before its events are queued (the
    /// watcher's debounce), and a file unmodified before it is read.
    pub settle_ms: u64,
    /// Queued events applied per batch.
    pub batch_events: usize,
    /// Decode threads (default: half the cores, at least one), so that
    /// queries keep cores of their own.
    pub workers: Option<usize>,
    /// The indexer's nice value (0–19): below queries in the OS scheduler.
    pub nice: i32,
    /// Seconds between checks that each root is still there (an unmounted
    /// disk), and between rescans of roots the OS cannot watch.
    pub root_check_secs: u64,
    /// Seconds between full rescans of a root the watcher could not watch
    /// (the inotify watch limit reached).
    pub rescan_secs: u64,
}

impl Default for Indexing {
    fn default() -> Indexing {
        Indexing {
            settle_ms: 1000,
            batch_events: 256,
            workers: None,
            nice: 10,
            root_check_secs: 5,
            rescan_secs: 300,
        }
    }
}

impl Indexing {
    /// The settle time.
    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Config, DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|source| DaemonError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| DaemonError::ConfigParse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Refuses what cannot run safely: an address off loopback without a
    /// token, an empty token, a nice value out of range.
    pub fn validate(&self) -> Result<(), DaemonError> {
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(DaemonError::EmptyToken);
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(DaemonError::TokenRequired {
                listen: self.listen,
            });
        }
        if !(0..=19).contains(&self.indexing.nice) {
            return Err(DaemonError::BadSetting {
                key: "indexing.nice",
                expected: "0 to 19",
            });
        }
        if self.indexing.batch_events == 0 {
            return Err(DaemonError::BadSetting {
                key: "indexing.batch_events",
                expected: "at least 1",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7474");
        let config: Config = toml::from_str(
            "listen = \"0.0.0.0:8080\"\ntoken = \"s3cret\"\nwatch = [\"/photos\"]\n\
             [limits]\nmax_k = 50\n[indexing]\nsettle_ms = 200\n",
        )
        .unwrap();
        assert_eq!(config.limits.max_k, 50);
        assert_eq!(
            config.limits.max_json_depth, 32,
            "the rest keeps its default"
        );
        assert_eq!(config.indexing.settle_ms, 200);
        config.validate().unwrap();
        let error = toml::from_str::<Config>("[limits]\nmax_kk = 5\n").unwrap_err();
        assert!(error.to_string().contains("max_kk"), "{error}");
    }

    #[test]
    fn the_sample_config_file_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/daemon/imgdb.toml"
        );
        let config = Config::load(Path::new(path)).unwrap();
        config.validate().unwrap();
        assert_eq!(config.watch, [PathBuf::from("/home/me/Pictures")]);
    }

    #[test]
    fn an_address_off_loopback_needs_a_token() {
        let config: Config = toml::from_str("listen = \"0.0.0.0:8080\"").unwrap();
        assert!(matches!(
            config.validate(),
            Err(DaemonError::TokenRequired { .. })
        ));
    }
}
