//! The request body of `POST /v1/chat/completions`: messages and their content parts, sampling
//! parameters, stop sequences and stream options. Tools and `response_format` live in
//! [`crate::openai::tools`], the response and stream chunks in [`crate::openai::chat_response`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use super::tools::{ResponseFormat, Tool, ToolCall, ToolChoice};

/// A chat completion request as the OpenAI SDKs send it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatCompletionRequest {
    /// The model id.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Whether and which tool the model must call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Plain text, any JSON object, or JSON following a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Number of choices to generate (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub n: Option<u32>,
    /// Up to 4 sequences where generation stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Deprecated upper bound on generated tokens, read when `max_completion_tokens` is absent
    /// ([`Self::effective_max_tokens`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// Upper bound on generated tokens, preferred over `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f32>,
    /// Extension (not in OpenAI's API): sample only among the `top_k` likeliest tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Penalty for tokens already present, -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f32>,
    /// Penalty by frequency of tokens so far, -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f32>,
    /// Bias (-100 to 100) added to the logits of token ids (keys are ids as strings).
    #[serde(
        default,
        deserialize_with = "crate::openai::chat::logit_bias",
        skip_serializing_if = "Option::is_none"
    )]
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// vLLM's extension: sample only among tokens at least `min_p` times as likely as the
    /// likeliest one, 0 to 1 (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_p: Option<f32>,
    /// vLLM's extension: divides the positive logits (multiplies the negative ones) of every
    /// token of the prompt or the output so far, above 0 and at most 2 (1: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 2.0)]
    pub repetition_penalty: Option<f32>,
    /// vLLM's extension: token ids that end a choice like the end-of-sequence token (at most
    /// 64); they are not part of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_token_ids: Option<Vec<u32>>,
    /// vLLM's extension: tokens generated before the end-of-sequence token or a stop token may
    /// end a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    /// vLLM's extension: the end-of-sequence token does not end a choice, which runs to its
    /// length or a stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// vLLM's extension: the output is JSON following this JSON Schema (an object, or its
    /// JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_json: Option<serde_json::Value>,
    /// vLLM's extension: the output is exactly one of these strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_choice: Option<Vec<String>>,
    /// vLLM's extension: the output matches this regular expression as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_regex: Option<String>,
    /// Whether to return the log-probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Number (0 to 20) of alternatives to return per token position, with `logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 20)]
    pub top_logprobs: Option<u32>,
    /// Whether to stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// An end-user identifier chosen by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ChatCompletionRequest {
    /// `max_completion_tokens`, else `max_tokens`, else `None` (no explicit limit).
    pub fn effective_max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Number of choices requested (`n`, default 1).
    pub fn n(&self) -> u32 {
        self.n.unwrap_or(1)
    }

    /// Whether the answer is streamed.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streamed answer ends with a usage chunk (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .is_some_and(|options| options.include_usage())
    }

    /// The stop sequences (empty when none were given).
    pub fn stop_sequences(&self) -> &[String] {
        self.stop.as_ref().map_or(&[], StopSequences::as_slice)
    }
}

/// The author of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions from the application (older models).
    System,
    /// Instructions from the application (newer name of `system`).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// One message of the conversation. One struct for all roles, so that a bad field reports its
/// exact path (`messages[2].content`); which fields a role needs is checked by the API layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text or content parts; may be null or absent for an assistant message with
    /// `tool_calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// An optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls the assistant made (assistant messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call this message answers (tool messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A refusal the assistant gave earlier (assistant messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl ChatMessage {
    /// A message with the given role and text and no other field.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            refusal: None,
        }
    }

    /// A `system` message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::new(Role::System, text)
    }

    /// A `user` message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(Role::User, text)
    }

    /// An `assistant` message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant, text)
    }

    /// A `tool` message answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new(Role::Tool, text)
        }
    }

    /// The message's text ([`MessageContent::text`]); empty when there is no content.
    pub fn text(&self) -> Cow<'_, str> {
        self.content
            .as_ref()
            .map_or(Cow::Borrowed(""), MessageContent::text)
    }
}

/// A message's `content`: a string or an array of content parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// `"content": "hello"`.
    Text(String),
    /// `"content": [{"type": "text", "text": "hello"}, ...]`.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text: the string itself, or the text parts joined by `\n` (other parts skipped).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Text(text) => Cow::Borrowed(text),
            Self::Parts(parts) => {
                let mut texts = parts.iter().filter_map(|part| match part {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                });
                match (texts.next(), texts.next()) {
                    (None, _) => Cow::Borrowed(""),
                    (Some(only), None) => Cow::Borrowed(only),
                    (Some(first), Some(second)) => {
                        let mut joined = format!("{first}\n{second}");
                        for text in texts {
                            joined.push('\n');
                            joined.push_str(text);
                        }
                        Cow::Owned(joined)
                    }
                }
            }
        }
    }

    /// The first part that is not text (image, audio, file, refusal), with its index, so the
    /// API can reject what a text-only model cannot read.
    pub fn first_non_text_part(&self) -> Option<(usize, &ContentPart)> {
        match self {
            Self::Text(_) => None,
            Self::Parts(parts) => parts.iter().enumerate().find(|(_, part)| !part.is_text()),
        }
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = MessageContent;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(value))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MessageContent, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(MessageContent::Parts(parts))
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// One part of an array `content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type": "text", "text": "..."}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{"type": "image_url", "image_url": {"url": "...", "detail": "auto"}}`.
    ImageUrl {
        /// The image's URL or `data:` URL.
        image_url: ImageUrl,
    },
    /// `{"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}}`.
    InputAudio {
        /// The audio.
        input_audio: InputAudio,
    },
    /// `{"type": "file", "file": {...}}`.
    File {
        /// The file.
        file: FileContent,
    },
    /// `{"type": "refusal", "refusal": "..."}` (assistant messages).
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

impl ContentPart {
    /// The part's `type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::ImageUrl { .. } => "image_url",
            Self::InputAudio { .. } => "input_audio",
            Self::File { .. } => "file",
            Self::Refusal { .. } => "refusal",
        }
    }

    /// Whether this is a text part.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text { .. })
    }
}

/// The image of a [`ContentPart::ImageUrl`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageUrl {
    /// An `https:` URL or a `data:image/...;base64,...` URL.
    pub url: String,
    /// The resolution the model should look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

/// `detail` of an [`ImageUrl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageDetail {
    /// Let the model decide.
    Auto,
    /// Low resolution.
    Low,
    /// High resolution.
    High,
}

/// The audio of a [`ContentPart::InputAudio`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputAudio {
    /// Base64-encoded audio.
    pub data: String,
    /// `wav` or `mp3`.
    pub format: String,
}

/// The file of a [`ContentPart::File`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileContent {
    /// Id of an uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// Base64-encoded file contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// The file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// `stop`: one string or an array of strings, kept as a list (serialized as an array).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct StopSequences(pub Vec<String>);

impl StopSequences {
    /// The sequences.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for StopSequences {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StopVisitor;

        impl<'de> Visitor<'de> for StopVisitor {
            type Value = StopSequences;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<StopSequences, E> {
                Ok(StopSequences(vec![value.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StopSequences, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StopSequences(items))
            }
        }

        deserializer.deserialize_any(StopVisitor)
    }
}

/// `stop` as the parser reads it: one string or an array of strings.
impl utoipa::PartialSchema for StopSequences {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        OneOfBuilder::new()
            .item(text())
            .item(ArrayBuilder::new().items(text()).max_items(Some(4)))
            .description(Some("One stop sequence, or an array of up to 4."))
            .into()
    }
}

impl utoipa::ToSchema for StopSequences {}

/// Deserializes `logit_bias`, an object of token ids (as strings) to numbers, so that an error
/// names the field, never a key the client wrote (the path of a bad value would hold its key).
pub(crate) fn logit_bias<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, f32>>, D::Error> {
    let Some(biases) = Option::<BTreeMap<String, serde_json::Value>>::deserialize(deserializer)?
    else {
        return Ok(None);
    };
    biases
        .into_iter()
        .map(|(token, bias)| match bias.as_f64() {
            Some(bias) => Ok((token, bias as f32)),
            None => Err(de::Error::custom(
                "expected an object of token ids to numbers, got a value that is not a number",
            )),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    /// Whether to send a final chunk with `choices: []` and the usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

impl StreamOptions {
    /// `include_usage`, default false.
    pub fn include_usage(self) -> bool {
        self.include_usage.unwrap_or(false)
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
