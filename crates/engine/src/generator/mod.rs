//! The ONNX Runtime backend for decoder chat models: a model directory written by the
//! importer (`docs/model-format.md`) is loaded, its session moved to a dedicated thread that
//! runs the continuous-batching [`scheduler`], and requests reach it over a bounded channel
//! (full: [`EngineError::Overloaded`]); each request's events come back on its own channel.

mod detokenize;
mod kv_cache;
mod model;
mod sampler;
mod scheduler;
mod stats;
mod stop;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use gateway_core::{ModelCard, ModelKind};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use self::kv_cache::KvShape;
use self::model::OnnxDecoder;
use self::scheduler::{Job, Scheduler, SchedulerLimits, Vocabulary};
use self::stats::StepCounters;
pub use self::stats::StepStats;
use crate::chat_template::{ChatTemplate, RenderOptions};
use crate::model_dir::{read_card, read_tokenizer};
use crate::runtime::{OnnxRuntime, SessionConfig};
use crate::{Backend, ChatTurn, EngineError, GenerationRequest, GenerationStream};

/// File of the chat template inside a model directory.
const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// File of the tokenizer's special tokens inside a model directory.
const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// How a chat model is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Execution provider and threads of the ONNX Runtime session.
    pub session: SessionConfig,
    /// Most sequences in the running batch.
    pub max_batch_sequences: usize,
    /// Longest sequence (prompt + generated tokens) served; the model's context length if
    /// smaller.
    pub max_context: usize,
    /// Most tokens (prompt + `max_tokens` of each running sequence) the KV cache holds at
    /// once; at least `max_context`.
    pub kv_budget_tokens: usize,
    /// Most prompt tokens run in one prefill chunk while no sequence is generating.
    pub prefill_chunk_tokens: usize,
    /// Most prompt tokens run in one prefill chunk while sequences are generating (bounds
    /// the pause a new prompt adds to their inter-token latency).
    pub prefill_chunk_tokens_while_decoding: usize,
    /// Requests that may wait for a place in the batch before new ones get 503.
    pub queue_capacity: usize,
}

/// A decoder model served by ONNX Runtime with continuous batching.
pub struct OnnxGenerator {
    card: ModelCard,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    render: RenderOptions,
    add_bos: Option<u32>,
    jobs: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
    counters: Arc<StepCounters>,
}

impl std::fmt::Debug for OnnxGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxGenerator")
            .field("model", &self.card.id)
            .finish_non_exhaustive()
    }
}

/// The special tokens of `tokenizer_config.json` the engine uses.
#[derive(Debug, Default, serde::Deserialize)]
struct SpecialTokens {
    #[serde(default, deserialize_with = "token_text")]
    bos_token: Option<String>,
    #[serde(default, deserialize_with = "token_text")]
    eos_token: Option<String>,
    #[serde(default)]
    add_bos_token: bool,
}

impl OnnxGenerator {
    /// Loads the model directory `dir` (model card, ONNX graph, tokenizer, chat template) and
    /// starts its scheduler thread. Blocks while ONNX Runtime opens the model.
    pub fn load(
        runtime: &OnnxRuntime,
        dir: &Path,
        config: GeneratorConfig,
    ) -> Result<Self, EngineError> {
        let mut card = read_card(dir, ModelKind::Chat)?;
        card.context_length = card.context_length.min(config.max_context.max(1));
        let tokenizer = Arc::new(read_tokenizer(&dir.join(&card.tokenizer_file))?);
        let special = read_special_tokens(&dir.join(TOKENIZER_CONFIG_FILE))?;
        let template = if card.chat_template {
            let path = dir.join(CHAT_TEMPLATE_FILE);
            let source = std::fs::read_to_string(&path).map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?;
            Some(
                ChatTemplate::new(&source).map_err(|error| EngineError::InvalidModel {
                    path,
                    message: error.to_string(),
                })?,
            )
        } else {
            None
        };
        let token_id =
            |token: &Option<String>| token.as_deref().and_then(|t| tokenizer.token_to_id(t));
        let eos: Vec<u32> = token_id(&special.eos_token).into_iter().collect();
        let add_bos = token_id(&special.bos_token).filter(|_| special.add_bos_token);
        let render = RenderOptions {
            add_generation_prompt: true,
            bos_token: special.bos_token.unwrap_or_default(),
            eos_token: special.eos_token.unwrap_or_default(),
        };
        let shape = KvShape {
            layers: card.num_layers,
            heads: card.num_kv_heads.unwrap_or(card.num_heads),
            head_dim: card
                .head_dim
                .unwrap_or(card.hidden_size / card.num_heads.max(1)),
        };
        let limits = SchedulerLimits {
            max_sequences: config.max_batch_sequences.max(1),
            kv_budget_tokens: config.kv_budget_tokens.max(card.context_length),
            prefill_chunk: config.prefill_chunk_tokens.max(1),
            prefill_chunk_while_decoding: config.prefill_chunk_tokens_while_decoding.max(1),
        };
        let session = runtime.open_session(&dir.join(&card.onnx_file), &config.session)?;
        let model = OnnxDecoder::new(
            session,
            shape,
            card.vocab_size,
            limits.max_sequences,
            card.context_length,
        );
        let vocab = Vocabulary {
            decoder: Arc::clone(&tokenizer),
            eos,
        };
        let counters = Arc::new(StepCounters::default());
        let scheduler = Scheduler::new(model, vocab, limits, Arc::clone(&counters));
        let (jobs, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        let worker_alive = Arc::clone(&alive);
        std::thread::Builder::new()
            .name(format!("decoder-{}", card.id))
            .spawn(move || scheduler.run(receiver, worker_alive))
            .map_err(|source| EngineError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Self {
            card,
            tokenizer,
            template,
            render,
            add_bos,
            jobs,
            alive,
            counters,
        })
    }
}

#[async_trait]
impl Backend for OnnxGenerator {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn is_ready(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn step_stats(&self) -> Option<StepStats> {
        Some(self.counters.snapshot())
    }

    async fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, EngineError> {
        if request.prompt.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        let vocab_size = self.card.vocab_size;
        if let Some(&token) = request.prompt.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(EngineError::TokenOutOfRange {
                index: 0,
                token,
                vocab_size,
            });
        }
        let context_length = self.card.context_length;
        if request.prompt.len() + request.max_tokens > context_length {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: request.prompt.len(),
                max_tokens: request.max_tokens,
                context_length,
            });
        }
        let (events, receiver) = mpsc::unbounded_channel();
        self.jobs
            .try_send(Job { request, events })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => EngineError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => EngineError::WorkerStopped,
            })?;
        Ok(GenerationStream::new(receiver))
    }

    fn render_chat(&self, turns: &[ChatTurn]) -> Result<Vec<u32>, EngineError> {
        let template = self.template.as_ref().ok_or(EngineError::Unsupported {
            operation: "chat (the model has no chat template)",
        })?;
        let prompt = template.render(&turns, &self.render)?;
        self.encode(&prompt, None)
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.encode(text, self.add_bos)
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        detokenize::TokenDecoder::decode(self.tokenizer.as_ref(), tokens)
    }
}

impl OnnxGenerator {
    /// Tokenizes `text` as it is (special tokens written in it are recognised), after `bos`.
    fn encode(&self, text: &str, bos: Option<u32>) -> Result<Vec<u32>, EngineError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|error| EngineError::Tokenizer(error.to_string()))?;
        Ok(bos
            .into_iter()
            .chain(encoding.get_ids().iter().copied())
            .collect())
    }
}

/// Reads the special tokens of `tokenizer_config.json`; none when the file is missing.
fn read_special_tokens(path: &Path) -> Result<SpecialTokens, EngineError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SpecialTokens::default())
        }
        Err(source) => {
            return Err(EngineError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_str(&text).map_err(|error| EngineError::InvalidModel {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// A special token as `tokenizer_config.json` writes it: a string or `{"content": …}`.
fn token_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value: Option<serde_json::Value> = serde::Deserialize::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::String(text)) => Some(text),
        Some(serde_json::Value::Object(object)) => object
            .get("content")
            .and_then(|content| content.as_str())
            .map(str::to_owned),
        _ => None,
    })
}
