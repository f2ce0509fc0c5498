//! One function per command: validate the arguments, call the library,
//! print the result. The commands a running daemon can answer (`query`,
//! `stats`, `ingest`, `rm`, `tag`, `failures`) ask it first (`remote.rs`)
//! and print its answer with the same printers as their direct path.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use imgdb::ingest::{FileOutcome, IngestEvent, IngestObserver, IngestOptions, IngestReport};
use imgdb::{
    CancelToken, Db, Encoder, EncoderOptions, ErrorKind, ExportOptions, Filter, ImageFormat, Query,
    QueryTerm, TagOptions, Timestamp, Towers, VariantChoice, WriteBatch, WriteOp, ZeroShot,
    resolve,
};
use serde_json::json;

use crate::CommandError;
use crate::args::{
    ClassifyArgs, Cli, DaemonArgs, DebugCommand, DupesArgs, EvalArgs, ExportArgs, FailuresArgs,
    ImportArgs, IngestArgs, QueryArgs, TagArgs,
};
use crate::output::{Out, Progress, hit_json, path_json, stats_json, timestamp_text};
use crate::remote;
use serde_json::Value;

/// What a command returns.
pub type Result<T> = std::result::Result<T, CommandError>;

/// Runs the daemon until SIGTERM or SIGINT (its own handlers: the CLI's
/// Ctrl-C handler is not installed for it).
pub fn daemon(cli: &Cli, args: &DaemonArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(file) => imgdb_daemon::Config::load(file).map_err(daemon_error)?,
        None => imgdb_daemon::Config::default(),
    };
    config.db = cli.db.clone().or(config.db);
    config.model = cli.model.clone().or(config.model);
    config.device = cli.device.clone().or(config.device);
    config.model_variant = cli.model_variant.clone().or(config.model_variant);
    config.accept_variant |= cli.accept_variant;
    config.listen = args.listen.unwrap_or(config.listen);
    config.token = args.token.clone().or(config.token);
    config.watch.extend(args.watch.iter().cloned());
    imgdb_daemon::run(config).map_err(daemon_error)
}

fn daemon_error(error: imgdb_daemon::DaemonError) -> CommandError {
    match error {
        imgdb_daemon::DaemonError::Imgdb(e) => CommandError::Imgdb(e),
        other => CommandError::Daemon(other),
    }
}

pub fn tag(cli: &Cli, args: &TagArgs, out: &mut Out) -> Result<()> {
    let options = TagOptions {
        template: args.template.clone(),
        top: args.top,
        min_score: args.min_score,
    };
    if let Some(daemon) = remote::daemon(cli) {
        let labels = read_labels(&args.labels)?;
        return remote::tag(&daemon, &labels, &options, args.json, out);
    }
    // Labels are embedded as texts; the images' vectors are stored.
    let encoder = encoder(cli, Towers::Text)?;
    let db = open_for(cli, &encoder)?;
    let tagged = db.tag(&encoder, &read_labels(&args.labels)?, &options)?;
    print_tagged(tagged as u64, args.json, out)
}

/// What `tag` prints.
pub fn print_tagged(tagged: u64, json: bool, out: &mut Out) -> Result<()> {
    if json {
        out.json(&json!({"tagged": tagged}))?;
    } else {
        out.line(format!("tagged {tagged} images"))?;
    }
    Ok(())
}

pub fn classify(cli: &Cli, args: &ClassifyArgs, out: &mut Out) -> Result<()> {
    let encoder = encoder(cli, Towers::Both)?;
    let classifier = ZeroShot::new(&encoder, &read_labels(&args.labels)?, &args.template)?;
    let tags = classifier.classify_file(&encoder, &args.image)?;
    for (rank, tag) in tags.iter().take(args.top).enumerate() {
        if args.json {
            out.json(&json!({"rank": rank + 1, "label": tag.label, "score": tag.score}))?;
        } else {
            out.line(format!("{:>3}  {:.4}  {}", rank + 1, tag.score, tag.label))?;
        }
    }
    Ok(())
}

pub fn dupes(cli: &Cli, args: &DupesArgs, out: &mut Out) -> Result<()> {
    let db = open(cli)?;
    for group in db.near_duplicates(args.threshold)? {
        let records = group
            .ids
            .iter()
            .map(|&id| db.get(id))
            .collect::<imgdb::Result<Vec<_>>>()?;
        let paths: Vec<&Path> = records.iter().flatten().map(|r| r.path()).collect();
        if args.json {
            let ids: Vec<u64> = group.ids.iter().map(|id| id.0).collect();
            let paths: Vec<_> = paths.iter().map(|p| path_json(p)).collect();
            out.json(&json!({"ids": ids, "paths": paths, "min_score": group.min_score}))?;
        } else {
            out.line(format!(
                "{} images, similarity >= {:.3}:",
                paths.len(),
                group.min_score
            ))?;
            for path in paths {
                out.path_line("  ", path, "")?;
            }
        }
    }
    Ok(())
}

pub fn reindex(cli: &Cli, out: &mut Out) -> Result<()> {
    let encoder = encoder(cli, Towers::Both)?;
    let db = Db::open(db_path(cli))?;
    let cancel = cancel_on_ctrl_c("discarding the partial re-index, the old database is kept");
    let report = db.reindex(&encoder, &cancel, |done, total| {
        tracing::info!("re-encoded {done}/{total}");
    })?;
    db.close()?;
    if report.cancelled {
        eprintln!("reindex stopped: the database was kept as it was");
        return Err(CommandError::Cancelled);
    }
    out.line(format!("re-encoded {} images", report.reindexed))?;
    for (path, reason) in &report.dropped {
        eprintln!("dropped {}: {reason}", path.display());
    }
    if report.dropped.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Partial)
    }
}

pub fn export(cli: &Cli, args: &ExportArgs, out: &mut Out) -> Result<()> {
    let options = ExportOptions {
        cancel: cancel_on_ctrl_c("removing the partial export"),
        ..ExportOptions::default()
    };
    let report = open(cli)?.export_with(&args.dir, &options)?;
    if report.cancelled {
        eprintln!(
            "export stopped: nothing was written to {}",
            args.dir.display()
        );
        return Err(CommandError::Cancelled);
    }
    out.line(format!(
        "exported {} images to {}",
        report.images,
        args.dir.display()
    ))?;
    Ok(())
}

/// A token the first Ctrl-C cancels (the command stops cleanly, saying
/// `doing`); a second Ctrl-C quits at once with 130, as shells expect.
fn cancel_on_ctrl_c(doing: &'static str) -> CancelToken {
    let cancel = CancelToken::new();
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.cancel() {
            std::process::exit(130);
        }
        eprintln!("stopping: {doing}");
    });
    cancel
}

pub fn import(cli: &Cli, args: &ImportArgs, out: &mut Out) -> Result<()> {
    let encoder = encoder(cli, Towers::Both)?;
    let db = open_or_create_for(cli, &encoder)?;
    let bar = indicatif::ProgressBar::hidden();
    if !cli.quiet && std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} rows  ETA {eta}")
                .expect("a valid template"),
        );
    }
    let count = db.import_with(&encoder, &args.dir, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    out.line(format!("imported {count} images"))?;
    Ok(())
}

pub fn eval(cli: &Cli, args: &EvalArgs, out: &mut Out) -> Result<()> {
    let encoder = encoder(cli, Towers::Both)?;
    let report = imgdb::eval::evaluate_image_folder(&encoder, &args.dir, &args.template)?;
    if args.json {
        let recall: serde_json::Map<String, serde_json::Value> = report
            .text_to_image_recall
            .iter()
            .map(|(k, r)| (format!("recall@{k}"), json!(r)))
            .collect();
        out.json(&json!({
            "classes": report.classes, "images": report.images, "template": report.template,
            "zero_shot_accuracy": report.zero_shot_accuracy, "text_to_image": recall,
        }))?;
    } else {
        out.line(format!(
            "{} classes, {} images, template {:?}",
            report.classes, report.images, report.template
        ))?;
        out.line(format!(
            "zero-shot accuracy      {:.4}",
            report.zero_shot_accuracy
        ))?;
        for (k, recall) in &report.text_to_image_recall {
            out.line(format!("text->image recall@{k:<3}  {recall:.4}"))?;
        }
    }
    Ok(())
}

pub fn model_pull(
    cli: &Cli,
    name: Option<&str>,
    variant: Option<&str>,
    out: &mut Out,
) -> Result<()> {
    let repo = name.unwrap_or(imgdb::hub::DEFAULT_MODEL);
    let variant = match resolve::variant(variant.or(cli.model_variant.as_deref()))? {
        VariantChoice::Exact(variant) => variant,
        VariantChoice::Auto => {
            return Err(CommandError::Usage(
                "`model pull` fetches one variant: name it (fp32, fp16, int8, ...), not auto"
                    .into(),
            ));
        }
    };
    let progress = indicatif::ProgressBar::hidden();
    if !cli.quiet && std::io::stderr().is_terminal() {
        progress.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let folder = imgdb::hub::pull_model(repo, &resolve::model_cache(), variant, progress)?;
    out.path_line("", &folder, "")?;
    Ok(())
}

/// The database folder (`imgdb::resolve::database_path`).
pub fn db_path(cli: &Cli) -> PathBuf {
    resolve::database_path(cli.db.as_deref())
}

/// The existing database, of whatever model.
fn open(cli: &Cli) -> Result<Db> {
    Ok(memory_option(cli, Db::options()).open(db_path(cli))?)
}

fn memory_option(cli: &Cli, options: imgdb::DbOptions) -> imgdb::DbOptions {
    match cli.index_memory {
        Some(memory) => options.index_memory(memory),
        None => options,
    }
}

/// The model with the towers a command needs.
fn encoder(cli: &Cli, towers: Towers) -> Result<Encoder> {
    let model = resolve::model_folder(cli.model.as_deref())?;
    let options = EncoderOptions {
        towers,
        ..resolve::encoder_options(
            resolve::device(cli.device.as_deref())?,
            resolve::variant(cli.model_variant.as_deref())?,
        )
    };
    Ok(Encoder::load(model, &options)?)
}

/// The database, which must exist and hold the encoder's space (another
/// variant of its model with `--accept-variant`).
fn open_for(cli: &Cli, encoder: &Encoder) -> Result<Db> {
    Ok(db_options(cli, encoder).open(db_path(cli))?)
}

/// [`open_for`], creating the database when it is missing.
fn open_or_create_for(cli: &Cli, encoder: &Encoder) -> Result<Db> {
    Ok(db_options(cli, encoder)
        .create_if_missing(true)
        .open(db_path(cli))?)
}

fn db_options(cli: &Cli, encoder: &Encoder) -> imgdb::DbOptions {
    let options = Db::options()
        .space(encoder.space().clone())
        .accept_variants(cli.accept_variant);
    memory_option(cli, options)
}

fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CommandError::Usage(format!("cannot read labels {}: {e}", path.display())))?;
    let labels: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if labels.is_empty() {
        return Err(CommandError::Usage(format!(
            "{} has no labels",
            path.display()
        )));
    }
    Ok(labels)
}

pub fn ingest(cli: &Cli, args: &IngestArgs, out: &mut Out) -> Result<()> {
    if let Some(daemon) = remote::daemon(cli) {
        return remote::ingest(&daemon, cli, args, out);
    }
    let encoder = encoder(cli, Towers::Both)?;
    let db = open_or_create_for(cli, &encoder)?;
    let cancel = cancel_on_ctrl_c("finishing the current batch");
    let defaults = IngestOptions::default();
    let options = IngestOptions {
        workers: args.workers.unwrap_or(defaults.workers),
        batch_size: args.batch_size,
        include_hidden: args.hidden,
        follow_links: args.follow_links,
        remove_missing: !args.keep_missing,
        dct_scaling: args.fast_decode.then_some(4),
        cancel,
        ..defaults
    };
    let mut progress = Counted {
        observer: Progress::new(args.json, cli.quiet),
        settled: 0,
    };
    let result = db.ingest(&encoder, &args.paths, &options, &mut progress);
    progress.observer.finish()?;
    // Files are reported only once their batch is committed: what was
    // reported is in the database, whatever fails next.
    let stored = |e| {
        eprintln!(
            "note: the {} files reported before this error are stored; run the ingest again to do the rest",
            progress.settled
        );
        CommandError::Imgdb(e)
    };
    let report = result.map_err(stored)?;
    db.close().map_err(stored)?;
    print_ingest(&report, args.json, cli.quiet, out)?;
    if report.cancelled {
        return Err(CommandError::Cancelled);
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Partial)
    }
}

/// An ingest observer that counts the files settled (stored, linked,
/// failed or removed), for the note on a failed ingest.
struct Counted<O> {
    observer: O,
    settled: u64,
}

impl<O: IngestObserver> IngestObserver for Counted<O> {
    fn event(&mut self, event: &IngestEvent) {
        if let IngestEvent::File { outcome, .. } = event
            && !matches!(outcome, FileOutcome::Unchanged | FileOutcome::StillFailing)
        {
            self.settled += 1;
        }
        self.observer.event(event);
    }
}

fn print_ingest(report: &IngestReport, json: bool, quiet: bool, out: &mut Out) -> Result<()> {
    let seconds = report.elapsed.as_secs_f64();
    if json {
        out.json(&json!({
            "event": "done", "found": report.found, "indexed": report.indexed, "linked": report.linked,
            "unchanged": report.unchanged, "removed": report.removed, "failed": report.failures.len(),
            "cancelled": report.cancelled, "seconds": seconds,
            "images_per_s": report.indexed as f64 / seconds.max(1e-9),
        }))?;
    } else if !quiet {
        out.line(format!(
            "{} files: {} indexed, {} linked, {} unchanged, {} removed, {} failed in {:.1}s ({:.1} images/s){}",
            report.found,
            report.indexed,
            report.linked,
            report.unchanged,
            report.removed,
            report.failures.len(),
            seconds,
            report.indexed as f64 / seconds.max(1e-9),
            if report.cancelled { " - stopped early, run again to resume" } else { "" }
        ))?;
        for (path, reason) in &report.failures {
            eprintln!("failed: {}: {reason}", path.display());
        }
    }
    Ok(())
}

/// `TEXT::WEIGHT` or `TEXT`.
fn weighted(term: &str) -> Result<(&str, f32)> {
    match term.rsplit_once("::") {
        Some((value, weight)) => weight.trim().parse().map(|w| (value, w)).map_err(|_| {
            CommandError::Usage(format!("{term:?}: the weight after `::` is not a number"))
        }),
        None => Ok((term, 1.0)),
    }
}

/// `PATH::WEIGHT` or `PATH`, for a path in any OS encoding (not only UTF-8).
fn weighted_path(term: &OsStr) -> Result<(PathBuf, f32)> {
    let bytes = term.as_encoded_bytes();
    let Some(at) = bytes.windows(2).rposition(|pair| pair == b"::") else {
        return Ok((PathBuf::from(term), 1.0));
    };
    let weight = std::str::from_utf8(&bytes[at + 2..])
        .ok()
        .and_then(|w| w.trim().parse().ok())
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "{}: the weight after `::` is not a number",
                Path::new(term).display()
            ))
        })?;
    // SAFETY: the bytes are split right before the ASCII `::`, a boundary
    // that `OsStr::from_encoded_bytes_unchecked` documents as valid.
    let path = unsafe { OsStr::from_encoded_bytes_unchecked(&bytes[..at]) };
    Ok((PathBuf::from(path), weight))
}

fn parse_time(text: &str) -> Result<Timestamp> {
    Timestamp::parse(text).ok_or_else(|| {
        CommandError::Usage(format!(
            "{text:?}: expected a date (2024-05-01) or an RFC 3339 time"
        ))
    })
}

pub fn query(cli: &Cli, args: &QueryArgs, out: &mut Out) -> Result<()> {
    let mut terms = Vec::new();
    if let Some(text) = &args.text {
        terms.push(QueryTerm::Text {
            text: text.clone(),
            weight: 1.0,
        });
    }
    for term in &args.texts {
        let (text, weight) = weighted(term)?;
        terms.push(QueryTerm::Text {
            text: text.to_string(),
            weight,
        });
    }
    for term in &args.images {
        let (path, weight) = weighted_path(term)?;
        terms.push(QueryTerm::Image { path, weight });
    }
    for text in &args.minus {
        terms.push(QueryTerm::Text {
            text: text.clone(),
            weight: -1.0,
        });
    }
    if terms.is_empty() {
        return Err(CommandError::Usage(
            "nothing to search for: give a TEXT, --text or --image".into(),
        ));
    }
    let formats = args
        .format
        .iter()
        .map(|f| {
            ImageFormat::from_name(f)
                .ok_or_else(|| CommandError::Usage(format!("--format {f}: unknown format")))
        })
        .collect::<Result<Vec<_>>>()?;
    let under = match &args.under {
        Some(dir) => Some(
            dir.canonicalize()
                .map_err(|e| CommandError::Usage(format!("--under {}: {e}", dir.display())))?,
        ),
        None => None,
    };
    let filter = Filter {
        under,
        tag: args.tag.clone(),
        formats,
        min_width: args.min_width,
        min_height: args.min_height,
        modified_after: args.after.as_deref().map(parse_time).transpose()?,
        modified_before: args.before.as_deref().map(parse_time).transpose()?,
        ..Filter::default()
    };
    let query = Query {
        terms,
        k: args.k,
        min_score: args.min_score,
        filter,
        ef: args.ef,
    };
    if let Some(daemon) = remote::daemon(cli) {
        return remote::query(&daemon, args, &query, out);
    }
    // A query of texts alone needs no image tower: a one-shot query starts
    // in a fraction of the time.
    let towers = if args.images.is_empty() {
        Towers::Text
    } else {
        Towers::Both
    };
    let encoder = encoder(cli, towers)?;
    let db = open_for(cli, &encoder)?;
    let hits = db.query(&encoder, &query)?;
    let results: Vec<Value> = hits
        .iter()
        .enumerate()
        .map(|(rank, hit)| hit_json(rank + 1, hit))
        .collect();
    print_hits(&results, args, out)
}

/// What `query` prints of its results (`hit_json` objects, which the
/// daemon's API answers too): the objects, their paths, or
/// `RANK  SCORE  PATH` lines, followed for a row imported from a LAION
/// shard by its URL (when the path is not already the URL) and its quoted
/// caption.
/// `  URL  "CAPTION"` of a hit's source (each part only when known, the URL
/// only when it is not the path already); empty without a source.
fn source_text(source: &Value, path: &Path) -> String {
    let mut text = String::new();
    if let Some(url) = source["url"].as_str().filter(|url| Path::new(url) != path) {
        text.push_str("  ");
        text.push_str(url);
    }
    if let Some(caption) = source["caption"].as_str() {
        text.push_str(&format!("  {caption:?}"));
    }
    text
}

pub fn print_hits(results: &[Value], args: &QueryArgs, out: &mut Out) -> Result<()> {
    for result in results {
        if args.json {
            out.json(result)?;
            continue;
        }
        let path = remote::path_of(&result["path"]).ok_or_else(|| unreadable("path"))?;
        if args.paths {
            out.path_line("", &path, "")?;
        } else {
            let rank = result["rank"].as_u64().ok_or_else(|| unreadable("rank"))?;
            // The score is an f32 in JSON: printed as that f32, so that its
            // last digit is the direct query's.
            let score = result["score"]
                .as_f64()
                .ok_or_else(|| unreadable("score"))? as f32;
            out.path_line(
                &format!("{rank:>3}  {score:.4}  "),
                &path,
                &source_text(&result["source"], &path),
            )?;
        }
    }
    Ok(())
}

/// An object to print that lacks a field (an answer of another daemon
/// version, say).
fn unreadable(field: &str) -> CommandError {
    CommandError::Failed {
        messages: vec![format!("a result without a readable `{field}`")],
        code: crate::code_of(ErrorKind::Network),
    }
}

pub fn failures(cli: &Cli, args: &FailuresArgs, out: &mut Out) -> Result<()> {
    let kind = match &args.kind {
        Some(name) => Some(ErrorKind::from_name(name).ok_or_else(|| {
            CommandError::Usage(format!(
                "--kind {name}: expected one of {}",
                ErrorKind::names()
            ))
        })?),
        None => None,
    };
    if let Some(daemon) = remote::daemon(cli) {
        return remote::failures(&daemon, kind, args.json, out);
    }
    let db = open(cli)?;
    let failures: Vec<Value> = db
        .failures()?
        .into_iter()
        .filter(|(_, failure)| kind.is_none_or(|kind| failure.reason.kind == kind))
        .map(|(path, failure)| {
            json!({
                "path": path_json(&path), "kind": failure.reason.kind.name(),
                "message": failure.reason.message, "bytes": failure.byte_size,
                "mtime": timestamp_text(failure.mtime), "at": timestamp_text(failure.at),
            })
        })
        .collect();
    print_failures(&failures, args.json, out)
}

/// What `failures` prints of its objects (`GET /v1/failures` answers the
/// same): the objects, or `PATH: MESSAGE (KIND)` lines.
pub fn print_failures(failures: &[Value], json: bool, out: &mut Out) -> Result<()> {
    for failure in failures {
        if json {
            out.json(failure)?;
            continue;
        }
        let path = remote::path_of(&failure["path"]).ok_or_else(|| unreadable("path"))?;
        let reason = imgdb::FailureReason {
            kind: failure["kind"]
                .as_str()
                .and_then(ErrorKind::from_name)
                .ok_or_else(|| unreadable("kind"))?,
            message: failure["message"]
                .as_str()
                .ok_or_else(|| unreadable("message"))?
                .to_string(),
        };
        out.path_line("", &path, &format!(": {reason}"))?;
    }
    Ok(())
}

/// Figures of the database alone: no model is opened.
pub fn stats(cli: &Cli, json: bool, out: &mut Out) -> Result<()> {
    if let Some(daemon) = remote::daemon(cli) {
        return remote::stats(&daemon, json, out);
    }
    let stats = open(cli)?.stats()?;
    print_stats(&stats_json(&stats), json, out)
}

/// What `stats` prints of its object (`GET /v1/stats` answers the same):
/// the object, or aligned lines.
pub fn print_stats(stats: &Value, json: bool, out: &mut Out) -> Result<()> {
    if json {
        out.json(stats)?;
        return Ok(());
    }
    let field = |name: &str| -> Result<&Value> {
        stats
            .get(name)
            .filter(|v| !v.is_null())
            .ok_or_else(|| unreadable(name))
    };
    let space = imgdb::EmbeddingSpace {
        model_id: field("model")?.as_str().unwrap_or_default().to_string(),
        dim: field("dim")?.as_u64().unwrap_or_default() as u32,
        fingerprint: fingerprint(field("fingerprint")?.as_str().unwrap_or_default())
            .ok_or_else(|| unreadable("fingerprint"))?,
        variant: imgdb::ModelVariant::from_name(field("variant")?.as_str().unwrap_or_default())
            .ok_or_else(|| unreadable("variant"))?,
    };
    out.line(format!("images        {}", field("images")?))?;
    out.line(format!("files         {}", field("files")?))?;
    out.line(format!("failures      {}", field("failures")?))?;
    out.line(format!("model         {space}"))?;
    out.line(format!(
        "index         {} points, {} tombstones, M {}, efConstruction {}",
        field("index_points")?,
        field("tombstones")?,
        field("m")?,
        field("ef_construction")?
    ))?;
    out.line(format!(
        "vectors       {} memory, {} bytes resident",
        field("index_memory")?.as_str().unwrap_or_default(),
        field("resident_vector_bytes")?
    ))?;
    out.line(format!("store         {} bytes", field("store_bytes")?))?;
    out.line(format!("snapshot      {} bytes", field("snapshot_bytes")?))?;
    out.line(format!("format        {}", field("format_version")?))?;
    Ok(())
}

/// A fingerprint from its 64 hexadecimal digits.
fn fingerprint(hex: &str) -> Option<imgdb::Fingerprint> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(imgdb::Fingerprint(bytes))
}

pub fn check(cli: &Cli, json: bool, out: &mut Out) -> Result<()> {
    let db = open(cli)?;
    let report = db.verify()?;
    if json {
        out.json(&json!({
            "records": report.records, "index_points": report.index_points, "tombstones": report.tombstones,
            "problems": report.problems.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>(),
            "clean": report.is_clean(),
        }))?;
    } else {
        for problem in &report.problems {
            out.line(format!("problem: {problem:?}"))?;
        }
        out.line(format!(
            "{} images, {} index points, {} tombstones: {}",
            report.records,
            report.index_points,
            report.tombstones,
            if report.is_clean() {
                "consistent"
            } else {
                "INCONSISTENT"
            }
        ))?;
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(CommandError::Partial)
    }
}

pub fn rm(cli: &Cli, paths: &[PathBuf], out: &mut Out) -> Result<()> {
    // A file that is gone can still be named by its absolute path.
    let paths: Vec<PathBuf> = paths
        .iter()
        .map(|path| {
            path.canonicalize()
                .unwrap_or_else(|_| std::path::absolute(path).unwrap_or(path.clone()))
        })
        .collect();
    if let Some(daemon) = remote::daemon(cli) {
        return remote::rm(&daemon, &paths, out);
    }
    let db = open(cli)?;
    let mut batch = WriteBatch::new();
    let mut missing = false;
    for path in paths {
        let mut found = false;
        if db.get_by_path(&path)?.is_some() {
            batch.push(WriteOp::Unlink { path: path.clone() });
            found = true;
        }
        for (file, _) in db.paths_under(&path)? {
            batch.push(WriteOp::Unlink { path: file });
            found = true;
        }
        if !found {
            eprintln!("not indexed: {}", path.display());
            missing = true;
        }
    }
    let removed = batch.len() as u64;
    db.write(&db.space().clone(), batch)?;
    print_removed(removed, missing, out)
}

/// What `rm` prints; exit 1 when a path was not indexed.
pub fn print_removed(removed: u64, missing: bool, out: &mut Out) -> Result<()> {
    out.line(format!("removed {removed} files"))?;
    if missing {
        Err(CommandError::Partial)
    } else {
        Ok(())
    }
}

pub fn debug(cli: &Cli, command: &DebugCommand, out: &mut Out) -> Result<()> {
    let write_npy = |path: &Path, array: ndarray::Array2<f32>| -> Result<()> {
        let file = std::fs::File::create(path)?;
        ndarray_npy::WriteNpyExt::write_npy(&array, std::io::BufWriter::new(file))
            .map_err(|e| CommandError::Output(std::io::Error::other(e)))
    };
    match command {
        DebugCommand::Preprocess {
            image,
            config,
            out: target,
        } => {
            let preprocessor = match config {
                Some(config) => {
                    let text = std::fs::read_to_string(config)?;
                    let json: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| CommandError::Usage(format!("{}: {e}", config.display())))?;
                    imgdb::Preprocessor::new(imgdb::PreprocessConfig::from_hugging_face(
                        &json, config,
                    )?)
                }
                // The model folder's configuration is all it takes: no
                // runtime, no session.
                None => imgdb::Preprocessor::new(
                    imgdb::ModelFolder::open(&resolve::model_folder(cli.model.as_deref())?)?
                        .preprocess,
                ),
            };
            let prepared = preprocessor.prepare_file(image)?;
            let (w, h) = preprocessor.output_size();
            let tensor =
                ndarray::Array4::from_shape_vec((1, 3, h as usize, w as usize), prepared.pixels)
                    .expect("3 x h x w values");
            let file = std::fs::File::create(target)?;
            ndarray_npy::WriteNpyExt::write_npy(&tensor, std::io::BufWriter::new(file))
                .map_err(|e| CommandError::Output(std::io::Error::other(e)))?;
            out.line(format!(
                "wrote {} (float32 [1, 3, {h}, {w}])",
                target.display()
            ))?;
        }
        DebugCommand::Embed {
            image,
            text,
            out: target,
        } => {
            let towers = if text.is_some() {
                Towers::Text
            } else {
                Towers::Image
            };
            let encoder = encoder(cli, towers)?;
            let vector = match (image, text) {
                (_, Some(text)) => encoder.embed_texts(&[text])?.remove(0),
                (Some(image), None) => encoder.embed_image_file(image)?,
                (None, None) => return Err(CommandError::Usage("give an IMAGE or --text".into())),
            };
            let dim = vector.len();
            write_npy(
                target,
                ndarray::Array2::from_shape_vec((1, dim), vector).expect("one row"),
            )?;
            out.line(format!(
                "wrote {} (float32 [1, {dim}], L2-normalised)",
                target.display()
            ))?;
        }
    }
    Ok(())
}
