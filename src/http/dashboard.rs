//! The cluster dashboard: `GET /`, `GET /dashboard.js` and `GET /dashboard.css`.
//!
//! Owns: serving the three static files of `src/http/dashboard/`, compiled into the binary
//! (no build step, nothing fetched from anywhere else), with their content types, no caching
//! (`Cache-Control: no-cache`, so an upgraded node serves its own page) and a Content Security
//! Policy that lets the page load only from this node. The page itself reads the JSON API
//! (`/readyz`, `/api/v1/cluster/nodes`, `/api/v1/cluster/streams`, or `/api/v1/streams`,
//! `/healthz` and `/metrics` on a standalone node) and posts `/api/v1/drain`. Must never:
//! put data of any kind into these files (they are the same bytes for every request).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// Scripts, styles and requests from this node only; no plugins, frames, forms or `<base>`.
/// (`data:` images: the page's empty favicon.)
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads nothing from outside: no URL with a scheme or protocol-relative `//`
    /// in any of the files (the API paths are relative to the node).
    #[test]
    fn no_external_urls() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("dashboard.js", DASHBOARD_JS),
            ("dashboard.css", DASHBOARD_CSS),
        ] {
            for bad in ["https://", "src=\"//", "href=\"//", "url(", "@import"] {
                assert!(!text.contains(bad), "{name} contains {bad:?}");
            }
        }
        assert!(INDEX_HTML.contains(r#"<script src="/dashboard.js""#));
        assert!(INDEX_HTML.contains(r#"href="/dashboard.css""#));
        // The only inline script would be refused by the CSP anyway.
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
    }

    /// Data goes into the DOM as text, never as markup.
    #[test]
    fn no_markup_from_data() {
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!DASHBOARD_JS.contains(bad), "dashboard.js uses {bad}");
        }
    }
}
