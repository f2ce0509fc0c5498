//! The indexer: applies the queued file events with the library's ingest
//! pipeline, in batches, below queries in priority.
//!
//! - It runs on a thread of its own at a raised nice value, with its own
//!   encoder whose ONNX Runtime threads it creates (and which inherit that
//!   value): the OS runs queries first, and a query never waits for an
//!   image batch's session.
//! - An event is removed from the queue only after it was applied, so a
//!   kill at any moment loses nothing; applying again is harmless.
//! - Events under an unavailable root stay queued until it comes back.
//!   A file modified less than the settle time ago stays queued until it
//!   has been quiet that long (a copy still in progress).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use imgdb::ingest::{FileEvent, FileOutcome, IngestEvent, IngestObserver, IngestOptions};
use imgdb::{CancelToken, Encoder, QueuedEvent};
use tracing::{debug, info, warn};

use crate::roots;
use crate::state::{AppState, Progress, RootState, deepest_root};

/// What to do with a queued event now.
enum Readiness {
    /// Apply it.
    Ready,
    /// Leave it queued (its root is unavailable).
    Held,
    /// Leave it queued for this long (its file is still changing).
    Settling(Duration),
    /// Drop it unapplied (no watched root holds it any more).
    Dropped,
}

/// Runs until `cancel`: applies queued events as they come (woken by
/// `wake`, and at least every root check interval).
pub fn run(
    state: AppState,
    encoder: Encoder,
    wake: crossbeam_channel::Receiver<()>,
    cancel: CancelToken,
) {
    let indexing = &state.config.indexing;
    let options = IngestOptions {
        workers: indexing.workers.unwrap_or_else(default_workers),
        cancel: cancel.clone(),
        ..IngestOptions::default()
    };
    let idle = Duration::from_secs(indexing.root_check_secs.max(1));
    while !cancel.is_cancelled() {
        let pause = match apply_next_batch(&state, &encoder, &options) {
            Ok(Some(pause)) => pause,
            Ok(None) => continue,
            Err(error) => {
                warn!(
                    "indexing failed, retrying in {idle:?}: {}",
                    error_chain(&error)
                );
                state.status.lock().last_error = Some(error_chain(&error));
                idle
            }
        };
        // Woken early by new events (or by the shutdown's last message).
        let _ = wake.recv_timeout(pause.min(idle));
    }
}

/// Applies one batch. `Some(pause)`: nothing was ready, wait that long.
fn apply_next_batch(
    state: &AppState,
    encoder: &Encoder,
    options: &IngestOptions,
) -> imgdb::Result<Option<Duration>> {
    let batch_size = state.config.indexing.batch_events;
    // Look further than one batch, so that held events at the head do not
    // stop the events of other roots behind them.
    let queued = state.db.queued_events(batch_size * 4)?;
    let mut ready: Vec<QueuedEvent> = Vec::new();
    let mut dropped = Vec::new();
    let mut pause = Duration::from_secs(state.config.indexing.root_check_secs.max(1));
    let mut roots = RootCheck {
        devices: (state.db.watched_roots()?.into_iter())
            .map(|root| (root.path, root.device))
            .collect(),
        available: HashMap::new(),
    };
    for queued in queued {
        match readiness(state, &mut roots, &queued.event) {
            Readiness::Ready => ready.push(queued),
            Readiness::Held => {}
            Readiness::Settling(wait) => pause = pause.min(wait),
            Readiness::Dropped => dropped.push(queued.seq),
        }
        if ready.len() == batch_size {
            break;
        }
    }
    state.db.dequeue_events(&dropped)?;
    if ready.is_empty() {
        return Ok(Some(pause));
    }
    let events: Vec<FileEvent> = ready.iter().map(|q| q.event.clone()).collect();
    state.status.lock().indexing = true;
    let mut observer = Observer { state };
    let applied = state
        .db
        .apply_events(encoder, &events, options, &mut observer);
    state.status.lock().indexing = false;
    let report = applied?;
    if report.cancelled {
        // Stopped within the batch: it stays queued and is applied again
        // (what was written is skipped as unchanged).
        return Ok(Some(Duration::ZERO));
    }
    let seqs: Vec<u64> = ready.iter().map(|q| q.seq).collect();
    state.db.dequeue_events(&seqs)?;
    let queued = state.db.queued_len();
    debug!(
        "applied {} events ({} indexed, {} linked, {} removed, {} failed); {queued} queued",
        events.len(),
        report.indexed,
        report.linked,
        report.removed,
        report.failures.len()
    );
    state.status.lock().last_error = None;
    let _ = state.progress.send(Progress::Batch {
        events: events.len(),
        queued,
    });
    Ok(None)
}

/// The watched roots' file systems, and which roots were found there in
/// this batch (looked at once per batch, on disk).
struct RootCheck {
    devices: HashMap<PathBuf, u64>,
    available: HashMap<PathBuf, bool>,
}

fn readiness(state: &AppState, roots: &mut RootCheck, event: &FileEvent) -> Readiness {
    let path = match event {
        FileEvent::Renamed { to, .. } => to,
        FileEvent::Created(path) | FileEvent::Changed(path) | FileEvent::Deleted(path) => path,
        _ => return Readiness::Ready,
    };
    let Some(root) = deepest_root(roots.devices.keys().map(PathBuf::as_path), path) else {
        return Readiness::Dropped;
    };
    // Checked on disk now, not from the monitor's last look: applying a
    // root's events while it is unmounted would remove all under it.
    let device = roots.devices.get(&root).copied().unwrap_or(0);
    let available = *roots
        .available
        .entry(root.clone())
        .or_insert_with(|| roots::is_available(&root, device));
    if !available {
        let mut status = state.status.lock();
        if let Some(known) = status.roots.get_mut(&root) {
            *known = RootState::Unavailable;
        }
        return Readiness::Held;
    }
    if matches!(event, FileEvent::Created(_) | FileEvent::Changed(_))
        && let Some(wait) = still_settling(path, state.config.indexing.settle())
    {
        return Readiness::Settling(wait);
    }
    Readiness::Ready
}

/// How long until a file modified recently has been quiet for `settle`.
fn still_settling(path: &Path, settle: Duration) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    (age < settle).then(|| settle - age)
}

/// Half the cores decode (at least one): the rest stay for queries.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The error and its causes on one line.
pub fn error_chain(error: &imgdb::Error) -> String {
    error.messages().join(": ")
}

/// Counts outcomes into the status and sends them to the progress feed.
struct Observer<'a> {
    state: &'a AppState,
}

impl IngestObserver for Observer<'_> {
    fn event(&mut self, event: &IngestEvent) {
        let IngestEvent::File { path, outcome } = event else {
            return;
        };
        let (name, id, message) = match outcome {
            FileOutcome::Indexed(id) => ("indexed", Some(id.0), None),
            FileOutcome::Linked(id) => ("linked", Some(id.0), None),
            FileOutcome::Removed => ("removed", None, None),
            FileOutcome::Failed(reason) => ("failed", None, Some(reason.message.clone())),
            FileOutcome::Unchanged => ("unchanged", None, None),
            FileOutcome::StillFailing => ("still_failing", None, None),
            _ => ("other", None, None),
        };
        {
            let mut status = self.state.status.lock();
            match outcome {
                FileOutcome::Indexed(_) => status.indexed += 1,
                FileOutcome::Linked(_) => status.linked += 1,
                FileOutcome::Removed => status.removed += 1,
                FileOutcome::Failed(_) => status.failed += 1,
                _ => {}
            }
        }
        if let Some(message) = &message {
            info!("{}: {message}", path.display());
        }
        let _ = self.state.progress.send(Progress::File {
            path: path.to_string_lossy().into_owned(),
            outcome: name,
            id,
            message,
        });
    }
}

/// Lowers the calling thread's priority (Linux: the nice value is per
/// thread, and threads it creates inherit it).
pub fn lower_priority(nice: i32) {
    // SAFETY: setpriority has no memory effects; who = 0 is this thread.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if result != 0 {
        warn!(
            "cannot lower the indexer's priority to nice {nice}: {}",
            std::io::Error::last_os_error()
        );
    }
}
