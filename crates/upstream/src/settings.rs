//! What an upstream backend is configured with: its servers ([`Endpoint`]: base URL, the model
//! name it serves the model under, an optional key) and how it treats them ([`Settings`]:
//! timeouts, health checks, the circuit, retries, HTTP/2).

use std::fmt;
use std::time::Duration;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A base URL that is not an absolute `http` or `https` URL.
    #[error("upstream URL {url:?} is not an absolute http:// or https:// URL")]
    BadUrl {
        /// The URL as configured.
        url: String,
    },
    /// A model with no server.
    #[error("an upstream model needs at least one server")]
    NoServers,
    /// The TLS settings could not be built.
    #[error("cannot set up TLS for upstream servers: {0}")]
    Tls(String),
}

/// One server a model is served by.
#[derive(Clone)]
pub struct Endpoint {
    base_url: String,
    model: String,
    api_key: Option<String>,
}

impl Endpoint {
    /// The server at `base_url` (e.g. `http://10.0.0.5:8000/v1`, the prefix of
    /// `/chat/completions`), serving the model as `model`, sent `api_key` as a bearer token.
    pub fn new(
        base_url: &str,
        model: impl Into<String>,
        api_key: Option<String>,
    ) -> Result<Self, SettingsError> {
        let bad = || SettingsError::BadUrl {
            url: base_url.to_owned(),
        };
        let uri: http::Uri = base_url.parse().map_err(|_| bad())?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.host().is_none() || uri.query().is_some() {
            return Err(bad());
        }
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.into(),
            api_key,
        })
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The model name the server knows the model by.
    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    /// The bearer token the server is sent, if any.
    pub(crate) fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }
}

/// The key stays out of logs and debug output.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// How an upstream backend treats its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to the first byte of the answer's body (for a
    /// generation: the first chunk); a request that times out is retried on another server.
    pub first_byte_timeout: Duration,
    /// Longest pause between two pieces of an answer once it started.
    pub idle_timeout: Duration,
    /// How often each server's `/models` is asked whether it serves; zero: never (servers
    /// count as healthy, the circuit alone keeps failing ones out).
    pub health_check_interval: Duration,
    /// Consecutive failures after which a server's circuit opens.
    pub failures_to_open: u32,
    /// How long an open circuit keeps a server out before one request probes it.
    pub open_for: Duration,
    /// Most servers one request is tried on (the first included).
    pub max_attempts: usize,
    /// Speak HTTP/2 without TLS (prior knowledge, h2c) to plain `http://` servers; over TLS,
    /// HTTP/2 is used where the server offers it, whatever this says.
    pub http2_prior_knowledge: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            health_check_interval: Duration::from_secs(5),
            failures_to_open: 5,
            open_for: Duration::from_secs(10),
            max_attempts: 3,
            http2_prior_knowledge: false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base_urls_are_checked_and_joined() {
        let endpoint = Endpoint::new("http://127.0.0.1:9000/v1/", "m", None).unwrap();
        assert_eq!(endpoint.url("/models"), "http://127.0.0.1:9000/v1/models");
        for bad in ["ftp://x/v1", "/v1", "not a url", "http://x/v1?a=b"] {
            assert!(Endpoint::new(bad, "m", None).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let endpoint = Endpoint::new("https://h/v1", "m", Some("sk-secret".into())).unwrap();
        let shown = format!("{endpoint:?}");
        assert!(
            !shown.contains("sk-secret") && shown.contains("<set>"),
            "{shown}"
        );
    }
}
