//! The ONNX Runtime backend for decoder chat models: a model directory written by the
//! importer (`docs/model-format.md`) is loaded, its session moved to a dedicated thread that
//! runs the continuous-batching [`scheduler`], and requests reach it through a bounded queue
//! that is fair across tenants ([`fair_queue`]; full: [`EngineError::Overloaded`]), one job
//! per choice; each choice's tokens go to its [`gateway_backend::ChoiceSink`], all choices of
//! a request onto one stream.

mod constraint;
mod detokenize;
mod fair_queue;
mod kv_cache;
mod kv_element;
mod model;
mod pages;
mod prefix_cache;
mod prompt;
mod sampler;
mod scheduler;
mod stats;
mod stop;
mod tool_prompt;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use gateway_backend::{
    generation_channel, Backend, BackendError, Capabilities, Figure, GenerationRequest,
    GenerationStream, Health, OutputConstraint, Prompt, SamplingParams, TokenCount, ToolSpec,
};
use gateway_core::model_dir::{CHAT_TEMPLATE_FILE, TOKENIZER_CONFIG_FILE};
use gateway_core::{ModelCard, ModelKind};
use half::f16;
use ort::session::Session;
use tokenizers::Tokenizer;

use self::constraint::{GrammarCompiler, TokenGrammar};
use self::fair_queue::{CloseOnDrop, FairQueue};
use self::kv_cache::KvShape;
use self::kv_element::{CacheElement, KvElement};
use self::model::OnnxDecoder;
use self::prompt::PromptEncoder;
use self::scheduler::{Job, Scheduler, SchedulerLimits, Vocabulary};
use self::stats::StepCounters;
use crate::blocking::off_async_workers;
use crate::chat_template::{ChatTemplate, RenderOptions};
use crate::model_dir::{read_manifest_of_kind, read_tokenizer};
use crate::runtime::{OnnxRuntime, SessionConfig};
use crate::EngineError;

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
    /// Choices that may wait for a place in the batch before new ones get 503; one tenant
    /// may hold `queue_capacity / (tenants waiting + 1)` of them.
    pub queue_capacity: usize,
    /// Bytes of prompt keys and values kept after their requests for later prompts that
    /// start the same way (0: no prompt cache).
    pub prompt_cache_bytes: usize,
    /// Whether special-token text in chat messages (`<|im_start|>` written by a client)
    /// becomes control tokens. Off: it is encoded as plain text, and only the chat template's
    /// own special tokens are control tokens.
    pub special_tokens_in_content: bool,
}

impl Default for GeneratorConfig {
    /// The CPU, 16 sequences, contexts of up to 2,048 tokens, a KV cache of 16,384 tokens,
    /// prefill chunks of 256 tokens (64 while others generate), 1,024 waiting requests, a
    /// prompt cache of 256 MiB, special tokens in messages encoded as text.
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            max_batch_sequences: 16,
            max_context: 2048,
            kv_budget_tokens: 16_384,
            prefill_chunk_tokens: 256,
            prefill_chunk_tokens_while_decoding: 64,
            queue_capacity: 1024,
            prompt_cache_bytes: 256 << 20,
            special_tokens_in_content: false,
        }
    }
}

/// A decoder model served by ONNX Runtime with continuous batching.
pub struct OnnxGenerator {
    card: ModelCard,
    prompts: Arc<PromptEncoder>,
    /// Compiles output constraints; `None` when the vocabulary cannot be read as bytes.
    grammars: Option<Arc<GrammarCompiler>>,
    jobs: Arc<FairQueue<Job>>,
    thread: String,
    counters: Arc<StepCounters>,
}

impl Drop for OnnxGenerator {
    /// Closes the queue: the scheduler finishes what it holds, then its thread ends.
    fn drop(&mut self) {
        self.jobs.close();
    }
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
    /// starts its scheduler thread. Blocks while ONNX Runtime opens the model. A chat template
    /// that cannot render a small conversation within its fuel budget
    /// ([`crate::chat_template::FUEL`]) is refused ([`EngineError::InvalidModel`]).
    pub fn load(
        runtime: &OnnxRuntime,
        dir: &Path,
        config: GeneratorConfig,
    ) -> Result<Self, EngineError> {
        let manifest = read_manifest_of_kind(dir, ModelKind::Chat)?;
        let mut card = manifest.catalog_card();
        card.context_length = card.context_length.min(config.max_context.max(1));
        let tokenizer_path = dir.join(&manifest.tokenizer_file);
        let tokenizer = Arc::new(read_tokenizer(&tokenizer_path)?);
        let special = read_special_tokens(&dir.join(TOKENIZER_CONFIG_FILE))?;
        let token_id =
            |token: &Option<String>| token.as_deref().and_then(|t| tokenizer.token_to_id(t));
        let eos: Vec<u32> = token_id(&special.eos_token).into_iter().collect();
        let add_bos = token_id(&special.bos_token).filter(|_| special.add_bos_token);
        let grammars = GrammarCompiler::for_tokenizer_file(
            &tokenizer_path,
            manifest.vocab_size,
            eos.first().copied(),
        );
        let render = RenderOptions {
            add_generation_prompt: true,
            bos_token: special.bos_token.unwrap_or_default(),
            eos_token: special.eos_token.unwrap_or_default(),
        };
        let template = if manifest.chat_template {
            let path = dir.join(CHAT_TEMPLATE_FILE);
            let source = std::fs::read_to_string(&path).map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?;
            let template = ChatTemplate::new(&source)
                .and_then(|template| template.check_fuel(&render).map(|()| template))
                .map_err(|error| EngineError::InvalidModel {
                    path,
                    message: error.to_string(),
                })?;
            Some(template)
        } else {
            None
        };
        let shape = KvShape {
            layers: manifest.num_layers,
            heads: manifest.num_kv_heads.unwrap_or(manifest.num_heads),
            head_dim: manifest
                .head_dim
                .unwrap_or(manifest.hidden_size / manifest.num_heads.max(1)),
        };
        let limits = SchedulerLimits {
            max_sequences: config.max_batch_sequences.max(1),
            kv_budget_tokens: config.kv_budget_tokens.max(card.context_length),
            prefill_chunk: config.prefill_chunk_tokens.max(1),
            prefill_chunk_while_decoding: config.prefill_chunk_tokens_while_decoding.max(1),
        };
        let onnx_path = dir.join(&manifest.onnx_file);
        let session = runtime.open_session(&onnx_path, &config.session)?;
        let element = CacheElement::of_graph(&session, &onnx_path)?;
        let counters = Arc::new(StepCounters::default());
        let decoder = DecoderParts {
            session,
            shape,
            vocab_size: manifest.vocab_size,
            capacity: card.context_length,
            prompt_cache_bytes: config.prompt_cache_bytes,
            vocab: Vocabulary {
                decoder: Arc::clone(&tokenizer),
                eos,
            },
            limits,
            counters: Arc::clone(&counters),
        };
        let thread = format!("decoder-{}", card.id);
        let jobs = decoder
            .start(element, &thread, config.queue_capacity)
            .map_err(|source| EngineError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        let prompts = PromptEncoder::new(
            tokenizer,
            template,
            render,
            add_bos,
            manifest.vocab_size,
            config.special_tokens_in_content,
        );
        Ok(Self {
            card,
            prompts: Arc::new(prompts),
            grammars: grammars.map(Arc::new),
            jobs,
            thread,
            counters,
        })
    }
}

#[async_trait]
impl Backend for OnnxGenerator {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            chat: self.prompts.has_template(),
            completion: true,
            token_ids: true,
            logprobs: true,
            tokenize: true,
            constrained_output: self.grammars.is_some(),
            echo: true,
            tools: self.prompts.has_template(),
            ..Capabilities::default()
        }
    }

    /// Ready while the scheduler thread runs (its queue is open).
    fn health(&self) -> Health {
        if self.jobs.is_closed() {
            Health::Unavailable(format!("the worker thread {} has stopped", self.thread))
        } else {
            Health::Ready
        }
    }

    fn figures(&self) -> Vec<Figure> {
        self.counters.snapshot().figures()
    }

    async fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<TokenCount, BackendError> {
        let tokens = self.encode(prompt.clone(), Vec::new()).await?;
        Ok(TokenCount::exact(tokens.len()))
    }

    async fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, BackendError> {
        let GenerationRequest {
            prompt,
            choices,
            max_tokens,
            sampling,
            stop,
            ending,
            constraint,
            echo,
            tools,
            tenant,
        } = request;
        let tenant: Arc<str> = Arc::from(tenant.unwrap_or_default());
        let grammar = match constraint {
            Some(constraint) => Some(self.compile(constraint).await?),
            None => None,
        };
        let prompt = self.encode(prompt, tools).await?;
        let max_tokens = self.max_tokens(prompt.len(), max_tokens)?;
        let (sinks, stream) = generation_channel(choices, TokenCount::exact(prompt.len()));
        for sink in sinks {
            let sampling = SamplingParams {
                seed: sampling.seed.wrapping_add(u64::from(sink.choice())),
                ..sampling
            };
            let job = Job {
                prompt: prompt.clone(),
                max_tokens,
                sampling,
                stop: stop.clone(),
                ending: ending.clone(),
                grammar: grammar.as_ref().map(TokenGrammar::fork),
                echo,
                sink,
            };
            self.jobs.push(&tenant, job)?;
        }
        Ok(stream)
    }

    async fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, BackendError> {
        Ok(self.encode(prompt.clone(), Vec::new()).await?)
    }

    async fn detokenize(&self, tokens: &[u32]) -> Result<String, BackendError> {
        let prompts = Arc::clone(&self.prompts);
        let tokens = tokens.to_vec();
        Ok(off_async_workers(move || prompts.decode(&tokens)).await?)
    }
}

impl OnnxGenerator {
    /// The token ids of `prompt` with `tools`, rendered and tokenized on a blocking thread.
    async fn encode(&self, prompt: Prompt, tools: Vec<ToolSpec>) -> Result<Vec<u32>, EngineError> {
        let prompts = Arc::clone(&self.prompts);
        off_async_workers(move || prompts.encode(&prompt, &tools)).await
    }

    /// The grammar of `constraint`, compiled on a blocking thread.
    async fn compile(&self, constraint: OutputConstraint) -> Result<TokenGrammar, EngineError> {
        let grammars = self.grammars.clone().ok_or(EngineError::Unsupported {
            operation: "structured outputs (the model's vocabulary cannot be read as bytes)",
        })?;
        off_async_workers(move || grammars.compile(&constraint)).await
    }

    /// The tokens to generate per choice after a prompt of `prompt_tokens`: the requested
    /// number, else what the context leaves; the prompt and at least one token must fit.
    fn max_tokens(
        &self,
        prompt_tokens: usize,
        requested: Option<usize>,
    ) -> Result<usize, EngineError> {
        if prompt_tokens == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        let context_length = self.card.context_length;
        let max_tokens = requested.unwrap_or(context_length.saturating_sub(prompt_tokens));
        if prompt_tokens + max_tokens.max(1) > context_length {
            return Err(EngineError::PromptTooLong {
                prompt_tokens,
                max_tokens: max_tokens.max(1),
                context_length,
            });
        }
        Ok(max_tokens)
    }
}

/// What a decoder's scheduler is built from, whatever the element type of its cache.
struct DecoderParts {
    session: Session,
    shape: KvShape,
    vocab_size: usize,
    /// Positions per sequence of the KV cache.
    capacity: usize,
    prompt_cache_bytes: usize,
    vocab: Vocabulary<Arc<Tokenizer>>,
    limits: SchedulerLimits,
    counters: Arc<StepCounters>,
}

impl DecoderParts {
    /// Starts the scheduler of a decoder whose cache holds `element`s on a thread named
    /// `thread`, serving a fair queue of `capacity` jobs.
    fn start(
        self,
        element: CacheElement,
        thread: &str,
        capacity: usize,
    ) -> std::io::Result<Arc<FairQueue<Job>>> {
        match element {
            CacheElement::F32 => self.start_with::<f32>(thread, capacity),
            CacheElement::F16 => self.start_with::<f16>(thread, capacity),
        }
    }

    /// [`Self::start`] with a cache of elements `E`.
    fn start_with<E: KvElement>(
        self,
        thread: &str,
        capacity: usize,
    ) -> std::io::Result<Arc<FairQueue<Job>>> {
        let model = OnnxDecoder::<E>::new(
            self.session,
            self.shape,
            self.vocab_size,
            self.limits.max_sequences,
            self.capacity,
            self.prompt_cache_bytes,
        );
        let scheduler = Scheduler::new(model, self.vocab, self.limits, self.counters);
        start_scheduler(scheduler, thread, capacity)
    }
}

/// Starts `scheduler` on a thread named `thread`, serving a fair queue of `capacity` jobs;
/// the queue closes when the thread ends, however it ends.
fn start_scheduler<M, D>(
    scheduler: Scheduler<M, D>,
    thread: &str,
    capacity: usize,
) -> std::io::Result<Arc<FairQueue<Job>>>
where
    M: model::StepModel + Send + 'static,
    D: detokenize::TokenDecoder + Send + 'static,
{
    let jobs = Arc::new(FairQueue::new(capacity));
    let closer = CloseOnDrop(Arc::clone(&jobs));
    std::thread::Builder::new()
        .name(thread.to_owned())
        .spawn(move || {
            scheduler.run(&closer.0);
            drop(closer);
        })?;
    Ok(jobs)
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
