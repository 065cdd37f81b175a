//! The web console: its static files (HTML, CSS, ES modules, built into the binary from
//! `crates/api/console/`) served at `/console` and `/console/assets/…` with a strict
//! Content-Security-Policy, and the anti-CSRF rule of the management API it calls.
//!
//! The console signs in with a principal's management token, which it keeps in the browser's
//! session storage and sends only as `Authorization: Bearer …`; it works only through the
//! public management and catalog APIs. Nothing is authenticated by cookie, so a page of another
//! site cannot make the browser send the token; on top of that, [`is_cross_origin_write`]
//! refuses a changing management request that a browser marks as coming from another origin.

use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::{ApiError, Surface};

/// The path of the console's page.
pub const CONSOLE_PATH: &str = "/console";

/// The Content-Security-Policy of every console file: scripts, styles and connections only
/// from the gateway itself, no inline script or style, no plugin, no framing, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A file of the console: its path under `/console/assets/`, media type and bytes.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

/// Declares the console's files, each read from `crates/api/console/` at build time.
macro_rules! assets {
    ($($path:literal => $media_type:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            media_type: $media_type,
            bytes: include_bytes!(concat!("../console/", $path)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
const ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "app.js" => JS,
    "api.js" => JS,
    "chart.js" => JS,
    "format.js" => JS,
    "dom.js" => JS,
    "views/keys.js" => JS,
    "views/usage.js" => JS,
    "views/audit.js" => JS,
    "views/models.js" => JS,
    "views/announcements.js" => JS,
];

/// Whether `path` belongs to the console (served without a credential).
pub(crate) fn is_console_path(path: &str) -> bool {
    path.strip_prefix(CONSOLE_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Handles `GET /console`: the console's page.
#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    responses((status = 200, description = "The web console's page.",
               content_type = "text/html", body = String)),
)]
pub async fn page() -> Response {
    serve("index.html")
}

/// Handles `GET /console/`: a permanent redirect to `/console`.
#[utoipa::path(
    get,
    path = "/console/",
    tag = "console",
    responses((status = 308, description = "Redirects to `/console`.")),
)]
pub async fn page_with_slash() -> Response {
    with_security_headers(Redirect::permanent(CONSOLE_PATH).into_response())
}

/// Handles `GET /console/assets/{file}`: a stylesheet, script or image of the console.
#[utoipa::path(
    get,
    path = "/console/assets/{file}",
    tag = "console",
    params(("file" = String, Path, description = "The file, e.g. `app.js`.")),
    responses(
        (status = 200, description = "The file.", body = String),
        (status = 404, description = "No such file.", body = gateway_core::openai::ErrorBody),
    ),
)]
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

/// Handles `GET /console/assets/views/{file}`: the script of one of the console's views.
#[utoipa::path(
    get,
    path = "/console/assets/views/{file}",
    tag = "console",
    params(("file" = String, Path, description = "The view's script, e.g. `keys.js`.")),
    responses(
        (status = 200, description = "The script.", body = String),
        (status = 404, description = "No such file.", body = gateway_core::openai::ErrorBody),
    ),
)]
pub async fn view_asset(Path(file): Path<String>) -> Response {
    serve(&format!("views/{file}"))
}

fn serve(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
        let error = ApiError::RouteNotFound {
            path: format!("{CONSOLE_PATH}/assets/{path}"),
        };
        return with_security_headers(error.respond(Surface::Model));
    };
    let response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, asset.media_type)],
        asset.bytes,
    )
        .into_response();
    with_security_headers(response)
}

/// Adds the console's security headers: the CSP, no MIME sniffing, no referrer, no framing,
/// and revalidation on every load (the files change with the binary).
fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let values = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in values {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether `request` changes something (any method but `GET`, `HEAD` and `OPTIONS`) and a
/// browser says it comes from a page of another origin: `Sec-Fetch-Site` is `cross-site` or
/// `same-site`, or `Origin` names another host than the request's own. Clients that are not
/// browsers send neither header and pass.
pub(crate) fn is_cross_origin_write(request: &Request) -> bool {
    let method = request.method();
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return false;
    }
    let headers = request.headers();
    let fetched_from_another_site = header_text(headers, "sec-fetch-site").is_some_and(|site| {
        site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site")
    });
    let own_host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| header_text(headers, header::HOST.as_str()));
    let from_another_origin = header_text(headers, header::ORIGIN.as_str())
        .is_some_and(|origin| !same_host(origin, own_host));
    fetched_from_another_site || from_another_origin
}

/// Whether the `Origin` header's host (and port) is `own_host`; an opaque origin (`null`) or
/// a request without a host never is.
fn same_host(origin: &str, own_host: Option<&str>) -> bool {
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (origin_host, own_host) {
        (Some(origin_host), Some(own_host)) => origin_host.eq_ignore_ascii_case(own_host),
        _ => false,
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;

    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder()
            .method(method)
            .uri("/v1/projects/x/regions/eu01/tokens");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn writes_from_the_gateways_own_origin_or_without_a_browser_pass() {
        let host = ("host", "127.0.0.1:8080");
        for headers in [
            vec![host],
            vec![host, ("origin", "http://127.0.0.1:8080")],
            vec![host, ("origin", "https://127.0.0.1:8080")],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
        ] {
            assert!(
                !is_cross_origin_write(&request(Method::POST, &headers)),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn writes_from_another_origin_are_refused() {
        let host = ("host", "127.0.0.1:8080");
        for headers in [
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "http://127.0.0.1:9090")],
            vec![host, ("origin", "null")],
            vec![("origin", "http://127.0.0.1:8080")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
        ] {
            for method in [Method::POST, Method::PATCH, Method::DELETE] {
                assert!(
                    is_cross_origin_write(&request(method, &headers)),
                    "{headers:?}"
                );
            }
        }
    }

    #[test]
    fn reads_are_never_refused() {
        let headers = [("host", "a"), ("origin", "http://evil.example")];
        assert!(!is_cross_origin_write(&request(Method::GET, &headers)));
        assert!(!is_cross_origin_write(&request(Method::HEAD, &headers)));
    }

    #[test]
    fn console_paths_are_the_page_and_its_assets() {
        for path in ["/console", "/console/", "/console/assets/app.js"] {
            assert!(is_console_path(path), "{path}");
        }
        for path in ["/consoles", "/v1/console", "/"] {
            assert!(!is_console_path(path), "{path}");
        }
    }

    #[test]
    fn every_asset_is_served_with_the_policy() {
        for asset in ASSETS {
            let response = serve(asset.path);
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            let headers = response.headers();
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::CONTENT_TYPE], asset.media_type);
        }
        let missing = serve("../Cargo.toml");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            missing.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
    }
}
