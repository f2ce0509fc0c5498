//! The folders imgdb keeps files of its own in, for every layer that needs
//! one: the user cache (pulled models, ONNX Runtime, TensorRT engines,
//! model-file digests). `resolve.rs` builds its defaults on it.

use std::path::PathBuf;

/// Names the cache folder (models, ONNX Runtime, TensorRT engines, model
/// digests).
pub const CACHE_ENV: &str = "IMGDB_CACHE";

/// The value of an environment variable, unless unset or empty.
pub(crate) fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The user's home, when known.
pub(crate) fn home() -> Option<PathBuf> {
    env_path("HOME")
}

/// The cache folder: `$IMGDB_CACHE`, else `$XDG_CACHE_HOME/imgdb`, else
/// `~/.cache/imgdb`.
pub fn cache_dir() -> PathBuf {
    env_path(CACHE_ENV)
        .or_else(|| env_path("XDG_CACHE_HOME").map(|d| d.join("imgdb")))
        .or_else(|| home().map(|h| h.join(".cache").join("imgdb")))
        .unwrap_or_else(|| PathBuf::from(".imgdb-cache"))
}
