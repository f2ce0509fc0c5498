//! [`ApiError`]: the one error shape of the HTTP API,
//! `{"error": {"kind", "message"}}`, with its status taken from its kind
//! (`/work/api-contract.md`, `schema/api/openapi.yaml`, `Error`).
//!
//! Library errors keep their `imgdb::ErrorKind`; the HTTP layer adds its
//! own kinds (`unauthorized`, `forbidden`, `payload_too_large`, `timeout`,
//! `method_not_allowed`). This module owns the mapping both ways (kind to
//! status, and status to kind for responses that axum or tower made).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use imgdb::ErrorKind;
use serde_json::json;

/// An error answered to a client: never stops the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    /// An error of an HTTP-layer kind with its own status.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// An error of a library kind, with the status the contract gives it.
    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError::new(status_of(kind), kind.name(), message)
    }

    /// 400 `invalid_input`: the request is wrong.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::of_kind(ErrorKind::InvalidInput, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::of_kind(ErrorKind::NotFound, message)
    }

    /// 415 `unsupported`.
    pub fn unsupported(message: impl Into<String>) -> ApiError {
        ApiError::of_kind(ErrorKind::Unsupported, message)
    }

    /// 403 `forbidden`: e.g. a path outside every watched root.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 413 `payload_too_large`: the request body is over the limit.
    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 500 `io`: the daemon itself failed (a worker task that panicked).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::of_kind(ErrorKind::Io, message)
    }

    /// The error a bare status stands for, for responses made by axum or
    /// tower without a JSON body (405 from the method router, say).
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        // Statuses outside the contract's set are answered as its nearest.
        let (status, kind) = match status {
            StatusCode::UNAUTHORIZED => (status, "unauthorized"),
            StatusCode::FORBIDDEN => (status, "forbidden"),
            StatusCode::NOT_FOUND => (status, "not_found"),
            StatusCode::METHOD_NOT_ALLOWED => (status, "method_not_allowed"),
            StatusCode::REQUEST_TIMEOUT => (status, "timeout"),
            StatusCode::CONFLICT => (status, "conflict"),
            StatusCode::PAYLOAD_TOO_LARGE => (status, "payload_too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "unsupported"),
            StatusCode::BAD_GATEWAY => (status, "network"),
            StatusCode::SERVICE_UNAVAILABLE => (status, "in_use"),
            s if s.is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, "io"),
            _ => (StatusCode::BAD_REQUEST, "invalid_input"),
        };
        ApiError::new(status, kind, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The kind (`not_found`, `forbidden`, …).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The status of a library error kind (the contract's table).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::InUse => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Network => StatusCode::BAD_GATEWAY,
        // Corrupt, model, io, and kinds added later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<imgdb::Error> for ApiError {
    fn from(error: imgdb::Error) -> ApiError {
        ApiError::of_kind(error.kind(), error.chain())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"kind": self.kind, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_kind_has_the_contracts_status() {
        let expected = [
            ("not_found", 404),
            ("invalid_input", 400),
            ("in_use", 503),
            ("conflict", 409),
            ("corrupt", 500),
            ("unsupported", 415),
            ("too_large", 413),
            ("model", 500),
            ("io", 500),
            ("network", 502),
        ];
        for (name, status) in expected {
            let kind = ErrorKind::from_name(name).unwrap();
            assert_eq!(status_of(kind).as_u16(), status, "{name}");
        }
        assert_eq!(ErrorKind::ALL.len(), expected.len());
    }

    #[test]
    fn bare_statuses_become_contract_kinds() {
        let cases = [
            (405, 405, "method_not_allowed"),
            (408, 408, "timeout"),
            (413, 413, "payload_too_large"),
            (422, 400, "invalid_input"),
            (504, 500, "io"),
        ];
        for (from, to, kind) in cases {
            let error = ApiError::from_status(StatusCode::from_u16(from).unwrap(), "x");
            assert_eq!(
                (error.status().as_u16(), error.kind()),
                (to, kind),
                "{from}"
            );
        }
    }
}
