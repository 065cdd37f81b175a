//! Token counts as a backend reports them: the [`Usage`] of a request, and whether it is
//! [`Accuracy::Exact`] (counted by the model's own tokenizer) or [`Accuracy::Estimated`].

use serde::Serialize;

/// Whether a token count is the model's own or an estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accuracy {
    /// Counted with the model's tokenizer (or reported by the server that ran it).
    #[default]
    Exact,
    /// Estimated without the model's tokenizer.
    Estimated,
}

impl Accuracy {
    /// Exact only when both are.
    pub fn and(self, other: Self) -> Self {
        if self == Self::Exact && other == Self::Exact {
            Self::Exact
        } else {
            Self::Estimated
        }
    }
}

/// Characters per token of the estimate for text without a tokenizer (English prose).
const CHARS_PER_TOKEN: usize = 4;

/// A number of tokens and whether it is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenCount {
    /// The tokens.
    pub tokens: usize,
    /// Whether the count is exact.
    pub accuracy: Accuracy,
}

impl TokenCount {
    /// An exact count.
    pub fn exact(tokens: usize) -> Self {
        Self {
            tokens,
            accuracy: Accuracy::Exact,
        }
    }

    /// An estimate for `text` without a tokenizer: one token per four characters, rounded up.
    pub fn estimate(text: &str) -> Self {
        Self {
            tokens: text.chars().count().div_ceil(CHARS_PER_TOKEN),
            accuracy: Accuracy::Estimated,
        }
    }
}

/// The tokens one request used, as the backend counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Tokens of the prompt (of each prompt once, whatever the number of choices).
    pub prompt_tokens: usize,
    /// Tokens generated, over all choices.
    pub completion_tokens: usize,
    /// Of the prompt tokens, those whose keys and values came from the backend's prompt cache
    /// instead of being computed (at most `prompt_tokens`).
    pub cached_prompt_tokens: usize,
    /// Exact when both counts are exact, else estimated.
    pub accuracy: Accuracy,
}

impl Usage {
    /// The usage of two parts of one request together.
    pub fn plus(self, other: Self) -> Self {
        Self {
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens + other.cached_prompt_tokens,
            accuracy: self.accuracy.and(other.accuracy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_round_up_and_are_marked() {
        assert_eq!(TokenCount::estimate("").tokens, 0);
        assert_eq!(TokenCount::estimate("abcde").tokens, 2);
        assert_eq!(TokenCount::estimate("äöüß").tokens, 1);
        assert_eq!(TokenCount::estimate("x").accuracy, Accuracy::Estimated);
    }

    #[test]
    fn sums_are_exact_only_when_both_parts_are() {
        let exact = Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_prompt_tokens: 2,
            accuracy: Accuracy::Exact,
        };
        let estimated = Usage {
            accuracy: Accuracy::Estimated,
            ..exact
        };
        assert_eq!(exact.plus(exact).accuracy, Accuracy::Exact);
        assert_eq!(exact.plus(estimated).prompt_tokens, 6);
        assert_eq!(exact.plus(estimated).cached_prompt_tokens, 4);
        assert_eq!(exact.plus(estimated).accuracy, Accuracy::Estimated);
    }
}
