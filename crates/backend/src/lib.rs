//! The backend contract of the gateway: what the HTTP layer asks of a served model, whatever
//! runs it — the ONNX Runtime engine of `gateway-engine`, an upstream OpenAI-compatible
//! server, or an engine written elsewhere. It depends on nothing heavier than `gateway-core`
//! and `tokio`'s channels, so an engine can implement it without the HTTP layer and the HTTP
//! layer can use it without any engine.
//!
//! - [`Backend`]: the trait, object-safe (`Arc<dyn Backend>` per model id): the model's
//!   [`ModelCard`](gateway_core::ModelCard), its [`Capabilities`] and [`Health`], counting a
//!   prompt's tokens before admission, [`Backend::generate`], [`Backend::embed`], the optional
//!   tokenizer ([`Backend::tokenize`], [`Backend::detokenize`]) and engine-specific
//!   [`Figure`]s for the metrics.
//! - [`Prompt`]: chat turns, text or token ids; each backend renders and tokenizes in its own
//!   way.
//! - [`GenerationStream`]: the events of one generation (all its choices), ending with the
//!   [`Usage`] the backend counted; [`generation_channel`] gives a backend the
//!   [`ChoiceSink`]s that feed it.
//! - [`BackendError`]: typed errors the HTTP layer maps to statuses, with client-safe
//!   messages.
//!
//! The smallest backend, answering every chat turn with its own text:
//!
//! ```
//! use async_trait::async_trait;
//! use gateway_backend::{
//!     generation_channel, Backend, BackendError, Capabilities, FinishReason, GenerationRequest,
//!     GenerationStream, Health, Prompt, TokenCount,
//! };
//! use gateway_core::{ModelCard, ModelKind, ServicePlan};
//!
//! struct Echo(ModelCard);
//!
//! #[async_trait]
//! impl Backend for Echo {
//!     fn card(&self) -> &ModelCard {
//!         &self.0
//!     }
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities { chat: true, ..Capabilities::default() }
//!     }
//!     fn health(&self) -> Health {
//!         Health::Ready
//!     }
//!     async fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, BackendError> {
//!         let text = match &request.prompt {
//!             Prompt::Chat(turns) => turns.last().map(|t| t.content.clone()).unwrap_or_default(),
//!             _ => return Err(BackendError::Unsupported { operation: "completions" }),
//!         };
//!         let prompt = TokenCount::estimate(&text);
//!         let (sinks, stream) = generation_channel(request.choices, prompt);
//!         for sink in sinks {
//!             sink.token(text.clone(), None);
//!             sink.finish(FinishReason::Stop, String::new());
//!         }
//!         Ok(stream)
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let card = ModelCard {
//!     id: "echo".into(), kind: ModelKind::Chat, plan: ServicePlan::Base, context_length: 64,
//!     dimensions: None, quantization: "none".into(), license: "MIT".into(), source: String::new(),
//! };
//! let echo = Echo(card);
//! let request = GenerationRequest::new(Prompt::Chat(vec![gateway_backend::ChatTurn::new("user", "hi")]));
//! let mut stream = echo.generate(request).await.unwrap();
//! while let Some(event) = stream.next().await {
//!     println!("{event:?}");
//! }
//! assert_eq!(stream.usage().completion_tokens, 1);
//! # });
//! ```

mod backend;
mod constraint;
mod error;
mod generation;
mod prompt;
mod usage;

pub use backend::{Backend, Capabilities, EmbeddingInputs, Embeddings, Figure, Health};
pub use constraint::OutputConstraint;
pub use error::BackendError;
pub use generation::{
    generation_channel, ChoiceSink, Echo, EchoedPrompt, Ending, FinishReason, GenerationEvent,
    GenerationRequest, GenerationStream, SamplingParams, TokenLogprob, UsageHandle,
};
pub use prompt::{ChatTurn, FunctionSpec, Prompt, ToolSpec, TurnFunctionCall, TurnToolCall};
pub use usage::{Accuracy, TokenCount, Usage};
