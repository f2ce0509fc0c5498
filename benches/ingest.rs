//! Ingest and query benchmark: end-to-end ingest images/s against the
//! model alone on the same images, then query latency (p50/p99) on a
//! database grown to 100k vectors with synthetic ones. `benches/ingest.sh`
//! adds the CLI's memory and process-level latency.
//!
//! ```text
//! cargo bench --bench ingest -- corpus --out DIR [--images 2000]   # seeded JPEGs from the fixture photos
//! cargo bench --bench ingest -- run --out DIR [--model DIR] [--vectors 100000]
//!     [--device cpu|cuda|tensorrt|auto] [--variant fp32|fp16|int8|...|auto] [--batch-size 32]
//! ```
//! `--vectors 0` stops after the ingest figures.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgdb::ingest::IngestOptions;
use imgdb::{ContentHash, Db, Encoder, EncoderOptions, ImageFormat, NewImage, Query, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Seeded 640×480 JPEGs: random crops of the fixture photos, flipped at
/// random, quality 85 (what a phone's gallery thumbnails look like).
fn corpus(out: &Path, count: usize) {
    let dir = out.join("corpus");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let photos: Vec<image::RgbImage> =
        std::fs::read_dir(common::repo_root().join("fixtures/photos"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| imgdb::has_image_extension(p))
            .map(|p| image::open(p).unwrap().into_rgb8())
            .collect();
    (0..count).into_par_iter().for_each(|i| {
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        let photo = &photos[i % photos.len()];
        let (w, h) = photo.dimensions();
        let cw = rng.random_range(w / 2..=w);
        let ch = rng.random_range(h / 2..=h);
        let crop = image::imageops::crop_imm(
            photo,
            rng.random_range(0..=w - cw),
            rng.random_range(0..=h - ch),
            cw,
            ch,
        )
        .to_image();
        let mut resized =
            image::imageops::resize(&crop, 640, 480, image::imageops::FilterType::Triangle);
        if rng.random_bool(0.5) {
            image::imageops::flip_horizontal_in_place(&mut resized);
        }
        let file = std::fs::File::create(dir.join(format!("{:02}/{i:06}.jpg", i % 50)))
            .or_else(|_| {
                std::fs::create_dir_all(dir.join(format!("{:02}", i % 50))).unwrap();
                std::fs::File::create(dir.join(format!("{:02}/{i:06}.jpg", i % 50)))
            })
            .unwrap();
        let mut encoder =
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 85);
        encoder.encode_image(&resized).unwrap();
    });
    println!(
        "{}",
        json!({"phase": "corpus", "images": count, "dir": dir})
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn latencies(mut run: impl FnMut(usize), count: usize) -> (f64, f64) {
    let mut times: Vec<Duration> = (0..count)
        .map(|i| {
            let started = Instant::now();
            run(i);
            started.elapsed()
        })
        .collect();
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn run(out: &Path, model: &Path, vectors: usize, options: &EncoderOptions) {
    let corpus = out.join("corpus");
    let files: Vec<PathBuf> = walkdir::WalkDir::new(&corpus)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    let encoder = Encoder::load(model, options).unwrap();

    // The model alone, on the same images, preprocessed beforehand.
    let prepared: Vec<f32> = files
        .par_iter()
        .flat_map_iter(|f| {
            let bytes = std::fs::read(f).unwrap();
            encoder.preprocessor().prepare(&bytes, f).unwrap().pixels
        })
        .collect();
    let started = Instant::now();
    let per = encoder.preprocessor().tensor_len();
    for chunk in prepared.chunks(per * encoder.batch_size()) {
        std::hint::black_box(encoder.embed_pixels(chunk, chunk.len() / per).unwrap());
    }
    let model_only = files.len() as f64 / started.elapsed().as_secs_f64();

    // Decode + preprocess alone, on all cores.
    let started = Instant::now();
    files.par_iter().for_each(|f| {
        let bytes = std::fs::read(f).unwrap();
        std::hint::black_box(encoder.preprocessor().prepare(&bytes, f).unwrap());
    });
    let decode_only = files.len() as f64 / started.elapsed().as_secs_f64();

    // End to end.
    let db_path = out.join("db");
    let _ = std::fs::remove_dir_all(&db_path);
    let db = Db::open_or_create(&db_path, encoder.space().clone()).unwrap();
    let report = db
        .ingest(
            &encoder,
            std::slice::from_ref(&corpus),
            &IngestOptions::default(),
            &mut (),
        )
        .unwrap();
    let e2e = report.indexed as f64 / report.elapsed.as_secs_f64();
    println!(
        "{}",
        json!({
            "phase": "ingest", "images": files.len(), "model": encoder.space().model_id,
            "variant": encoder.space().variant.name(), "provider": encoder.provider().to_string(),
            "batch_size": encoder.batch_size(),
            "model_only_images_per_s": model_only, "decode_preprocess_images_per_s": decode_only,
            "end_to_end_images_per_s": e2e, "ratio": e2e / model_only,
            "encode_share": report.encode_time.as_secs_f64() / report.elapsed.as_secs_f64(),
            "threads": rayon::current_num_threads(),
        })
    );

    if vectors == 0 {
        return;
    }
    // Grow to `vectors` with synthetic images, then time queries.
    let dim = encoder.space().dim as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let have = db.stats().unwrap().images;
    for start in (have..vectors).step_by(5000) {
        let images = (start..(start + 5000).min(vectors))
            .map(|i| NewImage {
                path: PathBuf::from(format!("/synthetic/{i}.jpg")),
                mtime: Timestamp(0),
                content_hash: ContentHash::of(&(i as u64).to_le_bytes()),
                byte_size: 1,
                width: 640,
                height: 480,
                format: ImageFormat::Jpeg,
                tags: Vec::new(),
                vector: (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            })
            .collect();
        db.insert(encoder.space(), images).unwrap();
    }
    db.checkpoint().unwrap();
    let colours = ["red", "green", "blue", "yellow", "purple", "black", "white"];
    let things = [
        "cat",
        "rocket",
        "flower",
        "cup of coffee",
        "astronaut",
        "city",
    ];
    let (text_p50, text_p99) = latencies(
        |i| {
            let text = format!("a photo of a {} {}", colours[i % 7], things[i % 6]);
            std::hint::black_box(db.query(&encoder, &Query::text(text)).unwrap());
        },
        300,
    );
    let (image_p50, image_p99) = latencies(
        |i| {
            std::hint::black_box(
                db.query(&encoder, &Query::image(&files[i % files.len()]))
                    .unwrap(),
            );
        },
        300,
    );
    let outside = common::repo_root().join("fixtures/photos/astronaut.jpg");
    let (file_p50, file_p99) = latencies(
        |_| {
            std::hint::black_box(db.query(&encoder, &Query::image(&outside)).unwrap());
        },
        100,
    );
    println!(
        "{}",
        json!({
            "phase": "query", "vectors": db.stats().unwrap().images, "k": 10,
            "text_ms_p50": text_p50, "text_ms_p99": text_p99,
            "indexed_image_ms_p50": image_p50, "indexed_image_ms_p99": image_p99,
            "new_image_file_ms_p50": file_p50, "new_image_file_ms_p99": file_p99,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let out = PathBuf::from(arg(&args, "--out").unwrap_or_else(|| "target/ingest-bench".into()));
    match args.first().map(String::as_str) {
        Some("corpus") => corpus(
            &out,
            arg(&args, "--images").map_or(2000, |n| n.parse().unwrap()),
        ),
        Some("run") => run(
            &out,
            &arg(&args, "--model").map_or_else(
                || common::repo_root().join("fixtures/models/tiny-clip"),
                PathBuf::from,
            ),
            arg(&args, "--vectors").map_or(100_000, |n| n.parse().unwrap()),
            &EncoderOptions {
                device: imgdb::resolve::device(arg(&args, "--device").as_deref()).unwrap(),
                variant: imgdb::resolve::variant(arg(&args, "--variant").as_deref()).unwrap(),
                batch_size: arg(&args, "--batch-size").map_or(32, |n| n.parse().unwrap()),
                ..EncoderOptions::default()
            },
        ),
        _ => eprintln!("usage: cargo bench --bench ingest -- corpus|run --out DIR"),
    }
}
