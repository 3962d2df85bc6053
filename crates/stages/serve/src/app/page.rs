//! `GET /`: the page a technician uses without a pipeline — pick an image type, drop an image,
//! see the contour overlay, the summary and the nuclei, download the CSV. Self-contained: its
//! script and style come from this service (no CDN, no external fonts), and its Content Security
//! Policy lets it contact nothing else.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Response};

/// The page.
const INDEX: &str = include_str!("../page/index.html");
/// Its script.
const SCRIPT: &str = include_str!("../page/app.js");
/// Its style.
const STYLE: &str = include_str!("../page/app.css");

/// The page may load its own script, style and images (overlays arrive as blobs) and talk to this
/// service only.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                          connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, kind),
            (CONTENT_SECURITY_POLICY, POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
