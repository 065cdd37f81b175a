//! Model catalog types: the [`ModelCard`] that says what a served model is (kind, plan,
//! context length, licence, source) whatever runs it, shown by `/v1/models`, and the
//! [`ExecutionProvider`] a local model runs on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lifecycle::{Deprecation, LifecycleState};

/// What a model does, which decides its endpoints and how its tokens are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Everything the catalog says about one served model id: the card's facts, what the
/// operator configured on top (names, description, tags, plan, lifecycle) and the size of its
/// files. The product API and `/v1/models` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The id clients send.
    pub id: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The plan it is billed and limited under.
    pub plan: ServicePlan,
    /// Name shown to people (letters, digits, spaces, `_`, `-`).
    pub displayed_name: String,
    /// What the model is for (letters, digits, spaces, `.:/-`).
    pub description: String,
    /// Its Hugging Face name, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct`.
    pub hugging_face_name: String,
    /// Where the weights come from.
    pub url: String,
    /// SPDX licence of the weights.
    pub license: String,
    /// Longest input, in tokens, as served.
    pub context_length: usize,
    /// Width of an embedding model's vectors.
    pub dimensions: Option<usize>,
    /// Bytes of the model's files.
    pub size_bytes: u64,
    /// Weight format, e.g. `q4`, `int8`, `f32`.
    pub quantization: String,
    /// Free tags, e.g. `chat`, `multilingual`.
    pub tags: Vec<String>,
    /// Its announced retirement, if any.
    pub deprecation: Option<Deprecation>,
}

/// Namespace of the catalog's model UUIDs (UUID v5 of the model id).
const MODEL_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_7a0e_2b8d_4f6a_9e3c_41d2_7b60_a9f1);

/// The `url` of a model whose card names no source (the product API requires one).
const UNKNOWN_SOURCE: &str = "unknown";

/// The prefix of Hugging Face model pages.
const HUGGING_FACE: &str = "https://huggingface.co/";

impl CatalogEntry {
    /// The entry of `card` served as `id`, with defaults for what a card does not say.
    pub fn from_card(id: &str, card: &ModelCard, size_bytes: u64) -> Self {
        let hugging_face_name = card
            .source
            .strip_prefix(HUGGING_FACE)
            .filter(|name| !name.is_empty())
            .unwrap_or(id);
        let kind_name = match card.kind {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        };
        Self {
            id: id.to_owned(),
            kind: card.kind,
            plan: card.plan,
            displayed_name: keep_only(id, DISPLAYED_NAME_EXTRA),
            description: format!("{kind_name} model {}", keep_only(id, TEXT_EXTRA)),
            hugging_face_name: keep_only(hugging_face_name, TEXT_EXTRA),
            url: if card.source.is_empty() {
                UNKNOWN_SOURCE.to_owned()
            } else {
                card.source.clone()
            },
            license: card.license.clone(),
            context_length: card.context_length,
            dimensions: card.dimensions,
            size_bytes,
            quantization: card.quantization.clone(),
            tags: vec![kind_name.to_owned()],
            deprecation: None,
        }
    }

    /// The stable UUID the product API names the model by (the same on every replica).
    pub fn uuid(&self) -> Uuid {
        Uuid::new_v5(&MODEL_ID_NAMESPACE, self.id.as_bytes())
    }

    /// Bits per weight: 4 or 8 for a quantized model, 16 for half-precision weights; `None`
    /// for f32 (or an unknown label).
    pub fn bits(&self) -> Option<u8> {
        match self.quantization.as_str() {
            "q4" | "int4" => Some(4),
            "int8" | "q8" => Some(8),
            "f16" | "bf16" => Some(16),
            _ => None,
        }
    }

    /// `PTQ` for weights quantized after training (what the importer writes), else `None`.
    pub fn quantization_method(&self) -> Option<&'static str> {
        matches!(self.bits(), Some(4 | 8)).then_some("PTQ")
    }

    /// Where the model stands at `now`.
    pub fn state_at(&self, now: chrono::DateTime<chrono::Utc>) -> LifecycleState {
        self.deprecation
            .as_ref()
            .map_or(LifecycleState::Active, |deprecation| {
                deprecation.state_at(now)
            })
    }

    /// Checks the fields against the formats of the managed service's model API, whose SDKs
    /// refuse anything else.
    pub fn check(&self) -> Result<(), CatalogError> {
        let fields = [
            (
                "displayed_name",
                &self.displayed_name,
                DISPLAYED_NAME_EXTRA,
                200,
            ),
            ("description", &self.description, TEXT_EXTRA, 2000),
            (
                "hugging_face_name",
                &self.hugging_face_name,
                TEXT_EXTRA,
                200,
            ),
            ("url", &self.url, TEXT_EXTRA, 200),
        ];
        for (field, value, extra, longest) in fields {
            let allowed =
                |c: char| c.is_ascii_alphanumeric() || c.is_whitespace() || extra.contains(c);
            if value.is_empty() || value.len() > longest || !value.chars().all(allowed) {
                return Err(CatalogError {
                    model: self.id.clone(),
                    field,
                    rule: format!(
                        "1 to {longest} characters of letters, digits, spaces and {extra:?}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Characters besides letters, digits and spaces a displayed name may hold.
const DISPLAYED_NAME_EXTRA: &str = "_-";
/// Characters besides letters, digits and spaces a description, name or URL may hold.
const TEXT_EXTRA: &str = ".:/-";

/// `text` with every character the format does not allow made a space.
fn keep_only(text: &str, extra: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || extra.contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect()
}

/// A catalog field the managed service's model API would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {model}: catalog field {field} must be {rule}")]
pub struct CatalogError {
    /// The model.
    pub model: String,
    /// The field.
    pub field: &'static str,
    /// What it must be.
    pub rule: String,
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
    fn an_entry_takes_its_defaults_from_the_card() {
        let card = ModelCard {
            id: "smollm2".into(),
            kind: ModelKind::Chat,
            plan: ServicePlan::Plus,
            context_length: 8192,
            dimensions: None,
            quantization: "q4".into(),
            license: "Apache-2.0".into(),
            source: "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct".into(),
        };
        let entry = CatalogEntry::from_card("chat.default", &card, 99);
        assert_eq!(
            entry.hugging_face_name,
            "HuggingFaceTB/SmolLM2-135M-Instruct"
        );
        assert_eq!(entry.displayed_name, "chat default");
        assert_eq!(
            (entry.bits(), entry.quantization_method()),
            (Some(4), Some("PTQ"))
        );
        assert_eq!(entry.plan, ServicePlan::Plus);
        assert!(entry.check().is_ok());
        assert_eq!(
            entry.uuid(),
            CatalogEntry::from_card("chat.default", &card, 1).uuid()
        );
        let commas = CatalogEntry {
            description: "fast, small".into(),
            ..entry
        };
        let error = commas.check().unwrap_err();
        assert_eq!(error.field, "description");
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
