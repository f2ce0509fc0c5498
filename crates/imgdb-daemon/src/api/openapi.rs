//! `GET /v1/openapi.json`: `schema/api/openapi.yaml`, embedded at build
//! time and turned into JSON once.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The spec as written.
pub const OPENAPI_YAML: &str = include_str!("../../../../schema/api/openapi.yaml");

/// The spec as JSON text, or why the YAML does not convert.
static OPENAPI_JSON: LazyLock<Result<String, String>> = LazyLock::new(|| {
    let value: serde_json::Value =
        serde_yaml_ng::from_str(OPENAPI_YAML).map_err(|e| e.to_string())?;
    serde_json::to_string(&value).map_err(|e| e.to_string())
});

/// `GET /v1/openapi.json`.
pub async fn spec() -> Response {
    match &*OPENAPI_JSON {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
        Err(e) => {
            ApiError::internal(format!("the embedded OpenAPI spec is invalid: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_spec_converts_to_json() {
        let json = super::OPENAPI_JSON.as_ref().unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
    }
}
