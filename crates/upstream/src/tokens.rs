//! Counts tokens the upstream does not report: with the model's own tokenizer where the
//! operator gives its `tokenizer.json`, else with `tiktoken`'s `o200k_base`. Either way the
//! count is an estimate (the upstream's chat template adds tokens of its own), and marked so.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use gateway_backend::{Prompt, TokenCount};

/// Tokens a chat template adds per message and to start the answer, as OpenAI counts them.
const TOKENS_PER_MESSAGE: usize = 3;
const TOKENS_TO_ANSWER: usize = 3;

/// A tokenizer for estimates.
#[derive(Clone)]
pub enum TokenCounter {
    /// The model's own tokenizer.
    Model(Arc<tokenizers::Tokenizer>),
    /// `tiktoken`'s `o200k_base`, for models whose tokenizer the gateway does not have.
    Tiktoken(Arc<tiktoken_rs::CoreBPE>),
}

/// A tokenizer file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the tokenizer {path}: {reason}")]
pub struct TokenizerError {
    path: String,
    reason: String,
}

impl TokenCounter {
    /// Counts with the tokenizer in `path` (a Hugging Face `tokenizer.json`).
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        tokenizers::Tokenizer::from_file(path)
            .map(|tokenizer| Self::Model(Arc::new(tokenizer)))
            .map_err(|error| TokenizerError {
                path: path.display().to_string(),
                reason: error.to_string(),
            })
    }

    /// Counts with `tiktoken`'s `o200k_base`, loaded once per process.
    pub fn tiktoken() -> Result<Self, TokenizerError> {
        static ENCODING: OnceLock<Result<Arc<tiktoken_rs::CoreBPE>, String>> = OnceLock::new();
        ENCODING
            .get_or_init(|| {
                tiktoken_rs::o200k_base()
                    .map(Arc::new)
                    .map_err(|error| error.to_string())
            })
            .clone()
            .map(Self::Tiktoken)
            .map_err(|reason| TokenizerError {
                path: "tiktoken o200k_base".to_owned(),
                reason,
            })
    }

    /// The estimated tokens of `text`.
    pub fn count(&self, text: &str) -> TokenCount {
        let tokens = match self {
            Self::Model(tokenizer) => tokenizer
                .encode_fast(text, false)
                .map_or_else(|_| TokenCount::estimate(text).tokens, |e| e.len()),
            Self::Tiktoken(encoding) => encoding.encode_ordinary(text).len(),
        };
        TokenCount {
            tokens,
            accuracy: gateway_backend::Accuracy::Estimated,
        }
    }

    /// The estimated tokens of a prompt: a chat's messages with the template's few tokens per
    /// message, a text, or token ids (exact).
    pub fn prompt(&self, prompt: &Prompt) -> TokenCount {
        match prompt {
            Prompt::Chat(turns) => {
                let tokens = turns
                    .iter()
                    .map(|turn| TOKENS_PER_MESSAGE + self.count(&turn.content).tokens)
                    .sum::<usize>()
                    + TOKENS_TO_ANSWER;
                TokenCount {
                    tokens,
                    accuracy: gateway_backend::Accuracy::Estimated,
                }
            }
            Prompt::Text(text) => self.count(text),
            Prompt::Tokens(tokens) => TokenCount::exact(tokens.len()),
        }
    }
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Model(_) => "TokenCounter::Model",
            Self::Tiktoken(_) => "TokenCounter::Tiktoken",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use gateway_backend::{Accuracy, ChatTurn};

    use super::*;

    #[test]
    fn tiktoken_counts_are_estimates_of_the_right_size() {
        let counter = TokenCounter::tiktoken().unwrap();
        let count = counter.count("The capital of France is Paris.");
        assert_eq!(count.accuracy, Accuracy::Estimated);
        assert_eq!(count.tokens, 7);
        let chat = Prompt::Chat(vec![
            ChatTurn::new("system", "Be brief."),
            ChatTurn::new("user", "The capital of France is Paris."),
        ]);
        let brief = counter.count("Be brief.").tokens;
        assert_eq!(counter.prompt(&chat).tokens, 3 + brief + 3 + 7 + 3);
        assert_eq!(
            counter.prompt(&Prompt::Tokens(vec![1, 2, 3])),
            TokenCount::exact(3)
        );
    }
}
