//! The gateway's shared vocabulary: the OpenAI wire schema (requests, responses, stream chunks,
//! errors) and the model catalog types. This crate does no I/O, so every other crate can use it.

pub mod catalog;
pub mod openai;

pub use catalog::{ModelCard, ModelKind, Pooling, ServicePlan, MODEL_CARD_FILE};
