//! Entry points for the fuzz targets (`fuzz/`), behind the `fuzzing`
//! feature: the parsers of bytes imgdb did not write, reached through the
//! same calls as the library's own readers, without a model or a database.
//! Each takes arbitrary bytes and must return (with or without an error)
//! without panicking. Operation sequences on a [`Db`](crate::Db) need no
//! entry point here: `fuzz/fuzz_targets/db_ops.rs` drives the public API.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::index::flat::{Codes, FlatGraph};
use crate::index::snapshot;
use crate::model::{ModelFolder, PreprocessConfig, Preprocessor, TextTokenizer};
use crate::store::codec;
use crate::store::record::ImageRecord;
use crate::store::{Failure, FailureV1};
use crate::types::{ImageFormat, Timestamp};

/// The fixture models' preprocessing, parsed from their own files.
fn fixture_config(json: &str, immich: bool) -> PreprocessConfig {
    let json: Value = serde_json::from_str(json).expect("a fixture config");
    let path = Path::new("fuzz");
    if immich {
        PreprocessConfig::from_immich(&json, path)
    } else {
        PreprocessConfig::from_hugging_face(&json, path)
    }
    .expect("a valid fixture config")
}

/// The preprocessors ingest builds from the fixture models, with the
/// default [`DecodeLimits`](crate::DecodeLimits): the Hugging Face one (onto
/// white), the same with `imgdb ingest --fast-decode`'s DCT margin, and the
/// Immich one (transparency dropped, another decode path).
fn ingest_preprocessors() -> &'static [Preprocessor; 3] {
    static PREPROCESSORS: OnceLock<[Preprocessor; 3]> = OnceLock::new();
    PREPROCESSORS.get_or_init(|| {
        let hugging_face = fixture_config(
            include_str!("../fixtures/models/tiny-clip/preprocessor_config.json"),
            false,
        );
        let immich = fixture_config(
            include_str!("../fixtures/models/tiny-clip-immich/visual/preprocess_cfg.json"),
            true,
        );
        [
            Preprocessor::new(hugging_face.clone()),
            Preprocessor::new(hugging_face).with_dct_scaling(Some(4)),
            Preprocessor::new(immich),
        ]
    })
}

/// Decodes and preprocesses `data` as an image file, through
/// [`Preprocessor::prepare`] (what `prepare::ImageFile` calls for ingest
/// and reindex). A success must be a tensor of the model's input size.
pub fn prepare_image(data: &[u8]) {
    for preprocessor in ingest_preprocessors() {
        if let Ok(prepared) = preprocessor.prepare(data, Path::new("fuzz")) {
            assert_eq!(prepared.pixels.len(), preprocessor.tensor_len());
        }
    }
}

/// Reads `data` as each value the store persists: an image record, a
/// failure record (both formats) and a tag score.
pub fn decode_store_value(data: &[u8]) {
    let path = Path::new("fuzz");
    let _ = codec::decode::<ImageRecord>(data, path, "image record");
    let _ = codec::decode::<Failure>(data, path, "failure record");
    if let Ok(old) = codec::decode::<FailureV1>(data, path, "failure record") {
        old.migrate(path);
    }
    let _ = codec::decode::<f32>(data, path, "tag score");
}

/// Reads `data` as an index snapshot header, as it is and with its last four
/// bytes replaced by the right CRC-32, so that mutations reach the fields
/// behind the checksum.
pub fn decode_snapshot_header(data: &[u8]) {
    let _ = snapshot::decode_header(data);
    if let Some(body_len) = data.len().checked_sub(4) {
        let mut fixed = data[..body_len].to_vec();
        fixed.extend_from_slice(&crc32fast::hash(&fixed).to_le_bytes());
        let _ = snapshot::decode_header(&fixed);
    }
}

/// Reads `data` as a snapshot's flat graph, in the layouts of both snapshot
/// formats; a graph that decodes is walked, since a well-formed graph is
/// what makes the walk safe on loaded data.
pub fn decode_flat_graph(data: &[u8]) {
    for with_twins in [false, true] {
        if let Some(graph) = FlatGraph::decode(data, with_twins) {
            walk_flat_graph(&graph);
        }
    }
}

fn walk_flat_graph(graph: &FlatGraph) {
    const DIM: usize = 4;
    let rows = graph.len();
    let codes: Vec<i8> = (0..rows * DIM).map(|i| (i % 7) as i8 - 3).collect();
    let scales = vec![1.0; rows];
    let codes = Codes {
        dim: DIM,
        codes: &codes,
        scales: &scales,
    };
    for ef in [1, 16] {
        for row in graph.search(&codes, &[1, -2, 3, 0], 0.1, ef, |row| row % 3 != 0) {
            assert!(row < rows);
        }
    }
}

/// Any bytes (read as UTF-8, invalid sequences replaced) as the text of a
/// query, through the tiny model's tokenizer as every text query goes:
/// OpenAI CLIP's cleaning (the ftfy port, HTML entities), then
/// `tokenizer.json`. Ids of the vocabulary, at most the context length,
/// the start and end tokens in place; never a panic.
pub fn text_query(data: &[u8]) {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    let tokenizer = TOKENIZER.get_or_init(|| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/tiny-clip/tokenizer.json");
        TextTokenizer::load(&path, 77).expect("the fixture tokenizer")
    });
    let text = String::from_utf8_lossy(data);
    let ids = tokenizer
        .encode(&[&text])
        .expect("any text tokenizes")
        .remove(0);
    assert!((2..=77).contains(&ids.len()), "{} ids", ids.len());
    assert_eq!(ids[0], 49406, "the start token first");
    assert_eq!(*ids.last().expect("two ids"), 49407, "the end token last");
    assert!(
        ids.iter().all(|&id| id < 49408),
        "an id outside the vocabulary"
    );
}

/// A folder of each model layout (Hugging Face, Immich) whose every
/// configuration file holds the same bytes, with empty files for the towers
/// and tokenizer: [`ModelFolder::open`] reads the configuration only.
/// One pair per process, rewritten for every input, in `/dev/shm` where
/// there is one: ext4 flushes a file truncated and rewritten when it is
/// closed, which made a run 30 times slower on a busy disk.
fn model_folders() -> &'static [PathBuf; 2] {
    static FOLDERS: OnceLock<[PathBuf; 2]> = OnceLock::new();
    FOLDERS.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let temp = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let base = temp.join(format!("imgdb-fuzz-{}", std::process::id()));
        let folders = [base.join("hugging-face"), base.join("immich")];
        for file in [
            "hugging-face/onnx/vision_model.onnx",
            "hugging-face/onnx/text_model.onnx",
            "hugging-face/tokenizer.json",
            "immich/visual/model.onnx",
            "immich/textual/model.onnx",
            "immich/textual/tokenizer.json",
        ] {
            let file = base.join(file);
            std::fs::create_dir_all(file.parent().expect("a parent")).expect("a temp folder");
            std::fs::write(file, b"").expect("a temp file");
        }
        folders
    })
}

/// A small RGB image (40×30), for the preprocessing a parsed configuration
/// asks for.
fn small_image() -> &'static [u8] {
    include_bytes!("../fixtures/parity/images/small_40x30.png")
}

/// Model inputs larger than this (3 × 384², above every CLIP's 336²) are
/// not computed: a configuration may ask for up to 16384², 3 GB a tensor,
/// which is the user's choice of model, and big tensors would only slow the
/// search for odd geometries.
const MAX_TENSOR_LEN: usize = 3 * 384 * 384;

/// Opens model folders whose `preprocessor_config.json`, `config.json`,
/// `tokenizer_config.json` (Hugging Face) and `config.json`,
/// `visual/preprocess_cfg.json` (Immich) are all `data`; a folder that opens
/// preprocesses a small image with its configuration.
pub fn open_model_folder(data: &[u8]) {
    let [hugging_face, immich] = model_folders();
    for file in [
        "preprocessor_config.json",
        "config.json",
        "tokenizer_config.json",
    ] {
        std::fs::write(hugging_face.join(file), data).expect("a temp file");
    }
    for file in ["config.json", "visual/preprocess_cfg.json"] {
        std::fs::write(immich.join(file), data).expect("a temp file");
    }
    for root in [hugging_face, immich] {
        let Ok(folder) = ModelFolder::open(root) else {
            continue;
        };
        let preprocessor = Preprocessor::new(folder.preprocess);
        if preprocessor.tensor_len() <= MAX_TENSOR_LEN {
            let prepared = preprocessor
                .prepare(small_image(), Path::new("fuzz"))
                .expect("the fixture image decodes under any configuration");
            assert_eq!(prepared.pixels.len(), preprocessor.tensor_len());
        }
    }
}

/// Parses `data` as the library's parsers of `imgdb query` arguments do:
/// `--after`/`--before` times and `--format` names.
pub fn parse_query_arguments(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Timestamp::parse(text);
    if let Some(format) = ImageFormat::from_name(text) {
        assert_eq!(ImageFormat::from_name(&format.to_string()), Some(format));
    }
}
