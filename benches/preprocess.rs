//! Decode + preprocess throughput on one core, and the distance of each mode
//! from the reference (Pillow + CLIPImageProcessor), for
//! `benches/compare_preprocess.sh`, which makes the images and the Pillow
//! figures of the same run.
//!
//! ```text
//! cargo bench --bench preprocess -- IMAGE REFERENCE.png CONFIG.json [REPEATS]
//! ```
//! Prints one JSON object per mode: milliseconds per image and max/mean
//! difference (8-bit levels, before normalisation) from REFERENCE.

use std::path::Path;
use std::time::Instant;

use imgdb::{PreprocessConfig, Preprocessor};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [image, reference, config, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: cargo bench --bench preprocess -- IMAGE REFERENCE.png CONFIG.json [REPEATS]"
        );
        return;
    };
    let repeats: usize = rest.first().map_or(10, |r| r.parse().unwrap());
    let config_path = Path::new(config);
    let json = serde_json::from_str(&std::fs::read_to_string(config_path).unwrap()).unwrap();
    let config = PreprocessConfig::from_hugging_face(&json, config_path).unwrap();
    let bytes = std::fs::read(image).unwrap();
    let reference = image::open(reference).unwrap().into_rgb8();
    for margin in [None, Some(8), Some(4), Some(3), Some(2)] {
        let preprocessor = Preprocessor::new(config.clone()).with_dct_scaling(margin);
        // The full path: decode, resize, crop, normalise.
        let started = Instant::now();
        for _ in 0..repeats {
            std::hint::black_box(preprocessor.prepare(&bytes, Path::new(image)).unwrap());
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / repeats as f64;
        let decoded = preprocessor.decode(&bytes, Path::new(image)).unwrap();
        let ours = preprocessor
            .resized(&decoded.rgb, Path::new(image))
            .unwrap();
        let (mut max, mut sum) = (0u8, 0u64);
        for (a, b) in ours.as_raw().iter().zip(reference.as_raw()) {
            max = max.max(a.abs_diff(*b));
            sum += u64::from(a.abs_diff(*b));
        }
        println!(
            "{}",
            json!({
                "system": "imgdb", "image": image, "dct_margin": margin,
                "decoded_size": [decoded.rgb.width(), decoded.rgb.height()],
                "ms_per_image": ms, "images_per_s": 1000.0 / ms,
                "max_diff": max, "mean_diff": sum as f64 / ours.as_raw().len() as f64,
            })
        );
    }
}
