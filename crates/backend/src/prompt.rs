//! What a generation starts from: a [`Prompt`] of chat turns, text or token ids. Each backend
//! turns it into its own input (a chat template and a tokenizer, or an upstream request).

use serde::Serialize;

use crate::TokenCount;

/// One turn of a conversation as a chat template sees it: `{"role", "content"}`, with
/// `tool_calls` on an assistant turn that called tools and `tool_call_id` on a `tool` turn
/// that answers one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatTurn {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The turn's text.
    pub content: String,
    /// The tools an assistant turn called.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<TurnToolCall>,
    /// The call a `tool` turn answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatTurn {
    /// A turn of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call of an assistant turn, in the shape chat templates read:
/// `{"id", "type": "function", "function": {"name", "arguments"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnToolCall {
    /// The call's id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function and its arguments.
    pub function: TurnFunctionCall,
}

/// The function of a [`TurnToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnFunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments: the JSON value when they parse (templates iterate over them), else the
    /// text the model wrote.
    pub arguments: serde_json::Value,
}

/// A function the model may call, as chat templates read it:
/// `{"type": "function", "function": {"name", "description", "parameters"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolSpec {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function.
    pub function: FunctionSpec,
}

/// The function of a [`ToolSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionSpec {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its arguments as a JSON Schema object.
    pub parameters: serde_json::Value,
}

/// The prompt of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A conversation, rendered by the model's chat template and ending with the header of an
    /// assistant turn (chat completions).
    Chat(Vec<ChatTurn>),
    /// Raw text, tokenized without a template (legacy completions).
    Text(String),
    /// Token ids of the model's vocabulary, used as given.
    Tokens(Vec<u32>),
}

impl Prompt {
    /// What the prompt asks of a backend, for [`crate::BackendError::Unsupported`].
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Chat(_) => "chat",
            Self::Text(_) => "completions",
            Self::Tokens(_) => "token id prompts",
        }
    }

    /// Its tokens without the model's tokenizer: exact for token ids, else an estimate from
    /// the text (a template's own tokens not included).
    pub fn estimated_tokens(&self) -> TokenCount {
        match self {
            Self::Chat(turns) => {
                let text: String = turns.iter().map(|turn| turn.content.as_str()).collect();
                TokenCount::estimate(&text)
            }
            Self::Text(text) => TokenCount::estimate(text),
            Self::Tokens(tokens) => TokenCount::exact(tokens.len()),
        }
    }
}
