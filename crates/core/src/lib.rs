//! The gateway's shared vocabulary: the OpenAI wire schema (requests, responses, stream chunks,
//! errors), the model catalog types, and the layout of an imported ONNX model directory. This
//! crate does no I/O, so every other crate can use it.

pub mod catalog;
pub mod lifecycle;
pub mod model_dir;
pub mod openai;
pub mod time;

pub use catalog::{
    CatalogEntry, CatalogError, ExecutionProvider, ModelCard, ModelKind, ServicePlan,
    UnknownExecutionProvider,
};
pub use lifecycle::{Deprecation, LifecycleState};
