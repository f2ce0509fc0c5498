//! The index benchmark: recall@10 and QPS over a sweep of `ef` (and of
//! search threads), build throughput, reopen time and peak memory, on
//! seeded data shared with the peer script (`benches/compare.sh` runs both).
//!
//! ```text
//! cargo bench --bench ann -- prepare --n 100000 [--data hard|clip] [--memory resident|compact] --out target/ann  # data + insert + close
//! cargo bench --bench ann -- search [--search-threads 1,2] --out target/ann         # reopen + ef sweep
//! cargo bench --bench ann -- rebuild --out target/ann                               # index build from the store
//! ```
//! Each phase runs in its own process so that its peak RSS is its own; each
//! appends one JSON object per line to `<out>/imgdb.jsonl`. `prepare` picks
//! the data set (`hard` by default, the one earlier figures were taken on);
//! the later phases read it from `<out>/data.json`.

mod data;

use std::path::{Path, PathBuf};
use std::time::Instant;

use imgdb::{
    ContentHash, Db, EmbeddingSpace, ImageFormat, IndexMemory, IndexOrigin, NewImage,
    SearchOptions, Timestamp,
};
use serde_json::json;

struct Args {
    phase: String,
    out: PathBuf,
    spec: data::Spec,
    /// `--data`, if given: `prepare` draws it (`hard` when not), the later
    /// phases check that it is what `prepare` drew.
    data: Option<data::Kind>,
    efs: Vec<usize>,
    /// The `search` phase's thread counts (the rebuild's sweep runs on 1).
    search_threads: Vec<usize>,
    m: usize,
    ef_construction: usize,
    /// `--memory`: the index memory mode `prepare` creates the database
    /// with (the later phases open what it recorded).
    memory: IndexMemory,
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let phase = args.next().unwrap_or_else(|| "help".into());
    let mut parsed = Args {
        phase,
        out: PathBuf::from("target/ann"),
        spec: data::Spec {
            base: 100_000,
            queries: 1000,
            dim: 512,
            centres: 1000,
            sigma: 2.0,
            seed: 42,
        },
        data: None,
        efs: vec![
            10, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 80, 96, 128, 192, 256,
        ],
        search_threads: vec![1],
        m: 16,
        ef_construction: 200,
        memory: IndexMemory::Resident,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => parsed.out = PathBuf::from(value),
            "--n" => parsed.spec.base = value.parse().unwrap(),
            "--queries" => parsed.spec.queries = value.parse().unwrap(),
            "--dim" => parsed.spec.dim = value.parse().unwrap(),
            "--seed" => parsed.spec.seed = value.parse().unwrap(),
            "--m" => parsed.m = value.parse().unwrap(),
            "--ef-construction" => parsed.ef_construction = value.parse().unwrap(),
            "--memory" => {
                parsed.memory = IndexMemory::from_name(&value)
                    .unwrap_or_else(|| panic!("--memory is resident or compact"));
            }
            "--efs" => parsed.efs = value.split(',').map(|e| e.parse().unwrap()).collect(),
            "--data" => {
                let kind = data::Kind::parse(&value);
                parsed.data = Some(kind.unwrap_or_else(|| panic!("--data is hard or clip")));
            }
            "--search-threads" => {
                parsed.search_threads = value.split(',').map(|t| t.parse().unwrap()).collect();
                assert!(
                    parsed.search_threads.iter().all(|&t| t > 0),
                    "a thread count is 0"
                );
            }
            other => panic!("unknown flag {other}"),
        }
    }
    parsed
}

fn space(dim: usize) -> EmbeddingSpace {
    EmbeddingSpace::named("ann-bench", dim as u32)
}

/// Opens the bench's database; `create` makes it in `args.memory`'s mode.
fn open(args: &Args, create: bool) -> Db {
    let options = Db::options()
        .space(space(args.spec.dim))
        .index_params(imgdb::IndexParams {
            m: args.m,
            ef_construction: args.ef_construction,
            ef_search: 64,
        });
    let options = if create {
        options.create_if_missing(true).index_memory(args.memory)
    } else {
        options
    };
    options.open(args.out.join("db")).unwrap()
}

/// The process's peak resident set, in MiB.
fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A memory figure of `/proc/self/status` (`VmRSS:`, say), in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn report(out: &Path, value: serde_json::Value) {
    use std::io::Write;
    println!("{value}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("imgdb.jsonl"))
        .unwrap();
    writeln!(file, "{value}").unwrap();
}

/// The data in `args.out`, checked against `--data` if given.
fn load(args: &Args) -> data::Data {
    let data = data::load(&args.out);
    if let Some(kind) = args.data {
        assert_eq!(
            kind,
            data.kind,
            "--data {} but {} holds the {} set",
            kind.name(),
            args.out.display(),
            data.kind.name()
        );
    }
    data
}

fn prepare(args: &Args) {
    let _ = std::fs::remove_dir_all(&args.out);
    std::fs::create_dir_all(&args.out).unwrap();
    let kind = args.data.unwrap_or(data::Kind::Hard);
    let describe = args.spec.describe_as(kind);
    eprintln!("generating {describe}");
    let started = Instant::now();
    let data = data::generate_kind(&args.spec, kind);
    data::save(&data, &args.out);
    eprintln!("data and exact neighbours in {:.1?}", started.elapsed());
    let cosines = data::neighbour_cosines(&data, &[1, 10, 100]);
    let text: Vec<String> = cosines
        .iter()
        .map(|(rank, cos)| format!("{rank}: {cos:.4}"))
        .collect();
    eprintln!("mean cosine of the true neighbour {}", text.join(", "));
    let cosines: serde_json::Map<_, _> = cosines
        .iter()
        .map(|(rank, cos)| (rank.to_string(), json!(cos)))
        .collect();

    // Generating the data and its exact neighbours peaks far above what
    // the build needs (3.4 GB at 200k, where the whole build peaks at
    // 1.5 GB): the high-water mark starts again here, so that the peak is
    // the build's, with the data it inserts, as peers.py's includes theirs.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before_insert = status_mib("VmRSS:");
    let db = open(args, true);
    let space = space(args.spec.dim);
    let started = Instant::now();
    let rows: Vec<_> = data.base.outer_iter().enumerate().collect();
    for chunk in rows.chunks(1000) {
        let images = chunk
            .iter()
            .map(|(i, v)| NewImage {
                path: PathBuf::from(format!("/bench/{i}")),
                mtime: Timestamp(0),
                content_hash: ContentHash::of(&(*i as u64).to_le_bytes()),
                byte_size: 0,
                width: 1,
                height: 1,
                format: ImageFormat::Other,
                tags: Vec::new(),
                vector: v.to_vec(),
            })
            .collect();
        db.insert(&space, images).unwrap();
    }
    let inserted = started.elapsed().as_secs_f64();
    let after_insert = status_mib("VmRSS:");
    let started = Instant::now();
    db.close().unwrap();
    let close = started.elapsed().as_secs_f64();
    report(
        &args.out,
        json!({
            "phase": "prepare", "data_set": kind.name(), "data": describe,
            "neighbour_cosine": cosines, "m": args.m,
            "ef_construction": args.ef_construction, "threads": rayon::current_num_threads(),
            "insert_vectors_per_s": args.spec.base as f64 / inserted, "insert_s": inserted,
            "close_s": close, "peak_rss_mib": peak_rss_mib(),
            "rss_before_insert_mib": before_insert, "rss_after_insert_mib": after_insert,
        }),
    );
}

fn search(args: &Args) {
    let data = load(args);
    // The data is the bench's; what the reopen adds is the database's.
    let before_open = status_mib("VmRSS:");
    let started = Instant::now();
    let db = open(args, false);
    let reopen = started.elapsed().as_secs_f64();
    let after_open = status_mib("VmRSS:");
    let stats = db.stats().unwrap();
    assert!(
        matches!(db.index_origin(), IndexOrigin::Snapshot { replayed: 0, .. }),
        "reopen did not load the snapshot"
    );
    report(
        &args.out,
        json!({
            "phase": "reopen", "data_set": data.kind.name(), "reopen_s": reopen,
            "index_memory": stats.index_memory.name(),
            "resident_vector_bytes": stats.resident_vector_bytes,
            "rss_before_open_mib": before_open, "rss_after_open_mib": after_open,
            "peak_rss_mib_after_reopen": peak_rss_mib(),
        }),
    );
    sweep(args, &db, &data, "imgdb", &args.search_threads);
    report(
        &args.out,
        json!({
            "phase": "search-done", "data_set": data.kind.name(), "peak_rss_mib": peak_rss_mib(),
        }),
    );
}

/// recall@10 and QPS for each `ef` and each of `threads`.
fn sweep(args: &Args, db: &Db, data: &data::Data, system: &str, threads: &[usize]) {
    let queries: Vec<Vec<f32>> = data.queries.outer_iter().map(|q| q.to_vec()).collect();
    for &ef in &args.efs {
        let options = SearchOptions {
            k: 10,
            ef: Some(ef),
            ..SearchOptions::default()
        };
        // One pass to warm caches, then three timed passes: the median is
        // reported (this machine's speed drifts between passes).
        for q in queries.iter().take(100) {
            db.search(q, &options).unwrap();
        }
        for &n in threads {
            let mut found = Vec::new();
            let mut times: Vec<f64> = (0..3)
                .map(|_| {
                    let started = Instant::now();
                    found = search_all(db, &queries, &options, n);
                    started.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let seconds = times[1];
            let mut line = json!({
                "phase": "search", "system": system, "data_set": data.kind.name(), "ef": ef,
                "recall_at_10": data::recall(&found, &data.truth, 10),
                "qps": queries.len() as f64 / seconds, "threads": n,
            });
            if n == 1 {
                let (p50, p99) = latency_us(db, &queries, &options);
                line["p50_us"] = json!(p50);
                line["p99_us"] = json!(p99);
            }
            report(&args.out, line);
        }
    }
}

/// The median and 99th percentile of one query's latency at k = 10, in
/// microseconds, over one more pass of the queries one at a time.
fn latency_us(db: &Db, queries: &[Vec<f32>], options: &SearchOptions) -> (f64, f64) {
    let mut times: Vec<f64> = queries
        .iter()
        .map(|q| {
            let started = Instant::now();
            db.search(q, options).unwrap();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    (at(0.50), at(0.99))
}

/// The base rows `db` finds for `queries`, in order, searched on `threads`
/// threads at once: one contiguous share each, all on the one `Db`, as a
/// server's request threads would search it.
fn search_all(
    db: &Db,
    queries: &[Vec<f32>],
    options: &SearchOptions,
    threads: usize,
) -> Vec<Vec<i64>> {
    let rows = |share: &[Vec<f32>]| -> Vec<Vec<i64>> {
        share
            .iter()
            .map(|q| {
                let hits = db.search(q, options).unwrap();
                hits.iter().map(|h| h.id.0 as i64 - 1).collect()
            })
            .collect()
    };
    if threads == 1 {
        // No thread spawned: the figure stays the single-thread one of before.
        return rows(queries);
    }
    let per_thread = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = queries
            .chunks(per_thread)
            .map(|share| scope.spawn(move || rows(share)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn rebuild(args: &Args) {
    let data = load(args);
    std::fs::remove_dir_all(args.out.join("db").join("index")).unwrap();
    let started = Instant::now();
    let db = open(args, false);
    let seconds = started.elapsed().as_secs_f64();
    assert!(matches!(db.index_origin(), IndexOrigin::Rebuilt { .. }));
    report(
        &args.out,
        json!({
            "phase": "rebuild", "data_set": data.kind.name(),
            "threads": rayon::current_num_threads(), "rebuild_s": seconds,
            "build_vectors_per_s": args.spec.base as f64 / seconds, "peak_rss_mib": peak_rss_mib(),
        }),
    );
    // The graph of a bulk build, next to the one grown batch by batch.
    sweep(args, &db, &data, "imgdb-rebuilt", &[1]);
}

fn main() {
    let args = parse_args();
    match args.phase.as_str() {
        "prepare" => prepare(&args),
        "search" => search(&args),
        "rebuild" => rebuild(&args),
        _ => eprintln!(
            "usage: cargo bench --bench ann -- prepare|search|rebuild [--out DIR] [--n N] \
             [--data hard|clip] [--efs 16,32] [--search-threads 1,2]"
        ),
    }
}
