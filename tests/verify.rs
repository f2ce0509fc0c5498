//! The consistency check ([`Db::verify`], `imgdb check`): clean however many
//! images tie, on the exact scan and on the graph walk, and naming each kind
//! of damage to the store or the index when it is done alone.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, damage_store, graph_walk, image, seed, space, unit_vector};
use imgdb::{ContentHash, Db, DbOptions, ImageId, ImageRecord, NewImage, Problem, Tag};

const DIM: usize = 24;

fn exact() -> DbOptions {
    Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
}

/// 50 images with one vector, 50 within `f32` noise of it, 500 others.
fn tied_images(shared: &[f32], seed: u64) -> Vec<NewImage> {
    (0..600)
        .map(|n| {
            let mut img = image(n, DIM);
            if n < 50 {
                img.vector = shared.to_vec();
            } else if n < 100 {
                // Scores against the shared vector differ by about 5e-7:
                // distinct in f32, far inside the check's tolerance.
                let noise = unit_vector(seed * 1000 + n, DIM);
                img.vector = shared
                    .iter()
                    .zip(&noise)
                    .map(|(s, e)| s + 1e-3 * e)
                    .collect();
            }
            img
        })
        .collect()
}

fn options_for(graph: bool) -> DbOptions {
    if graph {
        graph_walk(DIM as u32)
    } else {
        exact()
    }
}

/// A database of [`tied_images`], its search copy complete when `graph`.
fn tied_database(dir: &Path, graph: bool, shared: &[f32], seed: u64) -> Db {
    let db = options_for(graph)
        .open(dir.join(format!("db-{graph}")))
        .unwrap();
    db.insert(&space(DIM as u32), tied_images(shared, seed))
        .unwrap();
    db.checkpoint().unwrap();
    if graph {
        assert_eq!(db.stats().unwrap().delta_points, 0, "points left unwalked");
    }
    // The ties are real: far more than a top 10 score as the best does.
    let hits = db
        .search(
            shared,
            &imgdb::SearchOptions {
                k: 100,
                ef: Some(200),
                ..Default::default()
            },
        )
        .unwrap();
    let tied = hits
        .iter()
        .filter(|h| hits[0].score - h.score <= 1e-5)
        .count();
    println!("graph {graph}: {tied} of the top 100 tie with the best");
    // Through the graph: 100 on each of seeds 1 to 20, since the copies are
    // twins of one point (src/index/graph.rs). Told by a distance, some were
    // not, and seeds 11 and 12 found 79 and 67.
    assert!(tied >= 95, "graph {graph}: only {tied} ties");
    db
}

/// Replaces the vector of one of the identical images behind its point's
/// back, reopens, and checks that exactly it is named: a tie is accepted
/// only for a point that holds its record's vector.
fn a_damaged_tie_is_named(db: Db, graph: bool, seed: u64) {
    let path = db.path().to_path_buf();
    drop(db);
    let id = ImageId(7);
    damage_store(&path, |store| {
        update_record(store, id, |r| r.vector = unit_vector(seed + 1, DIM))
    });
    let db = options_for(graph).open(&path).unwrap();
    let problems = db.verify().unwrap().problems;
    assert!(
        problems.contains(&Problem::NotFoundBySelfQuery { id }),
        "graph {graph}: {problems:?}"
    );
    if !graph {
        assert_eq!(problems, vec![Problem::NotFoundBySelfQuery { id }]);
    }
}

#[test]
fn images_that_tie_with_many_others_find_themselves() {
    let seed = seed("ties", 11);
    let dir = tempfile::tempdir().unwrap();
    let shared = unit_vector(seed, DIM);
    let db = tied_database(dir.path(), false, &shared, seed);
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.records, 600);
    a_damaged_tie_is_named(db, false, seed);
}

#[test]
fn no_tied_image_is_reported_through_the_graph() {
    let seed = seed("ties through the graph", 11);
    let dir = tempfile::tempdir().unwrap();
    let shared = unit_vector(seed, DIM);
    let db = tied_database(dir.path(), true, &shared, seed);
    let report = db.verify().unwrap();
    // Images 1 to 100 are the identical and near-identical ones; the test
    // below asks that no other is reported either.
    let tied: Vec<&Problem> = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::NotFoundBySelfQuery { id } if id.0 <= 100))
        .collect();
    println!(
        "{} problems through the graph, {} of tied images",
        report.problems.len(),
        tied.len()
    );
    assert!(tied.is_empty(), "{tied:?}");
    a_damaged_tie_is_named(db, true, seed);
}

/// 50 identical vectors among 500 must not cut the graph. hnsw_rs, imgdb's
/// builder before, cut it here (2 to 6 of 500 images unreachable over runs;
/// 558 of 1 950 with 50 identical among 2 000): its heuristic dropped a
/// candidate as close to a chosen neighbour as to the new point (`<=`), and
/// its full lists dropped their farthest link, so the duplicates became an
/// island. The builder follows hnswlib's rule (`<`), and lets copies of one
/// vector take at most half of a list (`index/graph.rs`, `select`).
#[test]
fn a_graph_with_identical_vectors_verifies_clean() {
    let seed = seed("identical vectors in the graph", 11);
    let dir = tempfile::tempdir().unwrap();
    let shared = unit_vector(seed, DIM);
    let report = tied_database(dir.path(), true, &shared, seed)
        .verify()
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// The image every damage below is done to, and its tag.
const TARGET: ImageId = ImageId(3);
const LABEL: &str = "beach";

/// A clean database of 30 images, each tagged: the one every case copies.
fn base(dir: &Path) -> PathBuf {
    let path = dir.join("base");
    let db = exact().open(&path).unwrap();
    let images = (0..30)
        .map(|n| NewImage {
            tags: vec![Tag {
                label: LABEL.into(),
                score: 0.5,
            }],
            ..image(n, DIM)
        })
        .collect();
    db.insert(&space(DIM as u32), images).unwrap();
    assert!(db.verify().unwrap().is_clean());
    drop(db);
    path
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// The stored record of `id`, decoded as `schema/store.md` lays it out.
fn read_record(store: &sled::Db, id: ImageId) -> ImageRecord {
    let bytes = store
        .open_tree("records")
        .unwrap()
        .get(id.0.to_be_bytes())
        .unwrap()
        .expect("the record");
    bincode::serde::decode_from_slice(&bytes, bincode_config())
        .unwrap()
        .0
}

/// Rewrites the stored record of `id` (its map entries are left alone).
fn update_record(store: &sled::Db, id: ImageId, change: impl FnOnce(&mut ImageRecord)) {
    let mut record = read_record(store, id);
    change(&mut record);
    let bytes = bincode::serde::encode_to_vec(&record, bincode_config()).unwrap();
    store
        .open_tree("records")
        .unwrap()
        .insert(id.0.to_be_bytes(), bytes)
        .unwrap();
}

fn hash_key(hash: &ContentHash, id: ImageId) -> Vec<u8> {
    [&hash.0[..], &id.0.to_be_bytes()].concat()
}

fn tag_key(label: &str, id: ImageId) -> Vec<u8> {
    [label.as_bytes(), &[0], &id.0.to_be_bytes()].concat()
}

fn path_key(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

fn tree(store: &sled::Db, name: &str) -> sled::Tree {
    store.open_tree(name).unwrap()
}

type Damage = Box<dyn Fn(&sled::Db)>;

/// Each damage, done alone, and the one problem it must be reported as.
fn cases() -> Vec<(&'static str, Damage, Problem)> {
    let target = image(TARGET.0 - 1, DIM);
    let (path, hash) = (target.path.clone(), target.content_hash);
    let elsewhere = PathBuf::from("/nowhere/else.jpg");
    vec![
        (
            "record: vector not unit",
            Box::new(|store: &sled::Db| {
                update_record(store, TARGET, |r| {
                    r.vector.iter_mut().for_each(|x| *x *= 1.5)
                })
            }),
            Problem::NotUnitVector { id: TARGET },
        ),
        (
            "record: vector unlike its point's",
            Box::new(|store: &sled::Db| {
                update_record(store, TARGET, |r| r.vector = unit_vector(4242, DIM))
            }),
            Problem::NotFoundBySelfQuery { id: TARGET },
        ),
        (
            "index point: older than its record's vector",
            Box::new(|store: &sled::Db| update_record(store, TARGET, |r| r.vector_seq += 1)),
            Problem::StaleVector { id: TARGET },
        ),
        (
            "index point: no record (removed with its map entries)",
            Box::new({
                let path = path.clone();
                move |store: &sled::Db| {
                    tree(store, "records")
                        .remove(TARGET.0.to_be_bytes())
                        .unwrap();
                    tree(store, "paths").remove(path_key(&path)).unwrap();
                    tree(store, "hashes")
                        .remove(hash_key(&hash, TARGET))
                        .unwrap();
                    tree(store, "tags").remove(tag_key(LABEL, TARGET)).unwrap();
                }
            }),
            Problem::OrphanPoint { id: TARGET },
        ),
        (
            "index point: missing for a record (written behind the log)",
            Box::new(|store: &sled::Db| {
                let mut record = read_record(store, TARGET);
                let (id, other) = (ImageId(1000), image(999, DIM));
                record.id = id;
                record.files[0].path = other.path.clone();
                record.content_hash = other.content_hash;
                record.tags.clear();
                let bytes = bincode::serde::encode_to_vec(&record, bincode_config()).unwrap();
                tree(store, "records")
                    .insert(id.0.to_be_bytes(), bytes)
                    .unwrap();
                tree(store, "paths")
                    .insert(path_key(&other.path), id.0.to_be_bytes().to_vec())
                    .unwrap();
                tree(store, "hashes")
                    .insert(hash_key(&other.content_hash, id), Vec::new())
                    .unwrap();
            }),
            Problem::NotIndexed { id: ImageId(1000) },
        ),
        (
            "path map: entry missing",
            Box::new({
                let path = path.clone();
                move |store: &sled::Db| {
                    tree(store, "paths").remove(path_key(&path)).unwrap();
                }
            }),
            Problem::PathNotMapped {
                path: target.path.clone(),
                id: TARGET,
            },
        ),
        (
            "path map: entry for a path the image lacks",
            Box::new({
                let elsewhere = elsewhere.clone();
                move |store: &sled::Db| {
                    tree(store, "paths")
                        .insert(path_key(&elsewhere), TARGET.0.to_be_bytes().to_vec())
                        .unwrap();
                }
            }),
            Problem::DanglingPath {
                path: elsewhere,
                id: TARGET,
            },
        ),
        (
            "hash map: entry missing",
            Box::new(move |store: &sled::Db| {
                tree(store, "hashes")
                    .remove(hash_key(&hash, TARGET))
                    .unwrap();
            }),
            Problem::HashNotMapped { id: TARGET },
        ),
        (
            "hash map: entry for content the image lacks",
            Box::new(|store: &sled::Db| {
                tree(store, "hashes")
                    .insert(hash_key(&ContentHash::of(b"other"), TARGET), Vec::new())
                    .unwrap();
            }),
            Problem::DanglingHash { id: TARGET },
        ),
        (
            "tag map: entry missing",
            Box::new(|store: &sled::Db| {
                tree(store, "tags").remove(tag_key(LABEL, TARGET)).unwrap();
            }),
            Problem::TagNotMapped {
                id: TARGET,
                label: LABEL.into(),
            },
        ),
        (
            "tag map: entry for a tag the image lacks",
            Box::new(|store: &sled::Db| {
                let score = bincode::serde::encode_to_vec(0.5f32, bincode_config()).unwrap();
                tree(store, "tags")
                    .insert(tag_key("sunset", TARGET), score)
                    .unwrap();
            }),
            Problem::DanglingTag {
                id: TARGET,
                label: "sunset".into(),
            },
        ),
    ]
}

#[test]
fn each_kind_of_damage_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path());
    for (n, (name, damage, expected)) in cases().into_iter().enumerate() {
        let path = dir.path().join(format!("case{n}"));
        copy_dir(&base, &path);
        damage_store(&path, damage);
        let db = exact().open(&path).unwrap();
        assert!(
            matches!(
                db.index_origin(),
                imgdb::IndexOrigin::Snapshot { replayed: 0, .. }
            ),
            "{name}: the index was not the snapshot's: {:?}",
            db.index_origin()
        );
        let report = db.verify().unwrap();
        println!("{name}: {:?}", report.problems);
        assert_eq!(report.problems, vec![expected], "{name}");
        assert!(!report.is_clean(), "{name}");
    }
}
