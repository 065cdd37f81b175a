//! The upstream backend of the gateway: a catalog model served by one or more other
//! OpenAI-compatible servers (vLLM, TGI, TEI, llama.cpp's server, another gateway), behind the
//! same keys, metering, limits and lifecycle as the models of the gateway's own engine.
//!
//! - [`UpstreamBackend`] implements the backend contract of `gateway-backend`: chat,
//!   completions and embeddings, a generation streamed chunk by chunk as the upstream sends
//!   it, usage as the upstream reports it (it is always asked for) or else counted with the
//!   model's tokenizer or `tiktoken` and marked estimated.
//! - [`Balancer`](balancer): least outstanding requests across the servers that pass their
//!   health checks and whose circuit is closed; a request is retried on another server only
//!   while nothing of it has reached the client (before the upstream's first byte).
//! - [`Circuit`](circuit): opens for a server that keeps failing and half-opens to probe it.
//! - [`client`]: one pooled HTTP client (keep-alive, HTTP/2 by ALPN over TLS or by prior
//!   knowledge), with connect, first-byte and idle timeouts.
//!
//! Neither an upstream's address nor its key ever reaches a client: errors say what happened
//! in the gateway's words, and the answers are rebuilt by the gateway's HTTP layer.

mod backend;
mod balancer;
mod circuit;
mod client;
mod exchange;
mod health;
mod relay;
mod settings;
mod sse;
mod tokens;
mod wire;

pub use backend::UpstreamBackend;
pub use settings::{Endpoint, Settings, SettingsError};
pub use tokens::TokenCounter;
