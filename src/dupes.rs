//! Near-duplicate groups: images whose vectors are at least a threshold
//! similar, joined transitively (union-find over each image's nearest
//! neighbours).

use std::collections::HashMap;

use crate::db::{Db, SearchOptions};
use crate::error::Result;
use crate::types::ImageId;

/// How many neighbours of each image are looked at.
const NEIGHBOURS: usize = 16;

/// Images that look alike.
#[derive(Clone, Debug, PartialEq)]
pub struct DuplicateGroup {
    /// The images, by id.
    pub ids: Vec<ImageId>,
    /// The lowest similarity of a pair that joined the group.
    pub min_score: f32,
}

fn root(parent: &mut HashMap<ImageId, ImageId>, id: ImageId) -> ImageId {
    let mut current = id;
    while let Some(&p) = parent.get(&current) {
        if p == current {
            break;
        }
        current = p;
    }
    // Path compression.
    let mut node = id;
    while node != current {
        let next = parent[&node];
        parent.insert(node, current);
        node = next;
    }
    current
}

impl Db {
    /// Groups of images at least `threshold` similar (cosine), largest
    /// groups first. Identical files are one image already, not a group.
    pub fn near_duplicates(&self, threshold: f32) -> Result<Vec<DuplicateGroup>> {
        let options = SearchOptions {
            k: NEIGHBOURS,
            min_score: Some(threshold),
            ..SearchOptions::default()
        };
        let mut parent: HashMap<ImageId, ImageId> = HashMap::new();
        let mut weakest: HashMap<(ImageId, ImageId), f32> = HashMap::new();
        for record in self.records() {
            let id = record?.id;
            let Some(vector) = self.vector(id) else {
                continue;
            };
            for hit in self.search(&vector, &options)? {
                if hit.id == id {
                    continue;
                }
                parent.entry(id).or_insert(id);
                parent.entry(hit.id).or_insert(hit.id);
                let (a, b) = (root(&mut parent, id), root(&mut parent, hit.id));
                let pair = (id.min(hit.id), id.max(hit.id));
                weakest.insert(pair, hit.score);
                if a != b {
                    parent.insert(a.max(b), a.min(b));
                }
            }
        }
        let ids: Vec<ImageId> = parent.keys().copied().collect();
        let mut groups: HashMap<ImageId, Vec<ImageId>> = HashMap::new();
        for id in ids {
            let r = root(&mut parent, id);
            groups.entry(r).or_default().push(id);
        }
        let mut groups: Vec<DuplicateGroup> = groups
            .into_values()
            .map(|mut ids| {
                ids.sort();
                let min_score = weakest
                    .iter()
                    .filter(|((a, b), _)| {
                        ids.binary_search(a).is_ok() && ids.binary_search(b).is_ok()
                    })
                    .map(|(_, s)| *s)
                    .fold(1.0f32, f32::min);
                DuplicateGroup { ids, min_score }
            })
            .collect();
        groups.sort_by(|a, b| b.ids.len().cmp(&a.ids.len()).then(a.ids[0].cmp(&b.ids[0])));
        Ok(groups)
    }
}
