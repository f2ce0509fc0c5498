//! The `imgdb` command line end to end, on a temporary copy of the fixtures
//! with the tiny model: ingest, queries, incremental re-ingest, moves,
//! deletions, failures, JSON output, tags, export/import, eval, model pull
//! from a local mock hub, re-indexing and exit codes.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod hub;

use common::copy_dir;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::root;

/// A temporary world: a copy of the shapes, a database folder, a cache.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &root().join("fixtures/eval/shapes"),
            &dir.path().join("photos/shapes"),
        );
        World { dir }
    }

    fn photos(&self) -> PathBuf {
        self.dir.path().join("photos")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// `imgdb --db <db> --model tiny-clip ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&root().join("fixtures/models/tiny-clip"), args)
    }

    fn run_with(&self, model: &Path, args: &[&str]) -> Output {
        let mut command = self.command();
        command.arg("--model").arg(model);
        self.run_command(command, args)
    }

    /// `imgdb --db <db> ARGS` with no `--model`: the pulled default.
    fn run_default(&self, args: &[&str]) -> Output {
        self.run_command(self.command(), args)
    }

    /// `imgdb model pull ARGS` from the hub at `endpoint`, which must
    /// succeed; returns the folder it printed.
    fn pull(&self, endpoint: &str, args: &[&str]) -> PathBuf {
        let mut command = self.command();
        command.env("HF_ENDPOINT", endpoint).args(["model", "pull"]);
        let pull = self.run_command(command, args);
        assert_eq!(pull.status.code(), Some(0), "model pull {args:?}");
        PathBuf::from(String::from_utf8(pull.stdout).unwrap().trim())
    }

    fn run_command(&self, mut command: Command, args: &[&str]) -> Output {
        let output = command.args(args).output().unwrap();
        println!(
            "$ imgdb {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_imgdb"));
        command
            .arg("--db")
            .arg(self.db())
            .env("IMGDB_CACHE", self.dir.path().join("cache"))
            .env_remove("IMGDB_MODEL")
            .env_remove("IMGDB_DB");
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(0), "imgdb {args:?} failed");
        String::from_utf8(output.stdout).unwrap()
    }

    /// The best match of an image query.
    fn top_hit(&self, image: &Path) -> Value {
        self.json_lines(&[
            "query",
            "--image",
            &image.to_string_lossy(),
            "-k",
            "1",
            "--json",
        ])
        .remove(0)
    }

    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        self.ok(args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }
}

fn done_event(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["event"] == "done")
        .expect("a done event")
}

fn paths(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

/// Fields schema/cli.md promises on a query result line.
fn check_hit_fields(hit: &Value) {
    for field in [
        "rank",
        "id",
        "score",
        "path",
        "paths",
        "width",
        "height",
        "format",
        "bytes",
        "mtime",
        "content_hash",
        "tags",
    ] {
        assert!(
            hit.get(field).is_some(),
            "query line lacks `{field}`: {hit}"
        );
    }
    assert!(hit["score"].is_number() && hit["id"].is_u64() && hit["path"].is_string());
}

#[test]
fn ingest_query_and_keep_up_with_the_folder() {
    let world = World::new();
    let photos = world.photos().to_string_lossy().into_owned();

    let first = world.json_lines(&["ingest", &photos, "--json"]);
    let done = done_event(&first);
    assert_eq!(
        (done["found"].as_u64(), done["indexed"].as_u64()),
        (Some(180), Some(180))
    );
    assert!(
        first
            .iter()
            .any(|l| l["event"] == "file" && l["outcome"] == "indexed")
    );

    // Text: red circles first.
    let hits = world.json_lines(&["query", "a red circle", "-k", "8", "--json"]);
    assert_eq!(hits.len(), 8);
    hits.iter().for_each(check_hit_fields);
    for path in paths(&hits) {
        assert!(path.contains("red_circle"), "{path} is not a red circle");
    }
    assert!(
        hits.windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64())
    );

    // Image: the image itself first.
    let probe = world
        .photos()
        .join("shapes/large_blue_square_on_black/0.png");
    let hits = world.json_lines(&[
        "query",
        "--image",
        &probe.to_string_lossy(),
        "-k",
        "3",
        "--json",
    ]);
    assert_eq!(
        hits[0]["path"].as_str().unwrap(),
        probe.canonicalize().unwrap().to_string_lossy()
    );
    assert!(hits[0]["score"].as_f64().unwrap() > 0.999);
    let original_id = hits[0]["id"].as_u64().unwrap();

    // --paths prints paths only, the table ranks and scores.
    let listed = world.ok(&["query", "a green triangle", "-k", "2", "--paths"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.lines().all(|l| Path::new(l).is_file()), "{listed}");
    let table = world.ok(&["query", "a green triangle", "-k", "2"]);
    assert!(
        table.lines().next().unwrap().trim_start().starts_with("1 "),
        "{table}"
    );

    // Re-ingest decodes nothing.
    let again = world.json_lines(&["ingest", &photos, "--json"]);
    let done = done_event(&again);
    assert_eq!(
        (done["indexed"].as_u64(), done["unchanged"].as_u64()),
        (Some(0), Some(180))
    );

    // A moved file keeps its id; a deleted one disappears.
    let moved = world.photos().join("moved.png");
    std::fs::rename(&probe, &moved).unwrap();
    let deleted = world
        .photos()
        .join("shapes/small_red_circle_on_white/0.png");
    std::fs::remove_file(&deleted).unwrap();
    let after = world.json_lines(&["ingest", &photos, "--json"]);
    let done = done_event(&after);
    assert_eq!(
        done["indexed"].as_u64(),
        Some(0),
        "a move must not re-encode"
    );
    assert_eq!(done["linked"].as_u64(), Some(1));
    assert_eq!(
        done["removed"].as_u64(),
        Some(2),
        "the old path and the deleted file"
    );
    let hit = world.top_hit(&moved);
    assert_eq!(hit["id"].as_u64(), Some(original_id));
    assert_eq!(
        hit["path"].as_str().unwrap(),
        moved.canonicalize().unwrap().to_string_lossy()
    );
    let all = world.json_lines(&["query", "a red circle", "-k", "200", "--json"]);
    assert_eq!(all.len(), 179);
    assert!(
        !paths(&all)
            .iter()
            .any(|p| p.ends_with("small_red_circle_on_white/0.png"))
    );

    // A copy is the same image with two paths.
    let copy = world.photos().join("copy.png");
    std::fs::copy(&moved, &copy).unwrap();
    let done = done_event(&world.json_lines(&["ingest", &photos, "--json"])).clone();
    assert_eq!(done["linked"].as_u64(), Some(1));
    let hit = world.top_hit(&copy);
    assert_eq!(hit["id"].as_u64(), Some(original_id));
    assert_eq!(hit["paths"].as_array().unwrap().len(), 2);

    // stats and check.
    let stats = world.json_lines(&["stats", "--json"]);
    assert_eq!(stats[0]["images"].as_u64(), Some(179));
    assert_eq!(stats[0]["model"].as_str(), Some("tiny-clip"));
    // stats opens no model: a model folder that does not exist is not read.
    let no_model = world.run_with(Path::new("/nonexistent/model"), &["stats", "--json"]);
    assert_eq!(no_model.status.code(), Some(0));
    world.ok(&["check"]);

    // rm removes from the database, not from the disk.
    world.ok(&["rm", &copy.to_string_lossy()]);
    assert!(copy.exists());
    let hit = world.top_hit(&moved);
    assert_eq!(hit["paths"].as_array().unwrap().len(), 1);
    let unknown = world.run(&["rm", "/nowhere/at/all.png"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not indexed: /nowhere/at/all.png"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn a_corrupt_file_is_listed_and_the_rest_is_searchable() {
    let world = World::new();
    let bad = world.photos().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 this is not a JPEG").unwrap();
    let truncated = world.photos().join("truncated.png");
    let png = std::fs::read(
        world
            .photos()
            .join("shapes/large_red_circle_on_black/0.png"),
    )
    .unwrap();
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();

    let output = world.run(&["ingest", &world.photos().to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1), "partial success");
    let failures = world.json_lines(&["failures", "--json"]);
    let failed: Vec<&str> = failures
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().any(|p| p.ends_with("broken.jpg"))
            && failed.iter().any(|p| p.ends_with("truncated.png"))
    );
    for failure in &failures {
        // Said once: a kind, and a message that does not repeat the path.
        let message = failure["message"].as_str().unwrap();
        let name = Path::new(failure["path"].as_str().unwrap())
            .file_name()
            .unwrap();
        assert!(
            message.starts_with("cannot decode") && !message.contains(&*name.to_string_lossy()),
            "{failure}"
        );
        assert_eq!(failure["kind"].as_str(), Some("corrupt"), "{failure}");
    }
    assert_eq!(
        world
            .json_lines(&["failures", "--kind", "corrupt", "--json"])
            .len(),
        2
    );
    assert!(
        world
            .json_lines(&["failures", "--kind", "unsupported", "--json"])
            .is_empty()
    );
    let listed = world.run(&["failures"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    let line = listed
        .lines()
        .find(|l| l.contains("truncated.png"))
        .unwrap();
    assert_eq!(line.matches("truncated.png").count(), 1, "{line}");
    assert!(line.ends_with("(corrupt)"), "{line}");
    let bad_kind = world.run(&["failures", "--kind", "odd"]);
    assert_eq!(bad_kind.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_kind.stderr).contains("unsupported, too_large"));
    let hits = world.json_lines(&["query", "a yellow square", "-k", "3", "--json"]);
    assert_eq!(hits.len(), 3);
    assert!(paths(&hits).iter().all(|p| p.contains("yellow_square")));

    // Unchanged failures are not retried; a fixed file is indexed.
    let again = world.json_lines(&["ingest", &world.photos().to_string_lossy(), "--json"]);
    let done = done_event(&again);
    assert_eq!(
        (done["failed"].as_u64(), done["indexed"].as_u64()),
        (Some(0), Some(0))
    );
    std::fs::write(&truncated, &png).unwrap();
    let fixed = world.json_lines(&["ingest", &world.photos().to_string_lossy(), "--json"]);
    assert_eq!(
        done_event(&fixed)["linked"].as_u64(),
        Some(1),
        "same bytes as an indexed file"
    );
    assert_eq!(world.json_lines(&["failures", "--json"]).len(), 1);
}

#[test]
fn tags_filter_queries() {
    let world = World::new();
    world.ok(&["ingest", &world.photos().to_string_lossy()]);
    let labels = world.dir.path().join("labels.txt");
    let mut text = String::new();
    for colour in ["red", "green", "blue", "yellow", "purple"] {
        for shape in ["circle", "square", "triangle"] {
            text.push_str(&format!("{colour} {shape}\n"));
        }
    }
    std::fs::write(&labels, text).unwrap();
    world.ok(&[
        "tag",
        "--labels",
        &labels.to_string_lossy(),
        "--template",
        "a {}",
    ]);
    let hits = world.json_lines(&[
        "query",
        "a shape",
        "--tag",
        "red circle",
        "-k",
        "50",
        "--json",
    ]);
    assert!(hits.len() >= 10, "only {} red circles tagged", hits.len());
    for hit in &hits {
        assert!(
            hit["path"].as_str().unwrap().contains("red_circle"),
            "{}",
            hit["path"]
        );
        assert_eq!(hit["tags"][0]["label"], "red circle");
    }
    // Other filters: format and folder.
    let pngs = world.json_lines(&["query", "a shape", "--format", "png", "-k", "200", "--json"]);
    assert_eq!(pngs.len(), 90);
    assert!(pngs.iter().all(|h| h["format"] == "png"));
    let under = world.photos().join("shapes/large_green_triangle_on_gray");
    let inside = world.json_lines(&[
        "query",
        "a circle",
        "--under",
        &under.to_string_lossy(),
        "--json",
    ]);
    assert_eq!(inside.len(), 2);

    let ranked = world.json_lines(&[
        "classify",
        &world
            .photos()
            .join("shapes/small_purple_square_on_white/0.png")
            .to_string_lossy(),
        "--labels",
        &labels.to_string_lossy(),
        "--template",
        "a {}",
        "--json",
    ]);
    assert_eq!(ranked[0]["label"], "purple square");
}

/// LAION shards (no manifest: `--model` names their space) import, and a
/// query shows each hit's URL and caption, as text and as JSON.
#[test]
fn imported_laion_rows_are_shown_with_url_and_caption() {
    let world = World::new();
    let shards = root().join("fixtures/laion");
    let imported = world.ok(&["import", &shards.to_string_lossy()]);
    assert_eq!(imported.trim(), "imported 6 images");
    let text = world.ok(&["query", "a red circle", "-k", "1"]);
    assert!(
        text.contains("https://example.com/laion/red-circle.jpg")
            && text.contains("\"a large red circle on white\""),
        "{text}"
    );
    let hits = world.json_lines(&["query", "a green triangle", "-k", "6", "--json"]);
    let triangle = hits
        .iter()
        .find(|hit| hit["path"] == "000000001")
        .unwrap_or_else(|| panic!("{hits:?}"));
    assert_eq!(
        triangle["source"],
        serde_json::json!({"url": null, "caption": "a small green triangle", "key": "000000001"})
    );
    let refused = world.run(&[
        "import",
        &root().join("fixtures/laion-dim32").to_string_lossy(),
    ]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("dimension 32"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn export_then_import_gives_the_same_answers() {
    let world = World::new();
    world.ok(&["ingest", &world.photos().to_string_lossy()]);
    let export = world.dir.path().join("export");
    world.ok(&["export", &export.to_string_lossy()]);
    assert!(
        export.join("img_emb/img_emb_0.npy").is_file()
            && export.join("metadata/metadata_0.parquet").is_file()
    );

    let other = World {
        dir: tempfile::tempdir().unwrap(),
    };
    other.ok(&["import", &export.to_string_lossy()]);
    for text in [
        "a red circle",
        "a large blue square on black",
        "a purple shape on gray",
    ] {
        let a = world.json_lines(&["query", text, "-k", "10", "--json"]);
        let b = other.json_lines(&["query", text, "-k", "10", "--json"]);
        assert_eq!(paths(&a), paths(&b), "{text}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs() < 1e-6);
        }
    }
    // Another model's export is refused.
    let micro = micro_model(&world);
    let refused = other.run_with(&micro, &["import", &export.to_string_lossy()]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("tiny-clip") && message.contains("micro"),
        "{message}"
    );
}

#[test]
fn eval_reproduces_the_tiny_models_figures() {
    let world = World::new();
    let report = world.json_lines(&[
        "eval",
        &root().join("fixtures/eval/shapes").to_string_lossy(),
        "--template",
        "a {}",
        "--json",
    ]);
    // The figures fixtures/eval/README.md records: recall@1 1.0000 (90/90)
    // and zero-shot accuracy 0.9500 (171/180).
    assert_eq!(report[0]["classes"].as_u64(), Some(90));
    assert_eq!(report[0]["text_to_image"]["recall@1"].as_f64(), Some(1.0));
    assert_eq!(report[0]["text_to_image"]["recall@5"].as_f64(), Some(1.0));
    let zero_shot = report[0]["zero_shot_accuracy"].as_f64().unwrap();
    assert_eq!((zero_shot * 180.0).round(), 171.0, "zero-shot {zero_shot}");
    let table = world.ok(&[
        "eval",
        &root().join("fixtures/eval/shapes").to_string_lossy(),
        "--template",
        "a {}",
    ]);
    assert!(
        table.contains("recall@1") && table.contains("zero-shot accuracy"),
        "{table}"
    );
}

/// The dim-32 micro model with the tiny model's tokenizer.
fn micro_model(world: &World) -> PathBuf {
    common::micro_model(world.dir.path())
}

#[test]
fn a_model_change_is_refused_until_reindex() {
    let world = World::new();
    world.ok(&["ingest", &world.photos().to_string_lossy()]);
    let micro = micro_model(&world);
    let refused = world.run_with(&micro, &["query", "a red circle"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("tiny-clip") && message.contains("micro") && message.contains("reindex"),
        "{message}"
    );

    let reindexed = world.run_with(&micro, &["reindex"]);
    assert_eq!(reindexed.status.code(), Some(0));
    let stats = world.run_with(&micro, &["stats", "--json"]);
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        (stats["images"].as_u64(), stats["dim"].as_u64()),
        (Some(180), Some(32))
    );
    assert_eq!(
        world
            .run_with(&micro, &["query", "a red circle"])
            .status
            .code(),
        Some(0)
    );
    let old_model = world.run(&["query", "a red circle"]);
    assert_eq!(old_model.status.code(), Some(2));
    let message = String::from_utf8_lossy(&old_model.stderr);
    assert!(
        message.contains("tiny-clip") && message.contains("micro"),
        "{message}"
    );
    assert_eq!(world.run_with(&micro, &["check"]).status.code(), Some(0));
}

#[test]
fn model_pull_fetches_from_the_hub_and_becomes_the_default() {
    let world = World::new();
    let hub = hub::serve(root().join("fixtures/models/tiny-clip"), None);
    let folder = world.pull(&hub.endpoint, &[]);
    assert!(
        folder.join("onnx/vision_model.onnx").exists(),
        "{}",
        folder.display()
    );
    // No --model: the pulled default is used.
    let photos = world.photos().to_string_lossy().into_owned();
    assert_eq!(
        world.run_default(&["ingest", &photos]).status.code(),
        Some(0)
    );
    let query = world.run_default(&["query", "a red circle", "-k", "3", "--paths"]);
    let listed = String::from_utf8_lossy(&query.stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.lines().all(|p| p.contains("red_circle")), "{listed}");

    // A file that does not match its checksum is refused and deleted.
    let bad_hub = hub::serve(
        root().join("fixtures/models/tiny-clip"),
        Some("onnx/text_model.onnx"),
    );
    let bad = world
        .command()
        .args(["model", "pull", "someone/broken-clip"])
        .env("HF_ENDPOINT", &bad_hub.endpoint)
        .output()
        .unwrap();
    // A download that does not match its checksum is damaged data: exit 4.
    assert_eq!(bad.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("checksum"));
}

/// `model pull --variant int8` fetches that variant's towers and not the
/// fp32 ones; the pulled folder then runs only with `--model-variant int8`,
/// and its database says so.
#[test]
fn model_pull_fetches_one_variant() {
    let world = World::new();
    let hub = hub::serve(root().join("fixtures/models/tiny-clip"), None);
    let folder = world.pull(&hub.endpoint, &["--variant", "int8"]);
    assert!(folder.join("onnx/vision_model_int8.onnx").exists());
    assert!(folder.join("onnx/text_model_int8.onnx").exists());
    assert!(!folder.join("onnx/vision_model.onnx").exists());

    // Without its fp32 towers the folder runs only as int8 (exit 5: the
    // model is unusable as asked).
    let photos = world.photos().to_string_lossy().into_owned();
    assert_eq!(
        world.run_default(&["ingest", &photos]).status.code(),
        Some(5)
    );
    let int8 = world.run_default(&["--model-variant", "int8", "ingest", &photos]);
    assert_eq!(int8.status.code(), Some(0));
    let stats = world.run_default(&["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["variant"], "int8");
    assert_eq!(stats["images"], 180);

    let auto = world.run_default(&["model", "pull", "--variant", "auto"]);
    assert_eq!(auto.status.code(), Some(2));
}

/// A database of fp32 vectors refuses an int8 encoder, says how to go on,
/// and takes it with `--accept-variant`.
#[test]
fn another_variant_is_refused_unless_accepted() {
    let world = World::new();
    let photos = world.photos().to_string_lossy().into_owned();
    assert_eq!(world.run(&["ingest", &photos]).status.code(), Some(0));

    let refused = world.run(&["--model-variant", "int8", "query", "a red circle"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("fp32") && message.contains("int8"),
        "{message}"
    );
    assert!(message.contains("--accept-variant"), "{message}");

    let accepted = world.run(&[
        "--model-variant",
        "int8",
        "--accept-variant",
        "query",
        "a red circle",
        "-k",
        "3",
        "--paths",
    ]);
    assert_eq!(accepted.status.code(), Some(0));
    let listed = String::from_utf8_lossy(&accepted.stdout);
    assert!(listed.lines().all(|p| p.contains("red_circle")), "{listed}");

    // auto is int8 on the CPU for this folder: refused the same way.
    let auto = world.run(&["--model-variant", "auto", "query", "a red circle"]);
    assert_eq!(auto.status.code(), Some(2));
    let bad = world.run(&["--model-variant", "int4", "query", "a red circle"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fp32, fp16, int8"));

    // reindex converts the database to the variant that runs.
    assert_eq!(
        world
            .run(&["--model-variant", "int8", "reindex"])
            .status
            .code(),
        Some(0)
    );
    let stats = world.run(&["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["variant"], "int8");
    assert_eq!(
        world
            .run(&["--model-variant", "int8", "query", "a red circle"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(world.run(&["query", "a red circle"]).status.code(), Some(2));
}

#[test]
fn usage_errors_and_closed_pipes() {
    let world = World::new();
    let no_model = world.command().args(["query", "a dog"]).output().unwrap();
    assert_eq!(no_model.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_model.stderr).contains("imgdb model pull"));

    let no_db = world.run(&["query", "a dog"]);
    assert_eq!(no_db.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_db.stderr).contains("no imgdb database"));

    world.ok(&["ingest", &world.photos().to_string_lossy()]);
    // A reader that stops after one line: success, not an error.
    let mut child = world
        .command()
        .arg("--model")
        .arg(root().join("fixtures/models/tiny-clip"))
        .args(["query", "a shape", "-k", "180"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bad_weight = world.run(&["query", "--text", "a dog::heavy"]);
    assert_eq!(bad_weight.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad_weight.stderr).contains("heavy"),
        "{}",
        String::from_utf8_lossy(&bad_weight.stderr)
    );
    let bad_device = world.run(&["--device", "tpu", "query", "a dog"]);
    assert_eq!(bad_device.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_device.stderr).contains("cpu, cuda, tensorrt or auto"));
}

#[test]
fn exit_codes_follow_the_error_kind() {
    let world = World::new();
    world.ok(&["ingest", &world.photos().to_string_lossy()]);
    {
        // Held open by this process: another one is told to come back later.
        let _held = imgdb::Db::open(world.db()).unwrap();
        let busy = world.run(&["stats"]);
        assert_eq!(busy.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));
    }
    // A damaged format marker: damaged data.
    let marker = world.db().join("imgdb.format");
    let mut bytes = std::fs::read(&marker).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&marker, bytes).unwrap();
    let damaged = world.run(&["stats"]);
    assert_eq!(damaged.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&damaged.stderr).contains("imgdb.format"),
        "{}",
        String::from_utf8_lossy(&damaged.stderr)
    );
    // A model folder that is not one: the model is unusable.
    let not_a_model = world.dir.path().join("not-a-model");
    std::fs::create_dir_all(&not_a_model).unwrap();
    let refused = world.run_with(&not_a_model, &["query", "a dog"]);
    assert_eq!(refused.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a model folder"));
}

#[test]
fn near_duplicates_are_grouped() {
    let world = World::new();
    let source = world
        .photos()
        .join("shapes/large_yellow_triangle_on_black/0.png");
    let near = world.photos().join("near.jpg");
    image::open(&source).unwrap().to_rgb8().save(&near).unwrap();
    world.ok(&["ingest", &world.photos().to_string_lossy()]);
    let groups = world.json_lines(&["dupes", "--threshold", "0.99", "--json"]);
    let group = groups
        .iter()
        .find(|g| {
            g["paths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().unwrap().ends_with("near.jpg"))
        })
        .expect("the re-encoded copy is in a group");
    assert!(group["paths"].as_array().unwrap().iter().any(|p| {
        p.as_str()
            .unwrap()
            .ends_with("large_yellow_triangle_on_black/0.png")
    }));
}

#[test]
fn debug_commands_write_what_the_reference_pipelines_give() {
    let world = World::new();
    let parity = root().join("fixtures/parity");
    let tensor = world.dir.path().join("input.npy");
    world.ok(&[
        "debug",
        "preprocess",
        &root()
            .join("fixtures/photos/astronaut.jpg")
            .to_string_lossy(),
        "--out",
        &tensor.to_string_lossy(),
    ]);
    let input: ndarray::Array4<f32> = ndarray_npy::read_npy(&tensor).unwrap();
    let reference: ndarray::Array4<f32> =
        ndarray_npy::read_npy(parity.join("tensors/photo_astronaut.npy")).unwrap();
    assert_eq!(input.shape(), reference.shape());
    // tests/preprocess_parity.rs's bound: 2/255 before normalisation.
    let max = input
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max <= 2.0 / 255.0 / 0.26,
        "preprocess: max difference {max}"
    );

    let vector = world.dir.path().join("vector.npy");
    let embeddings: Value =
        serde_json::from_str(&std::fs::read_to_string(parity.join("embeddings.json")).unwrap())
            .unwrap();
    let text = &embeddings["texts"][0];
    world.ok(&[
        "debug",
        "embed",
        "--text",
        text["text"].as_str().unwrap(),
        "--out",
        &vector.to_string_lossy(),
    ]);
    let ours: ndarray::Array2<f32> = ndarray_npy::read_npy(&vector).unwrap();
    assert_eq!(ours.shape(), &[1, 64]);
    assert!((ours.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    let theirs: Vec<f32> = text["text_embeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let norm = theirs.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cosine = ours.iter().zip(&theirs).map(|(a, b)| a * b).sum::<f32>() / norm;
    // tests/encoder.rs's bound against the same references.
    assert!(cosine >= 0.99999, "embed: cosine {cosine} to the reference");
}

#[test]
fn check_names_damage_and_exits_1() {
    let world = World::new();
    // check opens no model: a database the library made will do.
    let space = common::space(16);
    let db = imgdb::Db::open_or_create(world.db(), space.clone()).unwrap();
    db.insert(&space, (0..20).map(|n| common::image(n, 16)).collect())
        .unwrap();
    drop(db);
    let clean = world.ok(&["check"]);
    assert_eq!(
        clean.lines().collect::<Vec<_>>(),
        ["20 images, 20 index points, 0 tombstones: consistent"]
    );

    let lost = common::image(4, 16).path;
    common::damage_store(&world.db(), |store| {
        let removed = store
            .open_tree("paths")
            .unwrap()
            .remove(lost.to_str().unwrap().as_bytes())
            .unwrap();
        assert!(removed.is_some(), "no path entry for {}", lost.display());
    });
    let damaged = world.run(&["check"]);
    assert_eq!(damaged.status.code(), Some(1));
    let stdout = String::from_utf8(damaged.stdout).unwrap();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("problem: PathNotMapped {{ path: {lost:?}, id: ImageId(5) }}").as_str(),
            "20 images, 20 index points, 0 tombstones: INCONSISTENT"
        ]
    );
    let report = world.run(&["check", "--json"]);
    assert_eq!(report.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 1);
}

#[test]
fn ctrl_c_stops_an_ingest_cleanly_and_the_next_run_resumes() {
    let world = World::new();
    // 600 images of distinct content: far more than one store batch.
    let many = world.photos().join("many");
    std::fs::create_dir_all(&many).unwrap();
    for n in 0..600u32 {
        let pixel = image::Rgb([(n % 256) as u8, (n / 256) as u8 * 60, 128]);
        image::RgbImage::from_pixel(8, 8, pixel)
            .save(many.join(format!("{n:03}.png")))
            .unwrap();
    }
    let mut child = world
        .command()
        .arg("--model")
        .arg(root().join("fixtures/models/tiny-clip"))
        .args(["ingest", &many.to_string_lossy(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Interrupted once the first batch is written (as a user's Ctrl-C).
    let first = lines
        .by_ref()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
        .find(|event| event["event"] == "file")
        .expect("a file event");
    assert_eq!(first["outcome"], "indexed", "{first}");
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopping: finishing the current batch"),
        "{stderr}"
    );
    let done = done_event(&rest);
    assert_eq!(done["cancelled"], true, "{done}");
    let indexed = done["indexed"].as_u64().unwrap();
    assert!((1..600).contains(&indexed), "{done}");

    // What was written stays, and a second run indexes exactly the rest.
    let stats = world.json_lines(&["stats", "--json"]);
    assert_eq!(stats[0]["images"].as_u64(), Some(indexed));
    let resumed = world.json_lines(&["ingest", &many.to_string_lossy(), "--json"]);
    let resumed = done_event(&resumed);
    assert_eq!(
        (resumed["indexed"].as_u64(), resumed["unchanged"].as_u64()),
        (Some(600 - indexed), Some(indexed)),
        "{resumed}"
    );
}
