//! `POST /v1/embeddings`: request, response, and the base64 form of a vector (little-endian
//! f32 bytes), which the Python SDK asks for by default.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::input::TextOrTokens;
use super::ObjectType;

/// `input`: a string, an array of strings, an array of token ids or an array of token-id
/// arrays (one embedding per item).
pub type EmbeddingInput = TextOrTokens;

/// An embeddings request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingRequest {
    /// The model id.
    pub model: String,
    /// The text(s) or token arrays to embed.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`; `null` reads as the default.
    #[serde(default, deserialize_with = "crate::openai::null_as_default")]
    #[schema(nullable)]
    pub encoding_format: EncodingFormat,
    /// Truncate the vectors to this many dimensions (Matryoshka models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// An end-user identifier chosen by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// How the vectors of an embeddings response are written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// A base64 string of the little-endian f32 bytes ([`encode_base64_f32`]).
    Base64,
}

/// An embeddings response: `{"object": "list", "data": [...], "model", "usage"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: ObjectType,
    /// One embedding per input, in input order.
    pub data: Vec<Embedding>,
    /// The model that answered.
    pub model: String,
    /// Token usage (input tokens only).
    pub usage: EmbeddingUsage,
}

impl EmbeddingResponse {
    /// A response with the given embeddings.
    pub fn new(model: impl Into<String>, data: Vec<Embedding>, usage: EmbeddingUsage) -> Self {
        Self {
            object: ObjectType::List,
            data,
            model: model.into(),
            usage,
        }
    }
}

/// One embedding of an [`EmbeddingResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: ObjectType,
    /// Position of the input it embeds.
    pub index: u32,
    /// The vector.
    pub embedding: EmbeddingVector,
}

impl Embedding {
    /// The embedding of input `index`, written in `format`.
    pub fn new(index: u32, vector: &[f32], format: EncodingFormat) -> Self {
        Self {
            object: ObjectType::Embedding,
            index,
            embedding: EmbeddingVector::encode(vector, format),
        }
    }
}

/// An embedding vector as a float array or a base64 string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `[0.1, -0.2, ...]`.
    Float(Vec<f32>),
    /// Base64 of the little-endian f32 bytes.
    Base64(String),
}

impl EmbeddingVector {
    /// The vector written in `format`.
    pub fn encode(vector: &[f32], format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => Self::Float(vector.to_vec()),
            EncodingFormat::Base64 => Self::Base64(encode_base64_f32(vector)),
        }
    }

    /// The floats, decoding the base64 form.
    pub fn to_floats(&self) -> Result<Vec<f32>, Base64EmbeddingError> {
        match self {
            Self::Float(values) => Ok(values.clone()),
            Self::Base64(text) => decode_base64_f32(text),
        }
    }
}

/// Token usage of an embeddings request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens of all inputs.
    pub prompt_tokens: u32,
    /// Equal to `prompt_tokens`.
    pub total_tokens: u32,
}

impl EmbeddingUsage {
    /// Usage of `prompt_tokens` input tokens.
    pub fn new(prompt_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            total_tokens: prompt_tokens,
        }
    }
}

/// Encodes a vector as standard (padded) base64 of its little-endian f32 bytes.
pub fn encode_base64_f32(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    STANDARD.encode(bytes)
}

/// Why a base64 embedding could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base64EmbeddingError {
    /// Not valid standard base64.
    #[error("invalid base64 embedding: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The byte count is not a multiple of 4.
    #[error("base64 embedding has {0} bytes, not a multiple of 4")]
    Length(usize),
}

/// Decodes the output of [`encode_base64_f32`] (e.g. from an upstream server).
pub fn decode_base64_f32(text: &str) -> Result<Vec<f32>, Base64EmbeddingError> {
    let bytes = STANDARD.decode(text)?;
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return Err(Base64EmbeddingError::Length(bytes.len()));
    }
    Ok(chunks
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_known_vector() {
        assert_eq!(encode_base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(encode_base64_f32(&[]), "");
        assert_eq!(decode_base64_f32("AACAPwAAAMA=").unwrap(), [1.0, -2.0]);
        assert_eq!(
            decode_base64_f32("AACA"),
            Err(Base64EmbeddingError::Length(3))
        );
        assert!(decode_base64_f32("!!").is_err());
    }

    #[test]
    fn request_input_shapes() {
        for (input, len, tokens) in [
            (json!("The food was delicious and the waiter..."), 1, false),
            (json!(["first text", "second text"]), 2, false),
            (json!([1212, 318, 257, 1332]), 1, true),
            (json!([[1212, 318], [257, 1332, 13]]), 2, true),
        ] {
            let request: EmbeddingRequest = serde_json::from_value(json!({
                "model": "text-embedding-3-small",
                "input": input.clone(),
            }))
            .unwrap();
            assert_eq!(request.input.len(), len);
            assert_eq!(request.input.is_tokens(), tokens);
            assert_eq!(request.encoding_format, EncodingFormat::Float);
            assert_eq!(serde_json::to_value(&request.input).unwrap(), input);
        }
    }

    #[test]
    fn encoding_formats() {
        for (value, expected) in [
            (json!("float"), EncodingFormat::Float),
            (json!("base64"), EncodingFormat::Base64),
            (json!(null), EncodingFormat::Float),
        ] {
            let request: EmbeddingRequest = serde_json::from_value(json!({
                "model": "m", "input": "x", "encoding_format": value, "dimensions": 256,
                "user": "u-1"
            }))
            .unwrap();
            assert_eq!(request.encoding_format, expected);
            assert_eq!(request.dimensions, Some(256));
        }
        let bad = serde_json::from_value::<EmbeddingRequest>(
            json!({"model": "m", "input": "x", "encoding_format": "int8"}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn response_float_and_base64() {
        let response = EmbeddingResponse::new(
            "text-embedding-3-small",
            vec![
                Embedding::new(0, &[0.5, -0.25], EncodingFormat::Float),
                Embedding::new(1, &[1.0, -2.0], EncodingFormat::Base64),
            ],
            EmbeddingUsage::new(8),
        );
        let value = serde_json::to_value(&response).unwrap();
        assert_eq!(
            value,
            json!({
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                    {"object": "embedding", "index": 1, "embedding": "AACAPwAAAMA="}
                ],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 8, "total_tokens": 8}
            })
        );
        let back: EmbeddingResponse = serde_json::from_value(value).unwrap();
        assert_eq!(back, response);
        assert_eq!(back.data[1].embedding.to_floats().unwrap(), [1.0, -2.0]);
    }
}
