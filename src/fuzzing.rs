//! Entry points for the fuzz targets (`fuzz/`), behind the `fuzzing`
//! feature: the parsers of untrusted bytes, reachable without a database.
//! Each takes arbitrary bytes and must return (with or without an error)
//! without panicking.

use std::path::Path;

use crate::index::flat::FlatGraph;
use crate::index::snapshot;
use crate::model::{PreprocessConfig, Preprocessor};
use crate::store::codec;
use crate::store::record::ImageRecord;

/// Decodes and preprocesses `data` as an image file (the tiny model's
/// 64×64 CLIP preprocessing, with and without DCT-scaled JPEG decoding).
pub fn prepare_image(data: &[u8]) {
    let config = serde_json::json!({"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 64}});
    let config =
        PreprocessConfig::from_hugging_face(&config, Path::new("fuzz")).expect("a valid config");
    for margin in [None, Some(2)] {
        let _ = Preprocessor::new(config.clone())
            .with_dct_scaling(margin)
            .prepare(data, Path::new("fuzz"));
    }
}

/// Reads `data` as a stored record, a snapshot header and a snapshot's links.
pub fn decode_persisted(data: &[u8]) {
    let _ = codec::decode::<ImageRecord>(data, Path::new("fuzz"), "image record");
    let _ = snapshot::decode_header(data);
    let _ = FlatGraph::decode(data);
}
