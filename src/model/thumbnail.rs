//! Thumbnails: small JPEGs of indexed images, for a user interface.
//!
//! They go through the preprocessor's decode, so a thumbnail obeys the same
//! limits, reads the same formats, turns the same way (EXIF orientation)
//! and contains a decoder's panic just as an ingest does.

use std::io::Cursor;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;

use super::preprocess::Preprocessor;
use crate::error::{Error, ImageError, Result};

/// JPEG quality of thumbnails: small files that still look right at the
/// size they are shown.
const QUALITY: u8 = 82;

impl Preprocessor {
    /// A JPEG of the image at `path` whose longer side is at most
    /// `max_side` pixels (never enlarged).
    pub fn thumbnail(&self, path: &Path, max_side: u32) -> Result<Vec<u8>> {
        let bytes = self.read_file(path)?;
        let decoded = self.decode(&bytes, path)?;
        let (width, height) = decoded.rgb.dimensions();
        let scale = f64::from(max_side.max(1)) / f64::from(width.max(height));
        let small = if scale < 1.0 {
            let side = |n: u32| ((f64::from(n) * scale).round() as u32).max(1);
            image::imageops::thumbnail(&decoded.rgb, side(width), side(height))
        } else {
            decoded.rgb
        };
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), QUALITY)
            .encode_image(&small)
            .map_err(|e| Error::image(path)(ImageError::Encode { source: e }))?;
        Ok(jpeg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PreprocessConfig;

    fn tiny_model_preprocessor() -> Preprocessor {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/models/tiny-clip/preprocessor_config.json"
        );
        let json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Preprocessor::new(PreprocessConfig::from_hugging_face(&json, Path::new(path)).unwrap())
    }

    #[test]
    fn a_thumbnail_fits_its_box_and_keeps_the_aspect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        image::RgbImage::from_pixel(400, 100, image::Rgb([200, 10, 10]))
            .save(&path)
            .unwrap();
        let preprocessor = tiny_model_preprocessor();
        let jpeg = preprocessor.thumbnail(&path, 64).unwrap();
        let small = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((small.width(), small.height()), (64, 16));
        let tiny = preprocessor.thumbnail(&path, 1000).unwrap();
        let same = image::load_from_memory(&tiny).unwrap();
        assert_eq!((same.width(), same.height()), (400, 100), "never enlarged");
    }
}
