//! The encoder on the shipped tiny model: parity with Python onnxruntime
//! (token ids: tokenizer_parity.rs), the model folder layouts, execution provider
//! selection, bad model folders, and the model's own quality through imgdb.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, root};

use imgdb::{
    Device, Encoder, EncoderOptions, Error, ErrorKind, Layout, ModelError, ModelProblem, TowerKind,
    Towers,
};
use serde_json::Value;

fn tiny() -> PathBuf {
    root().join("fixtures/models/tiny-clip")
}

fn load(dir: &Path) -> Encoder {
    Encoder::load(dir, &EncoderOptions::default()).unwrap()
}

fn json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn the_tiny_model_loads_on_the_cpu() {
    let encoder = load(&tiny());
    assert_eq!(encoder.space().dim, 64);
    assert_eq!(encoder.space().model_id, "tiny-clip");
    assert_eq!(encoder.folder().layout, Layout::HuggingFace);
    assert_eq!(encoder.provider().device, Device::Cpu);
    assert_eq!(encoder.provider().fallback, None);
    assert_eq!(encoder.preprocessor().output_size(), (64, 64));
    assert!((encoder.logit_scale() - 27.33).abs() < 0.01);
    println!("runtime: {}", encoder.runtime_path().display());
}

#[test]
fn embeddings_match_python_onnxruntime() {
    let reference = json("fixtures/parity/embeddings.json");
    let hf = load(&tiny());
    let immich = load(&root().join("fixtures/models/tiny-clip-immich"));
    assert_eq!(immich.folder().layout, Layout::Immich);
    let mut worst: f32 = 1.0;
    for image in reference["images"].as_array().unwrap() {
        let tensor: ndarray::Array4<f32> =
            ndarray_npy::read_npy(root().join(image["tensor"].as_str().unwrap())).unwrap();
        let pixels = tensor.as_slice().unwrap();
        let ours = hf.embed_pixels(pixels, 1).unwrap().remove(0);
        let theirs = floats(&image["image_embeds"]);
        worst = worst.min(cosine(&ours, &theirs));
        // The Immich export (batch fixed at 1, other names) of the same weights.
        let ours_immich = immich.embed_pixels(pixels, 1).unwrap().remove(0);
        worst = worst.min(cosine(&ours_immich, &floats(&image["immich_embedding"])));
        worst = worst.min(cosine(&ours, &ours_immich));
    }
    for text in reference["texts"].as_array().unwrap() {
        let ids: Vec<u32> = text["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ours = hf
            .embed_texts(&[text["text"].as_str().unwrap()])
            .unwrap()
            .remove(0);
        worst = worst.min(cosine(&ours, &floats(&text["text_embeds"])));
        let from_ids = hf
            .embed_tokens(std::slice::from_ref(&ids))
            .unwrap()
            .remove(0);
        worst = worst.min(cosine(&from_ids, &ours));
        // int32 ids padded to 77, no attention mask.
        let ours_immich = immich.embed_tokens(&[ids]).unwrap().remove(0);
        worst = worst.min(cosine(&ours_immich, &floats(&text["immich_embedding"])));
    }
    println!("lowest cosine to the references: {worst}");
    assert!(worst >= 0.99999, "lowest cosine {worst}");
}

#[test]
fn batches_give_the_same_vectors_as_single_items() {
    let encoder = load(&tiny());
    let texts = [
        "a red circle",
        "a large blue square on black",
        "",
        "a purple triangle on gray",
    ];
    let batched = encoder.embed_texts(&texts).unwrap();
    for (text, vector) in texts.iter().zip(&batched) {
        let single = encoder.embed_texts(&[text]).unwrap().remove(0);
        assert!(cosine(&single, vector) > 0.99999, "{text:?}");
    }
}

#[test]
fn split_tower_folders_load_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (vision, text) = (dir.path().join("clip-vision"), dir.path().join("clip-text"));
    std::fs::create_dir_all(&vision).unwrap();
    std::fs::create_dir_all(&text).unwrap();
    std::fs::copy(
        tiny().join("onnx/vision_model.onnx"),
        vision.join("model.onnx"),
    )
    .unwrap();
    std::fs::copy(
        tiny().join("preprocessor_config.json"),
        vision.join("preprocessor_config.json"),
    )
    .unwrap();
    std::fs::copy(tiny().join("onnx/text_model.onnx"), text.join("model.onnx")).unwrap();
    for file in ["tokenizer.json", "config.json"] {
        std::fs::copy(tiny().join(file), text.join(file)).unwrap();
    }
    let split = load(dir.path());
    assert_eq!(split.folder().layout, Layout::SplitTowers);
    let hf = load(&tiny());
    assert_eq!(
        split.space().fingerprint,
        hf.space().fingerprint,
        "same files, same space"
    );
    let a = split.embed_texts(&["a green square"]).unwrap().remove(0);
    let b = hf.embed_texts(&["a green square"]).unwrap().remove(0);
    assert!(cosine(&a, &b) > 0.99999);
}

#[test]
fn gpu_devices_fail_clearly_and_auto_falls_back() {
    let runtime = load(&tiny()).runtime_path().to_path_buf();
    // The CPU build of ONNX Runtime has no GPU provider at all; a GPU build
    // may start one or not, depending on the machine.
    let gpu_build = runtime.to_string_lossy().contains("gpu");
    for device in [Device::Cuda, Device::TensorRt] {
        let options = EncoderOptions {
            device,
            ..EncoderOptions::default()
        };
        match Encoder::load(tiny(), &options) {
            Err(Error::Model(ModelError::Provider { device: d, .. })) => assert_eq!(d, device),
            Err(other) => panic!("{device}: unexpected error {other}"),
            Ok(encoder) if gpu_build => {
                assert_eq!(encoder.provider().device, device);
                eprintln!(
                    "{device} started: the failure path is not exercised on this machine \
                     ({}); the CPU runtime's test covers it",
                    runtime.display()
                );
            }
            Ok(_) => panic!("{device} must not start on the CPU runtime"),
        }
    }
    let auto = Encoder::load(
        tiny(),
        &EncoderOptions {
            device: Device::Auto,
            ..EncoderOptions::default()
        },
    )
    .unwrap();
    println!("auto: {}", auto.provider());
    if auto.provider().device == Device::Cpu {
        let reason = auto
            .provider()
            .fallback
            .clone()
            .expect("auto says why it fell back");
        assert!(reason.to_lowercase().contains("cuda"), "{reason}");
    } else {
        assert!(
            gpu_build,
            "auto chose {} on the CPU runtime",
            auto.provider()
        );
        eprintln!(
            "auto started {}: its fallback is not exercised on this machine",
            auto.provider()
        );
    }
}

/// Copies `source` to `dir/name`, lets `edit` break it, and returns the
/// error loading it gives.
fn load_broken(dir: &Path, source: &Path, name: &str, edit: impl FnOnce(&Path)) -> Error {
    let folder = dir.join(name);
    copy_dir(source, &folder);
    edit(&folder);
    match Encoder::load(&folder, &EncoderOptions::default()) {
        Ok(_) => panic!("{name}: a broken folder loaded"),
        Err(e) => e,
    }
}

#[test]
fn broken_model_folders_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let immich = root().join("fixtures/models/tiny-clip-immich");
    let write = |file: &'static str, text: &'static [u8]| {
        move |folder: &Path| std::fs::write(folder.join(file), text).unwrap()
    };

    match load_broken(dir.path(), &tiny(), "missing", |f| {
        std::fs::remove_file(f.join("onnx/text_model.onnx")).unwrap()
    }) {
        Error::Model(ModelError::Folder {
            path,
            problem: ModelProblem::MissingFile { layout },
        }) => {
            assert!(path.ends_with("onnx/text_model.onnx"), "{}", path.display());
            assert_eq!(layout, Layout::HuggingFace);
        }
        other => panic!("expected a missing file, got {other}"),
    }

    let nothing = dir.path().join("nothing");
    std::fs::create_dir_all(&nothing).unwrap();
    std::fs::write(nothing.join("weights.bin"), b"?").unwrap();
    let err = Encoder::load(&nothing, &EncoderOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::Model(ModelError::Folder {
                problem: ModelProblem::UnknownLayout { .. },
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("weights.bin"), "{err}");

    let err = load_broken(dir.path(), &tiny(), "mixed", |f| {
        let micro = root().join("fixtures/models/micro-clip-dim32/onnx/text_model.onnx");
        std::fs::copy(micro, f.join("onnx/text_model.onnx")).unwrap();
    });
    assert!(
        matches!(
            err,
            Error::Model(ModelError::Folder {
                problem: ModelProblem::TowerMismatch {
                    image: 64,
                    text: 32
                },
                ..
            })
        ),
        "{err}"
    );

    let err = load_broken(
        dir.path(),
        &tiny(),
        "bad-json",
        write("preprocessor_config.json", b"{ not json"),
    );
    assert!(
        matches!(err, Error::Model(ModelError::Config { .. })),
        "{err}"
    );

    let no_crop = br#"{"size": {"shortest_edge": 64}, "do_center_crop": false}"#;
    let err = load_broken(
        dir.path(),
        &tiny(),
        "bad-size",
        write("preprocessor_config.json", no_crop),
    );
    assert!(
        matches!(
            err,
            Error::Model(ModelError::Folder {
                problem: ModelProblem::BadKey { .. },
                ..
            })
        ),
        "{err}"
    );

    let other_size = br#"{"size": [96, 96], "resize_mode": "shortest"}"#;
    let err = load_broken(
        dir.path(),
        &immich,
        "wrong-size",
        write("visual/preprocess_cfg.json", other_size),
    );
    assert!(
        matches!(
            err,
            Error::Model(ModelError::Folder {
                problem: ModelProblem::WrongTensor { .. },
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn the_encoder_is_shared_across_threads() {
    let encoder = load(&tiny());
    let expected = encoder
        .embed_texts(&["a small yellow circle on black"])
        .unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let encoder = encoder.clone();
            let expected = &expected;
            scope.spawn(move || {
                for _ in 0..10 {
                    assert_eq!(
                        &encoder
                            .embed_texts(&["a small yellow circle on black"])
                            .unwrap(),
                        expected
                    );
                }
            });
        }
    });
}

#[test]
fn the_tiny_model_reaches_its_figures_through_imgdb() {
    let encoder = load(&tiny());
    let report =
        imgdb::eval::evaluate_image_folder(&encoder, &root().join("fixtures/eval/shapes"), "a {}")
            .unwrap();
    println!("{report:?}");
    assert_eq!((report.classes, report.images), (90, 180));
    let recall = |k| {
        report
            .text_to_image_recall
            .iter()
            .find(|(kk, _)| *kk == k)
            .unwrap()
            .1
    };
    // The figures fixtures/eval/README.md records: recall@1 1.0000 (90/90)
    // and zero-shot accuracy 0.9500 (171/180).
    assert_eq!(recall(1), 1.0, "recall@1");
    assert_eq!(recall(5), 1.0, "recall@5");
    assert_eq!(
        (report.zero_shot_accuracy * 180.0).round(),
        171.0,
        "zero-shot {}",
        report.zero_shot_accuracy
    );
}

#[test]
fn one_tower_loads_alone_in_the_same_space() {
    let both = load(&tiny());
    let digests = tempfile::tempdir().unwrap();
    let text_only = Encoder::load(
        tiny(),
        &EncoderOptions {
            towers: Towers::Text,
            digest_cache: Some(digests.path().to_path_buf()),
            ..EncoderOptions::default()
        },
    )
    .unwrap();
    assert_eq!(text_only.space(), both.space());
    assert_eq!(
        text_only.space().fingerprint,
        both.space().fingerprint,
        "the fingerprint covers both towers whichever is loaded"
    );
    // The digests were cached: one entry per fingerprinted file.
    assert_eq!(std::fs::read_dir(digests.path()).unwrap().count(), 3);
    let texts = ["a red circle", "a blue square"];
    assert_eq!(
        text_only.embed_texts(&texts).unwrap(),
        both.embed_texts(&texts).unwrap()
    );
    let pixels = vec![0.0; both.preprocessor().tensor_len()];
    let err = text_only.embed_pixels(&pixels, 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Model(ModelError::TowerNotLoaded {
                tower: TowerKind::Image
            })
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let image_only = Encoder::load(
        tiny(),
        &EncoderOptions {
            towers: Towers::Image,
            digest_cache: Some(digests.path().to_path_buf()),
            ..EncoderOptions::default()
        },
    )
    .unwrap();
    assert_eq!(image_only.space(), both.space());
    assert_eq!(
        image_only.embed_pixels(&pixels, 1).unwrap(),
        both.embed_pixels(&pixels, 1).unwrap()
    );
    assert!(matches!(
        image_only.embed_texts(&texts),
        Err(Error::Model(ModelError::TowerNotLoaded {
            tower: TowerKind::Text
        }))
    ));
}
