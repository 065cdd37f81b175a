//! What `POST /v1/chat/completions` answers: the whole completion (`chat.completion`), the
//! stream chunks (`chat.completion.chunk`), finish reasons and token log-probabilities.

use serde::{Deserialize, Serialize};

use super::chat::Role;
use super::tools::{ToolCall, ToolCallDelta};
use super::usage::Usage;
use super::ObjectType;

/// Why a choice stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit (`max_tokens` or the context length) was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Content was left out by a content filter.
    ContentFilter,
}

/// A non-streamed chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatCompletion {
    /// Unique id, `chatcmpl-...`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: ObjectType,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// One choice per `n`.
    pub choices: Vec<ChatChoice>,
    /// Token usage of the request.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint, or null.
    #[serde(default)]
    pub system_fingerprint: Option<String>,
}

impl ChatCompletion {
    /// A completion with the given choices and usage, no fingerprint.
    pub fn new(
        id: impl Into<String>,
        created: i64,
        model: impl Into<String>,
        choices: Vec<ChatChoice>,
        usage: Usage,
    ) -> Self {
        Self {
            id: id.into(),
            object: ObjectType::ChatCompletion,
            created,
            model: model.into(),
            choices,
            usage: Some(usage),
            system_fingerprint: None,
        }
    }
}

/// One choice of a [`ChatCompletion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatChoice {
    /// Position among the choices.
    pub index: u32,
    /// The generated message.
    pub message: ResponseMessage,
    /// Log-probabilities when requested, else null.
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    /// Why generation stopped.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
}

/// The assistant message of a [`ChatChoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: Role,
    /// The text, or null when the model only called tools.
    #[serde(default)]
    pub content: Option<String>,
    /// Tool calls, left out when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A refusal message; always null from this gateway.
    #[serde(default)]
    pub refusal: Option<String>,
}

impl ResponseMessage {
    /// An assistant message with text content.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: Some(content.into()),
            tool_calls: None,
            refusal: None,
        }
    }

    /// An assistant message that only calls tools (`content: null`).
    pub fn tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Self {
            role: Role::Assistant,
            content: None,
            tool_calls: Some(tool_calls),
            refusal: None,
        }
    }
}

/// One chunk of a streamed chat completion.
///
/// `usage` is always serialized: `null` on every chunk except the final usage chunk (sent
/// with `stream_options.include_usage`), which has `choices: []`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatCompletionChunk {
    /// Same id on every chunk of a stream.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: ObjectType,
    /// Creation time, Unix seconds, same on every chunk.
    pub created: i64,
    /// The model that answers.
    pub model: String,
    /// Backend configuration fingerprint, or null.
    #[serde(default)]
    pub system_fingerprint: Option<String>,
    /// The deltas of this chunk; empty in the usage chunk.
    pub choices: Vec<ChatChunkChoice>,
    /// Null, except in the final usage chunk.
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl ChatCompletionChunk {
    /// A content chunk with the given choices and `usage: null`.
    pub fn new(
        id: impl Into<String>,
        created: i64,
        model: impl Into<String>,
        choices: Vec<ChatChunkChoice>,
    ) -> Self {
        Self {
            id: id.into(),
            object: ObjectType::ChatCompletionChunk,
            created,
            model: model.into(),
            system_fingerprint: None,
            choices,
            usage: None,
        }
    }

    /// The final usage chunk: `choices: []` and the full usage.
    pub fn usage_chunk(
        id: impl Into<String>,
        created: i64,
        model: impl Into<String>,
        usage: Usage,
    ) -> Self {
        Self {
            usage: Some(usage),
            ..Self::new(id, created, model, Vec::new())
        }
    }
}

/// One choice of a [`ChatCompletionChunk`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatChunkChoice {
    /// Position among the choices.
    pub index: u32,
    /// What this chunk adds to the message.
    pub delta: ChatDelta,
    /// Log-probabilities of this chunk's tokens when requested, else null.
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    /// Null, except on the choice's last content chunk.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
}

/// The delta of a [`ChatChunkChoice`]; absent fields are left out (`"delta": {}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatDelta {
    /// `assistant`, on the first chunk of a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The next piece of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Pieces of tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// A piece of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// `logprobs` of a choice: `{"content": [...], "refusal": null}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChoiceLogprobs {
    /// One entry per generated content token.
    #[serde(default)]
    pub content: Option<Vec<TokenLogprob>>,
    /// One entry per refusal token; always null from this gateway.
    #[serde(default)]
    pub refusal: Option<Vec<TokenLogprob>>,
}

/// The log-probability of one generated token and its likeliest alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes (a token may hold part of a character), or null.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    /// The `top_logprobs` likeliest tokens at this position.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative in [`TokenLogprob::top_logprobs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes, or null.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

#[cfg(test)]
#[path = "chat_response_tests.rs"]
mod tests;
