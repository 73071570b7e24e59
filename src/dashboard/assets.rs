//! `GET /static/{file}`: the dashboard's stylesheet and scripts, compiled into the binary
//! from `web/static` (nothing is read from disk or fetched at run time).

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::PageError;

/// Every asset: name, content type, bytes.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/static/app.css"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/static/live.js"),
    ),
    (
        "trace.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/static/trace.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../web/static/favicon.svg"),
    ),
];

pub async fn serve(Path(file): Path<String>) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return PageError::not_found("No such file.").into_response();
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Pages link assets with `?v=<version>`, so a release never meets a stale copy.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_stay_small() {
        let js: usize = ASSETS
            .iter()
            .filter(|(n, _, _)| n.ends_with(".js"))
            .map(|(_, _, b)| b.len())
            .sum();
        assert!(
            js < 50 * 1024,
            "{js} bytes of JavaScript; the budget is 50 KB"
        );
    }
}
