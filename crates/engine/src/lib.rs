//! The ONNX Runtime backend of the gateway: model directories written by `gateway-import`
//! served through the [`gateway_backend::Backend`] contract.
//!
//! - [`OnnxEmbedder`]: encoder embedding models (BERT family), with concurrent requests batched
//!   dynamically into shared runs.
//! - [`OnnxGenerator`]: decoder chat models (LLaMA family) with a KV cache, continuous
//!   batching, sampling, stop strings and streaming; chat templates rendered with
//!   [`chat_template`].
//! - [`OnnxRuntime`]: the ONNX Runtime library, loaded once per process, and the
//!   [`SessionConfig`] a model is opened with (CPU or CUDA execution provider, threads).
//! - [`load_backend`]: opens any model directory as the backend its manifest's kind asks for.
//!
//! Embedding two sentences in a few lines (the `embed` example runs this):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gateway_backend::{Backend, EmbeddingInputs};
//! use gateway_engine::{EmbedderConfig, OnnxEmbedder, OnnxRuntime};
//!
//! let runtime = OnnxRuntime::load("libonnxruntime.so".as_ref())?;
//! let config = EmbedderConfig::default();
//! let model = OnnxEmbedder::load(&runtime, "data/models/all-minilm-l6-v2".as_ref(), config)?;
//! let inputs = EmbeddingInputs::Texts(vec!["A man is eating food.".into()]);
//! let embeddings = model.embed(inputs).await?;
//! println!("{} dimensions, {} tokens", embeddings.vectors[0].len(), embeddings.usage.prompt_tokens);
//! # Ok(())
//! # }
//! ```

mod blocking;
pub mod chat_template;
mod embedder;
mod error;
mod generator;
mod job_queue;
mod library_file;
mod model_dir;
mod runtime;
#[cfg(test)]
mod test_tokenizer;

pub use embedder::{EmbedderConfig, OnnxEmbedder};
pub use error::EngineError;
pub use generator::{GeneratorConfig, OnnxGenerator};
pub use model_dir::{load_backend, read_manifest, ModelSettings};
pub use runtime::{OnnxRuntime, SessionConfig};
