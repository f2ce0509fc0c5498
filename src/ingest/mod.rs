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
//! - A watcher's events ([`FileEvent`]) go through the same stages, fed
//!   from the events' paths instead of a walk of the roots
//!   ([`Db::apply_events`], `events.rs`).

mod events;
mod pipeline;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use events::FileEvent;

use crate::cancel::CancelToken;
use crate::db::Db;
use crate::error::{FailureReason, Result};
use crate::model::Encoder;
use crate::types::ImageId;

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

    /// Applies a file system watcher's events without walking any root:
    /// created and changed files are indexed as by [`ingest`](Db::ingest),
    /// deleted ones removed, renamed ones keep their image (id and vector)
    /// when their size and mtime did not change. Folders in events are
    /// walked (created, renamed) or removed with everything under them
    /// (deleted). See [`FileEvent`] and the `events` module for the rules.
    pub fn apply_events(
        &self,
        encoder: &Encoder,
        events: &[FileEvent],
        options: &IngestOptions,
        observer: &mut dyn IngestObserver,
    ) -> Result<IngestReport> {
        events::apply(self, encoder, events, options, observer)
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
    /// Remove indexed files that are gone from the walked folders (the
    /// roots of an ingest, the folders named by file events).
    pub remove_missing: bool,
    /// Decode large JPEGs at a reduced DCT scale (faster, no longer equal to
    /// the reference; see `Preprocessor::with_dct_scaling`), with this margin.
    pub dct_scaling: Option<u32>,
    /// Cancelled from another thread (a Ctrl-C handler, a daemon's job
    /// queue) to stop cleanly: what was written stays, the next run
    /// resumes. Default: a token nobody else holds, never cancelled.
    pub cancel: CancelToken,
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
            cancel: CancelToken::new(),
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
    Failed(FailureReason),
    /// Gone from its folder: removed from the database.
    Removed,
}

/// A progress event. Events arrive on the thread that called `ingest` (or
/// `apply_events`), never on a pipeline thread.
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

/// Receives progress events. `Send`, so that a daemon can hand an observer
/// to the worker thread that runs the ingest; events still arrive on that
/// thread only, so an observer needs no locking of its own.
pub trait IngestObserver: Send {
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
    /// Image files found by the walk (of the roots, or of the events' paths).
    pub found: u64,
    /// Skipped: indexed and unchanged, or failed and unchanged.
    pub unchanged: u64,
    /// Decoded, encoded and stored.
    pub indexed: u64,
    /// Linked to an image with the same content.
    pub linked: u64,
    /// Removed because gone.
    pub removed: u64,
    /// Files that failed, with why.
    pub failures: Vec<(PathBuf, FailureReason)>,
    /// Stopped by the cancel token before the end.
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
