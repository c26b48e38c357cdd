//! `GET /metrics`: every metric of [`crate::metrics`] in the Prometheus text format. A plain
//! route, not an OpenAPI operation: it is for scrapers, not for mini-program clients, and its
//! body is Prometheus's format rather than JSON.

use poem::http::header::CONTENT_TYPE;
use poem::{Response, handler};

/// The scrape answer.
#[handler]
pub fn scrape() -> Response {
    Response::builder()
        .header(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
        .body(crate::metrics::render())
}
