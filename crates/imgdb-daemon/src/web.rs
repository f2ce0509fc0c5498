//! The web page at `/`: `web/index.html`, `web/app.js`, `web/style.css`
//! and `web/icon.svg`, compiled into the binary so that the daemon serves
//! it with no files beside it and no network (no CDN, no web fonts).
//!
//! This module owns only the page's assets and the headers they go out
//! with; everything the page shows comes from the `/v1` API (`api`),
//! which it must not reach into.

use axum::Router;
use axum::http::HeaderName;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");
// Without an icon of its own the browser asks for `/favicon.ico`, a 404.
const ICON_SVG: &str = include_str!("../web/icon.svg");

/// Everything from the daemon itself, nothing from anywhere else, and no
/// inline script or style. `blob:` images are the page's own: the preview
/// of a dropped or pasted file, and images fetched with the bearer token
/// (an `<img>` cannot send a header).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob:; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Whether a request path is the page or one of its assets, which need no
/// token: they hold nothing of the database.
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/")
}

/// The page's routes: `/`, `/assets/app.js`, `/assets/style.css`,
/// `/assets/icon.svg`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset(ICON_SVG, "image/svg+xml") }),
        )
}

/// One asset with its type; `no-cache` so that a new daemon's page is
/// never mixed with an old one's script (the browser revalidates, and the
/// assets are small).
fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (HeaderName::from_static("x-frame-options"), "DENY"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_carry_their_type_and_the_policy() {
        let response = asset(INDEX_HTML, "text/html; charset=utf-8");
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }

    #[test]
    fn the_page_loads_only_the_served_assets() {
        // A renamed asset would leave the page without its script.
        for reference in [
            "\"/assets/app.js\"",
            "\"/assets/style.css\"",
            "\"/assets/icon.svg\"",
        ] {
            assert!(
                INDEX_HTML.contains(reference),
                "index.html lacks {reference}"
            );
        }
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "an external resource"
            );
            assert!(
                !text.contains("<script>") && !text.contains(" style=\""),
                "inline code the policy blocks"
            );
        }
    }
}
