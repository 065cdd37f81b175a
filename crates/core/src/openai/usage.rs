//! Token usage of a chat or legacy completion (`usage` of responses and of the final stream
//! chunk). Embeddings use their own smaller shape, [`crate::openai::EmbeddingUsage`].

use serde::{Deserialize, Serialize};

/// Token counts of one completion request.
///
/// The detail objects are optional when read (older upstream servers leave them out) and are
/// always written by [`Usage::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens of the prompt (input).
    pub prompt_tokens: u32,
    /// Tokens generated (output), over all choices.
    pub completion_tokens: u32,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u32,
    /// Breakdown of the prompt tokens.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Breakdown of the completion tokens.
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl Usage {
    /// Usage with the given counts, the total computed (saturating) and zeroed details.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: Some(PromptTokensDetails::default()),
            completion_tokens_details: Some(CompletionTokensDetails::default()),
        }
    }

    /// Sets the number of prompt tokens served from a prompt cache.
    pub fn with_cached_tokens(mut self, cached_tokens: u32) -> Self {
        self.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens });
        self
    }

    /// Number of prompt tokens served from a prompt cache (0 when not reported).
    pub fn cached_tokens(&self) -> u32 {
        self.prompt_tokens_details
            .map_or(0, |details| details.cached_tokens)
    }
}

/// Breakdown of [`Usage::prompt_tokens`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose computation was reused from a cache.
    #[serde(default, deserialize_with = "crate::openai::null_as_default")]
    pub cached_tokens: u32,
}

/// Breakdown of [`Usage::completion_tokens`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletionTokensDetails {
    /// Generated tokens spent on reasoning (not shown in the content).
    #[serde(default, deserialize_with = "crate::openai::null_as_default")]
    pub reasoning_tokens: u32,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_serializes_details() {
        let usage = Usage::new(9, 12).with_cached_tokens(4);
        assert_eq!(
            serde_json::to_value(usage).unwrap(),
            json!({
                "prompt_tokens": 9,
                "completion_tokens": 12,
                "total_tokens": 21,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 0}
            })
        );
        assert_eq!(usage.cached_tokens(), 4);
    }

    #[test]
    fn details_are_optional_on_input() {
        let usage: Usage = serde_json::from_value(
            json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
        )
        .unwrap();
        assert_eq!(usage.prompt_tokens_details, None);
        assert_eq!(usage.cached_tokens(), 0);
        let usage: Usage = serde_json::from_value(json!({
            "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": null, "audio_tokens": 0},
            "completion_tokens_details": null
        }))
        .unwrap();
        assert_eq!(usage.cached_tokens(), 0);
        assert_eq!(usage.completion_tokens_details, None);
    }
}
