//! The search layout: the HNSW graph's links in flat arrays, walked by our
//! own search loop.
//!
//! A node's layer-0 links are one contiguous slice of `u32` row numbers and
//! vectors are rows of one array, so a visit costs one cache miss, and the
//! next neighbours' vectors are prefetched while the current one is scored
//! (hnsw_rs, which built imgdb's graphs before, kept each point behind two
//! `Arc`s with a locked list: four fifths of its search time went to those
//! loads). The builder (`graph.rs`) keeps the same layout with atomic links;
//! this copy of it is refreshed from it (see `VectorIndex::apply`) and is
//! what snapshots persist.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::distance::dot_i8;

/// A distance that orders totally (graph distances are finite).
#[derive(Clone, Copy)]
pub(crate) struct Dist(pub f32);

impl PartialEq for Dist {
    fn eq(&self, other: &Dist) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Dist {}

impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Dist) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dist {
    fn cmp(&self, other: &Dist) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The quantized vectors the walk scores against: `codes` holds `dim` bytes
/// per row, `scales` one factor per row (see `distance::quantize`).
pub(crate) struct Codes<'a> {
    pub dim: usize,
    pub codes: &'a [i8],
    pub scales: &'a [f32],
}

impl Codes<'_> {
    /// `1 - dot` between the query and a row.
    #[inline]
    fn distance(&self, query: &[i8], query_scale: f32, row: u32) -> f32 {
        let row = row as usize;
        let code = &self.codes[row * self.dim..(row + 1) * self.dim];
        1.0 - dot_i8(query, code) as f32 * query_scale * self.scales[row]
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        prefetch_code(self.codes, self.dim, row);
    }
}

/// Asks the CPU to load row `row`'s `dim` codes into the cache, so that
/// scoring the next neighbours does not wait on memory.
#[inline]
pub(crate) fn prefetch_code(codes: &[i8], dim: usize, row: u32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = row as usize * dim;
        debug_assert!(start + dim <= codes.len());
        for offset in (start..start + dim).step_by(64) {
            // SAFETY: the address is inside `codes`; a prefetch never faults.
            unsafe { _mm_prefetch(codes.as_ptr().add(offset).cast(), _MM_HINT_T0) };
        }
    }
}

/// The links of the graph over rows `0..len()`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FlatGraph {
    /// `M`: links per node on layers above 0.
    pub m: usize,
    /// The level of each row.
    pub levels: Vec<u8>,
    /// Layer 0: per row, a count then `2·M` slots.
    pub links0: Vec<u32>,
    /// Per row, the offset of its upper-layer links in `upper` (`u32::MAX`
    /// for rows on layer 0 only).
    pub upper_offsets: Vec<u32>,
    /// Per row with a level `l > 0`, for layers 1 to `l`: a count then `M` slots.
    pub upper: Vec<u32>,
    /// The entry point (a row on the top layer), if any.
    pub entry: Option<u32>,
    /// `(point, twin)` pairs, sorted: rows that copy a point and have no
    /// links of their own (see `graph.rs`). A search that scores the point
    /// returns its twins with it.
    pub twins: Vec<(u32, u32)>,
}

thread_local! {
    /// Per-thread visit marks: a row is visited when its mark equals the
    /// current epoch, so clearing is a counter increment.
    static VISITED: RefCell<(Vec<u32>, u32)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Runs `walk` with this thread's visit marks for `rows` rows and a fresh
/// epoch: a row is visited in this walk when its mark equals the epoch.
pub(crate) fn with_visit_marks<R>(rows: usize, walk: impl FnOnce(&mut [u32], u32) -> R) -> R {
    VISITED.with(|visited| {
        let mut visited = visited.borrow_mut();
        let (marks, epoch) = &mut *visited;
        if marks.len() < rows {
            marks.resize(rows, 0);
        }
        *epoch = epoch.wrapping_add(1);
        if *epoch == 0 {
            marks.fill(0);
            *epoch = 1;
        }
        walk(marks, *epoch)
    })
}

impl FlatGraph {
    /// An empty graph.
    pub fn new(m: usize) -> FlatGraph {
        FlatGraph {
            m,
            ..FlatGraph::default()
        }
    }

    fn m0(&self) -> usize {
        2 * self.m
    }

    /// The number of rows covered.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    fn layer0(&self, row: u32) -> &[u32] {
        let start = row as usize * (self.m0() + 1);
        let count = self.links0[start] as usize;
        &self.links0[start + 1..start + 1 + count]
    }

    /// Row `row`'s links on `layer`, 1 to its level.
    pub fn upper_layer(&self, row: u32, layer: u8) -> &[u32] {
        let start = self.upper_offsets[row as usize] as usize + (layer as usize - 1) * (self.m + 1);
        let count = self.upper[start] as usize;
        &self.upper[start + 1..start + 1 + count]
    }

    /// Checks that every link names a row inside the graph and every level
    /// has its upper links: what makes the walk safe on loaded data.
    pub fn is_well_formed(&self) -> bool {
        let n = self.len() as u32;
        let m0 = self.m0();
        if self.links0.len() != self.len() * (m0 + 1) || self.upper_offsets.len() != self.len() {
            return false;
        }
        if self.entry.is_some_and(|e| e >= n) || (self.entry.is_none() && n > 0) {
            return false;
        }
        let twins_ok = self.twins.is_sorted()
            && self
                .twins
                .iter()
                .all(|&(point, twin)| point < n && twin < n && point != twin);
        if !twins_ok {
            return false;
        }
        let layer0_ok = self.links0.chunks_exact(m0 + 1).all(|node| {
            node[0] as usize <= m0 && node[1..=node[0] as usize].iter().all(|&r| r < n)
        });
        layer0_ok
            && self
                .levels
                .iter()
                .zip(&self.upper_offsets)
                .all(|(&level, &offset)| {
                    if level == 0 {
                        return offset == u32::MAX;
                    }
                    let end = offset as usize + level as usize * (self.m + 1);
                    end <= self.upper.len()
                        && self.upper[offset as usize..end]
                            .chunks_exact(self.m + 1)
                            .all(|layer| {
                                layer[0] as usize <= self.m
                                    && layer[1..=layer[0] as usize].iter().all(|&r| r < n)
                            })
                })
    }

    /// Up to `ef` rows near the query (quantized: `query`, `query_scale`)
    /// among those `accept` lets through, found by the HNSW walk: greedy
    /// descent through the upper layers, then a best-first search of width
    /// `ef` on layer 0 that steps through rejected rows but never returns them.
    pub fn search(
        &self,
        codes: &Codes<'_>,
        query: &[i8],
        query_scale: f32,
        ef: usize,
        accept: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let Some(mut entry) = self.entry else {
            return Vec::new();
        };
        let mut entry_distance = codes.distance(query, query_scale, entry);
        for layer in (1..=self.levels[entry as usize]).rev() {
            loop {
                let mut moved = false;
                for &next in self.upper_layer(entry, layer) {
                    // A graph built by hnsw_rs (snapshot format 1) may list a
                    // lower-level point on an upper layer; stepping onto it
                    // would leave the layer.
                    if self.levels[next as usize] < layer {
                        continue;
                    }
                    let d = codes.distance(query, query_scale, next);
                    if d < entry_distance {
                        entry_distance = d;
                        entry = next;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        with_visit_marks(self.len(), |marks, epoch| {
            let mut candidates: BinaryHeap<Reverse<(Dist, u32)>> =
                BinaryHeap::with_capacity(4 * ef);
            let mut found: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
            marks[entry as usize] = epoch;
            candidates.push(Reverse((Dist(entry_distance), entry)));
            if accept(entry as usize) {
                found.push((Dist(entry_distance), entry));
            }
            self.push_twins(entry, entry_distance, ef, &accept, &mut found);
            while let Some(Reverse((Dist(distance), row))) = candidates.pop() {
                if found.len() >= ef && found.peek().is_some_and(|(worst, _)| distance > worst.0) {
                    break;
                }
                let links = self.layer0(row);
                for &next in links {
                    if marks[next as usize] != epoch {
                        codes.prefetch(next);
                    }
                }
                for &next in links {
                    if marks[next as usize] == epoch {
                        continue;
                    }
                    marks[next as usize] = epoch;
                    let d = codes.distance(query, query_scale, next);
                    let worst = found.peek().map_or(f32::INFINITY, |(w, _)| w.0);
                    if found.len() < ef || d < worst {
                        candidates.push(Reverse((Dist(d), next)));
                        if accept(next as usize) {
                            found.push((Dist(d), next));
                            if found.len() > ef {
                                found.pop();
                            }
                        }
                        self.push_twins(next, d, ef, &accept, &mut found);
                    }
                }
            }
            found.into_iter().map(|(_, row)| row as usize).collect()
        })
    }

    /// Adds the twins of `point`, scored at `distance`, that `accept` lets
    /// through to `found`, which keeps its `ef` nearest (twins beyond `ef`
    /// that tie with the worst are kept too: they are copies of one image,
    /// and a search for it must be able to return every copy).
    fn push_twins(
        &self,
        point: u32,
        distance: f32,
        ef: usize,
        accept: &impl Fn(usize) -> bool,
        found: &mut BinaryHeap<(Dist, u32)>,
    ) {
        if self.twins.is_empty() {
            return;
        }
        let start = self.twins.partition_point(|&(p, _)| p < point);
        for &(_, twin) in self.twins[start..].iter().take_while(|(p, _)| *p == point) {
            if accept(twin as usize) {
                found.push((Dist(distance), twin));
            }
        }
        while found.len() > ef && found.peek().is_some_and(|(worst, _)| worst.0 > distance) {
            found.pop();
        }
    }

    /// The layout written into snapshots (`schema/index.md`), little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            32 + self.levels.len() * (1 + 4 * (self.m0() + 2)) + 4 * self.upper.len(),
        );
        out.extend_from_slice(&(self.m as u32).to_le_bytes());
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.entry.map_or(u32::MAX, |e| e).to_le_bytes());
        out.extend_from_slice(&(self.upper.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.levels);
        for word in self
            .links0
            .iter()
            .chain(&self.upper_offsets)
            .chain(&self.upper)
        {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&(self.twins.len() as u64).to_le_bytes());
        for &(point, twin) in &self.twins {
            out.extend_from_slice(&point.to_le_bytes());
            out.extend_from_slice(&twin.to_le_bytes());
        }
        out
    }

    /// The inverse of [`encode`](Self::encode); `None` when the bytes are not
    /// a well-formed graph. Snapshot format 1 had no twins section
    /// (`with_twins` false).
    pub fn decode(bytes: &[u8], with_twins: bool) -> Option<FlatGraph> {
        let m = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
        let rows = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?) as usize;
        let entry = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?);
        let upper_len = u64::from_le_bytes(bytes.get(16..24)?.try_into().ok()?) as usize;
        let words_needed = rows.checked_mul(2 * m + 2)?.checked_add(upper_len)?;
        let rest = bytes.get(24..)?;
        let graph_len = rows.checked_add(words_needed.checked_mul(4)?)?;
        let (rest, twins) = if with_twins {
            let (rest, tail) = rest.split_at_checked(graph_len)?;
            let count = u64::from_le_bytes(tail.get(..8)?.try_into().ok()?) as usize;
            let pairs = &tail[8..];
            if pairs.len() != count.checked_mul(8)? {
                return None;
            }
            let twins = pairs
                .chunks_exact(8)
                .map(|p| {
                    let word =
                        |i: usize| u32::from_le_bytes(p[i..i + 4].try_into().expect("4 bytes"));
                    (word(0), word(4))
                })
                .collect();
            (rest, twins)
        } else {
            (rest, Vec::new())
        };
        if !(1..=256).contains(&m) || rest.len() != graph_len {
            return None;
        }
        let (levels, words) = rest.split_at(rows);
        let words: Vec<u32> = words
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
            .collect();
        let links0_len = rows * (2 * m + 1);
        let graph = FlatGraph {
            m,
            levels: levels.to_vec(),
            links0: words[..links0_len].to_vec(),
            upper_offsets: words[links0_len..links0_len + rows].to_vec(),
            upper: words[links0_len + rows..].to_vec(),
            entry: (entry != u32::MAX).then_some(entry),
            twins,
        };
        graph.is_well_formed().then_some(graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::distance::quantize_parts;

    impl FlatGraph {
        /// Adds row `row` (rows must come in order) with its links per layer.
        pub fn push(&mut self, row: usize, layers: &[Vec<u32>]) {
            debug_assert_eq!(row, self.levels.len());
            let level = layers.len().saturating_sub(1) as u8;
            self.levels.push(level);
            let m0 = self.m0();
            let layer0 = layers.first().map(Vec::as_slice).unwrap_or_default();
            let count = layer0.len().min(m0);
            self.links0.push(count as u32);
            self.links0.extend_from_slice(&layer0[..count]);
            self.links0.extend(std::iter::repeat_n(0, m0 - count));
            if level == 0 {
                self.upper_offsets.push(u32::MAX);
            } else {
                self.upper_offsets.push(self.upper.len() as u32);
                for links in &layers[1..] {
                    let count = links.len().min(self.m);
                    self.upper.push(count as u32);
                    self.upper.extend_from_slice(&links[..count]);
                    self.upper.extend(std::iter::repeat_n(0, self.m - count));
                }
            }
            if self.entry.is_none_or(|e| level > self.levels[e as usize]) {
                self.entry = Some(row as u32);
            }
        }
    }

    /// A line of points 0..n on a circle arc, linked to their neighbours.
    fn line(n: usize) -> (FlatGraph, Vec<i8>, Vec<f32>) {
        let mut graph = FlatGraph::new(4);
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        for i in 0..n {
            let angle = i as f32 * 0.03;
            let (c, s) = quantize_parts(&[angle.cos(), angle.sin()]);
            codes.extend(c);
            scales.push(s);
            let mut layer0 = Vec::new();
            if i > 0 {
                layer0.push(i as u32 - 1);
            }
            if i + 1 < n {
                layer0.push(i as u32 + 1);
            }
            graph.push(i, &[layer0]);
        }
        (graph, codes, scales)
    }

    #[test]
    fn the_walk_finds_the_nearest_and_respects_the_filter() {
        let (graph, codes, scales) = line(100);
        assert!(graph.is_well_formed());
        let codes = Codes {
            dim: 2,
            codes: &codes,
            scales: &scales,
        };
        let angle = 1.8f32;
        let (q, qs) = quantize_parts(&[angle.cos(), angle.sin()]);
        let found = graph.search(&codes, &q, qs, 3, |_| true);
        assert!(found.contains(&60), "{found:?}");
        let found = graph.search(&codes, &q, qs, 3, |row| row % 2 == 1);
        assert!(
            found.iter().all(|r| r % 2 == 1) && found.contains(&59),
            "{found:?}"
        );
    }

    #[test]
    fn encoding_round_trips_and_damage_is_refused() {
        let (graph, _, _) = line(10);
        let mut graph = graph;
        graph.twins = vec![(2, 7), (2, 9)];
        let bytes = graph.encode();
        assert_eq!(FlatGraph::decode(&bytes, true), Some(graph.clone()));
        assert_eq!(FlatGraph::decode(&bytes[..bytes.len() - 1], true), None);
        // Format 1: no twins section.
        let mut old = graph.clone();
        old.twins.clear();
        let bytes = old.encode();
        assert_eq!(
            FlatGraph::decode(&bytes[..bytes.len() - 8], false),
            Some(old)
        );
        let mut bad_link = bytes.clone();
        let first_link = 24 + 10 + 4;
        bad_link[first_link..first_link + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(FlatGraph::decode(&bad_link, true), None);
    }
}
