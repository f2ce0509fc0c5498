//! The HNSW graph builder (Malkov & Yashunin, 2016), over the quantized
//! codes, in the same layout as the search copy (`flat.rs`).
//!
//! imgdb built its graph with hnsw_rs until format 2 of the snapshot. Its
//! profile (BENCHMARKS.md §1) put 89 % of insert time inside hnsw_rs, most of
//! it in allocation, `Arc` chasing and locking around a distance kernel
//! that took under a third, and its reverse-link update shrinks a full
//! neighbour list by dropping the farthest link instead of re-running the
//! neighbour heuristic: a list fills with the closest points only, the
//! long links that keep a graph navigable are lost as it grows, and recall
//! falls with size (0.31 at ef 96 on a million vectors, hnswlib 0.78).
//! This builder follows hnswlib's algorithm: the heuristic both when a
//! point picks its neighbours and when a full list takes a reverse link.
//!
//! Points are inserted in parallel: layer-0 links are atomics that a walk
//! reads without a lock, and every write to a node's links happens under
//! that node's lock (upper layers live behind it too; they are small and
//! rarely visited). A point's level is drawn from a hash of its row, so a
//! rebuild of the same rows gets the same layers.
//!
//! Copies of one image (rows whose codes are within [`TWIN`]) are not
//! points of the graph: a copy becomes a *twin* of the point it copies, has
//! no links, and a search that scores that point returns its twins with it.
//! As points, copies broke the graph whichever rule pruned them: hnswlib's
//! keeps them all, filling their lists with each other (a sink a walk
//! cannot leave); hnsw_rs's dropped them into an island; and a cluster of
//! copies inserted in parallel cut other points off (measured: 2 to 130 of
//! 600 points unreachable beside 100 copies, none without them).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use rayon::prelude::*;

use super::distance::dot_i8;
use super::flat::{Dist, FlatGraph, prefetch_code, with_visit_marks};

/// Levels are capped below this (the flat layout stores them as `u8`; at
/// `M = 2`, fifteen layers hold 2¹⁵ times the top one).
const MAX_LEVEL: usize = 15;

/// The `1 - cosine` of two rows' `i8` codes under which they count as
/// copies of one image.
const TWIN: f32 = 1e-3;

/// Rows of a graph smaller than this are inserted one at a time.
const SERIAL_ROWS: usize = 1024;

/// Seeds the level hash, so that levels do not follow row numbers.
const LEVEL_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// An HNSW graph over rows `0..len()`, each a quantized vector.
pub(crate) struct Graph {
    dim: usize,
    m: usize,
    ef_construction: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    levels: Vec<u8>,
    /// Layer 0: per row, a count then `2·M` slots, as in [`FlatGraph`].
    links0: Vec<AtomicU32>,
    /// Per row, its links on layers `1..=level`; the lock also guards the
    /// row's layer-0 writes.
    nodes: Vec<Mutex<Vec<Vec<u32>>>>,
    /// Whether a row's insert finished. A greedy descent never stops on an
    /// unfinished row: its lower layers may have no links yet, and a layer
    /// search from it would find nothing.
    linked: Vec<AtomicBool>,
    /// The entry point: a row on the top layer.
    entry: RwLock<Option<u32>>,
    /// `(point, twin)` pairs: rows that copy a point (see the module doc).
    twins: Mutex<Vec<(u32, u32)>>,
}

/// Candidates found by a layer search, nearest first.
type Found = Vec<(f32, u32)>;

impl Graph {
    /// An empty graph. `m` and `ef_construction` must have been validated.
    pub fn new(dim: usize, m: usize, ef_construction: usize) -> Graph {
        debug_assert!((2..=256).contains(&m));
        Graph {
            dim,
            m,
            ef_construction,
            codes: Vec::new(),
            scales: Vec::new(),
            levels: Vec::new(),
            links0: Vec::new(),
            nodes: Vec::new(),
            linked: Vec::new(),
            entry: RwLock::new(None),
            twins: Mutex::new(Vec::new()),
        }
    }

    /// The graph whose links are `flat`'s, over the first `flat.len()` rows
    /// of `codes` and `scales`: how a loaded snapshot resumes building.
    pub fn from_flat(
        dim: usize,
        ef_construction: usize,
        flat: &FlatGraph,
        codes: &[i8],
        scales: &[f32],
    ) -> Graph {
        let rows = flat.len();
        let nodes = (0..rows)
            .map(|row| {
                let level = flat.levels[row];
                Mutex::new(
                    (1..=level)
                        .map(|layer| flat.upper_layer(row as u32, layer).to_vec())
                        .collect(),
                )
            })
            .collect();
        Graph {
            dim,
            m: flat.m,
            ef_construction,
            codes: codes[..rows * dim].to_vec(),
            scales: scales[..rows].to_vec(),
            levels: flat.levels.clone(),
            links0: flat.links0.iter().map(|&w| AtomicU32::new(w)).collect(),
            nodes,
            linked: (0..rows).map(|_| AtomicBool::new(true)).collect(),
            entry: RwLock::new(flat.entry),
            twins: Mutex::new(flat.twins.clone()),
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    fn m0(&self) -> usize {
        2 * self.m
    }

    /// Appends the rows whose codes are `codes` (`dim` per row) and links
    /// them, in parallel when there are several.
    pub fn insert(&mut self, codes: &[i8], scales: &[f32]) {
        debug_assert_eq!(codes.len(), scales.len() * self.dim);
        let start = self.len();
        let level_scale = 1.0 / (self.m as f64).ln();
        self.codes.extend_from_slice(codes);
        self.scales.extend_from_slice(scales);
        for row in start..start + scales.len() {
            let level = level_of(row, level_scale);
            self.levels.push(level as u8);
            self.nodes
                .push(Mutex::new(vec![Vec::with_capacity(self.m); level]));
            self.linked.push(AtomicBool::new(false));
        }
        self.links0
            .resize_with(self.len() * (self.m0() + 1), || AtomicU32::new(0));
        // A small graph is built one row at a time: rows inserted at once
        // miss each other, which a large graph absorbs and a small one does
        // not (the first rows would get a link or two and lose them).
        let serial_end = self.len().min(start.max(SERIAL_ROWS));
        let this = &*self;
        (start as u32..serial_end as u32).for_each(|row| this.link(row));
        (serial_end as u32..this.len() as u32)
            .into_par_iter()
            .with_min_len(16)
            .for_each(|row| this.link(row));
    }

    fn code(&self, row: u32) -> &[i8] {
        let start = row as usize * self.dim;
        &self.codes[start..start + self.dim]
    }

    /// `1 - dot` between two rows' quantized vectors.
    fn distance(&self, a: u32, b: u32) -> f32 {
        1.0 - dot_i8(self.code(a), self.code(b)) as f32
            * self.scales[a as usize]
            * self.scales[b as usize]
    }

    fn lock(&self, row: u32) -> MutexGuard<'_, Vec<Vec<u32>>> {
        // Links are written whole under the lock; a panic cannot leave a
        // list a walk would misread.
        self.nodes[row as usize]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Row `row`'s links on `layer`, into `out`. Layer 0 is read without a
    /// lock: a concurrent write may mix old and new links, all valid rows.
    fn links_into(&self, row: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        if layer == 0 {
            let start = row as usize * (self.m0() + 1);
            let count = (self.links0[start].load(Ordering::Acquire) as usize).min(self.m0());
            out.extend(
                self.links0[start + 1..start + 1 + count]
                    .iter()
                    .map(|w| w.load(Ordering::Relaxed)),
            );
        } else if let Some(links) = self.lock(row).get(layer - 1) {
            out.extend_from_slice(links);
        }
    }

    /// Replaces `row`'s links on `layer`; the caller holds its lock (`upper`).
    fn set_links(&self, row: u32, layer: usize, upper: &mut [Vec<u32>], links: &[u32]) {
        if layer == 0 {
            let start = row as usize * (self.m0() + 1);
            for (slot, &link) in self.links0[start + 1..].iter().zip(links) {
                slot.store(link, Ordering::Relaxed);
            }
            self.links0[start].store(links.len() as u32, Ordering::Release);
        } else {
            upper[layer - 1].clear();
            upper[layer - 1].extend_from_slice(links);
        }
    }

    /// Links a row appended by [`insert`](Self::insert) into the graph.
    fn link(&self, row: u32) {
        self.link_into_graph(row);
        self.linked[row as usize].store(true, Ordering::Release);
    }

    fn link_into_graph(&self, row: u32) {
        let level = self.levels[row as usize] as usize;
        let current = *self.entry.read().unwrap_or_else(|p| p.into_inner());
        let entry = match current {
            Some(entry) => entry,
            None => {
                let mut slot = self.entry.write().unwrap_or_else(|p| p.into_inner());
                match *slot {
                    Some(entry) => entry,
                    None => {
                        *slot = Some(row);
                        return;
                    }
                }
            }
        };
        if !self.link_from(row, level, entry) || level <= self.levels[entry as usize] as usize {
            // The entry only ever rises: a row no higher than the one it
            // started from cannot replace it (and takes no write lock).
            return;
        }
        let mut slot = self.entry.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_none_or(|e| level > self.levels[e as usize] as usize) {
            *slot = Some(row);
        }
    }

    /// Makes `row` a twin of `point` if it is a copy of it: then it gets no
    /// links. Returns whether it did.
    fn twin_if_copy(&self, row: u32, point: u32) -> bool {
        // The cosine of the codes themselves: the scales' rounding puts the
        // distance of a row to its own copy beyond 2e-3 at 24-d.
        let code_cosine = |a: &[i8], b: &[i8]| {
            let norms = dot_i8(a, a) as f64 * dot_i8(b, b) as f64;
            dot_i8(a, b) as f64 / norms.sqrt().max(1.0)
        };
        let (a, b) = (self.code(row), self.code(point));
        if 1.0 - code_cosine(a, b) > f64::from(TWIN) {
            return false;
        }
        self.twins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((point, row));
        true
    }

    /// Links `row` into the graph from `entry`; returns false when it was
    /// made a twin instead.
    fn link_from(&self, row: u32, level: usize, entry: u32) -> bool {
        let top = self.levels[entry as usize] as usize;
        let mut nearest = (self.distance(row, entry), entry);
        let mut links = Vec::with_capacity(self.m0());
        for layer in (level + 1..=top).rev() {
            nearest = self.greedy(row, nearest, layer, &mut links);
        }
        if level > 0 {
            // A copy must be told before its first links: on its upper
            // layers a greedy descent to layer 0 stands in for the search.
            let mut probe = nearest;
            for layer in (0..=level.min(top)).rev() {
                probe = self.greedy(row, probe, layer, &mut links);
            }
            if self.twin_if_copy(row, probe.1) {
                return false;
            }
        }
        let mut entries = vec![nearest];
        for layer in (0..=level.min(top)).rev() {
            let found = self.search_layer(row, &entries, self.ef_construction, layer);
            if layer == 0
                && level == 0
                && found
                    .first()
                    .is_some_and(|&(_, nearest)| self.twin_if_copy(row, nearest))
            {
                return false;
            }
            // Up to `2·M` on layer 0, as faiss keeps (hnswlib keeps `M`):
            // recall at a given `ef` is worth the slower build.
            let chosen = self.select(&found, if layer == 0 { self.m0() } else { self.m });
            self.set_own_links(row, layer, &chosen);
            for &(distance, neighbour) in &chosen {
                self.connect(neighbour, row, distance, layer);
            }
            if !found.is_empty() {
                entries = found;
            }
        }
        true
    }

    /// Sets a new row's links on `layer` to `chosen`, keeping the reverse
    /// links other threads' inserts gave it meanwhile (they found the row
    /// through a layer it was already linked on).
    fn set_own_links(&self, row: u32, layer: usize, chosen: &[(f32, u32)]) {
        let mut upper = self.lock(row);
        let mut links = self.links_of(row, layer, &upper);
        links.retain(|l| !chosen.iter().any(|c| c.1 == *l));
        let links = self.merge(row, layer, &links, chosen);
        self.set_links(row, layer, &mut upper, &links);
    }

    /// `owner`'s links on `layer`; the caller holds its lock (`upper`).
    fn links_of(&self, owner: u32, layer: usize, upper: &[Vec<u32>]) -> Vec<u32> {
        let mut links = Vec::with_capacity(self.m0() + 1);
        if layer == 0 {
            self.links_into(owner, 0, &mut links);
        } else {
            links.extend_from_slice(&upper[layer - 1]);
        }
        links
    }

    /// `owner`'s `links` on `layer` with `extra` (scored against `owner`)
    /// added, pruned back by the heuristic when they overflow the layer's
    /// capacity.
    fn merge(&self, owner: u32, layer: usize, links: &[u32], extra: &[(f32, u32)]) -> Vec<u32> {
        let capacity = if layer == 0 { self.m0() } else { self.m };
        if links.len() + extra.len() <= capacity {
            return links
                .iter()
                .copied()
                .chain(extra.iter().map(|&(_, r)| r))
                .collect();
        }
        let mut candidates: Vec<(f32, u32)> = links
            .iter()
            .map(|&l| (self.distance(owner, l), l))
            .chain(extra.iter().copied())
            .collect();
        sort_nearest(owner, &mut candidates);
        self.select(&candidates, capacity)
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    }

    /// The nearest row to `row` reachable greedily on `layer` from `from`.
    fn greedy(&self, row: u32, from: (f32, u32), layer: usize, links: &mut Vec<u32>) -> (f32, u32) {
        let mut best = from;
        loop {
            let mut moved = false;
            self.links_into(best.1, layer, links);
            for &next in links.iter() {
                // A graph built by hnsw_rs (snapshot format 1) may list a
                // lower-level point on an upper layer.
                if next == row
                    || (self.levels[next as usize] as usize) < layer
                    || !self.linked[next as usize].load(Ordering::Acquire)
                {
                    continue;
                }
                let d = self.distance(row, next);
                if d < best.0 {
                    best = (d, next);
                    moved = true;
                }
            }
            if !moved {
                return best;
            }
        }
    }

    /// Up to `ef` rows near `row` on `layer`, nearest first: the best-first
    /// search of the paper's Algorithm 2, from `entries`.
    fn search_layer(&self, row: u32, entries: &[(f32, u32)], ef: usize, layer: usize) -> Found {
        with_visit_marks(self.len(), |marks, epoch| {
            let mut candidates: BinaryHeap<Reverse<(Dist, u32)>> = BinaryHeap::new();
            let mut found: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
            marks[row as usize] = epoch;
            for &(d, entry) in entries {
                if marks[entry as usize] == epoch {
                    continue;
                }
                marks[entry as usize] = epoch;
                candidates.push(Reverse((Dist(d), entry)));
                found.push((Dist(d), entry));
                if found.len() > ef {
                    found.pop();
                }
            }
            let mut links = Vec::with_capacity(self.m0());
            while let Some(Reverse((Dist(distance), current))) = candidates.pop() {
                if found.len() >= ef && found.peek().is_some_and(|(worst, _)| distance > worst.0) {
                    break;
                }
                self.links_into(current, layer, &mut links);
                for &next in &links {
                    if marks[next as usize] != epoch {
                        prefetch_code(&self.codes, self.dim, next);
                    }
                }
                for &next in &links {
                    if marks[next as usize] == epoch
                        || (layer > 0 && (self.levels[next as usize] as usize) < layer)
                    {
                        continue;
                    }
                    marks[next as usize] = epoch;
                    let d = self.distance(row, next);
                    if found.len() < ef || found.peek().is_some_and(|(w, _)| d < w.0) {
                        candidates.push(Reverse((Dist(d), next)));
                        found.push((Dist(d), next));
                        if found.len() > ef {
                            found.pop();
                        }
                    }
                }
            }
            let mut found: Found = found.into_iter().map(|(d, r)| (d.0, r)).collect();
            sort_nearest(row, &mut found);
            found
        })
    }

    /// Up to `keep` of `candidates` (nearest first) by the paper's neighbour
    /// heuristic (Algorithm 4, as hnswlib has it): a candidate is dropped
    /// when a chosen neighbour is strictly nearer to it than the point is,
    /// since the walk reaches it through that neighbour.
    fn select(&self, candidates: &[(f32, u32)], keep: usize) -> Vec<(f32, u32)> {
        let mut chosen: Vec<(f32, u32)> = Vec::with_capacity(keep);
        for &(distance, candidate) in candidates {
            if chosen.len() == keep {
                break;
            }
            let redundant = chosen
                .iter()
                .any(|&(_, neighbour)| self.distance(candidate, neighbour) < distance);
            if !redundant {
                chosen.push((distance, candidate));
            }
        }
        chosen
    }

    /// Adds the reverse link `neighbour → row` on `layer`; a full list is
    /// pruned back by the heuristic over its links and the new one.
    fn connect(&self, neighbour: u32, row: u32, distance: f32, layer: usize) {
        let mut upper = self.lock(neighbour);
        let links = self.links_of(neighbour, layer, &upper);
        if links.contains(&row) {
            return;
        }
        let links = self.merge(neighbour, layer, &links, &[(distance, row)]);
        self.set_links(neighbour, layer, &mut upper, &links);
    }

    /// The graph's links in the search layout.
    pub fn flatten(&self) -> FlatGraph {
        let mut flat = FlatGraph::new(self.m);
        flat.levels = self.levels.clone();
        flat.links0 = self
            .links0
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .collect();
        flat.upper_offsets = Vec::with_capacity(self.len());
        for (row, node) in self.nodes.iter().enumerate() {
            if self.levels[row] == 0 {
                flat.upper_offsets.push(u32::MAX);
                continue;
            }
            flat.upper_offsets.push(flat.upper.len() as u32);
            let upper = node.lock().unwrap_or_else(|p| p.into_inner());
            for links in upper.iter() {
                flat.upper.push(links.len() as u32);
                flat.upper.extend_from_slice(links);
                flat.upper
                    .extend(std::iter::repeat_n(0, self.m - links.len()));
            }
        }
        flat.entry = *self.entry.read().unwrap_or_else(|p| p.into_inner());
        flat.twins = self.twins.lock().unwrap_or_else(|p| p.into_inner()).clone();
        flat.twins.sort_unstable();
        flat
    }
}

/// Sorts `candidates` of `owner` nearest first. Ties (copies of one image
/// that were inserted at once, so that neither became the other's twin)
/// are broken by a hash of the pair, not the row: by row, every copy would
/// pick the same few copies, and the others would get no links at all.
fn sort_nearest(owner: u32, candidates: &mut [(f32, u32)]) {
    candidates.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| tie_key(owner, a.1).cmp(&tie_key(owner, b.1)))
    });
}

fn tie_key(owner: u32, row: u32) -> u64 {
    mix((u64::from(owner) << 32) | u64::from(row))
}

/// splitmix64's finaliser: a cheap hash whose output bits all depend on
/// every input bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The level of row `row`: `⌊-ln(u) · scale⌋` for `u` uniform in (0, 1],
/// drawn from a hash of the row (splitmix64).
fn level_of(row: usize, scale: f64) -> usize {
    let x = mix((row as u64).wrapping_add(LEVEL_SEED));
    let u = ((x >> 11) + 1) as f64 / (1u64 << 53) as f64;
    ((-u.ln() * scale) as usize).min(MAX_LEVEL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::distance::quantize_parts;
    use crate::index::flat::Codes;

    fn random_unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    fn graph_of_ef(
        vectors: &[Vec<f32>],
        m: usize,
        batch: usize,
        ef: usize,
    ) -> (Graph, Vec<i8>, Vec<f32>) {
        let dim = vectors[0].len();
        let (codes, scales): (Vec<Vec<i8>>, Vec<f32>) =
            vectors.iter().map(|v| quantize_parts(v)).unzip();
        let codes: Vec<i8> = codes.concat();
        let mut graph = Graph::new(dim, m, ef);
        for start in (0..scales.len()).step_by(batch) {
            let end = (start + batch).min(scales.len());
            graph.insert(&codes[start * dim..end * dim], &scales[start..end]);
        }
        (graph, codes, scales)
    }

    /// The rows whose own vector, searched at `ef`, does not find them.
    fn missed_by_own_vector(
        flat: &FlatGraph,
        vectors: &[Vec<f32>],
        codes: &[i8],
        scales: &[f32],
        ef: usize,
    ) -> Vec<usize> {
        let table = Codes {
            dim: vectors[0].len(),
            codes,
            scales,
        };
        (0..vectors.len())
            .filter(|&row| {
                let (q, qs) = quantize_parts(&vectors[row]);
                !flat.search(&table, &q, qs, ef, |_| true).contains(&row)
            })
            .collect()
    }

    fn graph_of(vectors: &[Vec<f32>], m: usize, batch: usize) -> (Graph, Vec<i8>, Vec<f32>) {
        graph_of_ef(vectors, m, batch, 64)
    }

    /// Every row, walked to from the entry point through the flat copy,
    /// finds itself: no row is cut off, in batches of one or many.
    #[test]
    fn every_row_is_found_by_its_own_vector() {
        let dim = 16;
        let vectors: Vec<Vec<f32>> = (0..2000).map(|i| random_unit(i, dim)).collect();
        for batch in [1, 500] {
            let (graph, codes, scales) = graph_of(&vectors, 8, batch);
            let flat = graph.flatten();
            assert!(flat.is_well_formed());
            let missed = missed_by_own_vector(&flat, &vectors, &codes, &scales, 16);
            assert!(missed.is_empty(), "batch {batch}: {missed:?}");
        }
    }

    #[test]
    fn a_graph_resumes_from_its_flat_copy() {
        let dim = 8;
        let vectors: Vec<Vec<f32>> = (0..300).map(|i| random_unit(i, dim)).collect();
        let (graph, codes, scales) = graph_of(&vectors[..200], 4, 50);
        let flat = graph.flatten();
        let mut resumed = Graph::from_flat(dim, 64, &flat, &codes, &scales);
        assert_eq!(resumed.flatten(), flat);
        let (more, more_scales): (Vec<Vec<i8>>, Vec<f32>) =
            vectors[200..].iter().map(|v| quantize_parts(v)).unzip();
        resumed.insert(&more.concat(), &more_scales);
        assert_eq!(resumed.len(), 300);
        assert!(resumed.flatten().is_well_formed());
    }

    /// 50 identical and 50 near-identical vectors among 1 100 random ones,
    /// inserted in parallel: the copies become twins, and every row, copy
    /// or not, is found by its own vector (as points, copies cut up to 130
    /// of 600 rows off the walk).
    #[test]
    fn copies_become_twins_and_every_row_is_found() {
        let dim = 24;
        let shared = random_unit(999_999, dim);
        let vectors: Vec<Vec<f32>> = (0..1200u64)
            .map(|n| match n {
                1100..1150 => shared.clone(),
                1150..1200 => {
                    let noise = random_unit(n * 7919, dim);
                    let v: Vec<f32> = shared
                        .iter()
                        .zip(&noise)
                        .map(|(s, e)| s + 1e-3 * e)
                        .collect();
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    v.iter().map(|x| x / norm).collect()
                }
                _ => random_unit(n, dim),
            })
            .collect();
        let (graph, codes, scales) = graph_of_ef(&vectors, 16, 1200, 200);
        let flat = graph.flatten();
        assert!(flat.is_well_formed());
        let twins = flat.twins.len();
        assert!(twins >= 95, "only {twins} of 99 copies are twins");
        assert!(
            flat.twins.iter().all(|&(_, t)| t >= 1100),
            "{:?}",
            flat.twins
        );
        let missed = missed_by_own_vector(&flat, &vectors, &codes, &scales, 64);
        assert!(missed.is_empty(), "{missed:?}");
    }

    #[test]
    fn levels_follow_the_papers_distribution() {
        let scale = 1.0 / 16f64.ln();
        let levels: Vec<usize> = (0..100_000).map(|row| level_of(row, scale)).collect();
        let above_zero = levels.iter().filter(|&&l| l > 0).count() as f64 / 1e5;
        // P(level ≥ 1) = 1/M.
        assert!((above_zero - 1.0 / 16.0).abs() < 0.005, "{above_zero}");
        assert_eq!(
            levels,
            (0..100_000)
                .map(|row| level_of(row, scale))
                .collect::<Vec<_>>()
        );
    }
}
