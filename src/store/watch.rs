//! What a folder watcher keeps in the store: the roots it watches and the
//! queue of file events it has not applied yet.
//!
//! Both are durable when a call returns, so that a watcher killed at any
//! moment resumes where it was: events are removed from the queue only
//! after they were applied, and applying one twice changes nothing.

use std::path::Path;

use super::Store;
use super::codec::{corrupt, decode, encode};
use super::record::{FileEvent, StoredEvent, WatchedRoot, path_to_bytes};
use crate::error::{Corruption, Result};

impl Store {
    /// The watched roots, in path order.
    pub fn watched_roots(&self) -> Result<Vec<WatchedRoot>> {
        self.roots
            .iter()
            .values()
            .map(|value| decode(&value.map_err(self.err())?, &self.root, "watched root"))
            .collect()
    }

    /// Adds (or replaces) a watched root, durably.
    pub fn put_watched_root(&self, root: &WatchedRoot) -> Result<()> {
        let value = encode(root, "watched root")?;
        self.roots
            .insert(path_to_bytes(&root.path), value)
            .map_err(self.err())?;
        self.flush()
    }

    /// Forgets a watched root, durably; whether it was watched.
    pub fn remove_watched_root(&self, path: &Path) -> Result<bool> {
        let removed = self
            .roots
            .remove(path_to_bytes(path))
            .map_err(self.err())?
            .is_some();
        self.flush()?;
        Ok(removed)
    }

    /// Appends events to the queue in one atomic, durable write.
    pub fn enqueue(&self, events: &[FileEvent]) -> Result<()> {
        let _appending = self.enqueueing.lock().unwrap_or_else(|e| e.into_inner());
        let first = match self.queue.last().map_err(self.err())? {
            Some((key, _)) => self.queue_seq(&key)? + 1,
            None => 1,
        };
        let mut batch = sled::Batch::default();
        for (seq, event) in (first..).zip(events) {
            batch.insert(
                &seq.to_be_bytes(),
                encode(&StoredEvent::from(event), "queued event")?,
            );
        }
        self.queue.apply_batch(batch).map_err(self.err())?;
        self.flush()
    }

    /// The oldest `limit` queued events, with their queue numbers.
    pub fn queued(&self, limit: usize) -> Result<Vec<(u64, FileEvent)>> {
        self.queue
            .iter()
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(self.err())?;
                let stored: StoredEvent = decode(&value, &self.root, "queued event")?;
                let event = stored.into_event().ok_or_else(|| {
                    corrupt(&self.root, "event queue", Corruption::UnknownEventKind)
                })?;
                Ok((self.queue_seq(&key)?, event))
            })
            .collect()
    }

    /// Removes applied events from the queue, durably.
    pub fn dequeue(&self, seqs: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(&seq.to_be_bytes());
        }
        self.queue.apply_batch(batch).map_err(self.err())?;
        self.flush()
    }

    /// How many events wait in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    fn queue_seq(&self, key: &[u8]) -> Result<u64> {
        let bytes: [u8; 8] = key
            .try_into()
            .map_err(|_| corrupt(&self.root, "event queue", Corruption::IdLength))?;
        Ok(u64::from_be_bytes(bytes))
    }
}
