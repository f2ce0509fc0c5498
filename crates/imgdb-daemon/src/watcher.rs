//! The watcher: turns what the OS reports about the watched roots into
//! queued [`FileEvent`]s, and watches the roots themselves.
//!
//! - notify's debouncer coalesces a path's events over the settle time and
//!   pairs renames, so a copy of 10 000 files becomes one burst of queued
//!   events (one durable write per burst), not an event storm.
//! - Every root check interval each root is looked at: one that is gone or
//!   on another file system (an unmounted disk) becomes unavailable and is
//!   unwatched, and its events stay queued; one that comes back is watched
//!   again and reconciled (walked) — as is every root at start, which
//!   catches what changed while the daemon was down.
//! - A root the OS cannot watch (the inotify watch limit) is polled: it is
//!   walked every `rescan_secs`, and the log says why and what to raise.
//! - When the OS dropped events (its queue overflowed), every root is
//!   reconciled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgdb::ingest::FileEvent;
use notify::event::{EventKind, MetadataKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tracing::{info, warn};

use crate::roots;
use crate::state::{AppState, Progress, RootState};

/// Runs until a message (or a hang-up) on `stop`.
pub fn run(state: AppState, stop: crossbeam_channel::Receiver<()>) {
    let (events_tx, events) = crossbeam_channel::unbounded();
    let debouncer = match new_debouncer(
        state.config.indexing.settle(),
        None,
        move |result: DebounceEventResult| {
            let _ = events_tx.send(result);
        },
    ) {
        Ok(debouncer) => Some(debouncer),
        Err(error) => {
            warn!("cannot start the file system watcher, polling every root instead: {error}");
            None
        }
    };
    let mut watcher = Watcher {
        state,
        debouncer,
        polled: Vec::new(),
    };
    let check_every = Duration::from_secs(watcher.state.config.indexing.root_check_secs.max(1));
    let mut next_check = Instant::now();
    loop {
        if Instant::now() >= next_check {
            watcher.check_roots();
            next_check = Instant::now() + check_every;
        }
        let wait = next_check.saturating_duration_since(Instant::now());
        crossbeam_channel::select! {
            recv(events) -> result => match result {
                Ok(Ok(batch)) => watcher.queue(&batch),
                Ok(Err(errors)) => watcher.failed(errors),
                Err(_) => break,
            },
            recv(stop) -> _ => break,
            default(wait) => {}
        }
    }
}

struct Watcher {
    state: AppState,
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
    /// Polled roots and when each was last walked.
    polled: Vec<(PathBuf, Instant)>,
}

impl Watcher {
    /// Looks at every root: see the module documentation.
    fn check_roots(&mut self) {
        let roots = match self.state.db.watched_roots() {
            Ok(roots) => roots,
            Err(error) => {
                warn!("cannot read the watched roots: {error}");
                return;
            }
        };
        let rescan = Duration::from_secs(self.state.config.indexing.rescan_secs.max(1));
        for root in roots {
            let available = roots::is_available(&root.path, root.device);
            let known = self.state.status.lock().roots.get(&root.path).copied();
            match (known, available) {
                (None | Some(RootState::Unavailable), true) => {
                    if known.is_some() {
                        info!(
                            "{} is back: watching and reconciling it",
                            root.path.display()
                        );
                    }
                    let state = self.watch(&root.path);
                    self.set_state(&root.path, state);
                    self.reconcile(&root.path);
                }
                (None, false) => {
                    warn!(
                        "{} is unavailable (gone, or its disk is not mounted): nothing under it \
                         is removed until it comes back",
                        root.path.display()
                    );
                    self.set_state(&root.path, RootState::Unavailable);
                }
                (Some(RootState::Watching | RootState::Polling), false) => {
                    warn!(
                        "{} became unavailable (removed, or its disk was unmounted): nothing \
                         under it is removed until it comes back",
                        root.path.display()
                    );
                    self.unwatch(&root.path);
                    self.set_state(&root.path, RootState::Unavailable);
                }
                (Some(RootState::Polling), true) => {
                    let due = self
                        .polled
                        .iter()
                        .any(|(path, last)| *path == root.path && last.elapsed() >= rescan);
                    if due {
                        self.reconcile(&root.path);
                    }
                }
                (Some(RootState::Watching), true) | (Some(RootState::Unavailable), false) => {}
            }
        }
    }

    /// Starts watching a root; polled when the OS cannot watch it.
    fn watch(&mut self, root: &Path) -> RootState {
        let Some(debouncer) = &mut self.debouncer else {
            return RootState::Polling;
        };
        match debouncer.watch(root, RecursiveMode::Recursive) {
            Ok(()) => RootState::Watching,
            Err(error) => {
                // Whatever part of the tree was watched is released.
                let _ = debouncer.unwatch(root);
                self.warn_polled(root, &error);
                RootState::Polling
            }
        }
    }

    /// Says why a root is polled from now on, and what to raise when it
    /// is the inotify watch limit.
    fn warn_polled(&self, root: &Path, error: &notify::Error) {
        let every = self.state.config.indexing.rescan_secs;
        if matches!(error.kind, notify::ErrorKind::MaxFilesWatch) {
            warn!(
                "{}: the inotify watch limit is reached (raise fs.inotify.max_user_watches); \
                 it is rescanned every {every} s instead",
                root.display()
            );
        } else {
            warn!(
                "{}: cannot watch it ({error}); it is rescanned every {every} s instead",
                root.display()
            );
        }
    }

    fn unwatch(&mut self, root: &Path) {
        if let Some(debouncer) = &mut self.debouncer {
            let _ = debouncer.unwatch(root);
        }
        self.polled.retain(|(path, _)| path != root);
    }

    fn set_state(&mut self, root: &Path, state: RootState) {
        let previous = self
            .state
            .status
            .lock()
            .roots
            .insert(root.to_path_buf(), state);
        if previous != Some(state) {
            let _ = self.state.progress.send(Progress::Root {
                path: root.to_string_lossy().into_owned(),
                state,
            });
        }
        if state == RootState::Polling && !self.polled.iter().any(|(path, _)| path == root) {
            self.polled.push((root.to_path_buf(), Instant::now()));
        }
    }

    /// Queues a walk of the root: whatever changed under it is caught.
    fn reconcile(&mut self, root: &Path) {
        for (path, last) in &mut self.polled {
            if path == root {
                *last = Instant::now();
            }
        }
        self.enqueue(&[FileEvent::Changed(root.to_path_buf())]);
    }

    fn enqueue(&self, events: &[FileEvent]) {
        if let Err(error) = self.state.enqueue(events) {
            warn!(
                "cannot queue {} file events (the next reconcile catches them): {error}",
                events.len()
            );
        }
    }

    /// Queues a debounced burst.
    fn queue(&mut self, batch: &[notify_debouncer_full::DebouncedEvent]) {
        let mut events = Vec::new();
        let mut rescan = false;
        for event in batch {
            rescan |= event.need_rescan();
            translate(&event.event, &mut events);
        }
        if rescan {
            warn!("the OS dropped file events (its queue overflowed): reconciling every root");
            let roots: Vec<PathBuf> = self.state.status.lock().roots.keys().cloned().collect();
            events.extend(roots.into_iter().map(FileEvent::Changed));
        }
        if !events.is_empty() {
            self.enqueue(&events);
        }
    }

    fn failed(&mut self, errors: Vec<notify::Error>) {
        for error in errors {
            let limit = matches!(error.kind, notify::ErrorKind::MaxFilesWatch);
            let roots: Vec<PathBuf> = {
                let status = self.state.status.lock();
                status
                    .roots
                    .iter()
                    .filter(|(root, state)| {
                        **state == RootState::Watching
                            && (error.paths.is_empty()
                                || error.paths.iter().any(|p| p.starts_with(root)))
                    })
                    .map(|(root, _)| root.clone())
                    .collect()
            };
            if !limit {
                warn!("file system watcher: {error}");
                continue;
            }
            for root in roots {
                self.warn_polled(&root, &error);
                self.unwatch(&root);
                self.set_state(&root, RootState::Polling);
                self.reconcile(&root);
            }
        }
    }
}

/// The file events a notify event stands for: only paths that may be
/// images or folders (a deleted folder has no extension to tell it by).
fn translate(event: &notify::Event, out: &mut Vec<FileEvent>) {
    let paths = &event.paths;
    let each = |out: &mut Vec<FileEvent>, make: fn(PathBuf) -> FileEvent| {
        out.extend(paths.iter().filter(|p| wanted(p)).cloned().map(make));
    };
    match event.kind {
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            each(out, FileEvent::Created)
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if paths.len() == 2 => {
            if wanted(&paths[0]) || wanted(&paths[1]) {
                out.push(FileEvent::Renamed {
                    from: paths[0].clone(),
                    to: paths[1].clone(),
                });
            }
        }
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            each(out, FileEvent::Deleted)
        }
        EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => {}
        _ => each(out, FileEvent::Changed),
    }
}

fn wanted(path: &Path) -> bool {
    imgdb::has_image_extension(path) || path.extension().is_none() || path.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RemoveKind};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        paths.iter().fold(notify::Event::new(kind), |e, p| {
            e.add_path(PathBuf::from(p))
        })
    }

    fn translated(event: notify::Event) -> Vec<FileEvent> {
        let mut out = Vec::new();
        translate(&event, &mut out);
        out
    }

    #[test]
    fn an_atomic_save_is_a_rename_onto_the_image() {
        let save = event(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/p/.photo.jpg.tmp123", "/p/photo.jpg"],
        );
        assert_eq!(
            translated(save),
            [FileEvent::Renamed {
                from: "/p/.photo.jpg.tmp123".into(),
                to: "/p/photo.jpg".into()
            }]
        );
    }

    #[test]
    fn files_that_are_no_images_are_left_out_but_folders_are_kept() {
        let create = event(
            EventKind::Create(CreateKind::Any),
            &["/p/notes.txt", "/p/a.HEIC", "/p/2024"],
        );
        assert_eq!(
            translated(create),
            [
                FileEvent::Created("/p/a.HEIC".into()),
                FileEvent::Created("/p/2024".into())
            ]
        );
        let remove = event(EventKind::Remove(RemoveKind::Any), &["/p/old.png"]);
        assert_eq!(
            translated(remove),
            [FileEvent::Deleted("/p/old.png".into())]
        );
        let read = event(
            EventKind::Access(notify::event::AccessKind::Any),
            &["/p/a.jpg"],
        );
        assert!(translated(read).is_empty());
    }
}
