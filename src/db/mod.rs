//! [`Db`]: the database handle, tying the store, the index and their
//! snapshots together.
//!
//! A database is a directory:
//!
//! ```text
//! <db>/imgdb.format   format marker (magic, version, CRC)   — marker.rs
//! <db>/lock           exclusive process lock
//! <db>/store/         sled: records, secondary keys, change log — crate::store
//! <db>/index/         HNSW snapshot                         — crate::index::snapshot
//! ```
//!
//! A [`Db`] and its clones share the database open now ([`Open`]: the
//! [`Inner`] state and its maintenance thread); every call takes it once
//! and works on it to the end, which is what lets a reindex
//! (`swap.rs`) replace it under the handle while queries go on.
//!
//! Writes are serialised by one writer lock: each batch is committed to the
//! store (durable on return), then applied to the in-memory index. Reads take
//! no writer lock. On open, the index is loaded from its snapshot and the
//! store's change log after the snapshot's watermark is replayed; anything
//! wrong with the snapshot means a rebuild from the store.
//!
//! Maintenance (snapshots, compaction, refreshing the graph's search copy)
//! never rides on a write: a write only signals the database's maintenance
//! thread when one is due, and the thread does it while writes and searches
//! go on (see [`Inner::snapshot`], [`Inner::compact`],
//! [`VectorIndex::refresh`]). The one exception is back-pressure: a write
//! refreshes the search copy itself when the rows it lacks pass a bound
//! (see `crate::index`). Dropping the last handle waits for the thread, then
//! writes a final snapshot.

pub(crate) mod marker;
mod migrate;
mod queue;
mod swap;
mod verify;
mod write;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tracing::{info, warn};

pub use queue::QueuedEvent;
pub use verify::{Problem, VerifyReport};
pub use write::{NewImage, WriteBatch, WriteOp};

use crate::error::{Corruption, Error, ReindexConflict, Result};
use crate::filter::Filter;
use crate::fsio::{LocalStorage, Storage};
use crate::index::snapshot::{self, Identity, RebuildReason};
use crate::index::{Change, IndexParams, RowAttrs, VectorIndex};
use crate::space::EmbeddingSpace;
use crate::store::record::{ImageRecord, ImageSource, path_to_bytes};
use crate::store::{Batch, Failure, Store, StoredIndexParams};
use crate::types::{ContentHash, ImageId, IndexMemory, Timestamp};
use marker::{FORMAT_MARKER_FILE, FORMAT_VERSION};

const STORE_DIR: &str = "store";
const INDEX_DIR: &str = "index";
/// Snapshots come at least every `1 / SNAPSHOT_FRACTION` of the index's size
/// in changes (see [`DbOptions::snapshot_every`]).
const SNAPSHOT_FRACTION: u64 = 8;
/// See [`DbOptions::min_free_space`].
const DEFAULT_MIN_FREE_SPACE: u64 = 64 << 20;

/// Options for opening or creating a database. Defaults are what a first
/// user wants; every setter documents its default.
#[derive(Clone, Debug)]
pub struct DbOptions {
    space: Option<EmbeddingSpace>,
    accept_variants: bool,
    create: bool,
    index: IndexParams,
    index_memory: Option<IndexMemory>,
    snapshot_every: u64,
    compact_ratio: f32,
    exact_scan_rows: usize,
    delta_rows: usize,
    background: bool,
    min_free_space: u64,
    storage: SharedStorage,
}

/// The storage of [`DbOptions`], which must be `Debug`.
#[derive(Clone)]
struct SharedStorage(Arc<dyn Storage>);

impl fmt::Debug for SharedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Storage")
    }
}

impl Default for DbOptions {
    fn default() -> DbOptions {
        DbOptions {
            space: None,
            accept_variants: false,
            create: false,
            index: IndexParams::default(),
            index_memory: None,
            snapshot_every: 10_000,
            compact_ratio: 0.2,
            exact_scan_rows: crate::index::EXACT_SCAN_ROWS,
            delta_rows: crate::index::DELTA_ROWS,
            background: true,
            min_free_space: DEFAULT_MIN_FREE_SPACE,
            storage: SharedStorage(LocalStorage::shared()),
        }
    }
}

impl DbOptions {
    /// Default options.
    pub fn new() -> DbOptions {
        DbOptions::default()
    }

    /// The embedding space expected (and recorded, when creating). Opening a
    /// database of another space fails with [`Error::SpaceMismatch`].
    /// Default: none expected (any space opens; creation needs one).
    pub fn space(mut self, space: EmbeddingSpace) -> DbOptions {
        self.space = Some(space);
        self
    }

    /// Accept the vectors of another variant of the database's model (int8
    /// weights for a database built with fp32, say): reads and writes with
    /// it go through instead of failing with [`Error::VariantMismatch`]. The
    /// vectors of two variants are close (cosine 0.99 and more for int8 and
    /// fp16) but not equal, so a mixed database ranks slightly differently
    /// than one of a single variant; the recorded variant stays the
    /// creator's. Another model is refused as ever. Default: false.
    pub fn accept_variants(mut self, accept: bool) -> DbOptions {
        self.accept_variants = accept;
        self
    }

    /// Create the database when the directory is missing or empty (needs a
    /// [`space`](Self::space)). Default: false.
    pub fn create_if_missing(mut self, create: bool) -> DbOptions {
        self.create = create;
        self
    }

    /// Graph parameters. `m` and `ef_construction` are fixed at creation
    /// (an existing database keeps its own); `ef_search` applies to every
    /// open. Default: [`IndexParams::default`].
    pub fn index_params(mut self, params: IndexParams) -> DbOptions {
        self.index = params;
        self
    }

    /// Where the index keeps its exact vectors ([`IndexMemory`]): recorded
    /// when the database is created, and fixed from then on. Opening an
    /// existing database with another mode fails with
    /// [`Error::IndexMemoryMismatch`]; leaving it unset opens any. Default:
    /// unset, which creates [`IndexMemory::Resident`] databases.
    pub fn index_memory(mut self, memory: IndexMemory) -> DbOptions {
        self.index_memory = Some(memory);
        self
    }

    /// Write an index snapshot after this many changed records, or after
    /// changes amounting to an eighth of the index when that is more (it is
    /// also written by [`Db::checkpoint`] and when the last handle is
    /// dropped). A snapshot rewrites the whole index, so a fixed interval
    /// would make the snapshot writes of a growing database quadratic; the
    /// proportional one keeps them linear, and a reopen after a crash
    /// replays at most that many changes. The snapshot is written by the
    /// maintenance thread, never by the write that made it due (see
    /// [`background_maintenance`](Self::background_maintenance)).
    /// Default: 10 000.
    pub fn snapshot_every(mut self, changes: u64) -> DbOptions {
        self.snapshot_every = changes.max(1);
        self
    }

    /// Whether `changes` records changed since the last snapshot of an index
    /// of `rows` points call for a new one.
    fn snapshot_due(&self, changes: u64, rows: usize) -> bool {
        changes >= self.snapshot_every.max(rows as u64 / SNAPSHOT_FRACTION)
    }

    /// [`Db::compact`] rebuilds the graph when tombstones reach this fraction
    /// of its points. Default: 0.2.
    pub fn compact_ratio(mut self, ratio: f32) -> DbOptions {
        self.compact_ratio = ratio.clamp(0.0, 1.0);
        self
    }

    /// Searches where at most this many images match are answered by an
    /// exact scan instead of a graph walk. Default: 10 000.
    pub fn exact_scan_rows(mut self, rows: usize) -> DbOptions {
        self.exact_scan_rows = rows;
        self
    }

    /// Refresh the graph's search copy once this many points are newer
    /// than it, or 1/256 of the index if that is more (see
    /// [`Stats::delta_points`]: searches scan those points exactly). Lower
    /// makes new points reach the graph walk sooner, at the cost of more
    /// frequent refreshes (each a copy of the whole graph). Default: 1 024.
    pub fn delta_rows(mut self, rows: usize) -> DbOptions {
        self.delta_rows = rows;
        self
    }

    /// Whether a thread owned by the database writes snapshots, compacts
    /// the index and refreshes the graph's search copy when they are due.
    /// When off, the caller schedules them with [`Db::checkpoint`] and
    /// [`Db::compact`] (a snapshot is still written when the last handle is
    /// dropped). Either way, writes never snapshot or compact; a write
    /// refreshes the search copy only when the rows it lacks pass a bound
    /// (four refresh sizes, see [`Stats::delta_points`]), so that searches
    /// never scan an unbounded delta. Default: true.
    pub fn background_maintenance(mut self, on: bool) -> DbOptions {
        self.background = on;
        self
    }

    /// Opening fails with [`Error::LowDiskSpace`] when the disk under the
    /// database has fewer bytes free than this, before anything is written:
    /// a store that fills the disk mid-write cannot be reopened until space
    /// is freed, and a restart loop on a full disk must not make it worse.
    /// Default: 64 MiB (a few of the store's log segments and one index
    /// snapshot of a small database).
    pub fn min_free_space(mut self, bytes: u64) -> DbOptions {
        self.min_free_space = bytes;
        self
    }

    /// The filesystem under the index snapshots and the format marker (see
    /// [`Storage`]); tests pass one that fails on purpose. Default:
    /// [`LocalStorage`].
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> DbOptions {
        self.storage = SharedStorage(storage);
        self
    }

    /// Opens the database at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        let path = path.as_ref();
        let open = open_database(path, self.clone())?;
        Ok(Db {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                options: self,
                current: RwLock::new(Slot::Open(Arc::new(open))),
            }),
        })
    }
}

/// Opens the database at `path` and starts its maintenance thread.
fn open_database(path: &Path, options: DbOptions) -> Result<Open> {
    options.index.validate()?;
    let background = options.background;
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let (inner, snapshot_now) = Inner::open(path, options, background.then(|| sender.clone()))?;
    let inner = Arc::new(inner);
    let maintenance = if background {
        let weak = Arc::downgrade(&inner);
        let thread = std::thread::Builder::new()
            .name("imgdb-maintenance".into())
            .spawn(move || maintenance_thread(weak, receiver))
            .map_err(Error::io(path))?;
        Maintenance {
            sender: Some(sender),
            thread: Some(thread),
        }
    } else {
        Maintenance {
            sender: None,
            thread: None,
        }
    };
    if snapshot_now {
        if background {
            inner.signal();
        } else {
            inner.checkpoint()?;
        }
    }
    Ok(Open {
        _maintenance: maintenance,
        inner,
    })
}

/// How the in-memory index came to be, on open.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum IndexOrigin {
    /// The database was created by this open.
    Created,
    /// Loaded from the snapshot covering the store up to `watermark`, then
    /// `replayed` later record changes were applied.
    Snapshot {
        /// The store sequence number the snapshot covers.
        watermark: u64,
        /// Record changes applied from the change log.
        replayed: usize,
    },
    /// Rebuilt from the store.
    Rebuilt {
        /// Why the snapshot could not be used.
        reason: RebuildReason,
    },
}

/// Figures about a database.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Stats {
    /// Images (records).
    pub images: usize,
    /// Indexed files (an image may have several identical files).
    pub files: usize,
    /// Files recorded as failed.
    pub failures: usize,
    /// The embedding space.
    pub space: EmbeddingSpace,
    /// The graph parameters.
    pub index_params: IndexParams,
    /// Where the index keeps its exact vectors.
    pub index_memory: IndexMemory,
    /// The bytes of exact vectors in memory: all of them in the resident
    /// mode, those written since the last snapshot in the compact mode.
    pub resident_vector_bytes: usize,
    /// Live points of the graph.
    pub index_points: usize,
    /// Tombstoned points of the graph.
    pub tombstones: usize,
    /// Points newer than the graph's search copy: every search scans them
    /// exactly until the maintenance thread (or [`Db::checkpoint`])
    /// refreshes the copy. A few thousand at most.
    pub delta_points: usize,
    /// How the index was obtained on open.
    pub origin: IndexOrigin,
    /// The store's last sequence number.
    pub last_seq: u64,
    /// The store's size on disk in bytes.
    pub store_bytes: u64,
    /// The index snapshot's size on disk in bytes.
    pub snapshot_bytes: u64,
    /// The database's format version.
    pub format_version: u32,
}

/// Options of a search.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// How many results. Default 10.
    pub k: usize,
    /// The graph's `ef` for this search (default: the database's `ef_search`).
    pub ef: Option<usize>,
    /// Drop results below this cosine similarity. Default: none.
    pub min_score: Option<f32>,
    /// Which images may be returned. Default: all.
    pub filter: Filter,
}

impl Default for SearchOptions {
    fn default() -> SearchOptions {
        SearchOptions {
            k: 10,
            ef: None,
            min_score: None,
            filter: Filter::default(),
        }
    }
}

/// A search result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The image.
    pub id: ImageId,
    /// Cosine similarity to the query, in [-1, 1].
    pub score: f32,
}

/// An imgdb database: `Send + Sync` and cheap to clone; clones share one
/// open database. The database is checkpointed when the last clone drops.
///
/// A reindex ([`Db::reindex`]) replaces the open database under every
/// clone: each call works on the database open when it started, so a query
/// running during the swap finishes on the old one.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

/// What the clones of a [`Db`] share.
struct Shared {
    path: PathBuf,
    /// What it was opened with: a reindex opens its new database with them.
    options: DbOptions,
    current: RwLock<Slot>,
}

/// The database the clones of a [`Db`] work on.
enum Slot {
    Open(Arc<Open>),
    /// A reindex swapped the folders in but the new database did not open
    /// (the error was returned by [`Db::reindex`]); what it was is kept for
    /// the accessors that cannot fail. Opening the path again retries.
    Lost {
        space: EmbeddingSpace,
        origin: IndexOrigin,
    },
}

/// An open database and its maintenance thread. Every call holds one for
/// its duration (see [`Db::current`]); the last holder closes it.
struct Open {
    // First: dropped (the thread stopped and joined) before `inner`, so that
    // the last holder's drop waits for a running snapshot and then finds no
    // other owner of the database.
    _maintenance: Maintenance,
    inner: Arc<Inner>,
}

impl std::ops::Deref for Open {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// What the maintenance thread is told.
enum Task {
    /// A snapshot or compaction may be due: check and do it.
    Maintain,
    /// The last handle is gone.
    Stop,
}

/// The maintenance thread, stopped and joined when the last handle drops.
struct Maintenance {
    sender: Option<Sender<Task>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        if let (Some(sender), Some(thread)) = (self.sender.take(), self.thread.take()) {
            // Blocks only while a signal is pending: the thread takes it first.
            let _ = sender.send(Task::Stop);
            let _ = thread.join();
        }
    }
}

/// The maintenance thread's loop. It holds the database only while it
/// works, so that the last handle's drop is never left to it.
fn maintenance_thread(inner: Weak<Inner>, tasks: crossbeam_channel::Receiver<Task>) {
    for task in tasks {
        match task {
            Task::Stop => break,
            Task::Maintain => match inner.upgrade() {
                Some(inner) => inner.maintain(),
                None => break,
            },
        }
    }
}

struct Inner {
    root: PathBuf,
    store: Store,
    index: VectorIndex,
    space: EmbeddingSpace,
    db_id: [u8; 16],
    options: DbOptions,
    origin: IndexOrigin,
    writer: Mutex<Writer>,
    format_version: u32,
    storage: Arc<dyn Storage>,
    /// Record changes the newest snapshot does not have (an upper bound:
    /// a change is counted after it reached the index).
    unsnapshotted: AtomicU64,
    /// Held by whoever snapshots or compacts: one at a time, and the change
    /// log is pruned by no one else while a compaction relies on it.
    maintenance: Mutex<()>,
    /// Signals the maintenance thread (none when the caller schedules).
    signal: Option<Sender<Task>>,
    /// Set while a reindex re-encodes this database: writes are refused
    /// (checked under the writer lock), since they would not reach the new
    /// one.
    reindexing: AtomicBool,
    // Last: released after everything else is closed.
    _lock: std::fs::File,
}

/// State only the writer touches.
struct Writer {
    next_id: u64,
    last_seq: u64,
}

impl Db {
    /// Opens an existing database with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        DbOptions::new().open(path)
    }

    /// Opens the database at `path`, creating it for `space` when the
    /// directory is missing or empty; an existing one must hold `space`.
    pub fn open_or_create(path: impl AsRef<Path>, space: EmbeddingSpace) -> Result<Db> {
        DbOptions::new()
            .space(space)
            .create_if_missing(true)
            .open(path)
    }

    /// Options for [`DbOptions::open`].
    pub fn options() -> DbOptions {
        DbOptions::new()
    }

    fn slot(&self) -> RwLockReadGuard<'_, Slot> {
        // Replaced whole, under the write lock: never seen half-done.
        self.shared
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The database open now. A call takes it once and works on it to the
    /// end (taking it again inside a call could wait on a reindex's swap,
    /// which waits for the call).
    fn current(&self) -> Result<Arc<Open>> {
        match &*self.slot() {
            Slot::Open(open) => Ok(open.clone()),
            Slot::Lost { .. } => Err(Error::NotFound {
                path: self.shared.path.clone(),
            }),
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The embedding space recorded at creation (or by the last reindex).
    pub fn space(&self) -> EmbeddingSpace {
        match &*self.slot() {
            Slot::Open(open) => open.space.clone(),
            Slot::Lost { space, .. } => space.clone(),
        }
    }

    /// Fails with [`Error::SpaceMismatch`] unless `space` is the database's
    /// model, and with [`Error::VariantMismatch`] when it is another variant
    /// of it and [`DbOptions::accept_variants`] was not given.
    pub fn check_space(&self, space: &EmbeddingSpace) -> Result<()> {
        self.current()?.check_space(space)
    }

    /// How the index was obtained when this database was opened (or
    /// reopened by the last reindex).
    pub fn index_origin(&self) -> IndexOrigin {
        match &*self.slot() {
            Slot::Open(open) => open.origin.clone(),
            Slot::Lost { origin, .. } => origin.clone(),
        }
    }

    /// Applies a batch atomically: when this returns `Ok`, every operation
    /// is durable and visible to searches; on `Err`, none is. Vectors must be
    /// of `space` (the database's). Returns, per operation, the image it
    /// concerned. While a [reindex](Db::reindex) runs, writes fail with
    /// [`Error::Reindexing`].
    pub fn write(&self, space: &EmbeddingSpace, batch: WriteBatch) -> Result<Vec<Option<ImageId>>> {
        self.current()?.write(space, batch)
    }

    /// Inserts images (see [`WriteOp::Insert`]) in one batch; returns their ids.
    pub fn insert(&self, space: &EmbeddingSpace, images: Vec<NewImage>) -> Result<Vec<ImageId>> {
        let batch = WriteBatch::from(images.into_iter().map(WriteOp::Insert).collect::<Vec<_>>());
        let ids = self.write(space, batch)?;
        Ok(ids
            .into_iter()
            .map(|id| id.expect("an insert concerns an image"))
            .collect())
    }

    /// Deletes images; returns how many existed.
    pub fn delete(&self, ids: &[ImageId]) -> Result<usize> {
        let inner = self.current()?;
        let existing: Vec<ImageId> = ids
            .iter()
            .copied()
            .filter(|&id| inner.store.record(id).map(|r| r.is_some()).unwrap_or(true))
            .collect();
        let batch = WriteBatch::from(
            existing
                .iter()
                .map(|&id| WriteOp::Delete { id })
                .collect::<Vec<_>>(),
        );
        inner.write(&inner.space.clone(), batch)?;
        Ok(existing.len())
    }

    /// The image with this id.
    pub fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        self.current()?.store.record(id)
    }

    /// Where the image with this id comes from, when it was imported from
    /// a LAION / clip-retrieval shard (a URL, caption or key), else `None`.
    pub fn source(&self, id: ImageId) -> Result<Option<ImageSource>> {
        self.current()?.store.source(id)
    }

    /// Every (id, source) pair, in id order.
    pub(crate) fn sources(&self) -> Result<Vec<(ImageId, ImageSource)>> {
        self.current()?.store.source_entries().collect()
    }

    /// The image one of whose files is at this canonical path.
    pub fn get_by_path(&self, path: &Path) -> Result<Option<ImageRecord>> {
        let inner = self.current()?;
        match inner.store.id_by_path(path)? {
            Some(id) => inner.store.record(id),
            None => Ok(None),
        }
    }

    /// The images with this content.
    pub fn ids_by_hash(&self, hash: &ContentHash) -> Result<Vec<ImageId>> {
        self.current()?.store.ids_by_hash(hash)
    }

    /// Every indexed (path, id) pair under a folder (every pair for `/`).
    pub fn paths_under(&self, folder: &Path) -> Result<Vec<(PathBuf, ImageId)>> {
        self.current()?.store.paths_under(&folder_prefix(folder))
    }

    /// Every image, in id order. The iterator holds the database open now:
    /// a reindex's swap waits for it to be dropped.
    pub fn records(&self) -> impl Iterator<Item = Result<ImageRecord>> + '_ {
        let records: Box<dyn Iterator<Item = Result<ImageRecord>> + Send> = match self.current() {
            Ok(open) => Box::new(Records(RecordsCell::new(open, |open| {
                Box::new(open.store.records())
            }))),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
        records
    }

    /// Every label in use, with the number of images carrying it.
    pub fn labels(&self) -> Result<Vec<(String, usize)>> {
        self.current()?.store.labels()
    }

    /// The recorded failure of a file.
    pub fn failure(&self, path: &Path) -> Result<Option<Failure>> {
        self.current()?.store.failure(path)
    }

    /// Every recorded failure, in path order.
    pub fn failures(&self) -> Result<Vec<(PathBuf, Failure)>> {
        self.current()?.store.failures()
    }

    /// The indexed vector of an image.
    pub fn vector(&self, id: ImageId) -> Option<Vec<f32>> {
        self.current().ok()?.index.vector_of(id)
    }

    /// The images nearest to `vector` by cosine similarity, best first.
    /// `vector` need not be normalised.
    pub fn search(&self, vector: &[f32], options: &SearchOptions) -> Result<Vec<Hit>> {
        let inner = self.current()?;
        let query = crate::vector::normalized_to(vector, inner.index.dim())?;
        let ef = options.ef.unwrap_or(inner.options.index.ef_search).max(1);
        let hits = if options.filter.is_empty() {
            inner.index.search(&query, options.k, ef, None)
        } else {
            let allowed = inner.allowed_ids(&options.filter)?;
            let accept = |id: ImageId, attrs: &RowAttrs| {
                allowed.as_ref().is_none_or(|set| set.contains(&id))
                    && options.filter.accepts(attrs)
            };
            inner.index.search(&query, options.k, ef, Some(&accept))
        };
        Ok(hits
            .into_iter()
            .filter(|(_, score)| options.min_score.is_none_or(|min| *score >= min))
            .map(|(id, score)| Hit { id, score })
            .collect())
    }

    /// Writes an index snapshot now (if anything changed since the last),
    /// compacting first when tombstones passed the ratio, and refreshes the
    /// graph's search copy if it is due; returns when the snapshot is
    /// durable. Writes and searches go on meanwhile; a snapshot the
    /// maintenance thread is writing is waited for first.
    pub fn checkpoint(&self) -> Result<()> {
        self.current()?.checkpoint()
    }

    /// Rebuilds the graph without its tombstones when they reach the
    /// compaction ratio; returns whether it did. Searches and writes go on
    /// meanwhile (writes wait only while the new graph is swapped in).
    pub fn compact(&self) -> Result<bool> {
        let inner = self.current()?;
        let _maintenance = inner.maintenance_lock();
        inner.compact()
    }

    /// Figures about the database.
    pub fn stats(&self) -> Result<Stats> {
        let inner = self.current()?;
        let (index_points, tombstones) = inner.index.counts();
        Ok(Stats {
            images: inner.store.record_count(),
            files: inner.store.path_entries().count(),
            failures: inner.store.failures()?.len(),
            space: inner.space.clone(),
            index_params: inner.index.params(),
            index_memory: inner.index.memory(),
            resident_vector_bytes: inner.index.resident_vector_bytes(),
            index_points,
            tombstones,
            delta_points: inner.index.delta(),
            origin: inner.origin.clone(),
            last_seq: inner.writer().last_seq,
            store_bytes: inner.store.size_on_disk(),
            snapshot_bytes: snapshot::size_on_disk(&*inner.storage, &inner.root.join(INDEX_DIR)),
            format_version: inner.format_version,
        })
    }

    /// Checks the database's consistency (see [`VerifyReport`]).
    pub fn verify(&self) -> Result<VerifyReport> {
        let inner = self.current()?;
        let _writer = inner.writer();
        verify::verify(&inner.store, &inner.index)
    }

    /// Checkpoints, flushes the store and closes this handle (other clones
    /// stay open). Dropping does the same but can only log errors.
    pub fn close(self) -> Result<()> {
        self.checkpoint()?;
        self.current()?.store.flush()
    }
}

/// A boxed iterator over a store's records.
type RecordIter<'a> = Box<dyn Iterator<Item = Result<ImageRecord>> + Send + 'a>;

self_cell::self_cell!(
    /// [`Db::records`]' iterator beside the open database it borrows, so
    /// that a reindex cannot close the database under it.
    struct RecordsCell {
        owner: Arc<Open>,
        #[not_covariant]
        dependent: RecordIter,
    }
);

struct Records(RecordsCell);

impl Iterator for Records {
    type Item = Result<ImageRecord>;

    fn next(&mut self) -> Option<Result<ImageRecord>> {
        self.0.with_dependent_mut(|_, records| records.next())
    }
}

/// Fails with [`Error::SpaceMismatch`] unless `given` is the model of
/// `stored`, and with [`Error::VariantMismatch`] when it is another variant
/// of it that was not accepted.
fn check_space(
    root: &Path,
    stored: &EmbeddingSpace,
    given: &EmbeddingSpace,
    accept_variants: bool,
) -> Result<()> {
    if !stored.same_model(given) {
        return Err(Error::SpaceMismatch {
            path: root.to_path_buf(),
            stored: Box::new(stored.clone()),
            given: Box::new(given.clone()),
        });
    }
    if stored.variant != given.variant && !accept_variants {
        return Err(Error::VariantMismatch {
            path: root.to_path_buf(),
            stored: stored.variant,
            given: given.variant,
        });
    }
    Ok(())
}

/// The byte prefix of every path under `folder`.
fn folder_prefix(folder: &Path) -> Vec<u8> {
    let mut prefix = path_to_bytes(folder);
    if prefix.last() != Some(&b'/') {
        prefix.push(b'/');
    }
    prefix
}

fn index_changes(batch: &Batch) -> Vec<Change<'_>> {
    batch
        .puts
        .iter()
        .map(|(_, record)| Change::Upsert(record))
        .chain(batch.deletes.iter().map(|record| Change::Remove(record.id)))
        .collect()
}

impl Inner {
    /// Opens the database; returns it and whether a snapshot is due at once
    /// (after a rebuild or a long replay).
    fn open(
        root: &Path,
        options: DbOptions,
        signal: Option<Sender<Task>>,
    ) -> Result<(Inner, bool)> {
        let storage = options.storage.0.clone();
        check_free_space(&*storage, root, options.min_free_space)?;
        swap::finish_interrupted(root)?;
        let created = prepare_dir(&*storage, root, &options)?;
        let marker_version = marker::check(&*storage, root)?;
        let lock = marker::lock(root)?;
        let store = open_store(root, storage.clone())?;
        let space = match (store.space()?, &options.space) {
            (Some(stored), _) => stored,
            (None, Some(space)) if options.create => {
                let params = StoredIndexParams {
                    m: options.index.m as u32,
                    ef_construction: options.index.ef_construction as u32,
                };
                let memory = options.index_memory.unwrap_or_default();
                store.initialise(FORMAT_VERSION, space, &params, memory, new_db_id(root))?;
                space.clone()
            }
            (None, _) => {
                return Err(Error::Corrupt {
                    path: root.to_path_buf(),
                    what: "database",
                    problem: Corruption::CreationIncomplete,
                });
            }
        };
        let format_version = migrate::upgrade(&*storage, root, &store, marker_version)?;
        if let Some(expected) = &options.space {
            check_space(root, &space, expected, options.accept_variants)?;
        }
        let stored_params = store.index_params()?.ok_or(Error::Corrupt {
            path: root.to_path_buf(),
            what: "database",
            problem: Corruption::NoIndexParams,
        })?;
        let params = IndexParams {
            m: stored_params.m as usize,
            ef_construction: stored_params.ef_construction as usize,
            ef_search: options.index.ef_search,
        };
        params.validate()?;
        let memory = store.index_memory()?;
        if let Some(requested) = options.index_memory.filter(|&m| m != memory) {
            return Err(Error::IndexMemoryMismatch {
                path: root.to_path_buf(),
                recorded: memory,
                requested,
            });
        }
        let db_id = store.db_id()?.ok_or(Error::Corrupt {
            path: root.to_path_buf(),
            what: "database",
            problem: Corruption::NoDatabaseId,
        })?;
        let writer = Writer {
            next_id: store.next_id()?,
            last_seq: store.last_seq()?,
        };
        let identity = Identity {
            db_id,
            dim: space.dim as usize,
            params,
            memory,
            last_seq: writer.last_seq,
            log_pruned_through: store.log_pruned_through()?,
        };
        let index_dir = root.join(INDEX_DIR);
        // Changes the index holds that no snapshot has, and whether they are
        // worth a snapshot right away (a rebuild always is).
        let (mut index, origin, unsnapshotted, snapshot_now) = if created {
            let index = VectorIndex::empty(space.dim as usize, params, memory, writer.last_seq);
            (index, IndexOrigin::Created, 0, false)
        } else {
            match snapshot::load(&storage, &index_dir, &identity) {
                Ok(index) => {
                    let watermark = index.watermark();
                    let replayed = replay(&store, &index, writer.last_seq)?;
                    let snapshot_now = options.snapshot_due(replayed as u64, index.counts().0);
                    let origin = IndexOrigin::Snapshot {
                        watermark,
                        replayed,
                    };
                    (index, origin, replayed as u64, snapshot_now)
                }
                // The snapshot is evidence of writes the store lost:
                // rebuilding from what is left would pass off the loss
                // (all of it, for a truncated store) as a sound database.
                Err(reason @ RebuildReason::AheadOfStore { .. }) => {
                    warn!("{}: {reason}", root.display());
                    return Err(Error::Corrupt {
                        path: root.join(STORE_DIR),
                        what: "store",
                        problem: Corruption::StoreBehindIndex,
                    });
                }
                Err(reason) => {
                    if reason == RebuildReason::NoSnapshot && store.record_count() == 0 {
                        info!("{}: empty database, new index", root.display());
                    } else {
                        warn!(
                            "{}: rebuilding the index from the store: {reason}",
                            root.display()
                        );
                    }
                    let index = VectorIndex::build(
                        space.dim as usize,
                        params,
                        memory,
                        store.records(),
                        writer.last_seq,
                    )?;
                    let rows = store.record_count() as u64;
                    (index, IndexOrigin::Rebuilt { reason }, rows, rows > 0)
                }
            }
        };
        index.exact_scan_rows = options.exact_scan_rows;
        index.delta_rows = options.delta_rows;
        let inner = Inner {
            root: root.to_path_buf(),
            store,
            index,
            space,
            db_id,
            options,
            origin,
            writer: Mutex::new(writer),
            format_version,
            storage,
            unsnapshotted: AtomicU64::new(unsnapshotted),
            maintenance: Mutex::new(()),
            signal,
            reindexing: AtomicBool::new(false),
            _lock: lock,
        };
        Ok((inner, snapshot_now))
    }

    /// Fails unless `space` may read and write this database (see [`check_space`]).
    fn check_space(&self, space: &EmbeddingSpace) -> Result<()> {
        check_space(&self.root, &self.space, space, self.options.accept_variants)
    }

    /// [`Db::write`] on this database.
    fn write(&self, space: &EmbeddingSpace, batch: WriteBatch) -> Result<Vec<Option<ImageId>>> {
        self.check_space(space)?;
        let mut writer = self.writer();
        if self.reindexing.load(Ordering::SeqCst) {
            return Err(Error::Reindexing {
                path: self.root.clone(),
                during: ReindexConflict::Write,
            });
        }
        let mut pending = write::Pending::new(&self.store, self.index.dim(), writer.next_id);
        let ids = batch
            .ops
            .into_iter()
            .map(|op| pending.apply(op))
            .collect::<Result<Vec<_>>>()?;
        let seq = writer.last_seq + 1;
        let batch = pending.into_batch(seq);
        if batch.is_empty() {
            return Ok(ids);
        }
        if let Err(e) = self.store.commit(seq, &batch) {
            // The commit may or may not have reached the store: take its
            // counters and changes from the store itself.
            self.resync(&mut writer)?;
            return Err(e);
        }
        writer.last_seq = seq;
        if let Some(next_id) = batch.next_id {
            writer.next_id = next_id;
        }
        self.index.apply(&index_changes(&batch), seq);
        drop(writer);
        self.count_unsnapshotted((batch.puts.len() + batch.deletes.len()) as u64);
        Ok(ids)
    }

    /// Refuses writes from now on, for a reindex: returns once no write is
    /// under way. Fails if another reindex already runs.
    fn refuse_writes(&self) -> Result<()> {
        let _writer = self.writer();
        if self.reindexing.swap(true, Ordering::SeqCst) {
            return Err(Error::Reindexing {
                path: self.root.clone(),
                during: ReindexConflict::SecondReindex,
            });
        }
        Ok(())
    }

    /// Takes writes again after a reindex that did not swap in.
    fn accept_writes(&self) {
        self.reindexing.store(false, Ordering::SeqCst);
    }

    /// The ids the folder and tag parts of a filter allow (`None`: all).
    fn allowed_ids(&self, filter: &Filter) -> Result<Option<HashSet<ImageId>>> {
        let mut allowed: Option<HashSet<ImageId>> = None;
        if let Some(folder) = &filter.under {
            allowed = Some(self.store.ids_under(&folder_prefix(folder))?);
        }
        if let Some(tag) = &filter.tag {
            let tagged: HashSet<ImageId> = self
                .store
                .ids_tagged(tag)?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            allowed = Some(match allowed {
                Some(set) => set.intersection(&tagged).copied().collect(),
                None => tagged,
            });
        }
        Ok(allowed)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // Writer state is only changed after a successful commit, so it is
        // consistent even if a writer panicked.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn maintenance_lock(&self) -> MutexGuard<'_, ()> {
        // Guards no data: a panicked snapshot leaves nothing to repair.
        self.maintenance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Re-reads the counters from the store and replays what the index
    /// missed, after a commit whose outcome is unknown.
    fn resync(&self, writer: &mut Writer) -> Result<()> {
        writer.last_seq = self.store.last_seq()?;
        writer.next_id = self.store.next_id()?;
        let replayed = replay(&self.store, &self.index, writer.last_seq)?;
        self.count_unsnapshotted(replayed as u64);
        Ok(())
    }

    /// Counts changes the index took, and tells the maintenance thread when
    /// they make a snapshot, a compaction or a refresh of the graph's search
    /// copy due: all a write does about maintenance.
    fn count_unsnapshotted(&self, changes: u64) {
        self.unsnapshotted.fetch_add(changes, Ordering::SeqCst);
        if self.snapshot_due() || self.compaction_due() || self.index.refresh_due() {
            self.signal();
        }
    }

    /// Wakes the maintenance thread, if any; never blocks (a pending signal
    /// already covers this one).
    fn signal(&self) {
        if let Some(signal) = &self.signal
            && let Err(TrySendError::Disconnected(_)) = signal.try_send(Task::Maintain)
        {
            warn!("{}: the maintenance thread is gone", self.root.display());
        }
    }

    fn snapshot_due(&self) -> bool {
        let changes = self.unsnapshotted.load(Ordering::SeqCst);
        changes > 0 && self.options.snapshot_due(changes, self.index.counts().0)
    }

    fn compaction_due(&self) -> bool {
        let (live, dead) = self.index.counts();
        dead > 0 && (dead as f32) >= self.options.compact_ratio * (live + dead) as f32
    }

    /// What the maintenance thread does when signalled. Its errors are
    /// logged: nothing acknowledged depends on a snapshot (the change log
    /// covers it), and the next checkpoint, or the close, tries again and
    /// reports.
    fn maintain(&self) {
        let _maintenance = self.maintenance_lock();
        // A snapshot refreshes the search copy as it dumps the graph, and a
        // compaction builds a new one: the refresh alone is what is left.
        let done = self.compact().and_then(|compacted| {
            if compacted || self.snapshot_due() {
                self.snapshot()
            } else {
                self.index.refresh();
                Ok(())
            }
        });
        if let Err(e) = done {
            warn!(
                "{}: background index maintenance failed (retried at the next checkpoint): {e}",
                self.root.display()
            );
        }
    }

    fn checkpoint(&self) -> Result<()> {
        let _maintenance = self.maintenance_lock();
        self.compact()?;
        self.snapshot()?;
        self.index.refresh();
        Ok(())
    }

    /// Writes a snapshot if anything changed since the last one. The caller
    /// holds the maintenance lock. Writes go on meanwhile: the snapshot is
    /// of a frozen view (its watermark covers exactly its rows), and the log
    /// is pruned only through that watermark, so later changes are replayed
    /// on the next open.
    fn snapshot(&self) -> Result<()> {
        let index_dir = self.root.join(INDEX_DIR);
        // Read before the view is taken: every change counted by then is in
        // the view (changes are counted after they reach the index).
        let taken = self.unsnapshotted.load(Ordering::SeqCst);
        if taken == 0 && snapshot::size_on_disk(&*self.storage, &index_dir) > 0 {
            return Ok(());
        }
        let (live, dead) = self.index.counts();
        if live + dead == 0 {
            // An empty index needs no snapshot: the store (the log, when one
            // was pruned) rebuilds it.
            return Ok(());
        }
        let frozen = self.index.freeze();
        let watermark = frozen.watermark;
        let bytes = snapshot::write(&*self.storage, &index_dir, &self.index, frozen, self.db_id)?;
        self.store.prune_log(watermark)?;
        self.unsnapshotted.fetch_sub(taken, Ordering::SeqCst);
        info!(
            "{}: index snapshot written through {watermark} ({bytes} bytes)",
            self.root.display()
        );
        Ok(())
    }

    /// Rebuilds the graph without its tombstones when they reach the ratio.
    /// The caller holds the maintenance lock, so no snapshot prunes the log
    /// that the catch-up below reads. The new graph is built from a copy,
    /// changes written meanwhile are replayed into it from the change log,
    /// and only the last of them, and the swap, hold writes back.
    fn compact(&self) -> Result<bool> {
        if !self.compaction_due() {
            return Ok(false);
        }
        let (live, dead) = self.index.counts();
        info!(
            "{}: compacting the index ({dead} tombstones, {live} live)",
            self.root.display()
        );
        let compacted = self.index.compacted();
        replay(&self.store, &compacted, self.store.last_seq()?)?;
        let writer = self.writer();
        replay(&self.store, &compacted, writer.last_seq)?;
        let dead = self.index.counts().1;
        self.index.replace_with(compacted);
        drop(writer);
        self.unsnapshotted.fetch_add(dead as u64, Ordering::SeqCst);
        Ok(true)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.unsnapshotted.load(Ordering::SeqCst) > 0
            && let Err(e) = self.checkpoint()
        {
            warn!(
                "{}: could not write the index snapshot on close: {e}",
                self.root.display()
            );
        }
    }
}

/// Applies the store's changes after the index's watermark; returns how
/// many records were replayed.
fn replay(store: &Store, index: &VectorIndex, last_seq: u64) -> Result<usize> {
    let ids = store.changed_since(index.watermark())?;
    let records: Vec<(ImageId, Option<ImageRecord>)> = ids
        .into_iter()
        .map(|id| Ok((id, store.record(id)?)))
        .collect::<Result<_>>()?;
    let changes: Vec<Change<'_>> = records
        .iter()
        .map(|(id, record)| match record {
            Some(record) => Change::Upsert(record),
            None => Change::Remove(*id),
        })
        .collect();
    index.apply(&changes, last_seq);
    Ok(records.len())
}

/// Checks the directory before anything is opened; creates it (and its
/// marker) when asked. Returns whether a new database was started.
fn prepare_dir(storage: &dyn Storage, root: &Path, options: &DbOptions) -> Result<bool> {
    let marker_exists = storage.exists(&root.join(FORMAT_MARKER_FILE));
    if marker_exists {
        return Ok(false);
    }
    let empty = match storage.list(root) {
        Ok(entries) => entries.is_empty(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => false,
        Err(e) => return Err(Error::io(root)(e)),
    };
    if !empty || (root.exists() && !root.is_dir()) {
        return Err(Error::NotADatabase {
            path: root.to_path_buf(),
        });
    }
    if !options.create || options.space.is_none() {
        return Err(Error::NotFound {
            path: root.to_path_buf(),
        });
    }
    storage.create_dir_all(root).map_err(Error::io(root))?;
    marker::create(storage, root)?;
    Ok(true)
}

/// Refuses to open when the disk under `root` (or under its nearest
/// existing ancestor, when creating) has less than `required` bytes free.
fn check_free_space(storage: &dyn Storage, root: &Path, required: u64) -> Result<()> {
    let existing = root
        .ancestors()
        .find(|p| storage.exists(p))
        .unwrap_or(Path::new("."));
    let available = storage
        .available_space(existing)
        .map_err(Error::io(existing))?;
    if available < required {
        return Err(Error::LowDiskSpace {
            path: root.to_path_buf(),
            available,
            required,
        });
    }
    Ok(())
}

/// Opens the sled store; a panic inside sled (it asserts on some damaged
/// files) becomes a corruption error.
fn open_store(root: &Path, storage: Arc<dyn Storage>) -> Result<Store> {
    let dir = root.join(STORE_DIR);
    // The storage is only handed over, not used, before sled could panic.
    let open = std::panic::AssertUnwindSafe(|| Store::open(root, &dir, storage));
    match std::panic::catch_unwind(open) {
        Ok(store) => store,
        Err(_) => Err(Error::Corrupt {
            path: dir,
            what: "store",
            problem: Corruption::StorePanicked,
        }),
    }
}

/// A database id: unique enough to tell a copied-in snapshot from ours.
fn new_db_id(root: &Path) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&Timestamp::now().0.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&path_to_bytes(root));
    let digest = hasher.finalize();
    digest.as_bytes()[..16].try_into().expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle must be shareable across threads (checked at compile time).
    #[test]
    fn db_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Db>();
    }

    #[test]
    fn snapshots_come_at_a_fixed_count_then_in_proportion_to_the_index() {
        let options = DbOptions::default().snapshot_every(10_000);
        assert!(!options.snapshot_due(9_999, 1_000));
        assert!(options.snapshot_due(10_000, 1_000));
        assert!(options.snapshot_due(10_000, 80_000));
        assert!(!options.snapshot_due(10_000, 400_000));
        assert!(options.snapshot_due(50_000, 400_000));
    }
}
