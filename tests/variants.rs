//! Model variants on the shipped tiny model, whose fp16, int8, uint8 and q4
//! towers `scripts/fixtures/make_variants.py` made with ONNX Runtime's own
//! tools: each variant's vectors against fp32 (per image and per text), the
//! eval set's figures, `auto`'s choice, a missing variant, the database's
//! refusal of another variant unless it is accepted, and the I/O-bound
//! image path (the GPU's) run on the CPU against the plain one.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, root};
use imgdb::{
    ContentHash, Db, Device, Encoder, EncoderOptions, Error, ErrorKind, ImageFormat, ModelError,
    ModelProblem, ModelVariant, NewImage, Query, Timestamp, VariantChoice,
};

fn tiny() -> PathBuf {
    root().join("fixtures/models/tiny-clip")
}

fn load(dir: &Path, variant: VariantChoice) -> imgdb::Result<Encoder> {
    let options = EncoderOptions {
        variant,
        ..EncoderOptions::default()
    };
    Encoder::load(dir, &options)
}

fn exact(variant: ModelVariant) -> Encoder {
    load(&tiny(), VariantChoice::Exact(variant)).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The parity photos and the eval set's images.
fn images() -> Vec<PathBuf> {
    let mut images = Vec::new();
    for dir in ["fixtures/parity/images", "fixtures/photos"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if imgdb::has_image_extension(&path) {
                images.push(path);
            }
        }
    }
    images.sort();
    images
}

fn captions() -> Vec<String> {
    let mut captions: Vec<String> = std::fs::read_dir(root().join("fixtures/eval/shapes"))
        .unwrap()
        .map(|e| {
            format!(
                "a {}",
                imgdb::eval::label_of(&e.unwrap().file_name().to_string_lossy())
            )
        })
        .collect();
    captions.extend(["a photo of a cat".into(), "an astronaut".into(), "".into()]);
    captions.sort();
    captions
}

/// The lowest cosine of a variant's vectors to fp32's, for images and texts.
fn lowest_cosines(fp32: &Encoder, variant: &Encoder) -> (f32, f32) {
    let mut image = f32::MAX;
    for path in images() {
        let a = fp32.embed_image_file(&path).unwrap();
        let b = variant.embed_image_file(&path).unwrap();
        image = image.min(dot(&a, &b));
    }
    let captions = captions();
    let texts: Vec<&str> = captions.iter().map(String::as_str).collect();
    let a = fp32.embed_texts(&texts).unwrap();
    let b = variant.embed_texts(&texts).unwrap();
    let text = a
        .iter()
        .zip(&b)
        .map(|(a, b)| dot(a, b))
        .fold(f32::MAX, f32::min);
    (image, text)
}

fn figures(encoder: &Encoder) -> (f64, f64) {
    let report =
        imgdb::eval::evaluate_image_folder(encoder, &root().join("fixtures/eval/shapes"), "a {}")
            .unwrap();
    let recall_1 = report.text_to_image_recall[0];
    assert_eq!(recall_1.0, 1);
    (recall_1.1, report.zero_shot_accuracy)
}

/// Every variant: the same model (fingerprint), another space (variant),
/// vectors within `bound` of fp32's, and the eval figures within 0.02.
#[test]
fn each_variant_stays_close_to_fp32() {
    let fp32 = exact(ModelVariant::Fp32);
    let (fp32_recall, fp32_accuracy) = figures(&fp32);
    // fp16 rounds every weight and activation to 11 bits; int8/uint8 keep
    // activations in float32; q4 quantises the MatMul weights to 4 bits.
    for (variant, bound) in [
        (ModelVariant::Fp16, 0.999),
        (ModelVariant::Int8, 0.99),
        (ModelVariant::Uint8, 0.99),
        (ModelVariant::Q4, 0.98),
    ] {
        let encoder = exact(variant);
        assert_eq!(encoder.space().variant, variant);
        assert!(encoder.space().same_model(fp32.space()));
        assert_ne!(encoder.space(), fp32.space());
        assert_eq!(encoder.folder().variant, variant);
        assert!(
            encoder
                .folder()
                .vision_model
                .ends_with(format!("onnx/vision_model_{variant}.onnx"))
        );
        let (image, text) = lowest_cosines(&fp32, &encoder);
        let (recall, accuracy) = figures(&encoder);
        println!(
            "{variant}: lowest cosine to fp32 image {image:.5} text {text:.5}; \
             recall@1 {recall:.4} (fp32 {fp32_recall:.4}), zero-shot {accuracy:.4} (fp32 {fp32_accuracy:.4})"
        );
        assert!(image >= bound, "{variant}: image cosine {image}");
        assert!(text >= bound, "{variant}: text cosine {text}");
        assert!(
            (recall - fp32_recall).abs() <= 0.02,
            "{variant}: recall@1 {recall}"
        );
        assert!(
            (accuracy - fp32_accuracy).abs() <= 0.02,
            "{variant}: zero-shot accuracy {accuracy}"
        );
    }
}

/// The I/O-bound path (staged buffers, bucketed and padded batches, only
/// the embedding bound) gives the plain path's vectors, for fp32 and for
/// fp16's float16 input and output, at every batch fill.
#[test]
fn the_io_bound_image_path_gives_the_plain_paths_vectors() {
    let images = images();
    for variant in [ModelVariant::Fp32, ModelVariant::Fp16] {
        let with = |io_binding| {
            let options = EncoderOptions {
                variant: VariantChoice::Exact(variant),
                io_binding: Some(io_binding),
                batch_size: 4,
                ..EncoderOptions::default()
            };
            Encoder::load(tiny(), &options).unwrap()
        };
        let (plain, bound) = (with(false), with(true));
        let prepared: Vec<f32> = images
            .iter()
            .flat_map(|p| plain.preprocessor().prepare_file(p).unwrap().pixels)
            .collect();
        let per_image = plain.preprocessor().tensor_len();
        // 1 to 9 images: batches of 1, 2 (3 padded to 4), 4, and 4 + 1.
        for count in 1..=9.min(images.len()) {
            let pixels = &prepared[..count * per_image];
            let a = plain.embed_pixels(pixels, count).unwrap();
            let b = bound.embed_pixels(pixels, count).unwrap();
            assert_eq!(b.len(), count);
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                let cosine = dot(a, b);
                assert!(
                    cosine > 0.99999,
                    "{variant} count {count} image {i}: {cosine}"
                );
            }
        }
        // Twice the same: the staged buffers are reused, nothing of the last
        // batch leaks into the next.
        let again = bound.embed_pixels(&prepared[..per_image], 1).unwrap();
        assert!(
            dot(
                &again[0],
                &plain.embed_pixels(&prepared[..per_image], 1).unwrap()[0]
            ) > 0.99999
        );
    }
}

#[test]
fn auto_takes_int8_on_the_cpu_and_fp32_where_there_is_no_variant() {
    let auto = load(&tiny(), VariantChoice::Auto).unwrap();
    assert_eq!(auto.provider().device, Device::Cpu);
    assert_eq!(auto.space().variant, ModelVariant::Int8);

    // A folder with the fp32 towers only.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("tiny-clip");
    copy_dir(&tiny(), &plain);
    for entry in std::fs::read_dir(plain.join("onnx")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if stem != "vision_model" && stem != "text_model" {
            std::fs::remove_file(path).unwrap();
        }
    }
    let auto = load(&plain, VariantChoice::Auto).unwrap();
    assert_eq!(auto.space().variant, ModelVariant::Fp32);
    assert_eq!(auto.space(), exact(ModelVariant::Fp32).space());
    assert_eq!(auto.folder().available_variants(), vec![ModelVariant::Fp32]);
}

#[test]
fn a_missing_variant_is_named_with_the_ones_there_are() {
    let Err(error) = load(&tiny(), VariantChoice::Exact(ModelVariant::Q4f16)) else {
        panic!("tiny-clip has no q4f16 towers");
    };
    assert_eq!(error.kind(), ErrorKind::Model);
    match &error {
        Error::Model(ModelError::Folder {
            path,
            problem: ModelProblem::MissingVariant { variant, available },
        }) => {
            assert!(path.ends_with("onnx/vision_model_q4f16.onnx"), "{path:?}");
            assert_eq!(*variant, ModelVariant::Q4f16);
            assert_eq!(
                available,
                &[
                    ModelVariant::Fp32,
                    ModelVariant::Fp16,
                    ModelVariant::Int8,
                    ModelVariant::Uint8,
                    ModelVariant::Q4
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    let message = error.chain();
    assert!(message.contains("model pull --variant q4f16"), "{message}");
}

/// A folder holding only a variant's towers is identified by them: it is
/// not the full folder's model (its fp32 towers are not there to say so).
#[test]
fn a_folder_with_only_a_variant_identifies_the_model_by_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let only_int8 = dir.path().join("tiny-clip");
    copy_dir(&tiny(), &only_int8);
    for tower in ["vision_model", "text_model"] {
        std::fs::remove_file(only_int8.join(format!("onnx/{tower}.onnx"))).unwrap();
    }
    let encoder = load(&only_int8, VariantChoice::Exact(ModelVariant::Int8)).unwrap();
    assert_eq!(encoder.space().variant, ModelVariant::Int8);
    assert!(
        !encoder
            .space()
            .same_model(exact(ModelVariant::Int8).space())
    );
    assert!(load(&only_int8, VariantChoice::default()).is_err());
}

fn insert_photo(db: &Db, encoder: &Encoder, name: &str) {
    let path = root().join("fixtures/photos").join(name);
    let image = NewImage {
        path: path.clone(),
        mtime: Timestamp(0),
        content_hash: ContentHash::of(name.as_bytes()),
        byte_size: 1,
        width: 1,
        height: 1,
        format: ImageFormat::Jpeg,
        tags: Vec::new(),
        vector: encoder.embed_image_file(&path).unwrap(),
    };
    db.insert(encoder.space(), vec![image]).unwrap();
}

#[test]
fn a_database_refuses_another_variant_unless_told_to_accept_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let fp32 = exact(ModelVariant::Fp32);
    let int8 = exact(ModelVariant::Int8);
    {
        let db = Db::open_or_create(&path, fp32.space().clone()).unwrap();
        insert_photo(&db, &fp32, "chelsea.png");
        db.close().unwrap();
    }

    let Err(refused) = Db::open_or_create(&path, int8.space().clone()) else {
        panic!("an int8 encoder opened an fp32 database");
    };
    assert_eq!(refused.kind(), ErrorKind::Conflict);
    assert!(
        matches!(
            refused,
            Error::VariantMismatch {
                stored: ModelVariant::Fp32,
                given: ModelVariant::Int8,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("--accept-variant"),
        "{refused}"
    );

    let db = Db::options()
        .space(int8.space().clone())
        .accept_variants(true)
        .open(&path)
        .unwrap();
    // The recorded variant stays the creator's; int8 vectors go in and are found.
    assert_eq!(db.space().variant, ModelVariant::Fp32);
    insert_photo(&db, &int8, "rocket.jpg");
    let hits = db.query(&int8, &Query::text("a cat")).unwrap();
    assert_eq!(hits.len(), 2);
    db.close().unwrap();

    // Another model is refused, accepted variants or not.
    let other = common::micro_model(dir.path());
    let other = load(&other, VariantChoice::default()).unwrap();
    let Err(refused) = Db::options()
        .space(other.space().clone())
        .accept_variants(true)
        .open(&path)
    else {
        panic!("another model opened the database");
    };
    assert!(
        matches!(refused, Error::SpaceMismatch { .. }),
        "{refused:?}"
    );
}
