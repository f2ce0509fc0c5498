//! The recall regression test: a database of 20 000 clustered, CLIP-like
//! vectors built through [`Db::insert`] must keep recall@10 ≥ 0.95 at the
//! default `ef` through the HNSW graph walk, before and after a reopen from
//! its snapshot, so that no change to the index trades recall away silently.

mod common;

// The benchmarks' seeded generator, so that this test and `benches/ann.rs`
// draw their data one way; the test uses only part of the module.
#[allow(dead_code)]
#[path = "../benches/data/mod.rs"]
mod data;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use common::{graph_walk, seed, space};
use imgdb::{
    ContentHash, Db, ImageFormat, ImageId, IndexOrigin, NewImage, SearchOptions, Timestamp,
};

const DIM: usize = 128;

/// The least recall@10 the walk must reach at the default `ef`.
const MIN_RECALL: f64 = 0.95;

/// What an ingest hands to one `Db::insert`.
const BATCH: usize = 1000;

/// 20 000 base and 200 query vectors around 2 000 centres with noise of the
/// centres' norm: a point's cluster (about ten images, like near-duplicates
/// and photos of one subject) lies at cosine ≈ 0.5, the rest near 0.
fn spec(seed: u64) -> data::Spec {
    data::Spec {
        base: 20_000,
        queries: 200,
        dim: DIM,
        centres: 2000,
        sigma: 1.0,
        seed,
    }
}

/// recall@10 of `db`'s searches at `ef` (the default when `None`) against
/// the exact top 10; `rows` maps the images back to their base rows.
fn recall_at(db: &Db, data: &data::Data, rows: &HashMap<ImageId, i64>, ef: Option<usize>) -> f64 {
    let options = SearchOptions {
        k: 10,
        ef,
        ..SearchOptions::default()
    };
    let found: Vec<Vec<i64>> = data
        .queries
        .outer_iter()
        .map(|q| {
            let hits = db
                .search(q.as_slice().expect("contiguous"), &options)
                .unwrap();
            hits.iter().map(|h| rows[&h.id]).collect()
        })
        .collect();
    data::recall(&found, &data.truth, 10)
}

#[test]
fn recall_at_the_default_ef_holds_through_the_graph_and_a_reopen() {
    let seed = seed("recall regression", 7);
    let spec = spec(seed);
    let started = Instant::now();
    let data = data::generate(&spec);
    println!("{} in {:.1?}", spec.describe(), started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = graph_walk(DIM as u32).open(&path).unwrap();
    let started = Instant::now();
    let rows: Vec<&[f32]> = data
        .base
        .outer_iter()
        .map(|r| r.to_slice().expect("contiguous"))
        .collect();
    let mut ids = Vec::with_capacity(rows.len());
    for (batch, chunk) in rows.chunks(BATCH).enumerate() {
        let images = chunk
            .iter()
            .enumerate()
            .map(|(i, vector)| {
                let n = (batch * BATCH + i) as u64;
                NewImage {
                    path: PathBuf::from(format!("/recall/{n}.jpg")),
                    mtime: Timestamp(0),
                    content_hash: ContentHash::of(&n.to_le_bytes()),
                    byte_size: 1,
                    width: 1,
                    height: 1,
                    format: ImageFormat::Jpeg,
                    tags: Vec::new(),
                    vector: vector.to_vec(),
                }
            })
            .collect();
        ids.extend(db.insert(&space(DIM as u32), images).unwrap());
    }
    // Every point in the graph's search copy: no search scans a delta.
    db.checkpoint().unwrap();
    assert_eq!(db.stats().unwrap().delta_points, 0, "points left unwalked");
    println!("inserted in {:.1?}", started.elapsed());
    let ids: HashMap<ImageId, i64> = ids.into_iter().zip(0..).collect();

    let low = recall_at(&db, &data, &ids, Some(10));
    let built = recall_at(&db, &data, &ids, None);
    println!("recall@10: {built:.4} at the default ef, {low:.4} at ef 10");
    assert!(built >= MIN_RECALL, "recall@10 {built:.4} < {MIN_RECALL}");

    drop(db);
    let db = graph_walk(DIM as u32).open(&path).unwrap();
    assert!(
        matches!(db.index_origin(), IndexOrigin::Snapshot { replayed: 0, .. }),
        "reopen did not load the snapshot: {:?}",
        db.index_origin()
    );
    let reopened = recall_at(&db, &data, &ids, None);
    println!("recall@10 after the reopen: {reopened:.4}");
    assert_eq!(reopened, built, "the snapshot changed the answers");
}
