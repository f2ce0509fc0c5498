//! Ingest: keeping a database equal to folders of images.
//!
//! A crossbeam pipeline with bounded queues, so memory stays flat however
//! large the folder:
//!
//! ```text
//! walker ──jobs──▶ N workers ──prepared──▶ encoder ──┐
//!                     │  (stat, hash, decode,          ├──▶ writer (this thread)
//!                     │   preprocess)                  │     one store batch per
//!                     └──────── skips, links, failures ┘     `write_batch` files
//! ```
//!
//! - A file whose path, size and mtime are indexed is skipped without being
//!   read; a file that failed before is retried only when it changes.
//! - Content already indexed (a copy, or a moved file) is linked to its image
//!   without decoding: one vector, several paths, the same id.
//! - Files gone from an ingested folder are removed once the walk completed.
//! - Every batch is durable when written: a killed ingest loses nothing it
//!   wrote and the next run resumes (unchanged files are skipped).

mod pipeline;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::db::Db;
use crate::error::Result;
use crate::model::Encoder;
use crate::store::record::ImageId;

impl Db {
    /// Brings the database up to date with `roots` (folders or files):
    /// new and changed images are encoded, copies and moves are linked,
    /// vanished files removed. See the module documentation.
    pub fn ingest(
        &self,
        encoder: &Encoder,
        roots: &[PathBuf],
        options: &IngestOptions,
        observer: &mut dyn IngestObserver,
    ) -> Result<IngestReport> {
        pipeline::ingest(self, encoder, roots, options, observer)
    }
}

/// How an ingest runs. Defaults: all cores decode, the encoder's batch size,
/// 64 files per store batch, hidden files and symbolic links skipped,
/// vanished files removed, exact (reference) decoding.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Decode threads (default: the available cores).
    pub workers: usize,
    /// Images per encoder run (default: the encoder's batch size).
    pub batch_size: Option<usize>,
    /// Files per store batch (and so per fsync).
    pub write_batch: usize,
    /// Index files and folders whose names start with a dot.
    pub include_hidden: bool,
    /// Follow symbolic links while walking.
    pub follow_links: bool,
    /// Remove indexed files that are gone from the walked folders.
    pub remove_missing: bool,
    /// Decode large JPEGs at a reduced DCT scale (faster, no longer equal to
    /// the reference; see `Preprocessor::with_dct_scaling`), with this margin.
    pub dct_scaling: Option<u32>,
    /// Set from another thread (a Ctrl-C handler) to stop cleanly: what was
    /// written stays, the next run resumes.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for IngestOptions {
    fn default() -> IngestOptions {
        IngestOptions {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_size: None,
            write_batch: 64,
            include_hidden: false,
            follow_links: false,
            remove_missing: true,
            dct_scaling: None,
            cancel: None,
        }
    }
}

/// What became of one file.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FileOutcome {
    /// Indexed before with the same size and mtime: not read.
    Unchanged,
    /// Failed before and unchanged since: not retried.
    StillFailing,
    /// Decoded, encoded and stored.
    Indexed(ImageId),
    /// Its content was indexed already: linked to that image.
    Linked(ImageId),
    /// Could not be indexed; recorded as a failure.
    Failed(String),
    /// Gone from its folder: removed from the database.
    Removed,
}

/// A progress event. Events arrive on the thread that called `ingest`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum IngestEvent {
    /// The walk has found this many image files so far (`done`: all).
    Found {
        /// Files found.
        files: u64,
        /// Whether the walk is over.
        done: bool,
    },
    /// A file is settled (written to the store, or skipped).
    File {
        /// The canonical path.
        path: PathBuf,
        /// What became of it.
        outcome: FileOutcome,
    },
}

/// Receives progress events.
pub trait IngestObserver {
    /// One event.
    fn event(&mut self, event: &IngestEvent);
}

impl IngestObserver for () {
    fn event(&mut self, _: &IngestEvent) {}
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct IngestReport {
    /// Image files found by the walk.
    pub found: u64,
    /// Skipped: indexed and unchanged, or failed and unchanged.
    pub unchanged: u64,
    /// Decoded, encoded and stored.
    pub indexed: u64,
    /// Linked to an image with the same content.
    pub linked: u64,
    /// Removed because gone.
    pub removed: u64,
    /// Files that failed (path, reason).
    pub failures: Vec<(PathBuf, String)>,
    /// Stopped by the cancel flag before the end.
    pub cancelled: bool,
    /// Wall time.
    pub elapsed: Duration,
    /// Time spent inside the model.
    pub encode_time: Duration,
}

/// Whether a walked entry is hidden (its name starts with a dot), not
/// counting the roots themselves.
pub(crate) fn is_hidden(entry: &walkdir::DirEntry) -> bool {
    entry.depth() > 0
        && entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.'))
}

/// The absolute, symlink-resolved form of a path, as the database stores it.
pub fn canonical(path: &Path) -> std::io::Result<PathBuf> {
    path.canonicalize()
}
