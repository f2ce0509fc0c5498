//! What the bench binaries share: where the repository's fixtures are.

use std::path::PathBuf;

/// The repository root: the working directory when it holds `fixtures/`
/// (a prebuilt bench binary run on another machine, `scripts/gpu-check.sh`),
/// else the checkout the binary was built from.
pub fn repo_root() -> PathBuf {
    std::env::current_dir()
        .ok()
        .filter(|dir| dir.join("fixtures").is_dir())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
