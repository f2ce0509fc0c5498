//! Encoder throughput on one model folder: images/s and texts/s at batch 1,
//! 8 and 32, and tokenisation texts/s, for each model variant asked for.
//! Prints one JSON object per figure; with several variants, also the lowest
//! cosine of each one's vectors to the first's on the parity photos.
//!
//! ```text
//! cargo bench --bench encoder -- [MODEL_DIR] [--threads N] [--device cpu|cuda|tensorrt|auto]
//!     [--batches 1,8,32] [--variants fp32,int8] [--io-binding on|off]
//! ```
//! (default: the shipped tiny model, all cores, the CPU, batches 1, 8, 32, fp32, I/O binding as
//! the encoder's default: on for GPUs).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use imgdb::{Device, Encoder, EncoderOptions, VariantChoice};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let model = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| PathBuf::from(a))
        .unwrap_or_else(|| common::repo_root().join("fixtures/models/tiny-clip"));
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .and_then(|t| t.parse().ok());
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let device = value("--device").map_or(Device::Cpu, |d| {
        Device::from_name(d).expect("cpu, cuda, tensorrt or auto")
    });
    let batches: Vec<usize> = value("--batches").map_or_else(
        || vec![1, 8, 32],
        |b| b.split(',').map(|n| n.parse().unwrap()).collect(),
    );
    let variants: Vec<VariantChoice> = value("--variants").map_or_else(
        || vec![VariantChoice::default()],
        |v| {
            v.split(',')
                .map(|name| VariantChoice::from_name(name).expect("a model variant"))
                .collect()
        },
    );
    let io_binding = value("--io-binding").map(|v| v == "on");
    let mut reference: Option<Vec<Vec<f32>>> = None;
    for variant in variants {
        let options = EncoderOptions {
            intra_threads: threads,
            device,
            variant,
            io_binding,
            batch_size: batches.iter().copied().max().unwrap_or(32),
            tensorrt_cache: Some(common::repo_root().join(".cache/tensorrt")),
            ..EncoderOptions::default()
        };
        let encoder = Encoder::load(&model, &options).unwrap();
        let photos = parity_photo_vectors(&encoder);
        match &reference {
            None => reference = Some(photos),
            Some(reference) => {
                let lowest = reference
                    .iter()
                    .zip(&photos)
                    .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
                    .fold(f32::MAX, f32::min);
                println!(
                    "{}",
                    json!({"figure": "cosine_to_first_variant", "variant": encoder.space().variant.name(),
                           "photos": photos.len(), "lowest_cosine": lowest})
                );
            }
        }
        throughput(&encoder, &batches, threads);
    }
}

/// The vectors of the parity photos (`fixtures/parity/images`), in name order.
fn parity_photo_vectors(encoder: &Encoder) -> Vec<Vec<f32>> {
    let dir = common::repo_root().join("fixtures/parity/images");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| imgdb::has_image_extension(p))
        .collect();
    photos.sort();
    photos
        .iter()
        .map(|p| encoder.embed_image_file(p).unwrap())
        .collect()
}

fn throughput(encoder: &Encoder, batches: &[usize], threads: Option<usize>) {
    let captions: Vec<String> = (0..batches.iter().copied().max().unwrap_or(32).max(256))
        .map(|i| {
            let colours = ["red", "green", "blue", "yellow", "purple"];
            let shapes = ["circle", "square", "triangle"];
            format!(
                "a photo of a {} {} on a table, number {i}",
                colours[i % 5],
                shapes[i % 3]
            )
        })
        .collect();
    let texts: Vec<&str> = captions.iter().map(String::as_str).collect();

    // Tokenisation alone.
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(encoder.tokenizer().encode(&texts).unwrap());
    }
    let per_s = (rounds * texts.len()) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"figure": "tokenize", "texts_per_s": per_s, "model": encoder.space().model_id,
               "variant": encoder.space().variant.name()})
    );

    let pixels_one = vec![0.1f32; encoder.preprocessor().tensor_len()];
    for &batch in batches {
        let pixels: Vec<f32> = pixels_one
            .iter()
            .copied()
            .cycle()
            .take(pixels_one.len() * batch)
            .collect();
        encoder.embed_pixels(&pixels, batch).unwrap();
        let rounds = (512 / batch).max(8);
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(encoder.embed_pixels(&pixels, batch).unwrap());
        }
        let images_per_s = (rounds * batch) as f64 / started.elapsed().as_secs_f64();

        let chunk = &texts[..batch];
        encoder.embed_texts(chunk).unwrap();
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(encoder.embed_texts(chunk).unwrap());
        }
        let texts_per_s = (rounds * batch) as f64 / started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({
                "figure": "model", "batch": batch, "images_per_s": images_per_s, "texts_per_s": texts_per_s,
                "provider": encoder.provider().to_string(), "model": encoder.space().model_id,
                "variant": encoder.space().variant.name(), "intra_threads": threads,
            })
        );
    }
}
