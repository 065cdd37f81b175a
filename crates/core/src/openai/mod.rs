//! The OpenAI wire schema: request bodies, responses, stream chunks and error bodies of
//! `/v1/chat/completions`, `/v1/completions`, `/v1/responses`, `/v1/embeddings` and `/v1/models`, shaped so the
//! official SDKs (openai-python, openai-node) send bodies that deserialize here and accept the
//! bodies serialized from here.
//!
//! Conventions shared by every type:
//! - unknown fields are not an error of the types (no `deny_unknown_fields`): the parser
//!   refuses or ignores them ([`UnknownFields`]);
//! - optional request fields are `Option`s that accept both an absent key and `null`, and are
//!   left out again when a request is serialized (for forwarding to an upstream backend);
//! - bodies are parsed with [`from_json_slice`], which reports the JSON path of a bad field
//!   (e.g. `messages[0].content`) so it can become the error's `param`, and whose messages never
//!   quote a value the client sent (a prompt, an input), so that they may be shown and logged.

pub mod chat;
pub mod chat_response;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod input;
pub mod models;
pub mod parse;
mod reason;
pub mod responses;
pub mod tools;
pub mod usage;

use serde::{Deserialize, Deserializer, Serialize};

pub use chat::{
    ChatCompletionRequest, ChatMessage, ContentPart, FileContent, ImageDetail, ImageUrl,
    InputAudio, MessageContent, Role, StopSequences, StreamOptions,
};
pub use chat_response::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatDelta, ChoiceLogprobs,
    FinishReason, ResponseMessage, TokenLogprob, TopLogprob,
};
pub use completions::{
    Completion, CompletionChoice, CompletionChunk, CompletionLogprobs, CompletionRequest, Prompt,
};
pub use embeddings::{
    decode_base64_f32, encode_base64_f32, Base64EmbeddingError, Embedding, EmbeddingInput,
    EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, EmbeddingVector, EncodingFormat,
};
pub use error::{ErrorBody, ErrorObject, ErrorType};
pub use input::{InputItem, TextOrTokens};
pub use models::{Model, ModelList};
pub use parse::{from_json_slice, from_json_slice_with, UnknownFields, WireError};
pub use responses::{
    IncompleteDetails, InputTokensDetails, OutputItem, OutputText, OutputTokensDetails,
    ResponseContent, ResponseContentPart, ResponseEvent, ResponseInput, ResponseInputItem,
    ResponseObject, ResponseRequest, ResponseStatus, ResponseTool, ResponseToolChoice,
    ResponseUsage, TextFormat, TextOptions,
};
pub use tools::{
    FunctionCall, FunctionCallDelta, FunctionDefinition, JsonSchemaFormat, NamedFunction,
    NamedToolChoice, ResponseFormat, Tool, ToolCall, ToolCallDelta, ToolChoice, ToolChoiceMode,
    ToolType,
};
pub use usage::{CompletionTokensDetails, PromptTokensDetails, Usage};

/// The `object` discriminator that every OpenAI response object carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ObjectType {
    /// `"chat.completion"`: a non-streamed chat completion.
    #[serde(rename = "chat.completion")]
    ChatCompletion,
    /// `"chat.completion.chunk"`: one chunk of a streamed chat completion.
    #[serde(rename = "chat.completion.chunk")]
    ChatCompletionChunk,
    /// `"text_completion"`: a legacy completion or one of its stream chunks.
    #[serde(rename = "text_completion")]
    TextCompletion,
    /// `"list"`: a list envelope (`/v1/models`, `/v1/embeddings`).
    #[serde(rename = "list")]
    List,
    /// `"embedding"`: one embedding vector.
    #[serde(rename = "embedding")]
    Embedding,
    /// `"model"`: one model of `/v1/models`.
    #[serde(rename = "model")]
    Model,
}

impl ObjectType {
    /// The wire string of this object type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletion => "chat.completion",
            Self::ChatCompletionChunk => "chat.completion.chunk",
            Self::TextCompletion => "text_completion",
            Self::List => "list",
            Self::Embedding => "embedding",
            Self::Model => "model",
        }
    }
}

/// Deserializes `null` as the type's default, for fields with a documented default value.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
