//! Helpers shared by the integration tests: seeded vectors and images.
#![allow(dead_code)] // each test binary uses a different subset

pub mod storage;

use std::path::PathBuf;

use imgdb::{ContentHash, EmbeddingSpace, ImageFormat, NewImage, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The seed of a test: `IMGDB_TEST_SEED` or a fixed default, printed so a
/// failure can be replayed.
pub fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("IMGDB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!("{test}: seed {seed} (set IMGDB_TEST_SEED to replay)");
    seed
}

/// A random unit vector determined by `seed`.
pub fn unit_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// The current index snapshot's folder of the database at `db`.
pub fn snapshot_dir(db: &std::path::Path) -> PathBuf {
    std::fs::read_dir(db.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snapshot-")
        })
        .expect("a snapshot")
}

/// Copies a folder tree (fixtures into a temporary folder, say).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The fixture model of another embedding space (32-d) in a folder under
/// `dir`, with the tiny model's tokenizer beside it.
pub fn micro_model(dir: &std::path::Path) -> PathBuf {
    let micro = dir.join("micro");
    copy_dir(&root().join("fixtures/models/micro-clip-dim32"), &micro);
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(
            root().join("fixtures/models/tiny-clip").join(file),
            micro.join(file),
        )
        .unwrap();
    }
    micro
}

/// The repository root, where the fixtures are (these helpers serve the
/// library's tests and the CLI crate's alike).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("fixtures").is_dir())
        .expect("the fixtures above the crate")
        .to_path_buf()
}

/// The space the tests use.
pub fn space(dim: u32) -> EmbeddingSpace {
    EmbeddingSpace::named("test-space", dim)
}

/// Image number `n`: a unique path and content, vector `unit_vector(n)`.
pub fn image(n: u64, dim: usize) -> NewImage {
    NewImage {
        path: PathBuf::from(format!("/photos/{}/img{n:06}.jpg", n % 7)),
        mtime: Timestamp(1_700_000_000_000_000_000 + n as i64 * 1_000_000_000),
        content_hash: ContentHash::of(&n.to_le_bytes()),
        byte_size: 1000 + n,
        width: 100 + (n % 50) as u32,
        height: 80,
        format: if n.is_multiple_of(2) {
            ImageFormat::Jpeg
        } else {
            ImageFormat::Png
        },
        tags: Vec::new(),
        vector: unit_vector(n, dim),
    }
}

/// Options under which every search walks the HNSW graph, however small
/// the database: no exact scan of small results (`exact_scan_rows(0)`),
/// and the graph's search copy refreshed as soon as points are newer than
/// it (`delta_rows(0)`) rather than those points waiting in the exactly
/// scanned delta. Below the defaults' 10 000 and 1 024 rows a test would
/// otherwise only ever check the exact scan.
pub fn graph_walk(dim: u32) -> imgdb::DbOptions {
    imgdb::Db::options()
        .space(space(dim))
        .create_if_missing(true)
        .exact_scan_rows(0)
        .delta_rows(0)
}

/// The ids of the `k` records nearest `query` by cosine similarity, by
/// brute force, among those `keep` accepts; ties go to the lower id, as in
/// the index.
pub fn exact_top_k(
    records: &[imgdb::ImageRecord],
    query: &[f32],
    k: usize,
    keep: impl Fn(&imgdb::ImageRecord) -> bool,
) -> Vec<imgdb::ImageId> {
    let norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut scored: Vec<(f32, imgdb::ImageId)> = records
        .iter()
        .filter(|r| keep(r))
        .map(|r| {
            let score = r.vector.iter().zip(query).map(|(a, b)| a * b).sum::<f32>() / norm;
            (score, r.id)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

/// recall@k of `db`'s searches against brute force over its records: the
/// share of the exact top `options.k` (among the records `keep` accepts,
/// which must be what `options.filter` lets through) that the searches
/// return, over all `queries`.
pub fn recall(
    db: &imgdb::Db,
    queries: &[Vec<f32>],
    options: &imgdb::SearchOptions,
    keep: impl Fn(&imgdb::ImageRecord) -> bool,
) -> f64 {
    let records: Vec<imgdb::ImageRecord> = db.records().map(|r| r.unwrap()).collect();
    let (mut found, mut expected) = (0, 0);
    for query in queries {
        let hits = db.search(query, options).unwrap();
        let truth = exact_top_k(&records, query, options.k, &keep);
        found += hits.iter().filter(|h| truth.contains(&h.id)).count();
        expected += truth.len();
    }
    assert!(expected > 0, "no record passes the filter");
    found as f64 / expected as f64
}

/// Opens the sled store of the closed database at `db` directly (the trees
/// of `schema/store.md`), lets `damage` change it behind the library's
/// back, and flushes. Retries while the I/O threads of a handle dropped
/// just before still hold sled's lock.
pub fn damage_store(db: &std::path::Path, damage: impl FnOnce(&sled::Db)) {
    let path = db.join("store");
    let mut tries = 0;
    let store = loop {
        match sled::open(&path) {
            Ok(store) => break store,
            Err(e) if tries < 200 => {
                tries += 1;
                println!("waiting for sled's lock: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    };
    damage(&store);
    store.flush().unwrap();
}
