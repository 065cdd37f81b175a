//! The ONNX Runtime backend for encoder embedding models (BERT family): a model directory
//! written by the importer is loaded, its session moved to a dedicated worker thread, and
//! concurrent requests are batched dynamically into shared runs.

mod batch_plan;
mod encode;
mod pooling;
mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use gateway_core::{ModelCard, ModelKind, Pooling};
use tokio::sync::{mpsc, oneshot};

use self::encode::{EncodeLimits, InputEncoder};
use self::worker::{run_worker, Job, WorkerModel};
use crate::model_dir::read_card;
use crate::runtime::{OnnxRuntime, SessionConfig};
use crate::{Backend, EmbeddingInputs, Embeddings, EngineError};

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

/// An encoder model served by ONNX Runtime with dynamic batching.
pub struct OnnxEmbedder {
    card: ModelCard,
    encoder: InputEncoder,
    jobs: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
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
        let card = read_card(dir, ModelKind::Embedding)?;
        let limits = EncodeLimits {
            context_length: card.context_length,
            max_inputs: config.max_inputs,
            truncate: config.truncate,
        };
        let encoder = InputEncoder::load(&dir.join(&card.tokenizer_file), limits)?;
        let session = runtime.open_session(&dir.join(&card.onnx_file), &config.session)?;
        let model = worker_model(session, &card, &config)?;
        let (jobs, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        let worker_alive = Arc::clone(&alive);
        std::thread::Builder::new()
            .name(format!("encoder-{}", card.id))
            .spawn(move || run_worker(model, receiver, worker_alive))
            .map_err(|source| EngineError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Self {
            card,
            encoder,
            jobs,
            alive,
        })
    }
}

#[async_trait]
impl Backend for OnnxEmbedder {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn is_ready(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    async fn embed(&self, inputs: EmbeddingInputs) -> Result<Embeddings, EngineError> {
        let sequences = self.encoder.encode(&inputs)?;
        let prompt_tokens = sequences.iter().map(|s| s.len()).sum();
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { sequences, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => EngineError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => EngineError::WorkerStopped,
            })?;
        let vectors = answer.await.map_err(|_| EngineError::WorkerStopped)??;
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}

/// Checks the session's inputs and outputs against the card and gathers what the worker needs.
fn worker_model(
    session: ort::session::Session,
    card: &ModelCard,
    config: &EmbedderConfig,
) -> Result<WorkerModel, EngineError> {
    let invalid = |message: String| EngineError::InvalidModel {
        path: card.onnx_file.clone().into(),
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
        hidden: card.hidden_size,
        pooling: card.pooling.unwrap_or(Pooling::Mean),
        normalize: card.normalize,
        max_batch_tokens: config.max_batch_tokens.max(card.context_length),
    })
}
