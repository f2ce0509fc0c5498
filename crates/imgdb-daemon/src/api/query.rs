//! Searches: `POST /v1/query` (JSON, or multipart with an uploaded image)
//! and `GET /v1/images/{id}/similar`. Requests are validated here, turned
//! into an `imgdb::Query` and run on a blocking thread; results are the
//! CLI's `--json` objects (`crate::json::hit_json`), ranked from the first
//! result of the whole query (`offset + 1`, …).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use base64::Engine;
use imgdb::{Filter, ImageFormat, ImageId, Query, QueryTerm, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::blocking;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, ImageIdPath, content_type, is_json, parse_json, present};
use crate::json::hit_json;
use crate::state::AppState;

/// The results one query returns when it does not say.
const DEFAULT_K: usize = 10;
/// The deepest a page may start: the server searches `k + offset`.
pub const MAX_OFFSET: usize = 10_000;
/// The graph's `ef` range (that of `imgdb::IndexParams::ef_search`).
const EF_RANGE: std::ops::RangeInclusive<usize> = 1..=4096;

/// The JSON body of `POST /v1/query` (and the `query` part of a multipart one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// A text, weight 1.
    pub text: Option<String>,
    /// An indexed image, weight 1.
    pub image_id: Option<u64>,
    /// An image file's bytes in standard base64, weight 1.
    pub image_base64: Option<String>,
    /// Weighted terms.
    #[serde(default)]
    pub terms: Vec<TermBody>,
    /// Texts subtracted (weight −1).
    #[serde(default)]
    pub negative: Vec<String>,
    /// How many results (1 to `limits.max_k`, default 10).
    pub k: Option<usize>,
    /// Results skipped, for "load more".
    #[serde(default)]
    pub offset: usize,
    /// Results under this cosine similarity are left out.
    pub min_score: Option<f32>,
    /// The graph's `ef` for this query.
    pub ef: Option<usize>,
    /// Which images may be returned.
    pub filter: Option<FilterBody>,
}

/// One weighted term: exactly one of `text`, `image_id`, `image_base64`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermBody {
    /// A text.
    #[serde(default, deserialize_with = "present")]
    pub text: Option<String>,
    /// An indexed image.
    #[serde(default, deserialize_with = "present")]
    pub image_id: Option<u64>,
    /// An image file's bytes, standard base64.
    #[serde(default, deserialize_with = "present")]
    pub image_base64: Option<String>,
    /// The weight (negative steers away). Default 1.
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

/// The filter of a query (`imgdb::Filter`, with names and RFC 3339 times).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    /// Only images with a file under this folder (absolute).
    pub under: Option<String>,
    /// Only images carrying this tag.
    pub tag: Option<String>,
    /// Only these formats (`jpeg`, `png`, …).
    #[serde(default)]
    pub formats: Vec<String>,
    /// At least this wide.
    pub min_width: Option<u32>,
    /// At least this high.
    pub min_height: Option<u32>,
    /// At least this many bytes.
    pub min_bytes: Option<u64>,
    /// At most this many bytes.
    pub max_bytes: Option<u64>,
    /// Modified at or after (RFC 3339 or a date).
    pub modified_after: Option<String>,
    /// Modified before (RFC 3339 or a date).
    pub modified_before: Option<String>,
}

/// `POST /v1/query`.
pub async fn query(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (body, upload) = if content_type(request.headers()).is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    }) {
        multipart_body(request, &state).await?
    } else if is_json(request.headers()) {
        let ApiJson(body) = ApiJson::<QueryBody>::from_request(request, &state).await?;
        (body, None)
    } else {
        return Err(ApiError::unsupported(
            "expected `Content-Type: application/json` or `multipart/form-data`",
        ));
    };
    let max_k = state.config.limits.max_k;
    run(state, move || query_of(body, upload, max_k)).await
}

/// Every check of a query's body (with its uploaded image, if any) and the
/// library's query it asks for, `k + offset` results, with the offset of
/// its page. Blocking: `filter.under` is canonicalised.
pub fn query_of(
    body: QueryBody,
    upload: Option<Bytes>,
    max_k: usize,
) -> Result<(Query, usize), ApiError> {
    let mut terms = Vec::new();
    if let Some(bytes) = upload {
        terms.push(QueryTerm::ImageBytes {
            bytes: Arc::from(&bytes[..]),
            weight: 1.0,
        });
    }
    terms.extend(body_terms(&body)?);
    if terms.is_empty() {
        return Err(ApiError::invalid(
            "nothing to search for: give `text`, `image_id`, `image_base64`, `terms` or `negative`",
        ));
    }
    let (k, offset) = page(max_k, body.k, body.offset)?;
    if let Some(min) = body.min_score
        && !min.is_finite()
    {
        return Err(ApiError::invalid("min_score must be a finite number"));
    }
    if let Some(ef) = body.ef
        && !EF_RANGE.contains(&ef)
    {
        return Err(ApiError::invalid(format!(
            "ef must be from {} to {}",
            EF_RANGE.start(),
            EF_RANGE.end()
        )));
    }
    let query = Query {
        terms,
        k: k + offset,
        min_score: body.min_score,
        filter: filter_of(body.filter.unwrap_or_default())?,
        ef: body.ef,
    };
    Ok((query, offset))
}

/// The query string of `GET /v1/images/{id}/similar`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// How many results.
    pub k: Option<usize>,
    /// Results skipped.
    pub offset: Option<usize>,
}

/// `GET /v1/images/{id}/similar`: the image itself first.
pub async fn similar(
    State(state): State<AppState>,
    ImageIdPath(id): ImageIdPath,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Value>, ApiError> {
    let (k, offset) = page(
        state.config.limits.max_k,
        params.k,
        params.offset.unwrap_or(0),
    )?;
    run(state, move || {
        Ok((Query::similar_to(id).k(k + offset), offset))
    })
    .await
}

/// Runs a query made on the blocking thread (where making it may touch the
/// disk: `filter.under` is canonicalised) and answers its page (the query
/// and the results it skips).
async fn run(
    state: AppState,
    make: impl FnOnce() -> Result<(Query, usize), ApiError> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let results = blocking(move || {
        let (query, offset) = make()?;
        let hits = state.db.query(&state.encoder, &query)?;
        Ok(hits
            .iter()
            .enumerate()
            .skip(offset)
            .map(|(i, hit)| hit_json(i + 1, hit))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({ "results": results })))
}

/// `k` (default 10, at most `limits.max_k`) and `offset` (at most
/// [`MAX_OFFSET`]), checked.
fn page(max_k: usize, k: Option<usize>, offset: usize) -> Result<(usize, usize), ApiError> {
    let k = k.unwrap_or(DEFAULT_K.min(max_k));
    if !(1..=max_k).contains(&k) {
        return Err(ApiError::invalid(format!("k must be from 1 to {max_k}")));
    }
    if offset > MAX_OFFSET {
        return Err(ApiError::invalid(format!(
            "offset must be at most {MAX_OFFSET}"
        )));
    }
    Ok((k, offset))
}

/// The image part and the optional `query` part of a multipart query.
async fn multipart_body(
    request: Request,
    state: &AppState,
) -> Result<(QueryBody, Option<Bytes>), ApiError> {
    let too_large = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(format!(
                "the request body is over the limit of {} bytes",
                state.config.limits.max_body_bytes
            ))
        } else {
            ApiError::invalid(format!("multipart body: {}", e.body_text()))
        }
    };
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::invalid(format!("multipart body: {}", e.body_text())))?;
    let (mut body, mut image) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(too_large)? {
        match field.name() {
            Some("image") if image.is_none() => {
                image = Some(field.bytes().await.map_err(too_large)?)
            }
            Some("query") if body.is_none() => {
                let text = field.bytes().await.map_err(too_large)?;
                body = Some(parse_json::<QueryBody>(
                    &text,
                    state.config.limits.max_json_depth,
                )?);
            }
            Some(name @ ("image" | "query")) => {
                return Err(ApiError::invalid(format!("more than one `{name}` part")));
            }
            name => {
                return Err(ApiError::invalid(format!(
                    "unknown part {:?}: expected `image` and optionally `query`",
                    name.unwrap_or("")
                )));
            }
        }
    }
    let Some(image) = image else {
        return Err(ApiError::invalid("a multipart query needs an `image` part"));
    };
    Ok((body.unwrap_or_default(), Some(image)))
}

/// The terms of a JSON body, at least one counting an upload.
fn body_terms(body: &QueryBody) -> Result<Vec<QueryTerm>, ApiError> {
    let mut terms = Vec::new();
    if body.text.is_some() || body.image_id.is_some() || body.image_base64.is_some() {
        terms.extend(term(
            "the query",
            body.text.as_deref(),
            body.image_id,
            body.image_base64.as_deref(),
            1.0,
            true,
        )?);
    }
    for (i, t) in body.terms.iter().enumerate() {
        if !t.weight.is_finite() {
            return Err(ApiError::invalid(format!(
                "terms[{i}].weight must be a finite number"
            )));
        }
        terms.extend(term(
            &format!("terms[{i}]"),
            t.text.as_deref(),
            t.image_id,
            t.image_base64.as_deref(),
            t.weight,
            false,
        )?);
    }
    for text in &body.negative {
        terms.push(QueryTerm::Text {
            text: text.clone(),
            weight: -1.0,
        });
    }
    Ok(terms)
}

/// The terms one object gives: at the top level any of the three kinds
/// may be combined; a `terms` entry is exactly one.
fn term(
    at: &str,
    text: Option<&str>,
    image_id: Option<u64>,
    image_base64: Option<&str>,
    weight: f32,
    several: bool,
) -> Result<Vec<QueryTerm>, ApiError> {
    let given = [text.is_some(), image_id.is_some(), image_base64.is_some()]
        .into_iter()
        .filter(|g| *g)
        .count();
    if !several && given != 1 {
        return Err(ApiError::invalid(format!(
            "{at} must have exactly one of `text`, `image_id`, `image_base64`"
        )));
    }
    let mut terms = Vec::new();
    if let Some(text) = text {
        terms.push(QueryTerm::Text {
            text: text.to_string(),
            weight,
        });
    }
    if let Some(id) = image_id {
        terms.push(QueryTerm::Indexed {
            id: ImageId(id),
            weight,
        });
    }
    if let Some(encoded) = image_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| {
                ApiError::invalid(format!("{at}: `image_base64` is not standard base64: {e}"))
            })?;
        terms.push(QueryTerm::ImageBytes {
            bytes: bytes.into(),
            weight,
        });
    }
    Ok(terms)
}

/// The library's filter (blocking: `under` is canonicalised).
fn filter_of(body: FilterBody) -> Result<Filter, ApiError> {
    let under = match body.under {
        Some(text) => {
            let path = PathBuf::from(text);
            if !path.is_absolute() {
                return Err(ApiError::invalid(format!(
                    "filter.under must be an absolute path, not {}",
                    path.display()
                )));
            }
            // A folder that is gone matches what is still indexed under it.
            Some(path.canonicalize().unwrap_or(path))
        }
        None => None,
    };
    let formats = body
        .formats
        .iter()
        .map(|name| {
            ImageFormat::from_name(name).ok_or_else(|| {
                ApiError::invalid(format!("filter.formats: unknown format {name:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let time = |field: &str, text: Option<String>| -> Result<Option<Timestamp>, ApiError> {
        text.map(|t| {
            Timestamp::parse(&t).ok_or_else(|| {
                ApiError::invalid(format!(
                    "filter.{field}: {t:?} is not an RFC 3339 time or a date (years 1678 to 2261)"
                ))
            })
        })
        .transpose()
    };
    Ok(Filter {
        under,
        tag: body.tag,
        formats,
        min_width: body.min_width,
        min_height: body.min_height,
        min_bytes: body.min_bytes,
        max_bytes: body.max_bytes,
        modified_after: time("modified_after", body.modified_after)?,
        modified_before: time("modified_before", body.modified_before)?,
    })
}
