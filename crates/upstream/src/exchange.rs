//! Starts one request on the servers of a model: picks a server, sends the request, and waits
//! for the first byte of a successful answer's body; a server that fails before that (no
//! connection, a timeout, a 5xx, a 429, refused credentials) is left for another, up to the
//! configured attempts, since nothing has reached the client yet. A refusal of the request
//! itself (a 4xx about its content) is the client's answer and is not retried.

use std::time::Duration;

use bytes::Bytes;
use gateway_backend::BackendError;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use crate::balancer::{Balancer, Lease};
use crate::client::{Client, TransportError};
use crate::settings::Settings;
use crate::wire;

/// Longest error body read from an upstream.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A request a server accepted: the server's lease, the rest of the body, and its first bytes.
pub(crate) struct Started {
    /// The server, outstanding until the answer ends.
    pub(crate) lease: Lease,
    /// The rest of the answer's body.
    pub(crate) body: Incoming,
    /// The first bytes of the body (empty when the body was).
    pub(crate) first: Bytes,
}

/// What one attempt on one server came to, short of success.
enum Attempt {
    /// The server refused the request because of its content: the client's answer.
    Refused(BackendError),
    /// The server failed; another may serve. `busy` when it said so (429, 408), `stale` when
    /// a kept-alive connection broke under the request (the server had closed it): neither
    /// counts against the server's circuit.
    Failed {
        reason: String,
        busy: bool,
        stale: bool,
    },
}

/// The names a request goes by: the catalog's model id, which upstream messages are
/// rewritten to.
pub(crate) struct Exchange<'a> {
    /// The model's servers.
    pub(crate) balancer: &'a Balancer,
    /// The shared client.
    pub(crate) client: &'a Client,
    /// Timeouts and attempts.
    pub(crate) settings: &'a Settings,
    /// The model id clients use.
    pub(crate) model_id: &'a str,
}

impl Exchange<'_> {
    /// Sends `body` (with each server's model name set in turn) to `path` until a server
    /// accepts it.
    pub(crate) async fn start(
        &self,
        path: &str,
        mut body: Map<String, Value>,
    ) -> Result<Started, BackendError> {
        let mut tried = Vec::new();
        let mut busy_only = true;
        let mut stale_retry = false;
        while tried.len() < self.settings.max_attempts {
            // A connection the server had closed is retried once, on any server (also the
            // same one, on a fresh connection).
            let lease = match self.balancer.pick(&tried) {
                None if std::mem::take(&mut stale_retry) => self.balancer.pick(&[]),
                picked => picked,
            };
            let Some(mut lease) = lease else {
                break;
            };
            tried.push(lease.index());
            match self.attempt(&lease, path, &mut body).await {
                Ok((body, first)) => return Ok(Started { lease, body, first }),
                Err(Attempt::Refused(error)) => {
                    lease.succeeded();
                    return Err(error);
                }
                Err(Attempt::Failed {
                    reason,
                    busy,
                    stale,
                }) => {
                    tracing::warn!(
                        model = self.model_id,
                        upstream = %lease.endpoint().url(""),
                        %reason,
                        "upstream attempt failed"
                    );
                    busy_only &= busy;
                    stale_retry = stale;
                    if busy || stale {
                        lease.succeeded();
                    } else {
                        lease.failed(self.balancer.counters());
                    }
                }
            }
        }
        Err(if tried.is_empty() {
            BackendError::Unavailable {
                reason: "no upstream server is available".to_owned(),
            }
        } else if busy_only {
            BackendError::Overloaded
        } else {
            BackendError::Unavailable {
                reason: format!("{} upstream attempts failed", tried.len()),
            }
        })
    }

    async fn attempt(
        &self,
        lease: &Lease,
        path: &str,
        body: &mut Map<String, Value>,
    ) -> Result<(Incoming, Bytes), Attempt> {
        let endpoint = lease.endpoint();
        let failed = |error: TransportError| Attempt::Failed {
            stale: matches!(&error, TransportError::Connection(e) if !e.is_connect()),
            reason: error.to_string(),
            busy: false,
        };
        let timeout = self.settings.first_byte_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let sent = wire::with_model(body, endpoint.model());
        let response = self
            .client
            .send(endpoint, path, Some(sent), timeout)
            .await
            .map_err(failed)?;
        let status = response.status();
        let mut body = response.into_body();
        if status.is_success() {
            let first = tokio::time::timeout_at(deadline, next_data(&mut body))
                .await
                .map_err(|_| failed(TransportError::Timeout(timeout)))?
                .map_err(failed)?
                .unwrap_or_default();
            return Ok((body, first));
        }
        let error_body = read_limited(&mut body, self.settings.idle_timeout, MAX_ERROR_BODY).await;
        Err(self.classify(status, &error_body, endpoint.model()))
    }

    /// What an error status means for the request and the server.
    fn classify(&self, status: StatusCode, body: &[u8], upstream_model: &str) -> Attempt {
        let failed = |busy| Attempt::Failed {
            reason: format!("status {status}"),
            busy,
            stale: false,
        };
        match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => failed(true),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::error!(
                    model = self.model_id,
                    %status,
                    "an upstream server refused the gateway's credentials"
                );
                failed(false)
            }
            StatusCode::NOT_FOUND => failed(false),
            _ if status.is_client_error() => {
                Attempt::Refused(self.refusal(status, body, upstream_model))
            }
            _ => failed(false),
        }
    }

    /// The client's error for a refused request: the upstream's message with the upstream's
    /// model name replaced by the catalog's id.
    fn refusal(&self, status: StatusCode, body: &[u8], upstream_model: &str) -> BackendError {
        let message = wire::error_message(body)
            .map(|message| message.replace(upstream_model, self.model_id))
            .unwrap_or_else(|| format!("the model's server refused the request ({status})"));
        let lowered = message.to_ascii_lowercase();
        if lowered.contains("context length") || lowered.contains("maximum context") {
            BackendError::ContextLengthExceeded { message }
        } else {
            BackendError::InvalidInput { message }
        }
    }
}

/// The next data of `body`; `None` at its end.
pub(crate) async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, TransportError> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Up to `limit` bytes of `body`, each piece within `idle`; what arrived when it stops.
async fn read_limited(body: &mut Incoming, idle: Duration, limit: usize) -> Vec<u8> {
    let mut read = Vec::new();
    while read.len() < limit {
        match tokio::time::timeout(idle, next_data(body)).await {
            Ok(Ok(Some(data))) => read.extend_from_slice(&data),
            _ => break,
        }
    }
    read.truncate(limit);
    read
}
