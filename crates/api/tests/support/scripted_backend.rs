//! A backend for tests of the HTTP layer: it answers from a script instead of a model, so
//! that status codes, error shapes, headers and stream framing can be checked in process in
//! milliseconds, and so that failures (an overload, a failure in the middle of a stream) can
//! be made to happen on purpose. It is not a model and is never served by `gateway serve`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gateway_backend::{
    generation_channel, Accuracy, Backend, BackendError, Capabilities, ChoiceSink, EmbeddingInputs,
    Embeddings, Figure, FinishReason, GenerationRequest, GenerationStream, Health, Prompt,
    TokenCount, Usage,
};
use gateway_core::{ModelCard, ModelKind, ServicePlan};

/// What the backend does with a generation.
#[derive(Debug, Clone)]
pub enum Script {
    /// Every choice releases these pieces, one token each, then stops.
    Answer(Vec<&'static str>),
    /// Every choice releases these pieces, then the generation fails.
    FailAfter(Vec<&'static str>),
    /// `generate` itself refuses with this error.
    Refuse(BackendError),
}

/// A chat and completion backend (or an embedding one) that follows a [`Script`].
pub struct ScriptedBackend {
    card: ModelCard,
    script: Script,
    chat_only: bool,
    pause: Duration,
    cached_prompt: usize,
    generations: AtomicU64,
    tenants: std::sync::Mutex<Vec<Option<String>>>,
}

impl ScriptedBackend {
    /// A chat model `id` that follows `script` for chat and completion prompts.
    pub fn chat(id: &str, script: Script) -> Self {
        Self {
            card: card(id, ModelKind::Chat, None),
            script,
            chat_only: false,
            pause: Duration::ZERO,
            cached_prompt: 0,
            generations: AtomicU64::new(0),
            tenants: std::sync::Mutex::default(),
        }
    }

    /// An embedding model `id` of `dimensions` dimensions.
    pub fn embedding(id: &str, dimensions: usize) -> Self {
        Self {
            card: card(id, ModelKind::Embedding, Some(dimensions)),
            script: Script::Answer(Vec::new()),
            chat_only: false,
            pause: Duration::ZERO,
            cached_prompt: 0,
            generations: AtomicU64::new(0),
            tenants: std::sync::Mutex::default(),
        }
    }

    /// The tenant of every generation started, in order (read by the router tests; the
    /// `scripted_server` example shares this file without reading it).
    #[allow(dead_code)]
    pub fn tenants(&self) -> Vec<Option<String>> {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The same backend without completions (chat prompts only).
    pub fn chat_only(mut self) -> Self {
        self.chat_only = true;
        self
    }

    /// The same backend, pausing this long before each piece it releases.
    pub fn pausing(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// The same backend, reporting that every choice took `tokens` of its prompt (at most
    /// all of it) from a prompt cache (read by the usage tests; the `scripted_server`
    /// example shares this file without calling it).
    #[allow(dead_code)]
    pub fn caching(mut self, tokens: usize) -> Self {
        self.cached_prompt = tokens;
        self
    }
}

fn card(id: &str, kind: ModelKind, dimensions: Option<usize>) -> ModelCard {
    ModelCard {
        id: id.to_owned(),
        kind,
        plan: ServicePlan::Base,
        context_length: 64,
        dimensions,
        quantization: "none".to_owned(),
        license: "Apache-2.0".to_owned(),
        source: String::new(),
    }
}

/// The scripted prompt's token count: one token per word of its text.
fn prompt_tokens(prompt: &Prompt) -> usize {
    match prompt {
        Prompt::Chat(turns) => turns
            .iter()
            .map(|turn| turn.content.split_whitespace().count())
            .sum(),
        Prompt::Text(text) => text.split_whitespace().count(),
        Prompt::Tokens(tokens) => tokens.len(),
    }
}

#[async_trait]
impl Backend for ScriptedBackend {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn capabilities(&self) -> Capabilities {
        match self.card.kind {
            ModelKind::Chat => Capabilities {
                chat: true,
                completion: !self.chat_only,
                token_ids: true,
                logprobs: false,
                tokenize: false,
                embeddings: false,
                constrained_output: false,
                tools: false,
                echo: false,
            },
            ModelKind::Embedding => Capabilities {
                embeddings: true,
                ..Capabilities::default()
            },
        }
    }

    fn health(&self) -> Health {
        Health::Ready
    }

    fn figures(&self) -> Vec<Figure> {
        vec![Figure {
            name: "scripted_generations",
            help: "Generations the scripted backend started",
            value: self.generations.load(Ordering::SeqCst) as f64,
        }]
    }

    async fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, BackendError> {
        let tokens = prompt_tokens(&request.prompt);
        if tokens + request.max_tokens.unwrap_or(1) > self.card.context_length {
            return Err(BackendError::ContextLengthExceeded {
                message: format!(
                    "{tokens} prompt tokens and {} more do not fit {} tokens",
                    request.max_tokens.unwrap_or(1),
                    self.card.context_length
                ),
            });
        }
        let (pieces, fails) = match &self.script {
            Script::Answer(pieces) => (pieces.clone(), false),
            Script::FailAfter(pieces) => (pieces.clone(), true),
            Script::Refuse(error) => return Err(error.clone()),
        };
        self.generations.fetch_add(1, Ordering::SeqCst);
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request.tenant.clone());
        let (sinks, stream) = generation_channel(request.choices, TokenCount::exact(tokens));
        let limit = request.max_tokens.unwrap_or(usize::MAX);
        let pause = self.pause;
        let cached = self.cached_prompt;
        tokio::spawn(async move {
            for sink in sinks {
                sink.report_cached_prompt(cached);
                play(sink, &pieces, limit, fails, pause).await;
            }
        });
        Ok(stream)
    }

    async fn embed(&self, inputs: EmbeddingInputs) -> Result<Embeddings, BackendError> {
        let dimensions = self.card.dimensions.unwrap_or(1);
        let (vectors, tokens): (Vec<Vec<f32>>, usize) = match inputs {
            EmbeddingInputs::Texts(texts) => (
                texts
                    .iter()
                    .map(|text| vector(text.len(), dimensions))
                    .collect(),
                texts.iter().map(|t| t.split_whitespace().count()).sum(),
            ),
            EmbeddingInputs::Tokens(items) => (
                items.iter().map(|t| vector(t.len(), dimensions)).collect(),
                items.iter().map(Vec::len).sum(),
            ),
        };
        let usage = Usage {
            prompt_tokens: tokens,
            completion_tokens: 0,
            cached_prompt_tokens: 0,
            accuracy: Accuracy::Exact,
        };
        Ok(Embeddings { vectors, usage })
    }
}

/// Releases one choice's pieces (at most `limit`), then ends it as the script says.
async fn play(sink: ChoiceSink, pieces: &[&str], limit: usize, fails: bool, pause: Duration) {
    for piece in pieces.iter().take(limit) {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if !sink.token((*piece).to_owned(), None) {
            return;
        }
    }
    if fails {
        let error = std::io::Error::other("the scripted backend failed on purpose");
        sink.fail(BackendError::internal(error));
    } else if pieces.len() > limit {
        sink.finish(FinishReason::Length, String::new());
    } else {
        sink.finish(FinishReason::Stop, String::new());
    }
}

/// A vector whose first value is `length`, the rest zeros.
fn vector(length: usize, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0.0; dimensions];
    if let Some(first) = vector.first_mut() {
        *first = length as f32;
    }
    vector
}
