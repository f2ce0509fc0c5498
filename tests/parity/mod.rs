//! What the tests against committed Pillow references share
//! (`preprocess_parity.rs`, `formats.rs`): the preprocessing configurations
//! the references were made with and the bound ours must stay within:
//! before normalisation, max |difference| <= 2/255 per channel, mean <= 0.5/255.

use std::path::{Path, PathBuf};

use imgdb::{PreprocessConfig, Preprocessor};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `clip224` and `tiny64` (transformers' CLIPImageProcessor, configs in
/// `fixtures/parity/configs/`) or `squash64` (Immich's squash).
pub fn preprocessor(config: &str) -> Preprocessor {
    let config = match config {
        "clip224" | "tiny64" => {
            let path = root().join(format!("fixtures/parity/configs/{config}.json"));
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            PreprocessConfig::from_hugging_face(&json, &path).unwrap()
        }
        "squash64" => {
            let json = serde_json::json!({"size": [64, 64], "resize_mode": "squash", "interpolation": "bicubic"});
            PreprocessConfig::from_immich(&json, Path::new("squash64")).unwrap()
        }
        other => panic!("unknown config {other}"),
    };
    Preprocessor::new(config)
}

/// (max, mean) absolute difference in 8-bit levels.
pub fn difference(ours: &image::RgbImage, reference: &image::RgbImage) -> (u8, f64) {
    let (mut max, mut sum) = (0u8, 0u64);
    for (a, b) in ours.as_raw().iter().zip(reference.as_raw()) {
        let d = a.abs_diff(*b);
        max = max.max(d);
        sum += u64::from(d);
    }
    (max, sum as f64 / ours.as_raw().len() as f64)
}

/// Whether a (max, mean) difference is within the parity bound.
pub fn within_bound(max: u8, mean: f64) -> bool {
    max <= 2 && mean <= 0.5
}
