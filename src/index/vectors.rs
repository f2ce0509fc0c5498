//! The exact vectors searches re-rank with, and the memory mode that says
//! where they live.
//!
//! In the [`Resident`](crate::IndexMemory::Resident) mode every row is in memory.
//! In the [`Compact`](crate::IndexMemory::Compact) mode the rows a snapshot holds
//! stay in its `vectors.f32`, memory-mapped: a search reads the pages of the
//! few rows it re-ranks (the operating system keeps the hot ones cached),
//! and only the rows appended since the snapshot are in memory, until the
//! next snapshot maps them too. Both re-rank with the same exact `f32`
//! values, so their results are the same; the graph walk scores `i8` codes
//! that are in memory in both modes.
//!
//! This module owns the row storage only: which file is mapped, and when,
//! is the snapshot's business (`snapshot.rs`).

use std::ops::Range;

/// The rows of a snapshot's `vectors.f32`, mapped.
struct MappedRows {
    map: memmap2::Mmap,
    rows: usize,
}

impl MappedRows {
    fn floats(&self) -> &[f32] {
        let bytes = &self.map[..];
        // SAFETY: a mapping starts on a page boundary, so it is aligned for
        // f32; `new` checked that it holds `rows · dim` of them, written
        // little-endian, which is this target's order (see `map_rows`). Any
        // bit pattern is a valid f32. The snapshot's files are never
        // rewritten in place (a new snapshot is a new directory), so the
        // bytes do not change while mapped.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
    }
}

/// `rows × dim` exact unit vectors, row-major: a mapped head (compact mode,
/// the rows of the last snapshot) and an in-memory tail.
pub(crate) struct Vectors {
    dim: usize,
    head: Option<MappedRows>,
    tail: Vec<f32>,
}

impl Vectors {
    /// Rows held in memory.
    pub fn in_memory(dim: usize, rows: Vec<f32>) -> Vectors {
        debug_assert_eq!(rows.len() % dim.max(1), 0);
        Vectors {
            dim,
            head: None,
            tail: rows,
        }
    }

    /// The first `rows` rows served from `map` (a snapshot's `vectors.f32`,
    /// which must hold exactly them), the rest from memory.
    ///
    /// Returns `None` where the map cannot serve them (the wrong length, or
    /// a big-endian target, whose `f32` are not the file's): the caller
    /// keeps the rows in memory.
    fn map_rows(dim: usize, map: memmap2::Mmap, rows: usize) -> Option<MappedRows> {
        let little_endian = cfg!(target_endian = "little");
        let aligned = (map.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>());
        (little_endian && aligned && map.len() == rows * dim * 4)
            .then_some(MappedRows { map, rows })
    }

    /// The rows of a snapshot served from `map`, with no rows after them.
    pub fn mapped(dim: usize, map: memmap2::Mmap, rows: usize) -> Option<Vectors> {
        Vectors::map_rows(dim, map, rows).map(|head| Vectors {
            dim,
            head: Some(head),
            tail: Vec::new(),
        })
    }

    /// Serves the first `rows` rows from `map` from now on (a snapshot of
    /// them was just written), freeing their memory; returns whether it did.
    pub fn remap(&mut self, map: memmap2::Mmap, rows: usize) -> bool {
        let mapped = self.head.as_ref().map_or(0, |h| h.rows);
        if rows < mapped || rows > self.len() {
            return false;
        }
        let Some(head) = Vectors::map_rows(self.dim, map, rows) else {
            return false;
        };
        self.tail.drain(..(rows - mapped) * self.dim);
        self.tail.shrink_to_fit();
        self.head = Some(head);
        true
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.head.as_ref().map_or(0, |h| h.rows) + self.tail.len() / self.dim.max(1)
    }

    /// Row `row`.
    pub fn row(&self, row: usize) -> &[f32] {
        let dim = self.dim;
        match &self.head {
            Some(head) if row < head.rows => &head.floats()[row * dim..(row + 1) * dim],
            head => {
                let row = row - head.as_ref().map_or(0, |h| h.rows);
                &self.tail[row * dim..(row + 1) * dim]
            }
        }
    }

    /// Rows `range`, copied out in order.
    pub fn copy_rows(&self, range: Range<usize>) -> Vec<f32> {
        let mut out = Vec::with_capacity(range.len() * self.dim);
        for row in range {
            out.extend_from_slice(self.row(row));
        }
        out
    }

    /// Appends one row.
    pub fn push(&mut self, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        self.tail.extend_from_slice(vector);
    }

    /// The bytes of rows held in memory (the mapped ones are the page
    /// cache's to keep or drop).
    pub fn resident_bytes(&self) -> usize {
        self.tail.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::IndexMemory;
    use std::io::Write;

    fn map_of(floats: &[f32]) -> memmap2::Mmap {
        let mut file = tempfile::tempfile().unwrap();
        let bytes: Vec<u8> = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
        file.write_all(&bytes).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        unsafe { memmap2::Mmap::map(&file) }.unwrap()
    }

    #[test]
    fn a_remapped_head_serves_the_same_rows_and_frees_their_memory() {
        let dim = 3;
        let rows: Vec<f32> = (0..15).map(|x| x as f32 * 0.5).collect();
        let mut vectors = Vectors::in_memory(dim, rows.clone());
        assert!(vectors.remap(map_of(&rows[..9]), 3));
        assert_eq!(vectors.len(), 5);
        for row in 0..5 {
            assert_eq!(vectors.row(row), &rows[row * dim..(row + 1) * dim]);
        }
        assert_eq!(vectors.tail.len(), 6, "only rows 3 and 4 stay in memory");
        vectors.push(&[9.0, 9.5, 10.0]);
        assert_eq!(vectors.row(5), &[9.0, 9.5, 10.0]);
        assert_eq!(vectors.copy_rows(2..4), rows[6..12].to_vec());
        // A later snapshot maps more rows; an older one, or a map of the
        // wrong length, is refused and changes nothing.
        let mut all = rows.clone();
        all.extend_from_slice(&[9.0, 9.5, 10.0]);
        assert!(!vectors.remap(map_of(&all[..6]), 2));
        assert!(!vectors.remap(map_of(&all[..10]), 4));
        assert!(vectors.remap(map_of(&all[..15]), 5));
        assert_eq!(vectors.row(5), &[9.0, 9.5, 10.0]);
        assert_eq!(vectors.copy_rows(0..6), all);
    }

    #[test]
    fn modes_round_trip_their_names_and_codes() {
        for mode in [IndexMemory::Resident, IndexMemory::Compact] {
            assert_eq!(IndexMemory::from_name(mode.name()), Some(mode));
            assert_eq!(IndexMemory::from_code(mode.code()), Some(mode));
        }
        assert_eq!(IndexMemory::from_code(2), None);
        assert_eq!(IndexMemory::default(), IndexMemory::Resident);
    }
}
