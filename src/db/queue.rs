//! A watcher's persisted state on [`Db`]: the folders it watches and the
//! file events it has not applied yet (`schema/store.md`, `roots` and
//! `queue`).
//!
//! A daemon enqueues what its watcher reports, applies the oldest events
//! with `Db::apply_events` and only then dequeues them: killed at any
//! moment, it finds on restart every event it had not finished, and
//! applying one again is harmless (see the `events` module).

use std::path::Path;

use super::Db;
use crate::error::Result;
use crate::store::record::{FileEvent, WatchedRoot};
use crate::types::Timestamp;

/// A queued event with its place in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Its queue number: increasing, never reused while queued.
    pub seq: u64,
    /// The event.
    pub event: FileEvent,
}

impl Db {
    /// The watched folders, in path order.
    pub fn watched_roots(&self) -> Result<Vec<WatchedRoot>> {
        self.current()?.store.watched_roots()
    }

    /// Records `folder` (which must be canonical) as watched on the file
    /// system it is on now (`device`); a folder watched already keeps the
    /// time it was added. Durable on return.
    pub fn watch_root(&self, folder: &Path, device: u64) -> Result<WatchedRoot> {
        let known = self
            .watched_roots()?
            .into_iter()
            .find(|root| root.path == folder);
        if let Some(known) = &known
            && known.device == device
        {
            return Ok(known.clone());
        }
        let root = WatchedRoot {
            path: folder.to_path_buf(),
            added: known.map_or_else(Timestamp::now, |k| k.added),
            device,
        };
        self.current()?.store.put_watched_root(&root)?;
        Ok(root)
    }

    /// Stops recording `folder` as watched; whether it was. What is indexed
    /// under it stays. Durable on return.
    pub fn unwatch_root(&self, folder: &Path) -> Result<bool> {
        self.current()?.store.remove_watched_root(folder)
    }

    /// Appends events to the queue, all or none, durably.
    pub fn enqueue_events(&self, events: &[FileEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.current()?.store.enqueue(events)
    }

    /// The oldest `limit` queued events.
    pub fn queued_events(&self, limit: usize) -> Result<Vec<QueuedEvent>> {
        Ok(self
            .current()?
            .store
            .queued(limit)?
            .into_iter()
            .map(|(seq, event)| QueuedEvent { seq, event })
            .collect())
    }

    /// Removes events (by queue number) once applied, durably.
    pub fn dequeue_events(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.current()?.store.dequeue(seqs)
    }

    /// How many events are queued.
    pub fn queued_len(&self) -> usize {
        self.current().map_or(0, |open| open.store.queue_len())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::db::Db;
    use crate::space::EmbeddingSpace;
    use crate::store::record::FileEvent;

    fn open(dir: &std::path::Path) -> Db {
        Db::open_or_create(dir.join("db"), EmbeddingSpace::named("queue", 3)).unwrap()
    }

    #[test]
    fn the_queue_survives_a_reopen_and_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let events = [
            FileEvent::Created(PathBuf::from("/p/a.jpg")),
            FileEvent::Renamed {
                from: PathBuf::from("/p/a.jpg"),
                to: PathBuf::from("/p/b.jpg"),
            },
            FileEvent::Deleted(PathBuf::from("/p/c.jpg")),
        ];
        {
            let db = open(dir.path());
            db.enqueue_events(&events[..2]).unwrap();
            db.enqueue_events(&events[2..]).unwrap();
        }
        let db = open(dir.path());
        let queued = db.queued_events(10).unwrap();
        let got: Vec<_> = queued.iter().map(|q| q.event.clone()).collect();
        assert_eq!(got, events);
        assert!(queued.windows(2).all(|w| w[0].seq < w[1].seq));
        db.dequeue_events(&[queued[0].seq, queued[2].seq]).unwrap();
        assert_eq!(db.queued_len(), 1);
        drop(db);
        let db = open(dir.path());
        assert_eq!(db.queued_events(10).unwrap()[0].event, events[1]);
        // New events go after the ones still queued, never before.
        db.enqueue_events(&events[..1]).unwrap();
        let queued = db.queued_events(10).unwrap();
        assert_eq!(queued.len(), 2);
        assert!(queued[0].seq < queued[1].seq);
        assert_eq!(queued[1].event, events[0]);
    }

    #[test]
    fn watched_roots_are_kept_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let photos = PathBuf::from("/photos");
        {
            let db = open(dir.path());
            let first = db.watch_root(&photos, 7).unwrap();
            assert_eq!(db.watch_root(&photos, 7).unwrap(), first, "added once");
            let moved = db.watch_root(&photos, 9).unwrap();
            assert_eq!((moved.added, moved.device), (first.added, 9));
            db.watch_root(&PathBuf::from("/archive"), 7).unwrap();
        }
        let db = open(dir.path());
        let roots: Vec<_> = db
            .watched_roots()
            .unwrap()
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert_eq!(roots, [PathBuf::from("/archive"), photos.clone()]);
        assert!(db.unwatch_root(&photos).unwrap());
        assert!(!db.unwatch_root(&photos).unwrap());
        assert_eq!(db.watched_roots().unwrap().len(), 1);
    }
}
