//! The HTTP API (`schema/api/openapi.yaml`): routes under `/v1`, one JSON
//! error shape, and the limits every request passes through.

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// The whole HTTP surface of the daemon.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}
