//! Consistency checking (`imgdb check`): the store's records, its secondary
//! maps and the index must all agree, and every vector must find itself.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rayon::prelude::*;

use crate::error::Result;
use crate::index::VectorIndex;
use crate::index::distance::dot;
use crate::store::Store;
use crate::store::record::{path_from_bytes, path_to_bytes};
use crate::types::{ContentHash, ImageId};

/// One inconsistency found by [`Db::verify`](crate::Db::verify).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// A record has no live index point.
    NotIndexed {
        /// The image.
        id: ImageId,
    },
    /// A record's index point holds an older vector.
    StaleVector {
        /// The image.
        id: ImageId,
    },
    /// A live index point has no record.
    OrphanPoint {
        /// The id the point names.
        id: ImageId,
    },
    /// A record's vector is not of unit length.
    NotUnitVector {
        /// The image.
        id: ImageId,
    },
    /// Searching with a record's own vector does not return it first.
    NotFoundBySelfQuery {
        /// The image.
        id: ImageId,
    },
    /// A record's file is missing from the path map, or maps elsewhere.
    PathNotMapped {
        /// The file.
        path: PathBuf,
        /// The image that has it.
        id: ImageId,
    },
    /// The path map names a path its image does not have.
    DanglingPath {
        /// The file.
        path: PathBuf,
        /// The image it maps to.
        id: ImageId,
    },
    /// A record's content hash is missing from the hash map.
    HashNotMapped {
        /// The image.
        id: ImageId,
    },
    /// The hash map names an image that lacks that content.
    DanglingHash {
        /// The image it maps to.
        id: ImageId,
    },
    /// A record's tag is missing from the tag map.
    TagNotMapped {
        /// The image.
        id: ImageId,
        /// The label.
        label: String,
    },
    /// The tag map names an image that lacks that tag.
    DanglingTag {
        /// The image.
        id: ImageId,
        /// The label.
        label: String,
    },
    /// The source map (format 6) names an image that has no record.
    OrphanSource {
        /// The missing image.
        id: ImageId,
    },
}

/// What [`Db::verify`](crate::Db::verify) found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: usize,
    /// Live index points.
    pub index_points: usize,
    /// Tombstoned index points.
    pub tombstones: usize,
    /// Every inconsistency found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Scores within this of each other are ties (identical vectors, or
/// vectors closer than `f32` dot products can tell apart).
const TIE: f32 = 1e-5;

/// Whether a search with the record's own `vector` finds image `id` or an
/// image it ties with. Its point must hold that vector (score its own
/// vector's), and the best hit must score the same as the point: a better
/// hit means the point holds something else, a worse one that the search
/// missed it. A tie is as good as finding it, however many images tie: a
/// search cannot return all of 50 identical vectors in a top 10, and need
/// not, since any of them answers the query as well.
fn finds_itself(index: &VectorIndex, id: ImageId, vector: &[f32], ef: usize) -> bool {
    let Some(point) = index.vector_of(id) else {
        return false;
    };
    let own = dot(vector, &point);
    let Some(&(_, best)) = index.search(vector, 1, ef, None).first() else {
        return false;
    };
    dot(vector, vector) - own <= TIE && (best - own).abs() <= TIE
}

pub(crate) fn verify(store: &Store, index: &VectorIndex) -> Result<VerifyReport> {
    let mut problems = Vec::new();
    let mut record_paths: HashMap<Vec<u8>, ImageId> = HashMap::new();
    let mut record_hashes: HashSet<(ContentHash, ImageId)> = HashSet::new();
    let mut record_tags: HashSet<(String, ImageId)> = HashSet::new();
    let mut to_self_query = Vec::new();
    let mut records = 0;
    for record in store.records() {
        let record = record?;
        records += 1;
        let id = record.id;
        for file in &record.files {
            record_paths.insert(path_to_bytes(&file.path), id);
        }
        record_hashes.insert((record.content_hash, id));
        for tag in &record.tags {
            record_tags.insert((tag.label.clone(), id));
        }
        let norm = dot(&record.vector, &record.vector).sqrt();
        let unit = (norm - 1.0).abs() <= 1e-3;
        if !unit {
            problems.push(Problem::NotUnitVector { id });
        }
        match index.indexed_vector_seq(id) {
            None => problems.push(Problem::NotIndexed { id }),
            Some(seq) if seq != record.vector_seq => problems.push(Problem::StaleVector { id }),
            // A vector that is not unit is damage already reported; its
            // self-query would only report it again.
            Some(_) if unit => to_self_query.push((id, record.vector)),
            Some(_) => {}
        }
    }

    let mut mapped_paths = HashSet::new();
    for entry in store.path_entries() {
        let (path, id) = entry?;
        if record_paths.get(&path) != Some(&id) {
            problems.push(Problem::DanglingPath {
                path: path_from_bytes(path.clone()).unwrap_or_default(),
                id,
            });
        }
        mapped_paths.insert((path, id));
    }
    for (path, id) in &record_paths {
        if !mapped_paths.contains(&(path.clone(), *id)) {
            problems.push(Problem::PathNotMapped {
                path: path_from_bytes(path.clone()).unwrap_or_default(),
                id: *id,
            });
        }
    }
    let mut mapped_hashes = HashSet::new();
    for entry in store.hash_entries() {
        let (hash, id) = entry?;
        if !record_hashes.contains(&(hash, id)) {
            problems.push(Problem::DanglingHash { id });
        }
        mapped_hashes.insert((hash, id));
    }
    for (hash, id) in &record_hashes {
        if !mapped_hashes.contains(&(*hash, *id)) {
            problems.push(Problem::HashNotMapped { id: *id });
        }
    }
    let mut mapped_tags = HashSet::new();
    for entry in store.tag_entries() {
        let (label, id) = entry?;
        if !record_tags.contains(&(label.clone(), id)) {
            problems.push(Problem::DanglingTag {
                id,
                label: label.clone(),
            });
        }
        mapped_tags.insert((label, id));
    }
    for (label, id) in &record_tags {
        if !mapped_tags.contains(&(label.clone(), *id)) {
            problems.push(Problem::TagNotMapped {
                id: *id,
                label: label.clone(),
            });
        }
    }

    let ids: HashSet<ImageId> = record_hashes.iter().map(|(_, id)| *id).collect();
    for entry in store.source_entries() {
        let (id, _) = entry?;
        if !ids.contains(&id) {
            problems.push(Problem::OrphanSource { id });
        }
    }

    let recorded: HashSet<ImageId> = to_self_query.iter().map(|(id, _)| *id).collect();
    {
        let state = index.read();
        for row in state.rows.iter().filter(|r| r.alive) {
            if !recorded.contains(&row.id) && store.record(row.id)?.is_none() {
                problems.push(Problem::OrphanPoint { id: row.id });
            }
        }
    }

    // A walk at the search's own width may miss a point that a wider one
    // reaches (a cheap graph, an unlucky entry): that point is reachable,
    // so it is looked for again wider before it is called lost.
    let ef = index.params().ef_search.max(64);
    let wide = (8 * ef).max(512);
    let lost: Vec<ImageId> = to_self_query
        .par_iter()
        .filter(|(id, vector)| {
            !finds_itself(index, *id, vector, ef) && !finds_itself(index, *id, vector, wide)
        })
        .map(|(id, _)| *id)
        .collect();
    problems.extend(
        lost.into_iter()
            .map(|id| Problem::NotFoundBySelfQuery { id }),
    );

    let (index_points, tombstones) = index.counts();
    Ok(VerifyReport {
        records,
        index_points,
        tombstones,
        problems,
    })
}
