//! The HTTP API in process: the router of `imgdb_daemon::api` driven with
//! `tower::ServiceExt::oneshot` on a database of the shipped photos,
//! indexed with the shipped tiny model. Every endpoint, its JSON shapes
//! and its errors (`/work/api-contract.md`, `schema/api/openapi.yaml`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use imgdb::ingest::{FileEvent, IngestOptions};
use imgdb::{Db, Encoder, EncoderOptions, ImageId};
use imgdb_daemon::Config;
use imgdb_daemon::state::{AppState, Progress, RootState, Status};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

const PHOTOS: [&str; 6] = [
    "astronaut.jpg",
    "chelsea.png",
    "china.jpg",
    "coffee.jpg",
    "flower.jpg",
    "rocket.jpg",
];

const IMAGE_KEYS: [&str; 10] = [
    "bytes",
    "content_hash",
    "format",
    "height",
    "id",
    "mtime",
    "path",
    "paths",
    "tags",
    "width",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn encoder() -> Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER
        .get_or_init(|| {
            Encoder::load(
                repo().join("fixtures/models/tiny-clip"),
                &EncoderOptions::default(),
            )
            .unwrap()
        })
        .clone()
}

/// A database of a copy of `fixtures/photos` plus one broken file (a
/// recorded failure), the root watched, and the router on it.
struct Fixture {
    dir: TempDir,
    photos: PathBuf,
    state: AppState,
    wake: crossbeam_channel::Receiver<()>,
    app: Router,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(Config::default())
    }

    fn with(config: Config) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        std::fs::create_dir(&photos).unwrap();
        for name in PHOTOS {
            std::fs::copy(repo().join("fixtures/photos").join(name), photos.join(name)).unwrap();
        }
        std::fs::write(photos.join("broken.jpg"), b"this is not a JPEG").unwrap();
        let photos = photos.canonicalize().unwrap();
        let encoder = encoder();
        let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
        let report = db
            .ingest(
                &encoder,
                std::slice::from_ref(&photos),
                &IngestOptions::default(),
                &mut (),
            )
            .unwrap();
        assert_eq!(report.indexed, PHOTOS.len() as u64);
        // The daemon's roots are the database's (status only shows them).
        db.watch_root(&photos, 0).unwrap();
        let status = Arc::new(Status::default());
        status
            .lock()
            .roots
            .insert(photos.clone(), RootState::Watching);
        let (progress, _) = tokio::sync::broadcast::channel(16);
        let (wake_tx, wake) = crossbeam_channel::bounded(1);
        let state = AppState {
            db,
            encoder,
            config: Arc::new(config),
            status,
            progress,
            wake: wake_tx,
            thumbnails: dir.path().join("thumbnails"),
            started: Instant::now(),
            stopping: tokio::sync::watch::channel(false).1,
        };
        let app = imgdb_daemon::api::router(state.clone());
        Fixture {
            dir,
            photos,
            state,
            wake,
            app,
        }
    }

    fn id(&self, name: &str) -> u64 {
        self.state
            .db
            .get_by_path(&self.photos.join(name))
            .unwrap()
            .unwrap()
            .id
            .0
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    async fn json(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (status, headers, bytes) = self.send(request).await;
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.json(get(uri)).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.json(json_request(Method::POST, uri, &body)).await
    }

    async fn query(&self, body: Value) -> (StatusCode, Value) {
        self.post("/v1/query", body).await
    }

    /// The results of a query that must succeed.
    async fn results(&self, body: Value) -> Vec<Value> {
        let (status, value) = self.query(body).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        assert_eq!(keys(&value), ["results"]);
        value["results"].as_array().unwrap().clone()
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn json_request(method: Method, uri: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn raw_request(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post(uri);
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(body.into()).unwrap()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn result_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = IMAGE_KEYS.to_vec();
    keys.extend(["rank", "score"]);
    keys.sort_unstable();
    keys
}

fn file_name(result: &Value) -> &str {
    Path::new(result["path"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
}

fn ids(results: &[Value]) -> Vec<u64> {
    results.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

fn ranks(results: &[Value]) -> Vec<u64> {
    results
        .iter()
        .map(|r| r["rank"].as_u64().unwrap())
        .collect()
}

/// Asserts the error shape, status and kind exactly.
#[track_caller]
fn assert_error(got: (StatusCode, Value), status: StatusCode, kind: &str) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(keys(&body), ["error"], "{body}");
    assert_eq!(keys(&body["error"]), ["kind", "message"], "{body}");
    assert_eq!(body["error"]["kind"], kind, "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().is_empty(),
        "{body}"
    );
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "imgdb-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(filename) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn coffee_bytes() -> Vec<u8> {
    std::fs::read(repo().join("fixtures/photos/coffee.jpg")).unwrap()
}

#[tokio::test]
async fn healthz_answers_ok() {
    let fixture = Fixture::new();
    assert_eq!(
        fixture.get("/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn a_text_query_returns_every_photo_ranked_with_the_cli_fields() {
    let fixture = Fixture::new();
    let results = fixture.results(json!({"text": "a cup of coffee"})).await;
    assert_eq!(results.len(), PHOTOS.len(), "k defaults to 10, 6 photos");
    assert_eq!(ranks(&results), [1, 2, 3, 4, 5, 6]);
    for result in &results {
        assert_eq!(keys(result), result_keys(), "{result}");
    }
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let names: BTreeSet<&str> = results.iter().map(file_name).collect();
    assert_eq!(names, PHOTOS.into_iter().collect());
    // The same JSON as the CLI's `--json` (`imgdb_daemon::json::hit_json`).
    let first = &results[0];
    let record = fixture
        .state
        .db
        .get(ImageId(first["id"].as_u64().unwrap()))
        .unwrap()
        .unwrap();
    let mut expected = imgdb_daemon::json::image_json(&record);
    expected["rank"] = json!(1);
    expected["score"] = first["score"].clone();
    assert_eq!(first, &expected);
    assert_eq!(first["paths"], json!([first["path"]]));

    let results = fixture.results(json!({"text": "a cat", "k": 2})).await;
    assert_eq!(ranks(&results), [1, 2]);
}

#[tokio::test]
async fn an_uploaded_photo_finds_itself_first() {
    let fixture = Fixture::new();
    let coffee = fixture.id("coffee.jpg");
    // As multipart, with a query part.
    let (content_type, body) = multipart(&[
        ("image", Some("coffee.jpg"), &coffee_bytes()),
        ("query", None, br#"{"k": 3}"#),
    ]);
    let (status, value) = fixture
        .json(raw_request("/v1/query", Some(&content_type), body))
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let results = value["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["id"], coffee);
    assert_eq!(file_name(&results[0]), "coffee.jpg");
    assert!(results[0]["score"].as_f64().unwrap() > 0.99, "{value}");
    // As multipart, the image alone.
    let (content_type, body) = multipart(&[("image", Some("coffee.jpg"), &coffee_bytes())]);
    let (status, value) = fixture
        .json(raw_request("/v1/query", Some(&content_type), body))
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["results"].as_array().unwrap().len(), PHOTOS.len());
    assert_eq!(value["results"][0]["id"], coffee);
    // As base64 in JSON, and as a weighted term.
    let results = fixture
        .results(json!({"image_base64": base64(&coffee_bytes()), "k": 2}))
        .await;
    assert_eq!(ids(&results)[0], coffee);
    assert!(results[0]["score"].as_f64().unwrap() > 0.99);
    let results = fixture
        .results(json!({"terms": [
            {"image_base64": base64(&coffee_bytes()), "weight": 1.0},
            {"text": "snow", "weight": 0.1},
        ], "negative": ["grass"], "k": 1}))
        .await;
    assert_eq!(ids(&results), [coffee]);
}

#[tokio::test]
async fn an_indexed_image_finds_itself_first() {
    let fixture = Fixture::new();
    let rocket = fixture.id("rocket.jpg");
    let results = fixture.results(json!({"image_id": rocket, "k": 3})).await;
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["id"], rocket);
    assert!(results[0]["score"].as_f64().unwrap() > 0.999);
    let (status, value) = fixture
        .get(&format!("/v1/images/{rocket}/similar?k=3"))
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["results"], json!(results));
    let (status, value) = fixture
        .get(&format!("/v1/images/{rocket}/similar?k=2&offset=1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let page = value["results"].as_array().unwrap();
    assert_eq!(ids(page), ids(&results[1..3]));
    assert_eq!(ranks(page), [2, 3]);
}

#[tokio::test]
async fn filters_restrict_the_results() {
    let fixture = Fixture::new();
    let query = |filter: Value| json!({"text": "a photo", "k": 10, "filter": filter});
    let names = |results: &[Value]| -> BTreeSet<String> {
        results.iter().map(|r| file_name(r).to_string()).collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };

    let results = fixture.results(query(json!({"formats": ["png"]}))).await;
    assert_eq!(names(&results), set(&["chelsea.png"]));
    let results = fixture.results(query(json!({"formats": ["jpeg"]}))).await;
    assert_eq!(results.len(), 5);
    let results = fixture.results(query(json!({"max_bytes": 20000}))).await;
    assert_eq!(names(&results), set(&["flower.jpg", "rocket.jpg"]));
    let results = fixture.results(query(json!({"min_bytes": 70000}))).await;
    assert_eq!(names(&results), set(&["chelsea.png"]));
    let results = fixture
        .results(query(json!({"under": fixture.photos.to_str().unwrap()})))
        .await;
    assert_eq!(results.len(), PHOTOS.len());
    let elsewhere = fixture.dir.path().join("elsewhere");
    let results = fixture
        .results(query(json!({"under": elsewhere.to_str().unwrap()})))
        .await;
    assert_eq!(results.len(), 0);
    let results = fixture
        .results(query(json!({"modified_after": "2200-01-01T00:00:00Z"})))
        .await;
    assert_eq!(results.len(), 0);
    let results = fixture
        .results(query(json!({"modified_before": "2200-01-01"})))
        .await;
    assert_eq!(results.len(), PHOTOS.len());
    // The widest photo alone passes a min_width of its width.
    let records: Vec<_> = fixture.state.db.records().map(Result::unwrap).collect();
    let widest = records.iter().max_by_key(|r| r.width).unwrap();
    let expected: BTreeSet<String> = records
        .iter()
        .filter(|r| r.width >= widest.width)
        .map(|r| r.path().file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let results = fixture
        .results(query(json!({"min_width": widest.width})))
        .await;
    assert_eq!(names(&results), expected);
    // A tag set through the API.
    let flower = fixture.id("flower.jpg");
    let (status, _) = fixture
        .json(json_request(
            Method::PUT,
            &format!("/v1/images/{flower}/tags"),
            &json!({"tags": [{"label": "petals"}]}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let results = fixture.results(query(json!({"tag": "petals"}))).await;
    assert_eq!(ids(&results), [flower]);

    assert_error(
        fixture.query(query(json!({"formats": ["jpeg2000"]}))).await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    assert_error(
        fixture
            .query(query(json!({"modified_after": "yesterday"})))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    assert_error(
        fixture
            .query(query(json!({"under": "relative/folder"})))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
}

#[tokio::test]
async fn offset_pages_continue_the_first_page() {
    let fixture = Fixture::new();
    let all = fixture.results(json!({"text": "a dog", "k": 6})).await;
    assert_eq!(ranks(&all), [1, 2, 3, 4, 5, 6]);
    let first = fixture.results(json!({"text": "a dog", "k": 2})).await;
    let second = fixture
        .results(json!({"text": "a dog", "k": 2, "offset": 2}))
        .await;
    assert_eq!(ids(&first), ids(&all[0..2]));
    assert_eq!(ids(&second), ids(&all[2..4]));
    assert_eq!(ranks(&second), [3, 4]);
    assert_eq!(second, all[2..4].to_vec());
    let last = fixture
        .results(json!({"text": "a dog", "k": 4, "offset": 5}))
        .await;
    assert_eq!(ids(&last), ids(&all[5..6]));
    assert_eq!(ranks(&last), [6]);
    let beyond = fixture
        .results(json!({"text": "a dog", "k": 4, "offset": 6}))
        .await;
    assert_eq!(beyond.len(), 0);
}

#[tokio::test]
async fn malformed_queries_are_invalid_input() {
    let fixture = Fixture::new();
    let bad = [
        json!({}),
        json!({"text": 5}),
        json!({"text": "a", "k": 0}),
        json!({"text": "a", "k": 1001}),
        json!({"text": "a", "k": -1}),
        json!({"text": "a", "offset": 10001}),
        json!({"text": "a", "ef": 0}),
        json!({"text": "a", "unknown": 1}),
        json!({"terms": [{"text": "a", "image_id": 1}]}),
        json!({"terms": [{"weight": 1.0}]}),
        json!({"image_base64": "not base64!"}),
        json!({"text": "a", "filter": {"min_width": "wide"}}),
        json!([1, 2, 3]),
    ];
    for body in bad {
        assert_error(
            fixture.query(body.clone()).await,
            StatusCode::BAD_REQUEST,
            "invalid_input",
        );
    }
    let (status, value) = fixture
        .json(raw_request(
            "/v1/query",
            Some("application/json"),
            "{\"text\": ",
        ))
        .await;
    assert_error((status, value), StatusCode::BAD_REQUEST, "invalid_input");
    // Too deep: rejected before serde parses it.
    let deep = format!(
        "{{\"negative\": {}\"x\"{}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let (status, value) = fixture
        .json(raw_request("/v1/query", Some("application/json"), deep))
        .await;
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 32"),
        "{value}"
    );
    assert_error((status, value), StatusCode::BAD_REQUEST, "invalid_input");
    // No content type, or another one.
    let body = json!({"text": "a"}).to_string();
    assert_error(
        fixture
            .json(raw_request("/v1/query", None, body.clone()))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported",
    );
    assert_error(
        fixture
            .json(raw_request("/v1/query", Some("text/plain"), body))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported",
    );
    // Multipart without an image, or with an unknown part.
    let (content_type, body) = multipart(&[("query", None, br#"{"k": 3}"#)]);
    assert_error(
        fixture
            .json(raw_request("/v1/query", Some(&content_type), body))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    let (content_type, body) = multipart(&[
        ("image", Some("coffee.jpg"), &coffee_bytes()),
        ("other", None, b"x"),
    ]);
    assert_error(
        fixture
            .json(raw_request("/v1/query", Some(&content_type), body))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let mut config = Config::default();
    config.limits.max_body_bytes = 4096;
    let fixture = Fixture::with(config);
    let big = json!({"text": "a".repeat(8192)});
    assert_error(
        fixture.query(big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let (content_type, body) = multipart(&[("image", Some("coffee.jpg"), &coffee_bytes())]);
    assert_error(
        fixture
            .json(raw_request("/v1/query", Some(&content_type), body))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let paths: Vec<String> = (0..500).map(|i| format!("/photos/{i}.jpg")).collect();
    assert_error(
        fixture.post("/v1/ingest", json!({"paths": paths})).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Under the limit, the same routes answer.
    assert_eq!(fixture.results(json!({"text": "a"})).await.len(), 6);
}

#[tokio::test]
async fn an_upload_that_is_not_an_image_is_415() {
    let fixture = Fixture::new();
    assert_error(
        fixture
            .query(json!({"image_base64": base64(b"plain text, not an image at all")}))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported",
    );
    let (content_type, body) = multipart(&[("image", Some("notes.txt"), b"hello, world")]);
    assert_error(
        fixture
            .json(raw_request("/v1/query", Some(&content_type), body))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported",
    );
}

#[tokio::test]
async fn an_unknown_id_is_404_everywhere() {
    let fixture = Fixture::new();
    let unknown = 999_999;
    for uri in [
        format!("/v1/images/{unknown}"),
        format!("/v1/images/{unknown}/thumbnail"),
        format!("/v1/images/{unknown}/file"),
        format!("/v1/images/{unknown}/similar"),
        format!("/v1/images/{unknown}/tags"),
    ] {
        assert_error(fixture.get(&uri).await, StatusCode::NOT_FOUND, "not_found");
    }
    assert_error(
        fixture
            .json(
                Request::delete(format!("/v1/images/{unknown}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        fixture
            .json(json_request(
                Method::PUT,
                &format!("/v1/images/{unknown}/tags"),
                &json!({"tags": []}),
            ))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        fixture.query(json!({"image_id": unknown})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // An id that is not a number.
    assert_error(
        fixture.get("/v1/images/abc").await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
}

#[tokio::test]
async fn an_image_answers_its_record() {
    let fixture = Fixture::new();
    let coffee = fixture.id("coffee.jpg");
    let (status, value) = fixture.get(&format!("/v1/images/{coffee}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&value), IMAGE_KEYS);
    let record = fixture.state.db.get(ImageId(coffee)).unwrap().unwrap();
    assert_eq!(value, imgdb_daemon::json::image_json(&record));
    assert_eq!(
        value["path"],
        fixture.photos.join("coffee.jpg").to_str().unwrap()
    );
    assert_eq!(value["format"], "jpeg");
    assert_eq!(value["bytes"], 22948);
}

#[tokio::test]
async fn ingest_queues_paths_under_a_root_only() {
    let fixture = Fixture::new();
    let outside = fixture.dir.path().join("outside.jpg");
    std::fs::copy(fixture.photos.join("coffee.jpg"), &outside).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", fixture.photos.join("passwd.jpg")).unwrap();
    std::os::unix::fs::symlink(&outside, fixture.photos.join("outside-link.jpg")).unwrap();
    std::os::unix::fs::symlink(fixture.dir.path(), fixture.photos.join("up")).unwrap();
    std::fs::create_dir(fixture.photos.join("sub")).unwrap();
    let root = fixture.photos.to_str().unwrap();
    let escapes = [
        "/etc/passwd".to_string(),
        "/".to_string(),
        format!("{root}/../outside.jpg"),
        format!("{root}/../x"),
        format!("{root}/.."),
        format!("{root}/passwd.jpg"),
        format!("{root}/outside-link.jpg"),
        format!("{root}/up/outside.jpg"),
        format!("{root}/up"),
        format!("{root}2/a.jpg"),
    ];
    for path in &escapes {
        assert_error(
            fixture.post("/v1/ingest", json!({"paths": [path]})).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    // One bad path among good ones: nothing is queued.
    assert_error(
        fixture
            .post(
                "/v1/ingest",
                json!({"paths": [format!("{root}/coffee.jpg"), "/etc/passwd"]}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        fixture
            .post("/v1/ingest", json!({"paths": ["photos/coffee.jpg"]}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    assert_eq!(fixture.state.db.queued_len(), 0);
    assert!(fixture.wake.try_recv().is_err(), "nothing to wake for");

    let (status, value) = fixture
        .post(
            "/v1/ingest",
            json!({"paths": [
                format!("{root}/coffee.jpg"),
                format!("{root}/sub/../rocket.jpg"),
                root,
                format!("{root}/gone.jpg"),
            ]}),
        )
        .await;
    assert_eq!(
        (status, value),
        (StatusCode::ACCEPTED, json!({"queued": 4}))
    );
    assert!(fixture.wake.try_recv().is_ok(), "the indexer is woken");
    let queued: Vec<FileEvent> = fixture
        .state
        .db
        .queued_events(10)
        .unwrap()
        .into_iter()
        .map(|q| q.event)
        .collect();
    assert_eq!(
        queued,
        [
            FileEvent::Changed(fixture.photos.join("coffee.jpg")),
            FileEvent::Changed(fixture.photos.join("rocket.jpg")),
            FileEvent::Changed(fixture.photos.clone()),
            FileEvent::Changed(fixture.photos.join("gone.jpg")),
        ]
    );
    let (status, value) = fixture.get("/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["queued"], 4);
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let config = Config {
        token: Some("s3cret-token".into()),
        ..Config::default()
    };
    let fixture = Fixture::with(config);
    let with = |auth: &str| {
        Request::get("/v1/stats")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, body) = fixture.send(get("/v1/stats")).await;
    assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    assert_error(
        (status, serde_json::from_slice(&body).unwrap()),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    for wrong in [
        "Bearer s3cret",
        "Bearer s3cret-token-and-more",
        "Bearer S3CRET-TOKEN",
        "Basic s3cret-token",
        "s3cret-token",
        "Bearer",
    ] {
        assert_error(
            fixture.json(with(wrong)).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    // Unknown routes too are refused before they are looked up.
    assert_error(
        fixture.get("/v1/nothing-here").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let (status, value) = fixture.json(with("Bearer s3cret-token")).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["images"], 6);
    let (status, _) = fixture.json(with("bearer s3cret-token")).await;
    assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");
    assert_eq!(
        fixture.get("/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn thumbnails_are_small_jpegs_cached_with_an_etag() {
    let fixture = Fixture::new();
    let coffee = fixture.id("coffee.jpg");
    let record = fixture.state.db.get(ImageId(coffee)).unwrap().unwrap();
    assert!(record.width.max(record.height) > 64);
    let uri = format!("/v1/images/{coffee}/thumbnail?size=64");
    let (status, headers, jpeg) = fixture.send(get(&uri)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "image/jpeg");
    assert_eq!(
        headers.get(header::CACHE_CONTROL).unwrap(),
        "private, max-age=86400"
    );
    let etag = headers
        .get(header::ETAG)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(etag, format!("\"{}-64\"", record.content_hash.to_hex()));
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!(image.width().max(image.height()), 64);
    // Cached on disk, atomically (no temporary left).
    let cached = fixture
        .state
        .thumbnails
        .join(format!("{}-64.jpg", record.content_hash.to_hex()));
    assert_eq!(std::fs::read(&cached).unwrap(), jpeg.to_vec());
    let names: Vec<String> = std::fs::read_dir(&fixture.state.thumbnails)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [format!("{}-64.jpg", record.content_hash.to_hex())]);
    // Served from the cache: the same bytes.
    let (status, _, again) = fixture.send(get(&uri)).await;
    assert_eq!((status, again), (StatusCode::OK, jpeg.clone()));
    // If-None-Match.
    for tag in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
        let request = Request::get(&uri)
            .header(header::IF_NONE_MATCH, tag)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = fixture.send(request).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(headers.get(header::ETAG).unwrap().to_str().unwrap(), etag);
        assert!(body.is_empty());
    }
    let request = Request::get(&uri)
        .header(header::IF_NONE_MATCH, "\"something-else\"")
        .body(Body::empty())
        .unwrap();
    assert_eq!(fixture.send(request).await.0, StatusCode::OK);
    // The default size, and sizes out of range.
    let (status, headers, jpeg) = fixture
        .send(get(&format!("/v1/images/{coffee}/thumbnail")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .get(header::ETAG)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-256\"")
    );
    let image = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(
        image.width().max(image.height()),
        record.width.max(record.height).min(256)
    );
    for size in ["16", "2000", "big"] {
        assert_error(
            fixture
                .get(&format!("/v1/images/{coffee}/thumbnail?size={size}"))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_input",
        );
    }
}

#[tokio::test]
async fn the_file_is_served_by_id() {
    let fixture = Fixture::new();
    for (name, mime) in [("coffee.jpg", "image/jpeg"), ("chelsea.png", "image/png")] {
        let id = fixture.id(name);
        let (status, headers, bytes) = fixture.send(get(&format!("/v1/images/{id}/file"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), mime);
        assert_eq!(
            headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff"
        );
        assert_eq!(
            bytes.to_vec(),
            std::fs::read(fixture.photos.join(name)).unwrap()
        );
    }
    // A file gone since it was indexed.
    let rocket = fixture.id("rocket.jpg");
    std::fs::remove_file(fixture.photos.join("rocket.jpg")).unwrap();
    assert_error(
        fixture.get(&format!("/v1/images/{rocket}/file")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn delete_removes_an_image() {
    let fixture = Fixture::new();
    let china = fixture.id("china.jpg");
    let delete = || {
        Request::delete(format!("/v1/images/{china}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        fixture.json(delete()).await,
        (StatusCode::OK, json!({"deleted": 1}))
    );
    assert_error(
        fixture.get(&format!("/v1/images/{china}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        fixture.json(delete()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, stats) = fixture.get("/v1/stats").await;
    assert_eq!(stats["images"], 5);
}

#[tokio::test]
async fn tags_are_read_and_replaced() {
    let fixture = Fixture::new();
    let astronaut = fixture.id("astronaut.jpg");
    let uri = format!("/v1/images/{astronaut}/tags");
    assert_eq!(
        fixture.get(&uri).await,
        (StatusCode::OK, json!({"tags": []}))
    );
    let put = |body: Value| json_request(Method::PUT, &uri, &body);
    let tags = json!({"tags": [{"label": "space", "score": 1.0}, {"label": "suit", "score": 0.5}]});
    assert_eq!(
        fixture
            .json(put(
                json!({"tags": [{"label": "space"}, {"label": "suit", "score": 0.5}]})
            ))
            .await,
        (StatusCode::OK, tags.clone())
    );
    assert_eq!(fixture.get(&uri).await, (StatusCode::OK, tags.clone()));
    let (_, image) = fixture.get(&format!("/v1/images/{astronaut}")).await;
    assert_eq!(image["tags"], tags["tags"]);
    for bad in [
        json!({"tags": [{"label": ""}]}),
        json!({"tags": [{"label": "a", "score": "high"}]}),
        json!({"tags": [{"name": "a"}]}),
        json!({"labels": []}),
    ] {
        assert_error(
            fixture.json(put(bad)).await,
            StatusCode::BAD_REQUEST,
            "invalid_input",
        );
    }
    assert_eq!(
        fixture.json(put(json!({"tags": []}))).await,
        (StatusCode::OK, json!({"tags": []}))
    );
}

#[tokio::test]
async fn remove_unlinks_files_and_folders() {
    let fixture = Fixture::new();
    let coffee = fixture.id("coffee.jpg");
    let root = fixture.photos.to_str().unwrap();
    assert_eq!(
        fixture
            .post(
                "/v1/remove",
                json!({"paths": [format!("{root}/coffee.jpg")]})
            )
            .await,
        (StatusCode::OK, json!({"removed": 1}))
    );
    assert_error(
        fixture.get(&format!("/v1/images/{coffee}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert!(fixture.photos.join("coffee.jpg").exists(), "the file stays");
    assert_eq!(
        fixture
            .post("/v1/remove", json!({"paths": ["/nowhere/at/all.jpg"]}))
            .await,
        (StatusCode::OK, json!({"removed": 0}))
    );
    assert_eq!(
        fixture.post("/v1/remove", json!({"paths": [root]})).await,
        (StatusCode::OK, json!({"removed": 5}))
    );
    let (_, stats) = fixture.get("/v1/stats").await;
    assert_eq!(stats["images"], 0);
    assert_error(
        fixture
            .post("/v1/remove", json!({"paths": ["relative.jpg"]}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    assert_error(
        fixture.post("/v1/remove", json!({"paths": "/x"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
}

#[tokio::test]
async fn tag_labels_every_image() {
    let fixture = Fixture::new();
    let labels = ["a cat", "a rocket", "a cup of coffee"];
    assert_eq!(
        fixture
            .post(
                "/v1/tag",
                json!({"labels": labels, "template": "a photo of {}", "top": 2})
            )
            .await,
        (StatusCode::OK, json!({"tagged": 6}))
    );
    let records: Vec<_> = fixture.state.db.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 6);
    for record in &records {
        let (_, value) = fixture
            .get(&format!("/v1/images/{}/tags", record.id.0))
            .await;
        let tags = value["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 2, "{value}");
        for tag in tags {
            assert!(labels.contains(&tag["label"].as_str().unwrap()), "{value}");
        }
    }
    for bad in [
        json!({"labels": []}),
        json!({"labels": ["a", ""]}),
        json!({"labels": ["a"], "top": 0}),
        json!({"labels": "a cat"}),
    ] {
        assert_error(
            fixture.post("/v1/tag", bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_input",
        );
    }
}

#[tokio::test]
async fn failures_list_the_broken_file() {
    let fixture = Fixture::new();
    let (status, value) = fixture.get("/v1/failures").await;
    assert_eq!(status, StatusCode::OK);
    let failures = value["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{value}");
    let failure = &failures[0];
    assert_eq!(
        keys(failure),
        ["at", "bytes", "kind", "message", "mtime", "path"]
    );
    assert_eq!(
        failure["path"],
        fixture.photos.join("broken.jpg").to_str().unwrap()
    );
    assert_eq!(failure["bytes"], 18);
    let kind = failure["kind"].as_str().unwrap().to_string();
    let (_, value) = fixture.get(&format!("/v1/failures?kind={kind}")).await;
    assert_eq!(value["failures"].as_array().unwrap().len(), 1);
    let other = if kind == "network" { "io" } else { "network" };
    assert_eq!(
        fixture.get(&format!("/v1/failures?kind={other}")).await,
        (StatusCode::OK, json!({"failures": []}))
    );
    assert_error(
        fixture.get("/v1/failures?kind=bogus").await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
}

#[tokio::test]
async fn stats_and_status_report_the_database() {
    let fixture = Fixture::new();
    let (status, stats) = fixture.get("/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&stats),
        [
            "dim",
            "ef_construction",
            "ef_search",
            "failures",
            "files",
            "fingerprint",
            "format_version",
            "images",
            "index_memory",
            "index_origin",
            "index_points",
            "m",
            "model",
            "resident_vector_bytes",
            "snapshot_bytes",
            "store_bytes",
            "tombstones",
            "variant"
        ]
    );
    assert_eq!(
        (&stats["images"], &stats["files"], &stats["failures"]),
        (&json!(6), &json!(6), &json!(1))
    );
    // A database created with the defaults: its 6 vectors of 64 floats are in memory.
    assert_eq!(stats["index_memory"], "resident");
    assert!(stats["resident_vector_bytes"].as_u64() >= Some(6 * 64 * 4));
    assert_eq!(
        (&stats["model"], &stats["dim"], &stats["variant"]),
        (&json!("tiny-clip"), &json!(64), &json!("fp32"))
    );
    assert_eq!(stats["index_points"], 6);

    fixture.state.status.lock().indexed = 3;
    let (status, value) = fixture.get("/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&value),
        [
            "failed",
            "failures",
            "files",
            "images",
            "indexed",
            "indexing",
            "last_error",
            "linked",
            "model",
            "provider",
            "queued",
            "removed",
            "roots",
            "uptime_secs",
            "variant",
            "version"
        ]
    );
    assert_eq!(
        value["roots"],
        json!([{"path": fixture.photos.to_str().unwrap(), "state": "watching"}])
    );
    assert_eq!(
        (
            &value["images"],
            &value["files"],
            &value["failures"],
            &value["queued"]
        ),
        (&json!(6), &json!(6), &json!(1), &json!(0))
    );
    assert_eq!(
        (&value["indexed"], &value["indexing"]),
        (&json!(3), &json!(false))
    );
    assert_eq!(value["last_error"], Value::Null);
    assert_eq!(value["model"], "tiny-clip");
    assert_eq!(value["provider"], "cpu");
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn events_stream_progress_as_json() {
    let fixture = Fixture::new();
    let response = fixture
        .app
        .clone()
        .oneshot(get("/v1/events"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();
    fixture
        .state
        .progress
        .send(Progress::Batch {
            events: 3,
            queued: 1,
        })
        .unwrap();
    fixture
        .state
        .progress
        .send(Progress::File {
            path: "/photos/a.jpg".into(),
            outcome: "indexed",
            id: Some(7),
            message: None,
        })
        .unwrap();
    let mut text = String::new();
    while text.matches("\n\n").count() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        data,
        [
            json!({"type": "batch", "events": 3, "queued": 1}),
            json!({"type": "file", "path": "/photos/a.jpg", "outcome": "indexed", "id": 7, "message": null}),
        ]
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let fixture = Fixture::new();
    let (status, value) = fixture.get("/v2/nothing").await;
    assert_eq!(value["error"]["message"], "no route for GET /v2/nothing");
    assert_error((status, value), StatusCode::NOT_FOUND, "not_found");
    let (status, headers, body) = fixture.send(get("/v1/query")).await;
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert!(
        headers
            .get(header::ALLOW)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert_error(
        (status, serde_json::from_slice(&body).unwrap()),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        fixture
            .json(json_request(Method::PATCH, "/v1/images/1", &json!({})))
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn a_slow_request_is_408() {
    let mut config = Config::default();
    config.limits.request_timeout_secs = 1;
    let fixture = Fixture::with(config);
    // A client that sends the start of its body and then nothing.
    let stalled = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(Bytes::from_static(b"{\"text\": "))
    })
    .chain(futures_util::stream::pending());
    let request = raw_request(
        "/v1/query",
        Some("application/json"),
        Body::from_stream(stalled),
    );
    let started = Instant::now();
    assert_error(
        fixture.json(request).await,
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A quick one is answered.
    assert_eq!(fixture.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn requests_over_the_concurrency_cap_wait() {
    let mut config = Config::default();
    config.limits.max_concurrent_requests = 1;
    let fixture = Fixture::with(config);
    // The first request holds the one slot while its body trickles in.
    let (more, rest) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(Bytes::from_static(b"{\"text\": \"a\""))
    })
    .chain(
        tokio_stream::wrappers::ReceiverStream::new(rest).map(Ok::<_, std::convert::Infallible>),
    );
    let slow = tokio::spawn(fixture.app.clone().oneshot(raw_request(
        "/v1/query",
        Some("application/json"),
        Body::from_stream(body),
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = tokio::spawn(fixture.app.clone().oneshot(get("/healthz")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !quick.is_finished(),
        "the second request waits for the slot"
    );
    more.send(Bytes::from_static(b", \"k\": 1}")).await.unwrap();
    drop(more);
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(quick.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let preflight = || {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/stats")
            .header(header::ORIGIN, "http://photos.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap()
    };
    let cross_origin = || {
        Request::get("/v1/stats")
            .header(header::ORIGIN, "http://photos.example")
            .body(Body::empty())
            .unwrap()
    };
    let fixture = Fixture::new();
    let (_, headers, _) = fixture.send(cross_origin()).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    let (_, headers, _) = fixture.send(preflight()).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    let config = Config {
        cors_origins: vec!["http://photos.example".into()],
        token: Some("t0ken".into()),
        ..Config::default()
    };
    let fixture = Fixture::with(config);
    let (status, headers, _) = fixture.send(preflight()).await;
    assert_eq!(status, StatusCode::OK, "a preflight needs no token");
    assert_eq!(
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "http://photos.example"
    );
    let (status, headers, _) = fixture.send(cross_origin()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "http://photos.example"
    );
}

#[tokio::test]
async fn the_openapi_spec_documents_every_route() {
    let fixture = Fixture::new();
    let (status, spec) = fixture.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        spec["components"]["schemas"]["Error"]["required"],
        json!(["error"])
    );
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = imgdb_daemon::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routed);
    assert_eq!(routed.len(), 17);
    // The router answers each (neither 405 nor an unknown route); the event
    // stream is endless, so only its head is read.
    for (method, path) in &routed {
        let uri = path.replace("{id}", "1");
        let request = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let response = fixture.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if status == StatusCode::NOT_FOUND {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let value: Value = serde_json::from_slice(&body).unwrap();
            let message = value["error"]["message"].as_str().unwrap();
            assert!(
                !message.starts_with("no route"),
                "{method} {uri}: {message}"
            );
        }
    }
    // The spec's operations all have an error response of the error shape.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("408"), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_thumbnail_of_a_file_gone_from_the_disk_is_404() {
    let fixture = Fixture::new();
    let rocket = fixture.id("rocket.jpg");
    let record = fixture.state.db.get(ImageId(rocket)).unwrap().unwrap();
    std::fs::remove_file(record.path()).unwrap();
    let (status, value) = fixture
        .get(&format!("/v1/images/{rocket}/thumbnail?size=64"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(value["error"]["kind"], "not_found");
    let message = value["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("the file of image {rocket} is gone: ")),
        "{message}"
    );
}

/// The spec types these fields without `null`: an explicit `null` is a
/// wrong type, not "absent" (schemathesis found the tag score accepted).
#[tokio::test]
async fn null_where_the_spec_allows_none_is_invalid_input() {
    let fixture = Fixture::new();
    let coffee = fixture.id("coffee.jpg");
    let uri = format!("/v1/images/{coffee}/tags");
    let null_score = json!({"tags": [{"label": "cup", "score": null}]});
    assert_error(
        fixture
            .json(json_request(Method::PUT, &uri, &null_score))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    let absent_score = json!({"tags": [{"label": "cup"}]});
    let (status, value) = fixture
        .json(json_request(Method::PUT, &uri, &absent_score))
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["tags"], json!([{"label": "cup", "score": 1.0}]));
    assert_error(
        fixture
            .query(json!({"terms": [{"text": null, "image_id": coffee}]}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
}
