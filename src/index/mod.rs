//! The in-memory vector index: an HNSW graph (hnsw_rs) over quantized
//! vectors, the exact vectors for re-ranking, and a row table that maps graph
//! points to images, carries the attributes filters test during the graph
//! walk, and marks deleted points (hnsw_rs cannot delete: tombstones).
//!
//! Every record change reaches the index as a [`Change`] after the store has
//! committed it; the index never reads or writes the store itself. Searches
//! take a read lock and run concurrently with each other and with graph
//! insertion; only appending rows and marking tombstones take the write lock,
//! briefly.

pub(crate) mod distance;
mod graph;
pub(crate) mod snapshot;

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hnsw_rs::prelude::FilterT;

use crate::error::{Error, Result};
use crate::store::record::{ImageFormat, ImageId, ImageRecord, Timestamp};
use distance::{dot, quantize};
use graph::Graph;

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
    /// Checks the ranges hnsw_rs accepts (it exits the process on `m > 256`).
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

/// The index and its lock.
pub(crate) struct VectorIndex {
    dim: usize,
    params: IndexParams,
    /// When at most this many rows match a search, they are scanned exactly
    /// instead of walking the graph: as fast at that size, and it never
    /// misses (a graph walk through a sparse filter can strand in a region
    /// without matches).
    pub exact_scan_rows: usize,
    state: RwLock<State>,
}

/// What the lock protects.
pub(crate) struct State {
    pub graph: Graph,
    pub rows: Vec<Row>,
    /// `rows.len() × dim` exact unit vectors, row-major.
    pub vectors: Vec<f32>,
    pub by_id: HashMap<ImageId, usize>,
    pub dead: usize,
    /// The sequence number of the last batch applied.
    pub watermark: u64,
}

impl State {
    fn vector(&self, row: usize, dim: usize) -> &[f32] {
        &self.vectors[row * dim..(row + 1) * dim]
    }
}

impl VectorIndex {
    /// An empty index.
    pub fn empty(dim: usize, params: IndexParams, watermark: u64) -> VectorIndex {
        VectorIndex::from_state(
            dim,
            params,
            State {
                graph: Graph::new(params.m, params.ef_construction, 0),
                rows: Vec::new(),
                vectors: Vec::new(),
                by_id: HashMap::new(),
                dead: 0,
                watermark,
            },
        )
    }

    fn from_state(dim: usize, params: IndexParams, state: State) -> VectorIndex {
        VectorIndex {
            dim,
            params,
            exact_scan_rows: EXACT_SCAN_ROWS,
            state: RwLock::new(state),
        }
    }

    /// An index of `records`, built from scratch (all graph insertions in
    /// parallel), covering the store up to `watermark`.
    pub fn build(
        dim: usize,
        params: IndexParams,
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
            dim, params, rows, vectors, watermark,
        ))
    }

    /// An index of exactly these rows and vectors (tombstones included),
    /// with a new graph.
    fn from_rows(
        dim: usize,
        params: IndexParams,
        rows: Vec<Row>,
        vectors: Vec<f32>,
        watermark: u64,
    ) -> VectorIndex {
        let graph = Graph::new(params.m, params.ef_construction, rows.len());
        // Chunks bound the memory of the quantized copies handed to hnsw_rs.
        for start in (0..rows.len()).step_by(8192) {
            let end = (start + 8192).min(rows.len());
            let points: Vec<_> = (start..end)
                .map(|row| (quantize(&vectors[row * dim..(row + 1) * dim]), row))
                .collect();
            graph.insert(&points);
        }
        let by_id = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.alive)
            .map(|(i, r)| (r.id, i))
            .collect();
        let dead = rows.iter().filter(|r| !r.alive).count();
        VectorIndex::from_state(
            dim,
            params,
            State {
                graph,
                rows,
                vectors,
                by_id,
                dead,
                watermark,
            },
        )
    }

    /// An index from a snapshot's parts.
    pub(crate) fn from_snapshot(
        dim: usize,
        params: IndexParams,
        graph: Graph,
        rows: Vec<Row>,
        vectors: Vec<f32>,
        watermark: u64,
    ) -> VectorIndex {
        let by_id = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.alive)
            .map(|(i, r)| (r.id, i))
            .collect();
        let dead = rows.iter().filter(|r| !r.alive).count();
        VectorIndex::from_state(
            dim,
            params,
            State {
                graph,
                rows,
                vectors,
                by_id,
                dead,
                watermark,
            },
        )
    }

    /// A new index holding only the live rows: what compaction swaps in.
    pub fn compacted(&self) -> VectorIndex {
        let state = self.read();
        let mut rows = Vec::with_capacity(state.rows.len() - state.dead);
        let mut vectors = Vec::with_capacity((state.rows.len() - state.dead) * self.dim);
        for (i, row) in state.rows.iter().enumerate().filter(|(_, r)| r.alive) {
            rows.push(row.clone());
            vectors.extend_from_slice(state.vector(i, self.dim));
        }
        VectorIndex::from_rows(self.dim, self.params, rows, vectors, state.watermark)
    }

    /// Replaces this index's contents with `other`'s.
    pub fn replace_with(&self, other: VectorIndex) {
        let new_state = other
            .state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *self.write() = new_state;
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated
        // in a way searches would misread (rows are appended whole), so a
        // poisoned lock is still usable.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> IndexParams {
        self.params
    }

    /// Applies committed changes of batch `seq`.
    pub fn apply(&self, changes: &[Change<'_>], seq: u64) {
        let mut points = Vec::new();
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
                        state.vectors.extend_from_slice(&record.vector);
                        state.by_id.insert(record.id, row);
                        points.push((quantize(&record.vector), row));
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
        // Graph insertion is the slow part; searches go on meanwhile (the new
        // rows are simply not reachable until inserted).
        self.read().graph.insert(&points);
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
        let candidates: Vec<usize> = if alive <= self.exact_scan_rows {
            (0..state.rows.len()).filter(|&row| accept(row)).collect()
        } else if filter.is_some() {
            let matching: Vec<usize> = (0..state.rows.len()).filter(|&row| accept(row)).collect();
            if matching.len() <= self.exact_scan_rows.max(k) {
                matching
            } else {
                self.walk(&state, query, k, ef, Some(&|row: &usize| accept(*row)))
            }
        } else if state.dead > 0 {
            self.walk(&state, query, k, ef, Some(&|row: &usize| accept(*row)))
        } else {
            self.walk(&state, query, k, ef, None)
        };
        let mut scored: Vec<(ImageId, f32)> = candidates
            .into_iter()
            .map(|row| (state.rows[row].id, dot(query, state.vector(row, self.dim))))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }

    /// Candidate rows from the graph: `max(k, ef)` of them, to be re-ranked.
    fn walk(
        &self,
        state: &State,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn FilterT>,
    ) -> Vec<usize> {
        let ef = ef.max(k);
        state.graph.search(&quantize(query), ef, ef, filter)
    }

    /// The exact vector of an image, if indexed.
    pub fn vector_of(&self, id: ImageId) -> Option<Vec<f32>> {
        let state = self.read();
        state
            .by_id
            .get(&id)
            .map(|&row| state.vector(row, self.dim).to_vec())
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

impl State {
    fn tombstone(&mut self, row: usize) {
        if self.rows[row].alive {
            self.rows[row].alive = false;
            self.dead += 1;
            self.by_id.remove(&self.rows[row].id);
        }
    }
}
