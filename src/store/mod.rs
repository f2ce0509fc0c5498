//! The persistent store: sled trees holding image records, their secondary
//! keys and the change log, written in atomic, durable batches.
//!
//! The store is the source of truth: the HNSW index can always be rebuilt from
//! it. It owns the trees and the key layout (`schema/store.md`) and knows
//! nothing about the index. Writers hand it whole before/after pairs of
//! records ([`Batch`]); it derives every secondary key change from them, so a
//! record and its keys can never disagree.

pub(crate) mod codec;
pub(crate) mod record;
mod watch;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::error::{Corruption, Error, ErrorKind, FailureReason, Result, StoreError};
use crate::fsio::{CommitStage, Storage};
use crate::space::{EmbeddingSpace, Fingerprint};
use crate::types::{ContentHash, ImageId, IndexMemory, ModelVariant, Timestamp};
use codec::{
    corrupt, decode, encode, hash_key, id_from_bytes, id_key, log_key, split_log_key, tag_key,
};
use record::{ImageRecord, ImageSource, path_to_bytes};

/// How long an open waits for sled's file lock to be released by the I/O
/// threads of a handle closed just before (see [`Store::open`]).
const SLED_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Keys of the `meta` tree.
mod meta_key {
    pub const FORMAT_VERSION: &[u8] = b"format_version";
    pub const SPACE: &[u8] = b"space";
    pub const INDEX_PARAMS: &[u8] = b"index_params";
    pub const INDEX_MEMORY: &[u8] = b"index_memory";
    pub const NEXT_ID: &[u8] = b"next_id";
    pub const LAST_SEQ: &[u8] = b"last_seq";
    pub const CREATED: &[u8] = b"created";
    pub const DB_ID: &[u8] = b"db_id";
    pub const LOG_PRUNED_THROUGH: &[u8] = b"log_pruned_through";
}

/// What the database records once, at creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredIndexParams {
    pub m: u32,
    pub ef_construction: u32,
}

/// A file that could not be indexed, kept so it is not retried until it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Why it failed.
    pub reason: FailureReason,
    /// The file size when it failed.
    pub byte_size: u64,
    /// The file's modification time when it failed.
    pub mtime: Timestamp,
    /// When it failed.
    pub at: Timestamp,
}

/// A failure record as format 1 wrote it: a free-text reason that began
/// with the path (often twice).
#[derive(Deserialize)]
pub(crate) struct FailureV1 {
    reason: String,
    byte_size: u64,
    mtime: Timestamp,
    at: Timestamp,
}

/// The embedding space as formats 1 to 4 wrote it: no variant (every
/// database of those formats holds fp32 vectors).
#[derive(Deserialize)]
struct SpaceV1 {
    model_id: String,
    dim: u32,
    fingerprint: Fingerprint,
}

impl From<SpaceV1> for EmbeddingSpace {
    fn from(old: SpaceV1) -> EmbeddingSpace {
        EmbeddingSpace {
            model_id: old.model_id,
            dim: old.dim,
            fingerprint: old.fingerprint,
            variant: ModelVariant::Fp32,
        }
    }
}

/// The first format whose space records the model variant.
const SPACE_VARIANT_SINCE: u32 = 5;

impl FailureV1 {
    /// The format 2 record: the repeated path left out, the kind read from
    /// the messages format 1 wrote (`schema/store.md`, "v1 → v2").
    pub(crate) fn migrate(self, path: &Path) -> Failure {
        let prefix = format!("{}: ", path.display());
        let mut message = self.reason.as_str();
        while let Some(rest) = message.strip_prefix(&prefix) {
            message = rest;
        }
        let kind = if message.contains("not a supported image") {
            ErrorKind::Unsupported
        } else if message.contains("over the limit") {
            ErrorKind::TooLarge
        } else if message.starts_with("cannot read") || message.starts_with("I/O error") {
            ErrorKind::Io
        } else {
            ErrorKind::Corrupt
        };
        Failure {
            reason: FailureReason {
                kind,
                message: message.to_string(),
            },
            byte_size: self.byte_size,
            mtime: self.mtime,
            at: self.at,
        }
    }
}

/// One atomic change to the store.
#[derive(Default)]
pub(crate) struct Batch {
    /// Records created (`None` before) or changed, with their state before.
    pub puts: Vec<(Option<ImageRecord>, ImageRecord)>,
    /// Records removed, as they were.
    pub deletes: Vec<ImageRecord>,
    /// Failed files to record.
    pub failures: Vec<(PathBuf, Failure)>,
    /// Failed files to forget (they were indexed, or are gone).
    pub cleared_failures: Vec<PathBuf>,
    /// Sources to record, of records this batch leaves in place.
    pub sources: Vec<(ImageId, ImageSource)>,
    /// The id counter after this batch, when ids were allocated.
    pub next_id: Option<u64>,
}

impl Batch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.deletes.is_empty()
            && self.failures.is_empty()
            && self.cleared_failures.is_empty()
            && self.sources.is_empty()
    }

    /// The ids of the records this batch touches.
    pub fn touched_ids(&self) -> impl Iterator<Item = ImageId> + '_ {
        self.puts
            .iter()
            .map(|(_, r)| r.id)
            .chain(self.deletes.iter().map(|r| r.id))
    }
}

/// The sled database and its trees.
pub(crate) struct Store {
    /// The database directory, for error messages.
    root: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    records: sled::Tree,
    paths: sled::Tree,
    hashes: sled::Tree,
    tags: sled::Tree,
    log: sled::Tree,
    failures: sled::Tree,
    roots: sled::Tree,
    queue: sled::Tree,
    /// Image id → [`ImageSource`] (since format 6).
    sources: sled::Tree,
    /// Held while appending to `queue`, whose next number is read from it.
    enqueueing: std::sync::Mutex<()>,
    /// Asked around each commit, so that tests can fail one.
    storage: std::sync::Arc<dyn Storage>,
}

/// Removes what sled leaves of a snapshot write that did not finish (a
/// `snap.<lsn>.generating` file, empty when the disk filled): sled would
/// read it as its snapshot and refuse to open. A finished snapshot is
/// renamed from it, so the leftover never holds data that is not also in
/// the log.
fn remove_interrupted_snapshots(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!("removing an interrupted store snapshot: {}", path.display());
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the sled store in `dir`. The caller holds the
    /// database lock, so no other handle or process can have it open.
    pub fn open(root: &Path, dir: &Path, storage: std::sync::Arc<dyn Storage>) -> Result<Store> {
        let store_err = |source| StoreError::Sled {
            path: root.to_path_buf(),
            source,
        };
        // sled caches up to 1 GiB by default; records are read rarely and the
        // index keeps its own copy of the vectors.
        remove_interrupted_snapshots(dir).map_err(Error::io(dir))?;
        let config = sled::Config::new().path(dir).cache_capacity(128 << 20);
        let mut wait = std::time::Duration::from_millis(5);
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match config.open() {
                // The database lock is ours, so sled's own lock can only be
                // held by the I/O threads of a handle of this process that
                // was just closed: they release it within moments.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && waited < SLED_LOCK_PATIENCE =>
                {
                    std::thread::sleep(wait);
                    waited += wait;
                    wait = (wait * 2).min(std::time::Duration::from_millis(200));
                }
                opened => break opened.map_err(store_err)?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(store_err);
        Ok(Store {
            root: root.to_path_buf(),
            meta: tree("meta")?,
            records: tree("records")?,
            paths: tree("paths")?,
            hashes: tree("hashes")?,
            tags: tree("tags")?,
            log: tree("log")?,
            failures: tree("failures")?,
            roots: tree("roots")?,
            queue: tree("queue")?,
            sources: tree("sources")?,
            enqueueing: std::sync::Mutex::new(()),
            db,
            storage,
        })
    }

    fn err(&self) -> impl Fn(sled::Error) -> Error + '_ {
        |source| {
            StoreError::Sled {
                path: self.root.clone(),
                source,
            }
            .into()
        }
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>> {
        match self.meta.get(key).map_err(self.err())? {
            Some(bytes) => decode(&bytes, &self.root, what).map(Some),
            None => Ok(None),
        }
    }

    /// The format version recorded in the store, if initialised.
    pub fn format_version(&self) -> Result<Option<u32>> {
        self.meta_get(meta_key::FORMAT_VERSION, "format version")
    }

    /// The embedding space recorded at creation, if initialised (in the
    /// encoding of the store's format version).
    pub fn space(&self) -> Result<Option<EmbeddingSpace>> {
        if self.format_version()?.unwrap_or(SPACE_VARIANT_SINCE) >= SPACE_VARIANT_SINCE {
            self.meta_get(meta_key::SPACE, "embedding space")
        } else {
            Ok(self
                .meta_get::<SpaceV1>(meta_key::SPACE, "embedding space")?
                .map(EmbeddingSpace::from))
        }
    }

    /// The index parameters recorded at creation.
    pub fn index_params(&self) -> Result<Option<StoredIndexParams>> {
        self.meta_get(meta_key::INDEX_PARAMS, "index parameters")
    }

    /// The index memory mode recorded at creation: resident for a database
    /// created before modes existed.
    pub fn index_memory(&self) -> Result<IndexMemory> {
        match self.meta_get::<u8>(meta_key::INDEX_MEMORY, "index memory mode")? {
            None => Ok(IndexMemory::Resident),
            Some(code) => IndexMemory::from_code(code).ok_or_else(|| Error::Corrupt {
                path: self.root.clone(),
                what: "store",
                problem: Corruption::UnknownIndexMemory,
            }),
        }
    }

    /// The next unused image id.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.meta_get(meta_key::NEXT_ID, "id counter")?.unwrap_or(1))
    }

    /// The sequence number of the last committed batch (0 for none).
    pub fn last_seq(&self) -> Result<u64> {
        Ok(self
            .meta_get(meta_key::LAST_SEQ, "sequence counter")?
            .unwrap_or(0))
    }

    /// The database's random id, which its index snapshots carry.
    pub fn db_id(&self) -> Result<Option<[u8; 16]>> {
        self.meta_get(meta_key::DB_ID, "database id")
    }

    /// Records the format version, space and index parameters of a new
    /// database, durably.
    pub fn initialise(
        &self,
        version: u32,
        space: &EmbeddingSpace,
        params: &StoredIndexParams,
        memory: IndexMemory,
        db_id: [u8; 16],
    ) -> Result<()> {
        let entries = [
            (meta_key::DB_ID, encode(&db_id, "database id")?),
            (
                meta_key::FORMAT_VERSION,
                encode(&version, "format version")?,
            ),
            (meta_key::SPACE, encode(space, "embedding space")?),
            (meta_key::INDEX_PARAMS, encode(params, "index parameters")?),
            (
                meta_key::INDEX_MEMORY,
                encode(&memory.code(), "index memory mode")?,
            ),
            (
                meta_key::CREATED,
                encode(&Timestamp::now(), "creation time")?,
            ),
        ];
        self.meta
            .transaction(|meta| {
                for (key, value) in &entries {
                    meta.insert(*key, value.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.tx_err(e))?;
        self.flush()
    }

    fn tx_err(&self, e: TransactionError<()>) -> Error {
        match e {
            TransactionError::Storage(source) => StoreError::Sled {
                path: self.root.clone(),
                source,
            }
            .into(),
            // Only storage errors abort our transactions.
            TransactionError::Abort(()) => unreachable!("store transactions never abort"),
        }
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(self.err())?;
        Ok(())
    }

    /// The record with this id.
    pub fn record(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        match self.records.get(id_key(id)).map_err(self.err())? {
            Some(bytes) => decode(&bytes, &self.root, "image record").map(Some),
            None => Ok(None),
        }
    }

    /// The id of the record holding this canonical path.
    pub fn id_by_path(&self, path: &Path) -> Result<Option<ImageId>> {
        match self.paths.get(path_to_bytes(path)).map_err(self.err())? {
            Some(bytes) => id_from_bytes(&bytes, &self.root, "path map").map(Some),
            None => Ok(None),
        }
    }

    /// The ids of the records with this content.
    pub fn ids_by_hash(&self, hash: &ContentHash) -> Result<Vec<ImageId>> {
        self.hashes
            .scan_prefix(hash.0)
            .keys()
            .map(|key| {
                id_from_bytes(
                    &key.map_err(self.err())?[32..],
                    &self.root,
                    "content hash map",
                )
            })
            .collect()
    }

    /// The ids of the records whose canonical path starts with `prefix`
    /// (raw bytes; the caller adds a trailing separator for folders).
    pub fn ids_under(&self, prefix: &[u8]) -> Result<HashSet<ImageId>> {
        self.paths
            .scan_prefix(prefix)
            .values()
            .map(|value| id_from_bytes(&value.map_err(self.err())?, &self.root, "path map"))
            .collect()
    }

    /// Every (path, id) pair whose path starts with `prefix`.
    pub fn paths_under(&self, prefix: &[u8]) -> Result<Vec<(PathBuf, ImageId)>> {
        self.paths
            .scan_prefix(prefix)
            .map(|item| {
                let (key, value) = item.map_err(self.err())?;
                let path = record::path_from_bytes(key.to_vec())
                    .map_err(|problem| corrupt(&self.root, "path map", problem))?;
                Ok((path, id_from_bytes(&value, &self.root, "path map")?))
            })
            .collect()
    }

    /// The ids tagged with `label`, with their scores.
    pub fn ids_tagged(&self, label: &str) -> Result<Vec<(ImageId, f32)>> {
        let prefix = codec::tag_prefix(label);
        self.tags
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item.map_err(self.err())?;
                let id = id_from_bytes(&key[prefix.len()..], &self.root, "tag map")?;
                let score: f32 = decode(&value, &self.root, "tag score")?;
                Ok((id, score))
            })
            .collect()
    }

    /// Every record, in id order.
    pub fn records(&self) -> impl Iterator<Item = Result<ImageRecord>> + '_ {
        self.records.iter().values().map(|value| {
            let bytes = value.map_err(self.err())?;
            decode(&bytes, &self.root, "image record")
        })
    }

    /// The number of records.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Every (path, id) pair of the path map.
    pub fn path_entries(&self) -> impl Iterator<Item = Result<(Vec<u8>, ImageId)>> + '_ {
        self.paths.iter().map(|item| {
            let (key, value) = item.map_err(self.err())?;
            Ok((key.to_vec(), id_from_bytes(&value, &self.root, "path map")?))
        })
    }

    /// Every (hash, id) pair of the content hash map.
    pub fn hash_entries(&self) -> impl Iterator<Item = Result<(ContentHash, ImageId)>> + '_ {
        self.hashes.iter().keys().map(|key| {
            let key = key.map_err(self.err())?;
            if key.len() != 40 {
                return Err(corrupt(
                    &self.root,
                    "content hash map",
                    Corruption::HashKeyLength,
                ));
            }
            let hash = ContentHash(key[..32].try_into().expect("32 bytes"));
            Ok((
                hash,
                id_from_bytes(&key[32..], &self.root, "content hash map")?,
            ))
        })
    }

    /// Every (label, id) pair of the tag map.
    pub fn tag_entries(&self) -> impl Iterator<Item = Result<(String, ImageId)>> + '_ {
        self.tags.iter().keys().map(|key| {
            let key = key.map_err(self.err())?;
            let corrupt = |problem| corrupt(&self.root, "tag map", problem);
            let split = key
                .len()
                .checked_sub(9)
                .ok_or(corrupt(Corruption::TagKeyLength))?;
            let label = std::str::from_utf8(&key[..split])
                .map_err(|_| corrupt(Corruption::LabelNotUtf8))?;
            Ok((
                label.to_string(),
                id_from_bytes(&key[split + 1..], &self.root, "tag map")?,
            ))
        })
    }

    /// Every distinct label with the number of images carrying it.
    pub fn labels(&self) -> Result<Vec<(String, usize)>> {
        let mut labels: Vec<(String, usize)> = Vec::new();
        for entry in self.tag_entries() {
            let (label, _) = entry?;
            match labels.last_mut() {
                Some((last, count)) if *last == label => *count += 1,
                _ => labels.push((label, 1)),
            }
        }
        Ok(labels)
    }

    /// The ids changed by batches after `seq`, each once, in log order.
    pub fn changed_since(&self, seq: u64) -> Result<Vec<ImageId>> {
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        for key in self.log.range(log_key(seq + 1, ImageId(0))..).keys() {
            let (_, id) = split_log_key(&key.map_err(self.err())?, &self.root)?;
            if seen.insert(id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The sequence number up to which the change log was pruned: a
    /// snapshot older than this cannot be brought up to date by replay.
    pub fn log_pruned_through(&self) -> Result<u64> {
        Ok(self
            .meta_get(meta_key::LOG_PRUNED_THROUGH, "log pruning mark")?
            .unwrap_or(0))
    }

    /// Forgets the change log up to and including `seq` (a snapshot covers it).
    pub fn prune_log(&self, seq: u64) -> Result<()> {
        // The mark first: a crash between the two leaves extra entries, which
        // replay skips, never a gap that a stale snapshot could fall into.
        self.meta
            .insert(
                meta_key::LOG_PRUNED_THROUGH,
                encode(&seq, "log pruning mark")?,
            )
            .map_err(self.err())?;
        for key in self.log.range(..log_key(seq + 1, ImageId(0))).keys() {
            self.log
                .remove(key.map_err(self.err())?)
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// Where the image with this id comes from, when it was imported from
    /// a shard with a URL, caption or key.
    pub fn source(&self, id: ImageId) -> Result<Option<ImageSource>> {
        match self.sources.get(id_key(id)).map_err(self.err())? {
            Some(bytes) => decode(&bytes, &self.root, "image source").map(Some),
            None => Ok(None),
        }
    }

    /// Every (id, source) pair, in id order.
    pub fn source_entries(&self) -> impl Iterator<Item = Result<(ImageId, ImageSource)>> + '_ {
        self.sources.iter().map(|item| {
            let (key, value) = item.map_err(self.err())?;
            Ok((
                id_from_bytes(&key, &self.root, "source map")?,
                decode(&value, &self.root, "image source")?,
            ))
        })
    }

    /// The recorded failure of a file, if any.
    pub fn failure(&self, path: &Path) -> Result<Option<Failure>> {
        match self.failures.get(path_to_bytes(path)).map_err(self.err())? {
            Some(bytes) => decode(&bytes, &self.root, "failure record").map(Some),
            None => Ok(None),
        }
    }

    /// Every recorded failure, in path order.
    pub fn failures(&self) -> Result<Vec<(PathBuf, Failure)>> {
        self.failures
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(self.err())?;
                let path = record::path_from_bytes(key.to_vec())
                    .map_err(|problem| corrupt(&self.root, "failure map", problem))?;
                Ok((path, decode(&value, &self.root, "failure record")?))
            })
            .collect()
    }

    /// Commits a batch as sequence number `seq`: the records, every secondary
    /// key they imply and a change-log entry per record, in one transaction,
    /// then flushes so that the batch is durable when this returns.
    pub fn commit(&self, seq: u64, batch: &Batch) -> Result<()> {
        self.check_commit(CommitStage::Before)?;
        let mut ops = KeyOps::default();
        for (old, new) in &batch.puts {
            ops.put_record(old.as_ref(), new)?;
        }
        for old in &batch.deletes {
            ops.delete_record(old);
        }
        for id in batch.touched_ids() {
            ops.log.push((log_key(seq, id).to_vec(), Vec::new()));
        }
        for (path, failure) in &batch.failures {
            ops.failures.push((
                path_to_bytes(path),
                Some(encode(failure, "failure record")?),
            ));
        }
        for path in &batch.cleared_failures {
            ops.failures.push((path_to_bytes(path), None));
        }
        for (id, source) in &batch.sources {
            ops.sources
                .push((id_key(*id).to_vec(), Some(encode(source, "image source")?)));
        }
        ops.meta.push((
            meta_key::LAST_SEQ.to_vec(),
            encode(&seq, "sequence counter")?,
        ));
        if let Some(next_id) = batch.next_id {
            ops.meta
                .push((meta_key::NEXT_ID.to_vec(), encode(&next_id, "id counter")?));
        }

        (
            &self.meta,
            &self.records,
            &self.paths,
            &self.hashes,
            &self.tags,
            &self.log,
            &self.failures,
            &self.sources,
        )
            .transaction(
                |(meta, records, paths, hashes, tags, log, failures, sources)| {
                    for (key, value) in &ops.meta {
                        meta.insert(key.as_slice(), value.as_slice())?;
                    }
                    for (tree, list) in [
                        (records, &ops.records),
                        (paths, &ops.paths),
                        (hashes, &ops.hashes),
                        (tags, &ops.tags),
                        (failures, &ops.failures),
                        (sources, &ops.sources),
                    ] {
                        // Removals first: a path that moves between two records of
                        // one batch is removed from one and inserted for the other.
                        for (key, _) in list.iter().filter(|(_, value)| value.is_none()) {
                            tree.remove(key.as_slice())?;
                        }
                        for (key, value) in list {
                            if let Some(value) = value {
                                tree.insert(key.as_slice(), value.as_slice())?;
                            }
                        }
                    }
                    for (key, value) in &ops.log {
                        log.insert(key.as_slice(), value.as_slice())?;
                    }
                    Ok::<_, ConflictableTransactionError<()>>(())
                },
            )
            .map_err(|e| self.tx_err(e))?;
        self.check_commit(CommitStage::Applied)?;
        self.flush()
    }

    /// Rewrites a format 1 store as format 2 (typed failure records) in one
    /// transaction that also records the new version; returns how many
    /// failure records were rewritten.
    pub fn migrate_from_v1(&self, version: u32) -> Result<usize> {
        let mut rewritten = Vec::new();
        for item in self.failures.iter() {
            let (key, value) = item.map_err(self.err())?;
            let path = record::path_from_bytes(key.to_vec())
                .map_err(|problem| corrupt(&self.root, "failure map", problem))?;
            let old: FailureV1 = decode(&value, &self.root, "failure record")?;
            rewritten.push((key, encode(&old.migrate(&path), "failure record")?));
        }
        let version = encode(&version, "format version")?;
        (&self.meta, &self.failures)
            .transaction(|(meta, failures)| {
                for (key, value) in &rewritten {
                    failures.insert(key, value.as_slice())?;
                }
                meta.insert(meta_key::FORMAT_VERSION, version.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.tx_err(e))?;
        self.flush()?;
        Ok(rewritten.len())
    }

    /// Rewrites a format 4 store's embedding space with its variant (fp32) in
    /// one transaction that also records format 5.
    pub fn migrate_space_to_v5(&self) -> Result<()> {
        let Some(space) = self.space()? else {
            return self.record_format_version(SPACE_VARIANT_SINCE);
        };
        let space = encode(&space, "embedding space")?;
        let version = encode(&SPACE_VARIANT_SINCE, "format version")?;
        self.meta
            .transaction(|meta| {
                meta.insert(meta_key::SPACE, space.as_slice())?;
                meta.insert(meta_key::FORMAT_VERSION, version.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.tx_err(e))?;
        self.flush()
    }

    /// Records the format version of a migration that rewrites nothing.
    pub fn record_format_version(&self, version: u32) -> Result<()> {
        let version = encode(&version, "format version")?;
        self.meta
            .insert(meta_key::FORMAT_VERSION, version)
            .map_err(self.err())?;
        self.flush()
    }

    fn check_commit(&self, stage: CommitStage) -> Result<()> {
        self.storage
            .check_commit(stage)
            .map_err(|source| Error::Io {
                path: self.root.join("store"),
                source,
            })
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// The key writes of one batch, per tree: `Some(value)` inserts, `None` removes.
#[derive(Default)]
struct KeyOps {
    meta: Vec<(Vec<u8>, Vec<u8>)>,
    records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    paths: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    hashes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    tags: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    log: Vec<(Vec<u8>, Vec<u8>)>,
    failures: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Only removals: a deleted record takes its source with it.
    sources: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl KeyOps {
    fn put_record(&mut self, old: Option<&ImageRecord>, new: &ImageRecord) -> Result<()> {
        let id = id_key(new.id).to_vec();
        self.records
            .push((id.clone(), Some(encode(new, "image record")?)));
        let new_paths: HashSet<Vec<u8>> =
            new.files.iter().map(|f| path_to_bytes(&f.path)).collect();
        let old_paths: HashSet<Vec<u8>> = old
            .map(|o| o.files.iter().map(|f| path_to_bytes(&f.path)).collect())
            .unwrap_or_default();
        for path in old_paths.difference(&new_paths) {
            self.paths.push((path.clone(), None));
        }
        for path in new_paths.difference(&old_paths) {
            self.paths.push((path.clone(), Some(id.clone())));
        }
        if let Some(old) = old.filter(|o| o.content_hash != new.content_hash) {
            self.hashes
                .push((hash_key(&old.content_hash, old.id).to_vec(), None));
        }
        if old.is_none_or(|o| o.content_hash != new.content_hash) {
            self.hashes.push((
                hash_key(&new.content_hash, new.id).to_vec(),
                Some(Vec::new()),
            ));
        }
        for tag in old.map(|o| o.tags.as_slice()).unwrap_or_default() {
            if !new.tags.iter().any(|t| t.label == tag.label) {
                self.tags.push((tag_key(&tag.label, new.id), None));
            }
        }
        for tag in &new.tags {
            self.tags.push((
                tag_key(&tag.label, new.id),
                Some(encode(&tag.score, "tag score")?),
            ));
        }
        Ok(())
    }

    fn delete_record(&mut self, old: &ImageRecord) {
        self.records.push((id_key(old.id).to_vec(), None));
        self.sources.push((id_key(old.id).to_vec(), None));
        for file in &old.files {
            self.paths.push((path_to_bytes(&file.path), None));
        }
        self.hashes
            .push((hash_key(&old.content_hash, old.id).to_vec(), None));
        for tag in &old.tags {
            self.tags.push((tag_key(&tag.label, old.id), None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrated(reason: &str) -> FailureReason {
        let old = FailureV1 {
            reason: reason.to_string(),
            byte_size: 1,
            mtime: Timestamp(2),
            at: Timestamp(3),
        };
        let new = old.migrate(Path::new("/p/a.jpg"));
        assert_eq!(
            (new.byte_size, new.mtime, new.at),
            (1, Timestamp(2), Timestamp(3))
        );
        new.reason
    }

    /// Each class of format 1 reason becomes its kind, the path said once
    /// or twice at its start removed (`schema/store.md`, "v1 → v2").
    #[test]
    fn format_1_reasons_get_their_kinds() {
        let cases = [
            (
                "/p/a.jpg: /p/a.jpg: not a supported image",
                ErrorKind::Unsupported,
                "not a supported image",
            ),
            (
                "/p/a.jpg: image of 9x9 pixels is over the limit of 1 pixels",
                ErrorKind::TooLarge,
                "image of 9x9 pixels is over the limit of 1 pixels",
            ),
            (
                "/p/a.jpg: cannot read /p/a.jpg: denied",
                ErrorKind::Io,
                "cannot read /p/a.jpg: denied",
            ),
            (
                "I/O error on /p/a.jpg",
                ErrorKind::Io,
                "I/O error on /p/a.jpg",
            ),
            (
                "/p/a.jpg: cannot decode image: bad",
                ErrorKind::Corrupt,
                "cannot decode image: bad",
            ),
        ];
        for (reason, kind, message) in cases {
            assert_eq!(
                migrated(reason),
                FailureReason {
                    kind,
                    message: message.to_string()
                },
                "{reason}"
            );
        }
    }

    #[test]
    fn only_an_unfinished_sled_snapshot_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "snap.00000000000A2F31.generating",
            "snap.00000000000A2F31",
            "conf",
            "db",
            "blobs.generating",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_interrupted_snapshots(dir.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["blobs.generating", "conf", "db", "snap.00000000000A2F31"]
        );
        // A store that was never created is not an error.
        remove_interrupted_snapshots(&dir.path().join("absent")).unwrap();
    }

    #[test]
    fn the_size_on_disk_grows_with_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(crate::fsio::LocalStorage);
        let store = Store::open(dir.path(), &dir.path().join("store"), storage).unwrap();
        let empty = store.size_on_disk();
        let queued: Vec<_> = (0..2000)
            .map(|i| record::FileEvent::Created(PathBuf::from(format!("/photos/{i:05}.jpg"))))
            .collect();
        store.enqueue(&queued).unwrap();
        assert!(
            store.size_on_disk() > empty + 2000 * 16,
            "{} after {empty}",
            store.size_on_disk()
        );
    }

    #[test]
    fn an_open_waits_for_sleds_lock_held_by_a_handle_being_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let held = sled::Config::new().path(&store_dir).open().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(crate::fsio::LocalStorage);
        let started = std::time::Instant::now();
        let store = Store::open(dir.path(), &store_dir, storage);
        release.join().unwrap();
        assert!(store.is_ok(), "{:?}", store.err());
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    }
}
