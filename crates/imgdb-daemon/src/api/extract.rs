//! Extractors whose every rejection is an [`ApiError`]: JSON bodies
//! (content type, body limit, nesting depth, then serde), path ids and
//! query strings. Handlers take these instead of axum's own, so that no
//! plain-text rejection reaches a client.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::state::AppState;

/// A JSON body, checked for its content type, size and nesting depth
/// before serde sees it.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::unsupported(
                "expected a body with `Content-Type: application/json`",
            ));
        }
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes, state.config.limits.max_json_depth).map(ApiJson)
    }
}

/// The whole body, or 413 when it is over the body limit.
pub async fn body_bytes(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(format!(
                "the request body is over the limit of {} bytes",
                state.config.limits.max_body_bytes
            )),
            status => ApiError::from_status(status, rejection.body_text()),
        })
}

/// Whether the content type is JSON (`application/json`, or `+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|mime| {
        let essence = mime.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// The request's content type, when it is text.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE)?.to_str().ok()
}

/// Parses JSON text after refusing nesting deeper than `max_depth`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if nesting_exceeds(bytes, max_depth) {
        return Err(ApiError::invalid(format!(
            "the JSON body is nested deeper than {max_depth} levels"
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Whether arrays and objects nest deeper than `max` anywhere in `bytes`,
/// counted without parsing (brackets inside strings do not count), so
/// that a hostile body costs one linear scan and no recursion.
pub fn nesting_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// An image id from the path (`/v1/images/{id}`).
pub struct ImageIdPath(pub imgdb::ImageId);

impl<S: Send + Sync> FromRequestParts<S> for ImageIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("the image id: {}", e.body_text())))?;
        Ok(ImageIdPath(imgdb::ImageId(id)))
    }
}

/// A query string, deserialised.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        Ok(ApiQuery(value))
    }
}

/// For optional body fields the spec types without `null`: absent is
/// `None`, an explicit `null` is refused like any other wrong type (use
/// with `#[serde(default, deserialize_with = "present")]`).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a": [1, {"b": 2}]}"#, 2));
        assert!(!nesting_exceeds(br#"{"a": "[[[[[[\"[[[["}"#, 1));
        assert!(nesting_exceeds(&[b'['; 100], 32));
        assert!(!nesting_exceeds(&[b'['; 32], 32));
    }
}
