//! The HTTP client all upstream requests of a backend share: pooled connections with
//! keep-alive, `TCP_NODELAY`, TLS with the system's root certificates, HTTP/2 where the server
//! offers it by ALPN (or always, with prior knowledge, when configured), and the connect
//! timeout. [`Client::send`] adds the bearer key and the time limit for the answer's head.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::settings::{Endpoint, Settings, SettingsError};

/// Why an attempt on a server did not get an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The request could not be built (a key that is not a valid header value).
    #[error("cannot build the upstream request: {0}")]
    Request(#[from] http::Error),
    /// Connecting, sending or receiving failed.
    #[error("upstream connection failed: {0}")]
    Connection(#[from] hyper_util::client::legacy::Error),
    /// Reading the answer's body failed.
    #[error("reading the upstream answer failed: {0}")]
    Body(#[from] hyper::Error),
    /// The server did not answer in time.
    #[error("the upstream server did not answer within {0:?}")]
    Timeout(Duration),
}

/// A pooled client for the servers of one backend.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    inner: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    /// A client with the connect timeout and HTTP versions of `settings`.
    pub(crate) fn new(settings: &Settings) -> Result<Self, SettingsError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(settings.http2_prior_knowledge)
            .build(connector);
        Ok(Self { inner })
    }

    /// Sends `body` (JSON) to `path` of `endpoint`, or a GET when `body` is `None`; the answer's
    /// head must come within `timeout`.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, TransportError> {
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let mut request = Request::builder()
            .method(method)
            .uri(endpoint.url(path))
            .header(header::ACCEPT, "application/json, text/event-stream");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = endpoint.api_key() {
            let mut value =
                http::HeaderValue::try_from(format!("Bearer {key}")).map_err(http::Error::from)?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        tokio::time::timeout(timeout, self.inner.request(request))
            .await
            .map_err(|_| TransportError::Timeout(timeout))?
            .map_err(TransportError::from)
    }
}

/// TLS with the system's root certificates (none found: only plain-HTTP servers work, and
/// HTTPS ones fail their handshake, which the health checks report).
fn tls_config() -> Result<rustls::ClientConfig, SettingsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if roots.add_parsable_certificates(native.certs).0 == 0 {
        tracing::warn!("no system root certificates found; HTTPS upstreams cannot be verified");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SettingsError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
