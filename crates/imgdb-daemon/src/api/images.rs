//! One image by id: `GET`/`DELETE /v1/images/{id}`, its thumbnail (cached
//! on disk under `AppState::thumbnails`, with an ETag), its original file
//! and its tags. A client names images by id only: no path it sends is
//! ever read here.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imgdb::{ErrorKind, ImageFormat, ImageId, ImageRecord, Tag, WriteBatch, WriteOp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::blocking;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, ImageIdPath, present};
use crate::json::{image_json, tags_json};
use crate::state::AppState;

/// Thumbnail sizes a client may ask for (the longer side, in pixels).
pub const THUMBNAIL_SIZES: std::ops::RangeInclusive<u32> = 32..=1024;
/// The size when none is asked.
pub const DEFAULT_THUMBNAIL_SIZE: u32 = 256;
/// Thumbnails are named by content, so a client may keep one a day.
const THUMBNAIL_CACHE_CONTROL: &str = "private, max-age=86400";

/// The record of an image, or 404.
pub async fn record(state: &AppState, id: ImageId) -> Result<ImageRecord, ApiError> {
    let db = state.db.clone();
    blocking(move || db.get(id)?.ok_or_else(|| unknown(id))).await
}

/// The 404 of an id that is not in the database.
pub fn unknown(id: ImageId) -> ApiError {
    ApiError::not_found(format!("no image with id {}", id.0))
}

/// `GET /v1/images/{id}`.
pub async fn image(
    State(state): State<AppState>,
    ImageIdPath(id): ImageIdPath,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(image_json(&record(&state, id).await?)))
}

/// `DELETE /v1/images/{id}`: `{"deleted": 1}`, or 404.
pub async fn delete(
    State(state): State<AppState>,
    ImageIdPath(id): ImageIdPath,
) -> Result<Json<Value>, ApiError> {
    let db = state.db.clone();
    let deleted = blocking(move || Ok(db.delete(&[id])?)).await?;
    if deleted == 0 {
        return Err(unknown(id));
    }
    Ok(Json(json!({ "deleted": deleted })))
}

/// `GET /v1/images/{id}/tags`.
pub async fn tags(
    State(state): State<AppState>,
    ImageIdPath(id): ImageIdPath,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "tags": tags_json(&record(&state, id).await?.tags) }),
    ))
}

/// The body of `PUT /v1/images/{id}/tags`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    /// The image's new tags (replacing all its tags).
    pub tags: Vec<TagBody>,
}

/// One tag; the score defaults to 1.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    /// The label (not empty).
    pub label: String,
    /// Its score. Default 1.
    #[serde(default, deserialize_with = "present")]
    pub score: Option<f32>,
}

/// `PUT /v1/images/{id}/tags`: replaces the tags, answers the new ones.
pub async fn set_tags(
    State(state): State<AppState>,
    ImageIdPath(id): ImageIdPath,
    ApiJson(body): ApiJson<TagsBody>,
) -> Result<Json<Value>, ApiError> {
    let mut tags = Vec::with_capacity(body.tags.len());
    for (i, tag) in body.tags.into_iter().enumerate() {
        if tag.label.trim().is_empty() {
            return Err(ApiError::invalid(format!("tags[{i}].label is empty")));
        }
        let score = tag.score.unwrap_or(1.0);
        if !score.is_finite() {
            return Err(ApiError::invalid(format!(
                "tags[{i}].score must be a finite number"
            )));
        }
        tags.push(Tag {
            label: tag.label,
            score,
        });
    }
    let db = state.db.clone();
    let record = blocking(move || {
        db.get(id)?.ok_or_else(|| unknown(id))?;
        let mut batch = WriteBatch::new();
        batch.push(WriteOp::SetTags { id, tags });
        db.write(&db.space(), batch)?;
        db.get(id)?.ok_or_else(|| unknown(id))
    })
    .await?;
    Ok(Json(json!({ "tags": tags_json(&record.tags) })))
}

/// The query string of a thumbnail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailParams {
    /// The longer side in pixels (32 to 1024, default 256).
    pub size: Option<u32>,
}

/// `GET /v1/images/{id}/thumbnail?size=N`: a JPEG, 304 when the client's
/// `If-None-Match` names it.
pub async fn thumbnail(
    State(state): State<AppState>,
    ImageIdPath(id): ImageIdPath,
    ApiQuery(params): ApiQuery<ThumbnailParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let size = params.size.unwrap_or(DEFAULT_THUMBNAIL_SIZE);
    if !THUMBNAIL_SIZES.contains(&size) {
        return Err(ApiError::invalid(format!(
            "size must be from {} to {}",
            THUMBNAIL_SIZES.start(),
            THUMBNAIL_SIZES.end()
        )));
    }
    let record = record(&state, id).await?;
    let name = format!("{}-{size}", record.content_hash.to_hex());
    let etag = format!("\"{name}\"");
    let cache_headers = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, THUMBNAIL_CACHE_CONTROL.to_string()),
    ];
    if if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers).into_response());
    }
    let jpeg = blocking(move || cached_thumbnail(&state, &record, &name, size)).await?;
    Ok((cache_headers, [(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

/// Whether `If-None-Match` lists this ETag (weak or strong) or `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The cached thumbnail, made and cached first when it is not there.
fn cached_thumbnail(
    state: &AppState,
    record: &ImageRecord,
    name: &str,
    size: u32,
) -> Result<Vec<u8>, ApiError> {
    let cached = state.thumbnails.join(format!("{name}.jpg"));
    match std::fs::read(&cached) {
        Ok(jpeg) => return Ok(jpeg),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot read the cached thumbnail {}: {e}", cached.display()),
    }
    // Any of the image's files will do (they have the same content).
    let mut first_error = None;
    let mut jpeg = None;
    for file in &record.files {
        match state.encoder.preprocessor().thumbnail(&file.path, size) {
            Ok(made) => {
                jpeg = Some(made);
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some(jpeg) = jpeg else {
        return Err(match first_error {
            // The image's files are gone from the disk (not yet seen by the
            // watcher, or an imported database): nothing to show, not a
            // server error.
            Some(imgdb::Error::Io { source, path })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ApiError::not_found(format!(
                    "the file of image {} is gone: {}",
                    record.id.0,
                    path.display()
                ))
            }
            Some(e) => e.into(),
            None => ApiError::not_found(format!("image {} has no file", record.id.0)),
        });
    };
    // The cache is an optimisation: a full disk still answers the thumbnail.
    if let Err(e) = write_atomically(&state.thumbnails, &cached, &jpeg) {
        tracing::warn!("cannot cache the thumbnail {}: {e}", cached.display());
    }
    Ok(jpeg)
}

/// Writes a file whole or not at all: a temporary file in the same folder,
/// synced, then renamed over the name, so that a reader or a crash never
/// sees half a JPEG.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("thumbnail"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// `GET /v1/images/{id}/file`: the bytes of the image's canonical file.
pub async fn file(
    State(state): State<AppState>,
    ImageIdPath(id): ImageIdPath,
) -> Result<Response, ApiError> {
    let record = record(&state, id).await?;
    let path = record.path().to_path_buf();
    let unreadable = |e: std::io::Error| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        ApiError::of_kind(kind, format!("cannot read the file of image {}: {e}", id.0))
    };
    // Streamed, so that a large original never sits whole in memory once
    // per request.
    let file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
    let length = file.metadata().await.map_err(unreadable)?.len();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(mime(record.format)),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// The media type of a format.
pub fn mime(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
        ImageFormat::WebP => "image/webp",
        ImageFormat::Gif => "image/gif",
        ImageFormat::Bmp => "image/bmp",
        ImageFormat::Tiff => "image/tiff",
        ImageFormat::Heif => "image/heic",
        ImageFormat::Avif => "image/avif",
        _ => "application/octet-stream",
    }
}
