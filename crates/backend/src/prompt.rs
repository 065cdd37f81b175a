//! What a generation starts from: a [`Prompt`] of chat turns, text or token ids. Each backend
//! turns it into its own input (a chat template and a tokenizer, or an upstream request).

use serde::Serialize;

use crate::TokenCount;

/// One turn of a conversation: `{"role", "content"}`, as a chat template sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatTurn {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl ChatTurn {
    /// A turn of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
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
