//! Model catalog types: the [`ModelCard`] that says what a served model is (kind, plan,
//! context length, licence, source) whatever runs it, shown by `/v1/models`, and the
//! [`ExecutionProvider`] a local model runs on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a model does, which decides its endpoints and how its tokens are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A generative model served by `/v1/chat/completions` and `/v1/completions`.
    Chat,
    /// An encoder served by `/v1/embeddings`; only input tokens are billed.
    Embedding,
}

/// The service plan a model belongs to, by ascending model size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServicePlan {
    /// Small models.
    #[default]
    Base,
    /// Medium models.
    Plus,
    /// Large models.
    Premium,
}

/// The catalog facts of one model: what clients are told about it, whatever backend runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model id clients send, e.g. `all-minilm-l6-v2`.
    pub id: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The service plan the model is billed under.
    #[serde(default)]
    pub plan: ServicePlan,
    /// Longest input, in tokens, the model accepts (as served).
    pub context_length: usize,
    /// Width of the vectors an embedding model returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// Weight format, e.g. `f32`, `q4`, `int8`.
    pub quantization: String,
    /// SPDX identifier of the model's license, e.g. `Apache-2.0`.
    pub license: String,
    /// Where the weights come from, e.g. the model's Hugging Face page.
    pub source: String,
}

/// Where a local model runs: ONNX Runtime's execution provider, and what an import targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider on an NVIDIA GPU.
    Cuda,
}

impl ExecutionProvider {
    /// The provider's name as configuration and the command line write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no execution provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown execution provider {0:?}: expected cpu or cuda")]
pub struct UnknownExecutionProvider(pub String);

impl FromStr for ExecutionProvider {
    type Err = UnknownExecutionProvider;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(UnknownExecutionProvider(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn execution_provider_names_round_trip() {
        for provider in [ExecutionProvider::Cpu, ExecutionProvider::Cuda] {
            assert_eq!(provider.as_str().parse::<ExecutionProvider>(), Ok(provider));
        }
        assert!("tpu".parse::<ExecutionProvider>().is_err());
    }

    #[test]
    fn a_card_without_plan_is_base() {
        let card: ModelCard = serde_json::from_str(
            r#"{"id":"m","kind":"chat","context_length":8,"quantization":"q4","license":"MIT","source":""}"#,
        )
        .unwrap();
        assert_eq!(card.plan, ServicePlan::Base);
        assert_eq!(card.dimensions, None);
    }
}
