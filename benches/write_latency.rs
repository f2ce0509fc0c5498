//! Write latency as the database grows: the time of each 64-image
//! `Db::write` batch while a database is built to 100k rows, reported as
//! p50/p99/max per band of 10k rows and overall. Maintenance (snapshots,
//! compaction) must not show up in these figures (issue 8, item 4).
//!
//! ```text
//! cargo bench --bench write_latency [-- --rows 100000 --batch 64 --band 10000 --rate 0]
//! ```
//!
//! Synthetic 512-d unit vectors from `benches/data` with a fixed seed; default
//! database options (snapshots every 10 000 changes or an eighth of the index).
//!
//! `--rate 0` (the default) writes back to back: a writer faster than the
//! graph can take rows, where every write ends up paying for the graph's
//! inserts. `--rate N` paces the writes at N images/s (an ingest is paced by
//! its encoder), which shows what a write costs when maintenance is not
//! competing for the same rows: the figure the "flat as the database grows"
//! goal is about.

#[allow(dead_code)] // only the generator is used here
mod data;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use imgdb::{
    ContentHash, Db, EmbeddingSpace, ImageFormat, NewImage, Timestamp, WriteBatch, WriteOp,
};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:>16}  batches {:>5}  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>9.2} ms",
        sorted.len(),
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.99)),
        ms(*sorted.last().expect("a batch")),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs bench targets without `--bench`: a
    // 100k-row build is for `cargo bench` only.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "usage: cargo bench --bench write_latency [-- --rows N --batch N --band N --rate N]"
        );
        return;
    }
    let rows = arg(&args, "--rows", 100_000);
    let batch = arg(&args, "--batch", 64);
    let band = arg(&args, "--band", 10_000);
    let rate = arg(&args, "--rate", 0);
    let spec = data::Spec {
        base: rows,
        queries: 0,
        dim: 512,
        centres: 1000,
        sigma: 2.0,
        seed: 8,
    };
    println!(
        "write_latency: {} rows in batches of {batch}, bands of {band}, {}; {}",
        rows,
        match rate {
            0 => "back to back".to_string(),
            r => format!("paced at {r} images/s"),
        },
        spec.describe()
    );
    let vectors = data::generate(&spec).base;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let space = EmbeddingSpace::named("bench-space", spec.dim as u32);
    let db = Db::open_or_create(dir.path().join("db"), space.clone()).expect("a database");

    let mut latencies = Vec::with_capacity(rows / batch + 1);
    let started = Instant::now();
    for start in (0..rows).step_by(batch) {
        let ops: Vec<WriteOp> = (start..(start + batch).min(rows))
            .map(|n| {
                WriteOp::Insert(NewImage {
                    path: PathBuf::from(format!("/bench/{}/{n:07}.jpg", n % 100)),
                    mtime: Timestamp(n as i64),
                    content_hash: ContentHash::of(&(n as u64).to_le_bytes()),
                    byte_size: 1000,
                    width: 640,
                    height: 480,
                    format: ImageFormat::Jpeg,
                    tags: Vec::new(),
                    vector: vectors.row(n).to_vec(),
                })
            })
            .collect();
        if rate > 0 {
            // The slot of this batch on the paced schedule; a late write
            // starts at once (the schedule does not slip).
            let due = started + Duration::from_secs_f64(start as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let t = Instant::now();
        db.write(&space, WriteBatch::from(ops)).expect("a write");
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    let per_band = band.div_ceil(batch).max(1);
    for (i, chunk) in latencies.chunks(per_band).enumerate() {
        let from = i * band;
        report(
            &format!("{}k-{}k", from / 1000, ((from + band).min(rows)) / 1000),
            chunk,
        );
    }
    report("overall", &latencies);
    println!(
        "built {rows} rows in {:.1} s ({:.0} rows/s)",
        total.as_secs_f64(),
        rows as f64 / total.as_secs_f64()
    );
    let t = Instant::now();
    db.close().expect("a clean close");
    println!("close (final snapshot): {:.2} s", t.elapsed().as_secs_f64());
}
