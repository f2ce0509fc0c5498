//! Opening a database of an older format: each step rewrites what changed
//! between two versions (`schema/store.md`, "Version history"), then the
//! format marker is rewritten.
//!
//! The store records its own format version inside the same transaction
//! that rewrites the data, so it is the truth: a crash before the marker is
//! rewritten leaves a store of the new version under an old marker, which
//! the next open recognises and finishes.

use std::path::Path;

use tracing::info;

use super::marker::{self, FORMAT_VERSION};
use crate::error::{Corruption, Error, Result};
use crate::fsio::Storage;
use crate::store::Store;

/// Brings the database at `root` (marker version `marker_version`) to
/// [`FORMAT_VERSION`]; returns the version it is at.
pub(crate) fn upgrade(
    storage: &dyn Storage,
    root: &Path,
    store: &Store,
    marker_version: u32,
) -> Result<u32> {
    let stored = store.format_version()?;
    let mismatch = || Error::Corrupt {
        path: root.to_path_buf(),
        what: "database",
        problem: Corruption::VersionMismatch,
    };
    let mut version = match stored {
        Some(v) if v == marker_version => v,
        // A migration whose marker rewrite did not happen: the store is the
        // truth, and the steps after it (and the marker) follow.
        Some(v) if (marker_version..=FORMAT_VERSION).contains(&v) => v,
        _ => return Err(mismatch()),
    };
    if version == 1 {
        let rewritten = store.migrate_from_v1(2)?;
        version = 2;
        info!(
            "{}: migrated format 1 to 2 ({rewritten} failure records)",
            root.display()
        );
    }
    if version == 2 {
        // Only new image format codes: nothing to rewrite.
        store.record_format_version(3)?;
        version = 3;
        info!("{}: migrated format 2 to 3", root.display());
    }
    if version == 3 {
        // Only new trees (watched roots, the event queue), created empty.
        store.record_format_version(4)?;
        version = 4;
        info!("{}: migrated format 3 to 4", root.display());
    }
    if version == 4 {
        // The embedding space gains its model variant: fp32 for every
        // database written before variants existed.
        store.migrate_space_to_v5()?;
        version = 5;
        info!("{}: migrated format 4 to 5", root.display());
    }
    if version == 5 {
        // Only a new tree (the sources of imported rows), created empty.
        store.record_format_version(6)?;
        version = 6;
        info!("{}: migrated format 5 to 6", root.display());
    }
    debug_assert_eq!(version, FORMAT_VERSION, "a migration step is missing");
    if version != marker_version {
        marker::write(storage, root, version)?;
    }
    Ok(version)
}
