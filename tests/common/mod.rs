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

/// The space the tests use.
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
