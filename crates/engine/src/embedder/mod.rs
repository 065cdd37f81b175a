//! The ONNX Runtime backend for encoder embedding models (BERT family): a model directory
//! written by the importer is loaded, its session moved to a dedicated worker thread, and
//! concurrent requests are batched dynamically into shared runs.

mod batch_plan;
mod encode;
mod pooling;
mod worker;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use gateway_backend::{
    Accuracy, Backend, BackendError, Capabilities, EmbeddingInputs, Embeddings, Health, Usage,
};
use gateway_core::model_dir::{OnnxManifest, Pooling};
use gateway_core::{ModelCard, ModelKind};
use tokio::sync::oneshot;

use self::encode::{EncodeLimits, InputEncoder};
use self::worker::{run_worker, Job, WorkerModel};
use crate::blocking::off_async_workers;
use crate::job_queue::JobQueue;
use crate::model_dir::read_manifest_of_kind;
use crate::runtime::{OnnxRuntime, SessionConfig};
use crate::EngineError;

/// How an embedding model is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedderConfig {
    /// Execution provider and threads of the ONNX Runtime session.
    pub session: SessionConfig,
    /// Largest padded batch (rows × longest row) of one ONNX Runtime run, in tokens.
    pub max_batch_tokens: usize,
    /// Requests that may wait for the worker before new ones are turned away.
    pub queue_capacity: usize,
    /// Most inputs in one request.
    pub max_inputs: usize,
    /// Cut inputs longer than the context length instead of rejecting them.
    pub truncate: bool,
}

impl Default for EmbedderConfig {
    /// The CPU, batches of up to 16,384 tokens, 1,024 waiting requests, 2,048 inputs per
    /// request, long inputs refused.
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            max_batch_tokens: 16_384,
            queue_capacity: 1024,
            max_inputs: 2048,
            truncate: false,
        }
    }
}

/// An encoder model served by ONNX Runtime with dynamic batching.
pub struct OnnxEmbedder {
    card: ModelCard,
    encoder: Arc<InputEncoder>,
    jobs: JobQueue<Job>,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("model", &self.card.id)
            .finish_non_exhaustive()
    }
}

impl OnnxEmbedder {
    /// Loads the model directory `dir` (model card, ONNX graph, tokenizer) and starts its
    /// worker thread. Blocks while ONNX Runtime opens the model.
    pub fn load(
        runtime: &OnnxRuntime,
        dir: &Path,
        config: EmbedderConfig,
    ) -> Result<Self, EngineError> {
        let manifest = read_manifest_of_kind(dir, ModelKind::Embedding)?;
        let card = manifest.catalog_card();
        let limits = EncodeLimits {
            context_length: card.context_length,
            max_inputs: config.max_inputs,
            truncate: config.truncate,
        };
        let encoder = InputEncoder::load(&dir.join(&manifest.tokenizer_file), limits)?;
        let session = runtime.open_session(&dir.join(&manifest.onnx_file), &config.session)?;
        let model = worker_model(session, &manifest, &config)?;
        let thread = format!("encoder-{}", card.id);
        let jobs = JobQueue::start(thread, config.queue_capacity, move |jobs| {
            run_worker(model, jobs);
        })
        .map_err(|source| EngineError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            card,
            encoder: Arc::new(encoder),
            jobs,
        })
    }
}

#[async_trait]
impl Backend for OnnxEmbedder {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            embeddings: true,
            token_ids: true,
            ..Capabilities::default()
        }
    }

    fn health(&self) -> Health {
        self.jobs.health()
    }

    async fn embed(&self, inputs: EmbeddingInputs) -> Result<Embeddings, BackendError> {
        Ok(self.embed_inputs(inputs).await?)
    }
}

impl OnnxEmbedder {
    /// Tokenizes `inputs` off the async workers, then runs them on the worker thread.
    async fn embed_inputs(&self, inputs: EmbeddingInputs) -> Result<Embeddings, EngineError> {
        let encoder = Arc::clone(&self.encoder);
        let sequences = off_async_workers(move || encoder.encode(&inputs)).await?;
        let prompt_tokens = sequences.iter().map(|s| s.len()).sum();
        let (reply, answer) = oneshot::channel();
        self.jobs.submit(Job { sequences, reply })?;
        let vectors = answer.await.map_err(|_| EngineError::WorkerStopped)??;
        let usage = Usage {
            prompt_tokens,
            completion_tokens: 0,
            cached_prompt_tokens: 0,
            accuracy: Accuracy::Exact,
        };
        Ok(Embeddings { vectors, usage })
    }
}

/// Checks the session's inputs and outputs against the card and gathers what the worker needs.
fn worker_model(
    session: ort::session::Session,
    manifest: &OnnxManifest,
    config: &EmbedderConfig,
) -> Result<WorkerModel, EngineError> {
    let invalid = |message: String| EngineError::InvalidModel {
        path: manifest.onnx_file.clone().into(),
        message,
    };
    let has_input = |name: &str| session.inputs().iter().any(|input| input.name() == name);
    for required in ["input_ids", "attention_mask"] {
        if !has_input(required) {
            return Err(invalid(format!("the graph has no input named {required}")));
        }
    }
    let takes_token_types = has_input("token_type_ids");
    let output = session
        .outputs()
        .iter()
        .map(|output| output.name().to_owned())
        .find(|name| name == "last_hidden_state")
        .ok_or_else(|| invalid("the graph has no output named last_hidden_state".to_owned()))?;
    Ok(WorkerModel {
        session,
        output,
        takes_token_types,
        hidden: manifest.hidden_size,
        pooling: manifest.pooling.unwrap_or(Pooling::Mean),
        normalize: manifest.normalize,
        max_batch_tokens: config.max_batch_tokens.max(manifest.card.context_length),
    })
}
