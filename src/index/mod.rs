//! The in-memory vector index.
//!
//! Three layers of data, all indexed by row (a point's number, in insertion
//! order):
//! - the row table: the image id of each point, whether it is alive (HNSW
//!   graphs do not delete well, so deletes are tombstones until compaction)
//!   and the attributes filters test;
//! - the vectors: exact `f32` rows for re-ranking (in memory, or in the
//!   compact mode served from the snapshot's mapped file: `vectors.rs`),
//!   and `i8` codes with a scale per row that the graph walk scores with (a
//!   quarter of the bytes, always in memory);
//! - the graph: `graph.rs` builds it, and a flat copy of its links
//!   (`flat.rs`) is what searches walk and snapshots persist. The copy covers the rows
//!   present when it was last refreshed; newer rows (the delta, at most a few
//!   thousand) are scanned exactly by every search until the next refresh.
//!   The refresh (a full copy, O(rows)) is maintenance: the database's
//!   maintenance thread runs it ([`VectorIndex::refresh`]) when
//!   [`VectorIndex::refresh_due`] says so, and a write runs it only when the
//!   delta passed [`OVERDUE`] refresh sizes (no one refreshed: the thread is
//!   busy compacting, or off).
//!
//! Every record change reaches the index as a [`Change`] after the store has
//! committed it; the index never reads or writes the store. Searches take a
//! read lock; writers take the write lock only to append rows or swap in a
//! refreshed copy, and insert into the graph without blocking searches.
//!
//! The graph holds rows `0..graphed`; rows appended while a
//! snapshot or a refresh holds the graph wait in the delta and are inserted
//! by the next writes, each taking its own rows and as many again, so a
//! write waits for the graph only when the rows it lacks grew past twice
//! the refresh size (a bound on what searches scan exactly, and
//! back-pressure on a writer faster than the graph).

pub(crate) mod distance;
pub(crate) mod flat;
mod graph;
pub(crate) mod snapshot;
pub(crate) mod vectors;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::store::record::ImageRecord;
use crate::types::{ImageFormat, ImageId, IndexMemory, Timestamp};
use distance::{QuantizedRows, dot, quantize_parts, quantize_rows};
use flat::{Codes, FlatGraph};
use graph::Graph;
use vectors::Vectors;

/// Parameters of the HNSW graph, named as in the paper (Malkov & Yashunin, 2016).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexParams {
    /// `M`: the number of neighbours each point keeps per layer (layer 0 keeps
    /// `2·M`). Higher is better recall and slower build. Default 16; 2 to 256.
    pub m: usize,
    /// `efConstruction`: the candidate list size while inserting. Default 200.
    pub ef_construction: usize,
    /// `ef`: the candidate list size while searching, the speed/recall knob
    /// of every query (a query may override it). Default 64.
    pub ef_search: usize,
}

impl Default for IndexParams {
    fn default() -> IndexParams {
        IndexParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

impl IndexParams {
    /// Checks the ranges the graph accepts (the flat layout and the
    /// persisted parameters assume `m ≤ 256`).
    pub fn validate(&self) -> Result<()> {
        let check = |name, value: usize, range: std::ops::RangeInclusive<usize>, expected| {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(Error::InvalidParameter {
                    name,
                    value: value.to_string(),
                    expected,
                })
            }
        };
        check("m", self.m, 2..=256, "between 2 and 256")?;
        check(
            "ef_construction",
            self.ef_construction,
            1..=4096,
            "between 1 and 4096",
        )?;
        check("ef_search", self.ef_search, 1..=4096, "between 1 and 4096")
    }
}

/// The default of [`VectorIndex::exact_scan_rows`].
pub(crate) const EXACT_SCAN_ROWS: usize = 10_000;

/// The default of [`VectorIndex::delta_rows`]: the flat copy is refreshed
/// once the delta passes this many rows, or 1/256 of the rows if more. The
/// delta scan then stays a small part of a search, and refreshing (a full
/// copy) a small part of inserting.
pub(crate) const DELTA_ROWS: usize = 1024;

/// A write refreshes the flat copy itself once the delta is this many
/// refresh sizes: the back-pressure that bounds what searches scan exactly
/// when the maintenance thread cannot keep up (it is compacting) or there
/// is none. With the thread running it is rare: it refreshes at one size.
const OVERDUE: usize = 4;

/// The attributes of an image that search filters test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RowAttrs {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub byte_size: u64,
    pub mtime: Timestamp,
    pub added: Timestamp,
}

impl RowAttrs {
    pub fn of(record: &ImageRecord) -> RowAttrs {
        RowAttrs {
            format: record.format,
            width: record.width,
            height: record.height,
            byte_size: record.byte_size,
            mtime: record.mtime(),
            added: record.added,
        }
    }
}

/// One point of the graph.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub id: ImageId,
    /// The record's `vector_seq` when this point was inserted.
    pub vector_seq: u64,
    /// False once the record was deleted or got a new vector (a tombstone).
    pub alive: bool,
    pub attrs: RowAttrs,
}

/// A committed record change, as the index needs it.
pub(crate) enum Change<'a> {
    /// The record was created or changed.
    Upsert(&'a ImageRecord),
    /// The record was deleted.
    Remove(ImageId),
}

/// A search filter over a row's image id and attributes.
pub(crate) type RowFilter<'a> = &'a (dyn Fn(ImageId, &RowAttrs) -> bool + Sync);

/// The graph: built in this process, or still only the flat copy of a
/// loaded snapshot (the builder's copy of the links and codes is made on
/// the first write: readers never need it).
pub(crate) enum GraphSlot {
    Ready(Box<Graph>),
    InFlat,
}

/// The index and its locks.
pub(crate) struct VectorIndex {
    dim: usize,
    params: IndexParams,
    memory: IndexMemory,
    /// When at most this many rows match a search, they are scanned exactly
    /// instead of walking the graph: as fast at that size, and it never
    /// misses (a graph walk through a sparse filter can strand in a region
    /// without matches).
    pub exact_scan_rows: usize,
    /// The smallest delta that makes a refresh of the flat copy due (see
    /// [`DELTA_ROWS`]); tests lower it so that new rows reach the walk.
    pub delta_rows: usize,
    state: RwLock<State>,
    graph: Mutex<GraphSlot>,
}

/// The index as a snapshot must describe it: see [`VectorIndex::freeze`].
pub(crate) struct Frozen<'a> {
    index: &'a VectorIndex,
    graph: MutexGuard<'a, GraphSlot>,
    /// The row table as of `watermark`; the graph holds exactly these rows.
    pub rows: Vec<Row>,
    /// The store sequence number these rows cover.
    pub watermark: u64,
}

impl Frozen<'_> {
    /// The rows and the graph's links, installed as the search copy too;
    /// releases the graph.
    pub fn links(self) -> (Vec<Row>, FlatGraph) {
        let Frozen {
            index, graph, rows, ..
        } = self;
        let GraphSlot::Ready(ready) = &*graph else {
            unreachable!("freeze() builds the graph")
        };
        let flat = ready.flatten();
        drop(graph);
        index.install(flat.clone());
        // The rows written meanwhile are left to the next writes (see
        // `VectorIndex::apply`): the graph must not stay held while the
        // thread inserts them, or every write would leave its rows behind.
        (rows, flat)
    }
}

/// What searches read.
pub(crate) struct State {
    pub rows: Vec<Row>,
    /// The exact unit vectors, one per row.
    pub vectors: Vectors,
    /// `rows × dim` quantized codes, and one scale per row.
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
    /// The walkable copy of the graph's links, over rows `0..flat.len()`.
    pub flat: FlatGraph,
    /// The rows the graph holds (`0..graphed`), kept here so that
    /// writers and the maintenance thread can tell what a refresh would
    /// gain without taking the graph.
    pub graphed: usize,
    pub by_id: HashMap<ImageId, usize>,
    pub dead: usize,
    /// The sequence number of the last batch applied.
    pub watermark: u64,
}

impl State {
    /// A state whose graph holds every one of `rows`; `codes` and `scales`
    /// are `vectors` quantized ([`quantize_rows`]).
    fn new(
        rows: Vec<Row>,
        vectors: Vectors,
        (codes, scales): QuantizedRows,
        flat: FlatGraph,
        watermark: u64,
    ) -> State {
        State {
            graphed: rows.len(),
            by_id: rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.alive)
                .map(|(i, r)| (r.id, i))
                .collect(),
            dead: rows.iter().filter(|r| !r.alive).count(),
            rows,
            vectors,
            codes,
            scales,
            flat,
            watermark,
        }
    }

    pub fn vector(&self, row: usize) -> &[f32] {
        self.vectors.row(row)
    }

    fn tombstone(&mut self, row: usize) {
        if self.rows[row].alive {
            self.rows[row].alive = false;
            self.dead += 1;
            self.by_id.remove(&self.rows[row].id);
        }
    }
}

impl VectorIndex {
    fn from_parts(
        dim: usize,
        params: IndexParams,
        memory: IndexMemory,
        state: State,
        graph: GraphSlot,
    ) -> VectorIndex {
        VectorIndex {
            dim,
            params,
            memory,
            exact_scan_rows: EXACT_SCAN_ROWS,
            delta_rows: DELTA_ROWS,
            state: RwLock::new(state),
            graph: Mutex::new(graph),
        }
    }

    /// An empty index.
    pub fn empty(
        dim: usize,
        params: IndexParams,
        memory: IndexMemory,
        watermark: u64,
    ) -> VectorIndex {
        VectorIndex::from_rows(dim, params, memory, Vec::new(), Vec::new(), watermark)
    }

    /// An index of `records`, built from scratch, covering the store up to
    /// `watermark`.
    pub fn build(
        dim: usize,
        params: IndexParams,
        memory: IndexMemory,
        records: impl Iterator<Item = Result<ImageRecord>>,
        watermark: u64,
    ) -> Result<VectorIndex> {
        let mut rows = Vec::new();
        let mut vectors = Vec::new();
        for record in records {
            let record = record?;
            if record.vector.len() != dim {
                return Err(Error::DimensionMismatch {
                    expected: dim,
                    found: record.vector.len(),
                });
            }
            vectors.extend_from_slice(&record.vector);
            rows.push(Row {
                id: record.id,
                vector_seq: record.vector_seq,
                alive: true,
                attrs: RowAttrs::of(&record),
            });
        }
        Ok(VectorIndex::from_rows(
            dim, params, memory, rows, vectors, watermark,
        ))
    }

    /// An index of exactly these rows and vectors (tombstones included),
    /// with a new graph.
    fn from_rows(
        dim: usize,
        params: IndexParams,
        memory: IndexMemory,
        rows: Vec<Row>,
        vectors: Vec<f32>,
        watermark: u64,
    ) -> VectorIndex {
        // Quantized once, for the builder and for the walk.
        let (codes, scales) = quantize_rows(&vectors, dim);
        let mut graph = Graph::new(dim, params.m, params.ef_construction);
        graph.insert(&codes, &scales);
        let flat = graph.flatten();
        let vectors = Vectors::in_memory(dim, vectors);
        let state = State::new(rows, vectors, (codes, scales), flat, watermark);
        let graph = GraphSlot::Ready(Box::new(graph));
        VectorIndex::from_parts(dim, params, memory, state, graph)
    }

    /// An index from a snapshot's parts: its vectors, and their codes and
    /// scales ([`quantize_rows`]). The builder is made from the flat copy
    /// when a writer first needs it.
    pub(crate) fn from_snapshot(
        dim: usize,
        params: IndexParams,
        memory: IndexMemory,
        rows: Vec<Row>,
        (vectors, codes): (Vectors, QuantizedRows),
        flat: FlatGraph,
        watermark: u64,
    ) -> VectorIndex {
        let state = State::new(rows, vectors, codes, flat, watermark);
        VectorIndex::from_parts(dim, params, memory, state, GraphSlot::InFlat)
    }

    /// A new index holding only the live rows: what compaction swaps in.
    pub fn compacted(&self) -> VectorIndex {
        let (rows, vectors, watermark) = {
            let state = self.read();
            let mut rows = Vec::with_capacity(state.rows.len() - state.dead);
            let mut vectors = Vec::with_capacity((state.rows.len() - state.dead) * self.dim);
            for (i, row) in state.rows.iter().enumerate().filter(|(_, r)| r.alive) {
                rows.push(row.clone());
                vectors.extend_from_slice(state.vector(i));
            }
            (rows, vectors, state.watermark)
        };
        VectorIndex::from_rows(self.dim, self.params, self.memory, rows, vectors, watermark)
    }

    /// Replaces this index's contents with `other`'s.
    pub fn replace_with(&self, other: VectorIndex) {
        let graph = other
            .graph
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = other
            .state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *self.graph_slot() = graph;
        *self.write() = state;
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // Rows are appended whole and the copy is swapped whole, so a panic
        // while holding the lock cannot leave a state searches would misread.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn graph_slot(&self) -> MutexGuard<'_, GraphSlot> {
        self.graph
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The graph, made from a loaded snapshot's flat copy on first use.
    fn graph(&self) -> MutexGuard<'_, GraphSlot> {
        let slot = self.graph_slot();
        self.ready(slot)
    }

    /// The graph, if no snapshot or compaction holds it right now.
    fn try_graph(&self) -> Option<MutexGuard<'_, GraphSlot>> {
        match self.graph.try_lock() {
            Ok(slot) => Some(self.ready(slot)),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                Some(self.ready(poisoned.into_inner()))
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Makes the graph of a loaded snapshot in `slot`.
    fn ready<'a>(&self, mut slot: MutexGuard<'a, GraphSlot>) -> MutexGuard<'a, GraphSlot> {
        if let GraphSlot::InFlat = &*slot {
            let graph = {
                let state = self.read();
                // The snapshot's rows: rows appended since wait for catch_up.
                Graph::from_flat(
                    self.dim,
                    self.params.ef_construction,
                    &state.flat,
                    &state.codes,
                    &state.scales,
                )
            };
            self.write().graphed = graph.len();
            *slot = GraphSlot::Ready(Box::new(graph));
        }
        slot
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> IndexParams {
        self.params
    }

    pub fn memory(&self) -> IndexMemory {
        self.memory
    }

    /// Serves the first `rows` vectors from `map`, the `vectors.f32` of a
    /// snapshot of them just written, if this index is compact; returns
    /// whether it does. The caller holds the maintenance lock, so the index
    /// still has the rows the snapshot was taken of.
    pub(crate) fn map_snapshot_vectors(&self, map: memmap2::Mmap, rows: usize) -> bool {
        self.memory == IndexMemory::Compact && self.write().vectors.remap(map, rows)
    }

    /// The bytes of exact vectors held in memory (all of them in the
    /// resident mode; in the compact mode, those written since the last
    /// snapshot).
    pub fn resident_vector_bytes(&self) -> usize {
        self.read().vectors.resident_bytes()
    }

    /// Applies committed changes of batch `seq`.
    pub fn apply(&self, changes: &[Change<'_>], seq: u64) {
        let mut added = 0;
        {
            let mut state = self.write();
            for change in changes {
                match change {
                    Change::Upsert(record) => {
                        if let Some(&row) = state.by_id.get(&record.id) {
                            if state.rows[row].vector_seq == record.vector_seq {
                                state.rows[row].attrs = RowAttrs::of(record);
                                continue;
                            }
                            state.tombstone(row);
                        }
                        let row = state.rows.len();
                        state.rows.push(Row {
                            id: record.id,
                            vector_seq: record.vector_seq,
                            alive: true,
                            attrs: RowAttrs::of(record),
                        });
                        state.vectors.push(&record.vector);
                        let (codes, scale) = quantize_parts(&record.vector);
                        state.codes.extend_from_slice(&codes);
                        state.scales.push(scale);
                        state.by_id.insert(record.id, row);
                        added += 1;
                    }
                    Change::Remove(id) => {
                        if let Some(&row) = state.by_id.get(id) {
                            state.tombstone(row);
                        }
                    }
                }
            }
            state.watermark = state.watermark.max(seq);
        }
        if added == 0 {
            // Above all, do not reload a stored graph for nothing.
            return;
        }
        // While a snapshot or a refresh holds the graph, the new rows wait in
        // the exactly scanned delta; once the rows the graph lacks are twice
        // a refresh size, the write waits for the graph instead. That bounds
        // both what searches scan and what a snapshot leaves behind, and
        // keeps a writer from outrunning the graph.
        let wait = {
            let state = self.read();
            state.rows.len() - state.graphed > 2 * self.refresh_size(state.rows.len())
        };
        let mut slot = if wait {
            self.graph()
        } else {
            match self.try_graph() {
                Some(slot) => slot,
                None => return,
            }
        };
        let GraphSlot::Ready(graph) = &mut *slot else {
            unreachable!("try_graph() builds the graph")
        };
        // Its own rows and as many again of a backlog left by a snapshot: the
        // backlog drains over the next writes instead of stalling one.
        let limit = graph.len() + 2 * added;
        self.catch_up(graph, limit);
        if self.unrefreshed() > OVERDUE * self.refresh_size(self.read().rows.len()) {
            self.refresh_with(slot);
        }
    }

    /// The delta (rows the flat copy does not cover) at which the flat copy
    /// of an index of `rows` rows is refreshed.
    fn refresh_size(&self, rows: usize) -> usize {
        self.delta_rows.max(rows / 256)
    }

    /// The rows the graph holds that the flat copy lacks: what a refresh
    /// would add to the copy.
    fn unrefreshed(&self) -> usize {
        let state = self.read();
        state.graphed - state.flat.len()
    }

    /// The rows the flat copy does not cover: every search scans them.
    pub fn delta(&self) -> usize {
        let state = self.read();
        state.rows.len() - state.flat.len()
    }

    /// Whether the graph got far enough ahead of the flat copy for
    /// [`refresh`](Self::refresh). Rows the graph does not hold yet do not
    /// count: a refresh could not add them, and counting them would keep
    /// the refresh holding the graph that they wait for.
    pub fn refresh_due(&self) -> bool {
        self.unrefreshed() > self.refresh_size(self.read().rows.len())
    }

    /// Refreshes the flat copy from the graph when it is due. Holds the
    /// graph only while its links are copied out (writes meanwhile leave
    /// their rows in the delta, see [`apply`](Self::apply)), and the state
    /// lock only to swap the new copy in.
    pub fn refresh(&self) {
        if self.refresh_due() {
            self.refresh_with(self.graph());
        }
    }

    fn refresh_with(&self, slot: MutexGuard<'_, GraphSlot>) {
        let GraphSlot::Ready(graph) = &*slot else {
            unreachable!("graph() loads the graph")
        };
        let flat = graph.flatten();
        drop(slot);
        self.install(flat);
    }

    /// Swaps in a flat copy unless a newer one got there first. Whoever
    /// calls this holds the writer or the maintenance lock, so a compaction
    /// cannot replace the graph the copy was taken from in between.
    fn install(&self, flat: FlatGraph) {
        let mut state = self.write();
        if state.flat.len() < flat.len() {
            state.flat = flat;
        }
    }

    /// Inserts the rows the graph lacks, up to row `limit`, into the graph
    /// (the slow part, without the state lock: searches go on, scanning the
    /// new rows exactly).
    fn catch_up(&self, graph: &mut Graph, limit: usize) {
        loop {
            let (codes, scales) = {
                let state = self.read();
                let (start, dim) = (graph.len(), self.dim);
                let end = state.rows.len().min(limit).min(start + 8192).max(start);
                (
                    state.codes[start * dim..end * dim].to_vec(),
                    state.scales[start..end].to_vec(),
                )
            };
            if scales.is_empty() {
                break;
            }
            graph.insert(&codes, &scales);
            self.write().graphed = graph.len();
        }
    }

    /// A consistent view of the index for a snapshot: its rows as of its
    /// watermark, with the graph held so that it keeps exactly those rows
    /// until [`Frozen::dump`] has dumped it. Writes go on meanwhile (their
    /// rows wait in the delta). Cheap: a copy of the row table.
    pub(crate) fn freeze(&self) -> Frozen<'_> {
        let mut graph = self.graph();
        let (rows, watermark) = {
            let state = self.read();
            (state.rows.clone(), state.watermark)
        };
        let GraphSlot::Ready(ready) = &mut *graph else {
            unreachable!("graph() builds the graph")
        };
        // At most the last batch or two: rows a write appended while the
        // graph was held by someone else.
        self.catch_up(ready, rows.len());
        Frozen {
            index: self,
            graph,
            rows,
            watermark,
        }
    }

    /// The `k` images nearest to the unit vector `query` by cosine
    /// similarity, best first, among those `filter` accepts.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<RowFilter<'_>>,
    ) -> Vec<(ImageId, f32)> {
        debug_assert_eq!(query.len(), self.dim);
        if k == 0 {
            return Vec::new();
        }
        let state = self.read();
        let accept = |row: usize| {
            let r = &state.rows[row];
            r.alive && filter.is_none_or(|f| f(r.id, &r.attrs))
        };
        let alive = state.rows.len() - state.dead;
        let exact = if alive <= self.exact_scan_rows {
            Some(
                (0..state.rows.len())
                    .filter(|&row| accept(row))
                    .collect::<Vec<_>>(),
            )
        } else if filter.is_some() {
            let matching: Vec<usize> = (0..state.rows.len()).filter(|&row| accept(row)).collect();
            // A sparse filter strands a graph walk; scanning is exact and,
            // at that size, no slower.
            (matching.len() <= self.exact_scan_rows.max(k) || matching.len() * 16 <= alive)
                .then_some(matching)
        } else {
            None
        };
        let candidates = exact.unwrap_or_else(|| {
            let (codes, scale) = quantize_parts(query);
            let table = Codes {
                dim: self.dim,
                codes: &state.codes,
                scales: &state.scales,
            };
            let mut candidates = state.flat.search(&table, &codes, scale, ef.max(k), accept);
            candidates.extend((state.flat.len()..state.rows.len()).filter(|&row| accept(row)));
            candidates
        });
        let mut scored: Vec<(ImageId, f32)> = candidates
            .into_iter()
            .map(|row| (state.rows[row].id, dot(query, state.vector(row))))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }

    /// The exact vector of an image, if indexed.
    pub fn vector_of(&self, id: ImageId) -> Option<Vec<f32>> {
        let state = self.read();
        state.by_id.get(&id).map(|&row| state.vector(row).to_vec())
    }

    /// The `vector_seq` an image was indexed with, if indexed.
    pub fn indexed_vector_seq(&self, id: ImageId) -> Option<u64> {
        let state = self.read();
        state.by_id.get(&id).map(|&row| state.rows[row].vector_seq)
    }

    /// (live rows, tombstones).
    pub fn counts(&self) -> (usize, usize) {
        let state = self.read();
        (state.rows.len() - state.dead, state.dead)
    }

    pub fn watermark(&self) -> u64 {
        self.read().watermark
    }
}
