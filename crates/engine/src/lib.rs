//! Inference for the gateway: the [`Backend`] trait that the HTTP layer talks to, the ONNX
//! Runtime engine that implements it for encoder embedding models and for decoder chat models
//! (continuous batching, sampling, streaming), and the importer that turns
//! Hugging Face checkpoints into the ONNX model directories the engine runs.

mod backend;
pub mod chat_template;
mod embedder;
mod error;
mod generation;
mod generator;
pub mod import;
mod model_dir;
mod runtime;

pub use backend::{Backend, EmbeddingInputs, Embeddings};
pub use embedder::{EmbedderConfig, OnnxEmbedder};
pub use error::EngineError;
pub use generation::{
    ChatTurn, FinishReason, GenerationEvent, GenerationRequest, GenerationStream, SamplingParams,
    TokenLogprob,
};
pub use generator::{GeneratorConfig, OnnxGenerator, StepStats};
pub use model_dir::read_model_card;
pub use runtime::{Device, OnnxRuntime, SessionConfig};
