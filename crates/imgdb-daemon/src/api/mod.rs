//! The HTTP API (`schema/api/openapi.yaml`): routes under `/v1`, one JSON
//! error shape, and the limits every request passes through.
//!
//! Layers, outermost first:
//!
//! ```text
//! json_errors ─▶ CORS (only for cors_origins) ─▶ auth (bearer; /healthz and the page exempt)
//!   ─▶ timeout (408) ─▶ concurrency cap ─▶ body limit ─▶ handler
//! ```
//!
//! Handlers answer [`ApiError`]s; `json_errors` turns whatever else is an
//! error without a JSON body (axum's 405, say) into the same shape, so that
//! no plain-text error leaves the daemon. Blocking library calls run in
//! [`blocking`]. This module owns the HTTP surface only: the watcher, the
//! indexer and the listener live elsewhere and meet it in [`AppState`].

mod admin;
mod error;
mod events;
pub(crate) mod extract;
mod images;
mod openapi;
pub(crate) mod query;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::{ApiError, status_of};
pub use extract::nesting_exceeds;

use crate::state::AppState;

/// Every route of [`router`] as `(method, path)`, in the spec's path
/// syntax. `GET /` and `/assets/…` (the web page) are not the API's and
/// not listed. A test checks that the spec documents exactly these and
/// that the router answers each: keep it in step with [`router`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/query"),
    ("GET", "/v1/images/{id}"),
    ("DELETE", "/v1/images/{id}"),
    ("GET", "/v1/images/{id}/thumbnail"),
    ("GET", "/v1/images/{id}/file"),
    ("GET", "/v1/images/{id}/similar"),
    ("GET", "/v1/images/{id}/tags"),
    ("PUT", "/v1/images/{id}/tags"),
    ("POST", "/v1/ingest"),
    ("POST", "/v1/remove"),
    ("POST", "/v1/tag"),
    ("GET", "/v1/failures"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/status"),
    ("GET", "/v1/events"),
];

/// The path that needs no token (a load balancer's or a script's probe).
const HEALTHZ: &str = "/healthz";

/// The whole HTTP surface of the daemon.
pub fn router(state: AppState) -> Router {
    let limits = state.config.limits.clone();
    let api = Router::new()
        .route(HEALTHZ, get(admin::healthz))
        .route("/v1/openapi.json", get(openapi::spec))
        .route("/v1/query", post(query::query))
        .route("/v1/images/{id}", get(images::image).delete(images::delete))
        .route("/v1/images/{id}/thumbnail", get(images::thumbnail))
        .route("/v1/images/{id}/file", get(images::file))
        .route("/v1/images/{id}/similar", get(query::similar))
        .route(
            "/v1/images/{id}/tags",
            get(images::tags).put(images::set_tags),
        )
        .route("/v1/ingest", post(admin::ingest))
        .route("/v1/remove", post(admin::remove))
        .route("/v1/tag", post(admin::tag))
        .route("/v1/failures", get(admin::failures))
        .route("/v1/stats", get(admin::stats))
        .route("/v1/status", get(admin::status))
        .route("/v1/events", get(events::events));
    // The web page, under the same layers.
    let api = api.merge(crate::web::routes());
    let token: Option<Arc<[u8]>> = state.config.token.as_deref().map(|t| t.as_bytes().into());
    let cors = cors(&state.config.cors_origins);
    let mut app = api
        .fallback(unknown_route)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            concurrency,
        ))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout(),
            timeout,
        ))
        .layer(middleware::from_fn_with_state(token, auth));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn(json_errors))
}

/// Runs a blocking library call off the async threads.
pub async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the request's worker failed: {e}")))?
}

/// The CORS layer for the configured origins; none when there are none
/// (a browser then refuses every cross-origin call, as it should).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
            ])
            .expose_headers([header::ETAG]),
    )
}

/// 404 for a path no route serves.
async fn unknown_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// Refuses requests without the configured bearer token (when one is).
async fn auth(State(token): State<Option<Arc<[u8]>>>, request: Request, next: Next) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    // The page and its assets are public (a browser cannot send a header
    // to load them): the page asks for the token the API calls need.
    if request.uri().path() == HEALTHZ || crate::web::is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given.trim().as_bytes());
    match given {
        Some(given) if token_matches(&token, given) => next.run(request).await,
        Some(_) => ApiError::unauthorized("wrong bearer token").into_response(),
        None => ApiError::unauthorized("this daemon needs `Authorization: Bearer TOKEN`")
            .into_response(),
    }
}

/// Compares in time that depends on the expected token's length only,
/// never on where the given one differs or how long it is.
fn token_matches(expected: &[u8], given: &[u8]) -> bool {
    let padded: Vec<u8> = (0..expected.len())
        .map(|i| given.get(i).copied().unwrap_or(0))
        .collect();
    let same_length = (expected.len() as u64).ct_eq(&(given.len() as u64));
    bool::from(expected.ct_eq(&padded) & same_length)
}

/// Answers 408 when the response is not ready in the configured time (the
/// stream of `/v1/events` is not timed: its response is ready at once).
async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("no answer within {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

/// At most `max_concurrent_requests` requests in handlers at once; more
/// wait (within the timeout).
async fn concurrency(
    State(slots): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_slot) = slots.acquire().await else {
        return ApiError::internal("the request limiter is closed").into_response();
    };
    next.run(request).await
}

/// Gives every error response the JSON error shape: those of handlers have
/// it already; those made by axum or tower (405, a 413 from the body
/// limit) get it here, keeping their status and headers.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || extract::is_json(response.headers())
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => format!("{method} is not allowed on {path}"),
        (_, false) => text,
        (_, true) => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let error = ApiError::from_status(status, message).into_response();
    let (error_parts, error_body) = error.into_parts();
    parts.status = error_parts.status;
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &error_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, error_body)
}
