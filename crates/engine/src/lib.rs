//! Inference for the gateway: the [`Backend`] trait that the HTTP layer talks to, the ONNX
//! Runtime engine that implements it for encoder embedding models, and the importer that turns
//! Hugging Face checkpoints into the ONNX model directories the engine runs.

mod backend;
pub mod chat_template;
mod embedder;
mod error;
pub mod import;
mod runtime;

pub use backend::{Backend, EmbeddingInputs, Embeddings};
pub use embedder::{EmbedderConfig, OnnxEmbedder};
pub use error::EngineError;
pub use runtime::{Device, OnnxRuntime, SessionConfig};
