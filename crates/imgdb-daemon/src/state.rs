//! What the HTTP handlers, the watcher and the indexer share: the open
//! database, the query encoder, the live status and the progress feed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use imgdb::{Db, Encoder};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::Config;

/// Shared by every request handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// The database (the daemon holds its lock).
    pub db: Db,
    /// The encoder for queries (texts and uploads). The indexer has its
    /// own, so that a query never waits for an image batch.
    pub encoder: Encoder,
    /// What the daemon runs with.
    pub config: Arc<Config>,
    /// Live state of the roots and the indexer.
    pub status: Arc<Status>,
    /// Indexing progress, for `GET /v1/events`.
    pub progress: broadcast::Sender<Progress>,
    /// Wakes the indexer when events were queued.
    pub wake: crossbeam_channel::Sender<()>,
    /// Where thumbnails are cached.
    pub thumbnails: PathBuf,
    /// When the daemon started.
    pub started: Instant,
    /// Turns true when the daemon stops: endless responses (the progress
    /// feed) end then, or the graceful shutdown would wait for them forever.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// The watched root a path lies under, if any (both canonical). The
    /// database's roots are the truth, not the watcher's last look, which
    /// may not have happened yet just after a start.
    pub fn root_of(&self, path: &Path) -> imgdb::Result<Option<PathBuf>> {
        let roots = self.db.watched_roots()?;
        Ok(deepest_root(
            roots.iter().map(|root| root.path.as_path()),
            path,
        ))
    }

    /// Queues events durably and wakes the indexer.
    pub fn enqueue(&self, events: &[imgdb::ingest::FileEvent]) -> imgdb::Result<()> {
        self.db.enqueue_events(events)?;
        let _ = self.wake.try_send(());
        Ok(())
    }
}

/// The state of a watched root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootState {
    /// Watched by the OS: changes arrive within the settle time.
    Watching,
    /// The OS cannot watch it (the inotify watch limit): rescanned
    /// periodically instead.
    Polling,
    /// Gone (an unmounted disk, a removed folder): nothing under it is
    /// removed from the database until it comes back.
    Unavailable,
}

/// Live state, behind one lock held only for moments.
#[derive(Default)]
pub struct Status(Mutex<StatusInner>);

/// What [`Status`] holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatusInner {
    /// Each watched root and its state.
    pub roots: BTreeMap<PathBuf, RootState>,
    /// Whether a batch is being applied now.
    pub indexing: bool,
    /// Files indexed (encoded) since the daemon started.
    pub indexed: u64,
    /// Files linked to known content (moves, copies) since start.
    pub linked: u64,
    /// Files removed since start.
    pub removed: u64,
    /// Files that failed since start.
    pub failed: u64,
    /// The last error of the indexer, if its last batch failed.
    pub last_error: Option<String>,
}

impl Status {
    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, StatusInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One message of the progress feed (`GET /v1/events`, server-sent events).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Progress {
    /// A file was settled by the indexer.
    File {
        /// Its path (lossy where not UTF-8).
        path: String,
        /// `indexed`, `linked`, `failed`, `removed`, `unchanged`, `still_failing`.
        outcome: &'static str,
        /// The image, when it has one.
        id: Option<u64>,
        /// Why it failed, when it did.
        message: Option<String>,
    },
    /// A batch of queued events was applied.
    Batch {
        /// Events applied.
        events: usize,
        /// Events still queued.
        queued: usize,
    },
    /// A root changed state.
    Root {
        /// The root.
        path: String,
        /// Its new state.
        state: RootState,
    },
}

/// The deepest of `roots` that `path` lies under.
pub fn deepest_root<'a>(roots: impl Iterator<Item = &'a Path>, path: &Path) -> Option<PathBuf> {
    roots
        .filter(|root| path.starts_with(root))
        .max_by_key(|root| root.as_os_str().len())
        .map(Path::to_path_buf)
}
