//! Each format variant imgdb claims decodes to the pixels Pillow (with
//! pillow-heif) gives: the files of `fixtures/formats/manifest.json`, one per
//! variant (tiled planar and 16-bit RGBA TIFF, CMYK, TIFF orientation, HEIC,
//! AVIF, RLE BMP with skipped pixels, EXIF and XMP orientation in WebP, PNG
//! and JPEG), preprocessed with `tiny64` (transformers' CLIPImageProcessor)
//! and `squash64` (Immich's squash) and held to the parity bound of
//! `tests/parity/mod.rs` against the committed references
//! (`scripts/fixtures/make_format_fixtures.py`, `fixtures/formats/README.md`),
//! except where the manifest names a measured difference (`known`: its
//! reason and its own bound).

mod parity;

use std::path::Path;

use imgdb::{ImageFormat, has_image_extension};
use parity::{difference, preprocessor, root, within_bound};
use serde_json::Value;

fn manifest() -> Value {
    let text = std::fs::read_to_string(root().join("fixtures/formats/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_variant_matches_pillow() {
    let manifest = manifest();
    let images = manifest["images"].as_array().unwrap();
    let mut failures = Vec::new();
    for image in images {
        let stem = image["stem"].as_str().unwrap();
        let file = root().join(image["file"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        for (config, expected) in image["expected"].as_object().unwrap() {
            let reference = image::open(root().join(expected.as_str().unwrap()))
                .unwrap()
                .into_rgb8();
            let preprocessor = preprocessor(config);
            let decoded = match preprocessor.decode(&bytes, &file) {
                Ok(decoded) => decoded,
                Err(e) => {
                    failures.push(format!("{stem} {config}: {e:?}"));
                    continue;
                }
            };
            // Pillow's format names are imgdb's, in capitals.
            let format = ImageFormat::from_name(image["format"].as_str().unwrap());
            assert_eq!(Some(decoded.format), format, "{stem}");
            // The size Pillow shows after exif_transpose: orientation applied.
            let size = [decoded.width, decoded.height].map(Value::from);
            assert_eq!(image["size"].as_array().unwrap(), &size, "{stem}");
            let ours = preprocessor.resized(&decoded.rgb, &file).unwrap();
            let (max, mean) = difference(&ours, &reference);
            let known = &image["known"][config];
            let within = if known.is_null() {
                within_bound(max, mean)
            } else {
                // A measured, explained difference, held to its own bound.
                println!("{stem:>26} {config:>9}: known: {}", known["why"]);
                u64::from(max) <= known["max"].as_u64().unwrap()
                    && mean <= known["mean"].as_f64().unwrap()
            };
            println!("{stem:>26} {config:>9}: max {max}, mean {mean:.3}");
            if !within {
                failures.push(format!("{stem} {config}: max {max}, mean {mean:.3}"));
            }
        }
    }
    assert!(failures.is_empty(), "over the bound: {failures:#?}");
    assert!(images.len() >= 16, "only {} fixtures", images.len());
}

#[test]
fn heif_and_avif_files_are_images() {
    for name in ["IMG_0001.HEIC", "a.heif", "b.hif", "c.avif"] {
        assert!(has_image_extension(Path::new(name)), "{name}");
    }
}
