//! The Responses API (`POST /v1/responses`): the request ([`ResponseRequest`]: text or message
//! input, instructions, function tools, `text.format`), the response object ([`ResponseObject`]
//! with its output items and usage) and the server-sent events of a streamed response
//! ([`ResponseEvent`]). This service stores nothing: `store` is answered as `false`, and
//! `previous_response_id` is refused by the API layer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tools::{ToolChoiceMode, ToolType};

/// A `POST /v1/responses` body as the OpenAI SDKs send it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseRequest {
    /// The model id.
    pub model: String,
    /// A user message as text, or a list of input items.
    pub input: ResponseInput,
    /// A system message placed before the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Whether to stream the response as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Whether to keep the response; this service keeps nothing and answers `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// A stored response to continue; refused, as nothing is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ResponseTool>>,
    /// Whether and which function the model must call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ResponseToolChoice>,
    /// Whether the model may call several functions in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The output's format: text, any JSON object, or JSON following a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextOptions>,
    /// Up to 16 key-value pairs, echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Running in the background needs a stored response; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    /// A stored conversation to continue; refused, as nothing is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<serde_json::Value>,
    /// An end-user identifier chosen by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `input`: a text or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ResponseInput {
    /// One user message.
    Text(String),
    /// Messages, function calls and their outputs.
    Items(Vec<ResponseInputItem>),
}

impl Default for ResponseInput {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

/// One input item. A message has a `role` and `content` (its `type`, `message`, may be left
/// out); a `function_call` has `call_id`, `name` and `arguments`; a `function_call_output`
/// has `call_id` and `output`. One struct for all, so that a bad field reports its path.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseInputItem {
    /// `message` (the default), `function_call` or `function_call_output`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A message's author: `user`, `assistant`, `system` or `developer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A message's text or content parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ResponseContent>,
    /// The call a function call or its output belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The function a call called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A call's arguments, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// A function's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// A message's `content`: text, or content parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ResponseContent {
    /// `"content": "hello"`.
    Text(String),
    /// `[{"type": "input_text", "text": "hello"}, …]`.
    Parts(Vec<ResponseContentPart>),
}

/// One content part: `input_text` or `output_text` (other kinds are refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseContentPart {
    /// `input_text`, `output_text`, `input_image`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A function tool: `{"type": "function", "name", "description", "parameters", "strict"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseTool {
    /// `function` (other tool kinds are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's name.
    #[serde(default)]
    pub name: String,
    /// What the function does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The arguments as a JSON Schema object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Whether the arguments must follow `parameters` exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode or `{"type": "function", "name"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ResponseToolChoice {
    /// `none`, `auto` or `required`.
    Mode(ToolChoiceMode),
    /// This function must be called.
    Function {
        /// Always `function`.
        #[serde(rename = "type")]
        kind: ToolType,
        /// The function.
        name: String,
    },
}

/// `text`: the output's format.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TextOptions {
    /// Text, any JSON object, or JSON following a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
}

/// `text.format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// Plain text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON following `schema`.
    JsonSchema {
        /// The schema's name.
        #[serde(default)]
        name: String,
        /// What the output is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The JSON Schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<serde_json::Value>,
        /// Whether the output must follow the schema exactly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// A response: `{"object": "response", "status", "output", "usage", …}` with the request's
/// settings echoed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseObject {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// `in_progress`, `completed` or `incomplete`.
    pub status: ResponseStatus,
    /// Why it is incomplete.
    pub incomplete_details: Option<IncompleteDetails>,
    /// Always null: a failed response is an error event.
    pub error: Option<serde_json::Value>,
    /// The model id.
    pub model: String,
    /// The messages and function calls generated.
    pub output: Vec<OutputItem>,
    /// What it used; null until complete.
    pub usage: Option<ResponseUsage>,
    /// Always false: nothing is stored.
    pub store: bool,
    /// Always null.
    pub previous_response_id: Option<String>,
    /// The request's instructions.
    pub instructions: Option<String>,
    /// The request's `max_output_tokens`.
    pub max_output_tokens: Option<u32>,
    /// The request's temperature.
    pub temperature: Option<f32>,
    /// The request's `top_p`.
    pub top_p: Option<f32>,
    /// The request's tools.
    pub tools: Vec<ResponseTool>,
    /// The request's `tool_choice` (`auto` by default).
    pub tool_choice: ResponseToolChoice,
    /// The request's `parallel_tool_calls` (true by default).
    pub parallel_tool_calls: bool,
    /// The request's `text` options.
    pub text: TextOptions,
    /// The request's metadata.
    pub metadata: BTreeMap<String, String>,
    /// The request's `user`.
    pub user: Option<String>,
}

/// The state of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Being generated.
    InProgress,
    /// Done.
    Completed,
    /// Ended early (`incomplete_details` says why).
    Incomplete,
}

/// Why a response is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncompleteDetails {
    /// `max_output_tokens`.
    pub reason: String,
}

/// One output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// An assistant message.
    Message {
        /// `msg_…`.
        id: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: ResponseStatus,
        /// Always `assistant`.
        role: String,
        /// Its text parts.
        content: Vec<OutputText>,
    },
    /// A function call.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// `call_…`, echoed by the `function_call_output` that answers it.
        call_id: String,
        /// The function.
        name: String,
        /// Its arguments, as JSON text.
        arguments: String,
        /// `in_progress` or `completed`.
        status: ResponseStatus,
    },
}

/// A text part of an output message: `{"type": "output_text", "text", "annotations": []}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
    /// Always empty.
    pub annotations: Vec<serde_json::Value>,
}

impl OutputText {
    /// A text part saying `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            kind: "output_text".to_owned(),
            text: text.into(),
            annotations: Vec::new(),
        }
    }
}

/// What a response used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseUsage {
    /// Tokens of the input.
    pub input_tokens: u32,
    /// Breakdown of the input tokens.
    pub input_tokens_details: InputTokensDetails,
    /// Tokens generated.
    pub output_tokens: u32,
    /// Breakdown of the output tokens.
    pub output_tokens_details: OutputTokensDetails,
    /// `input_tokens + output_tokens`.
    pub total_tokens: u32,
}

/// `input_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputTokensDetails {
    /// Input tokens whose computation was reused from the backend's prompt cache.
    pub cached_tokens: u32,
}

/// `output_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutputTokensDetails {
    /// Reasoning tokens (none here).
    pub reasoning_tokens: u32,
}

impl ResponseUsage {
    /// The usage of `input` and `output` tokens.
    pub fn new(input: u32, output: u32) -> Self {
        Self {
            input_tokens: input,
            input_tokens_details: InputTokensDetails::default(),
            output_tokens: output,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: input.saturating_add(output),
        }
    }

    /// Sets the number of input tokens served from a prompt cache.
    pub fn with_cached_tokens(mut self, cached_tokens: u32) -> Self {
        self.input_tokens_details = InputTokensDetails { cached_tokens };
        self
    }
}

/// One server-sent event of a streamed response: `{"type", "sequence_number", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseEvent {
    /// `response.created`, `response.output_text.delta`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's place in the stream, from 0.
    pub sequence_number: u64,
    /// The event's own fields (`response`, `item`, `delta`, …).
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}
