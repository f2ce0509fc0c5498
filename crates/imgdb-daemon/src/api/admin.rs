//! The database as a whole: `healthz`, `ingest` (queue paths under the
//! watched roots), `remove`, `tag`, `failures`, `stats` and `status`. The
//! JSON of `failures`, `stats`, `remove` and `tag` is that of the CLI's
//! `--json` (`crates/imgdb-cli/src/commands.rs`).
//!
//! `POST /v1/ingest` is the one request that makes the daemon read paths
//! a client names: each is canonicalised (symbolic links and `..`
//! resolved) before it is compared with the canonical roots, so no
//! spelling of a path escapes them.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use imgdb::ingest::FileEvent;
use imgdb::{ErrorKind, TagOptions, WriteBatch, WriteOp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::blocking;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use crate::json::{path_json, stats_json, timestamp_text};
use crate::state::AppState;

/// `GET /healthz`.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// A path as a client sends it: a string, or `{"bytes": BASE64}` for a
/// path that is not UTF-8 (the form `crate::json::path_json` answers).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PathInput {
    /// A UTF-8 path.
    Text(String),
    /// The OS's bytes of the path.
    Bytes(EncodedPath),
}

/// `{"bytes": BASE64}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodedPath {
    /// The path's bytes, standard base64.
    pub bytes: String,
}

impl PathInput {
    /// The path, which must be absolute (the daemon's working folder is
    /// nothing a client should depend on).
    fn to_path(&self) -> Result<PathBuf, ApiError> {
        let path = match self {
            PathInput::Text(text) => PathBuf::from(text),
            PathInput::Bytes(encoded) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded.bytes.trim())
                    .map_err(|e| ApiError::invalid(format!("a path's `bytes`: {e}")))?;
                path_from_bytes(bytes)?
            }
        };
        if !path.is_absolute() {
            return Err(ApiError::invalid(format!(
                "{} is not an absolute path",
                path.display()
            )));
        }
        Ok(path)
    }
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> Result<PathBuf, ApiError> {
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> Result<PathBuf, ApiError> {
    String::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| ApiError::invalid("a path's `bytes` are not UTF-8"))
}

/// `{"paths": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsBody {
    /// Absolute paths.
    pub paths: Vec<PathInput>,
}

/// `POST /v1/ingest`: 202 `{"queued": N}`, or 403 and nothing queued when
/// any path lies outside every watched root.
pub async fn ingest(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PathsBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let paths = body
        .paths
        .iter()
        .map(PathInput::to_path)
        .collect::<Result<Vec<_>, _>>()?;
    let queued = blocking(move || {
        let events = paths
            .iter()
            .map(|path| Ok(FileEvent::Changed(under_a_root(&state, path)?)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        if !events.is_empty() {
            state.enqueue(&events)?;
        }
        Ok(events.len())
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": queued }))))
}

/// The canonical form of `path`, when it lies under a watched root; else
/// 403. A path that is gone is named by its canonical folder and its name,
/// so that a deleted file can be queued (the indexer then unlinks it).
fn under_a_root(state: &AppState, path: &Path) -> Result<PathBuf, ApiError> {
    let outside = || ApiError::forbidden(format!("{} is not under a watched root", path.display()));
    let resolved = match path.canonicalize() {
        Ok(resolved) => resolved,
        // Nothing at all there (not even a dangling link).
        Err(_) if path.symlink_metadata().is_err() => {
            let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(outside());
            };
            folder.canonicalize().map_err(|_| outside())?.join(name)
        }
        Err(_) => return Err(outside()),
    };
    match state.root_of(&resolved)? {
        Some(_) => Ok(resolved),
        None => Err(outside()),
    }
}

/// `POST /v1/remove`: unlinks indexed files and everything indexed under
/// folders (what `imgdb rm` does); the paths need not exist.
pub async fn remove(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PathsBody>,
) -> Result<Json<Value>, ApiError> {
    let paths = body
        .paths
        .iter()
        .map(PathInput::to_path)
        .collect::<Result<Vec<_>, _>>()?;
    let db = state.db.clone();
    let removed = blocking(move || {
        let mut batch = WriteBatch::new();
        for path in paths {
            // A file that is gone is still named by its absolute path.
            let path = path.canonicalize().unwrap_or(path);
            if db.get_by_path(&path)?.is_some() {
                batch.push(WriteOp::Unlink { path: path.clone() });
            }
            for (file, _) in db.paths_under(&path)? {
                if file != path {
                    batch.push(WriteOp::Unlink { path: file });
                }
            }
        }
        let removed = batch.len();
        if removed > 0 {
            db.write(&db.space(), batch)?;
        }
        Ok(removed)
    })
    .await?;
    Ok(Json(json!({ "removed": removed })))
}

/// The body of `POST /v1/tag` (`imgdb tag`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    /// The labels (at least one).
    pub labels: Vec<String>,
    /// The prompt template, `{}` marking the label (default `a photo of a {}.`).
    pub template: Option<String>,
    /// Labels each image keeps at most (default 1).
    pub top: Option<usize>,
    /// Labels under this probability are not kept (default 0).
    pub min_score: Option<f32>,
}

/// `POST /v1/tag`: labels every image zero-shot, `{"tagged": N}`.
pub async fn tag(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TagBody>,
) -> Result<Json<Value>, ApiError> {
    if body.labels.is_empty() {
        return Err(ApiError::invalid("labels: give at least one label"));
    }
    if body.labels.iter().any(|l| l.trim().is_empty()) {
        return Err(ApiError::invalid("labels: a label is empty"));
    }
    let defaults = TagOptions::default();
    let options = TagOptions {
        template: body.template.unwrap_or(defaults.template),
        top: body.top.unwrap_or(defaults.top),
        min_score: body.min_score.unwrap_or(defaults.min_score),
    };
    if options.top == 0 {
        return Err(ApiError::invalid("top must be at least 1"));
    }
    if !options.min_score.is_finite() {
        return Err(ApiError::invalid("min_score must be a finite number"));
    }
    let tagged =
        blocking(move || Ok(state.db.tag(&state.encoder, &body.labels, &options)?)).await?;
    Ok(Json(json!({ "tagged": tagged })))
}

/// The query string of `GET /v1/failures`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailuresParams {
    /// Only failures of this kind (`corrupt`, `unsupported`, …).
    pub kind: Option<String>,
}

/// `GET /v1/failures?kind=K`.
pub async fn failures(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<FailuresParams>,
) -> Result<Json<Value>, ApiError> {
    let kind = match params.kind.as_deref() {
        Some(name) => Some(ErrorKind::from_name(name).ok_or_else(|| {
            ApiError::invalid(format!(
                "kind {name:?}: expected one of {}",
                ErrorKind::names()
            ))
        })?),
        None => None,
    };
    let db = state.db.clone();
    let failures = blocking(move || Ok(db.failures()?)).await?;
    let failures: Vec<Value> = failures
        .iter()
        .filter(|(_, f)| kind.is_none_or(|kind| f.reason.kind == kind))
        .map(|(path, failure)| {
            json!({
                "path": path_json(path), "kind": failure.reason.kind.name(),
                "message": failure.reason.message, "bytes": failure.byte_size,
                "mtime": timestamp_text(failure.mtime), "at": timestamp_text(failure.at),
            })
        })
        .collect();
    Ok(Json(json!({ "failures": failures })))
}

/// `GET /v1/stats`: what `imgdb stats --json` prints.
pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let db = state.db.clone();
    let stats = blocking(move || Ok(db.stats()?)).await?;
    Ok(Json(stats_json(&stats)))
}

/// `GET /v1/status`: the database's counts, the indexer's and the roots'.
pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let db = state.db.clone();
    let (stats, queued) = blocking(move || Ok((db.stats()?, db.queued_len()))).await?;
    let live = state.status.lock().clone();
    let roots: Vec<Value> = live
        .roots
        .iter()
        .map(|(path, root)| json!({"path": path_json(path), "state": root}))
        .collect();
    Ok(Json(json!({
        "images": stats.images,
        "files": stats.files,
        "failures": stats.failures,
        "queued": queued,
        "indexing": live.indexing,
        "indexed": live.indexed,
        "linked": live.linked,
        "removed": live.removed,
        "failed": live.failed,
        "last_error": live.last_error,
        "roots": roots,
        "model": state.encoder.space().model_id,
        "variant": state.encoder.space().variant.name(),
        "provider": state.encoder.provider().device.to_string(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}
