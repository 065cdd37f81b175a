//! The legacy `POST /v1/completions` endpoint: request (a raw prompt instead of messages),
//! response and stream chunks (both `text_completion` objects).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chat::{StopSequences, StreamOptions};
use super::chat_response::FinishReason;
use super::input::TextOrTokens;
use super::usage::Usage;
use super::ObjectType;

/// `prompt`: a string, an array of strings, an array of token ids or an array of token-id
/// arrays (one completion per prompt).
pub type Prompt = TextOrTokens;

/// A legacy completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletionRequest {
    /// The model id.
    pub model: String,
    /// The prompt(s) to complete.
    pub prompt: Prompt,
    /// Text that comes after the completion (insertion); rarely supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Upper bound on generated tokens (default 16, [`CompletionRequest::DEFAULT_MAX_TOKENS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
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
    /// Completions per prompt (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub n: Option<u32>,
    /// Candidates generated server-side per prompt, of which the best `n` are returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub best_of: Option<u32>,
    /// Whether to stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Number (0 to 5) of alternatives whose log-probabilities are returned per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 5)]
    pub logprobs: Option<u32>,
    /// Whether the prompt is echoed before the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Up to 4 sequences where generation stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
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
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
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
    /// An end-user identifier chosen by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl CompletionRequest {
    /// OpenAI's default `max_tokens` for legacy completions.
    pub const DEFAULT_MAX_TOKENS: u32 = 16;

    /// `max_tokens`, or [`Self::DEFAULT_MAX_TOKENS`].
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens.unwrap_or(Self::DEFAULT_MAX_TOKENS)
    }

    /// Completions per prompt (`n`, default 1).
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

/// A legacy completion, or one of its stream chunks ([`CompletionChunk`]).
///
/// `usage` is always serialized; in a stream it is `null` except in the final usage chunk,
/// which has `choices: []`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Completion {
    /// Unique id, `cmpl-...`.
    pub id: String,
    /// Always `text_completion`.
    pub object: ObjectType,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// The completions (`n` per prompt, prompt-major).
    pub choices: Vec<CompletionChoice>,
    /// Token usage, or null in stream chunks.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint, or null.
    #[serde(default)]
    pub system_fingerprint: Option<String>,
}

/// A stream chunk of a legacy completion: the same shape as [`Completion`].
pub type CompletionChunk = Completion;

impl Completion {
    /// A completion (or chunk) with the given choices and usage.
    pub fn new(
        id: impl Into<String>,
        created: i64,
        model: impl Into<String>,
        choices: Vec<CompletionChoice>,
        usage: Option<Usage>,
    ) -> Self {
        Self {
            id: id.into(),
            object: ObjectType::TextCompletion,
            created,
            model: model.into(),
            choices,
            usage,
            system_fingerprint: None,
        }
    }
}

/// One choice of a [`Completion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletionChoice {
    /// The generated text (or, in a stream, the next piece of it).
    pub text: String,
    /// Position among the choices.
    pub index: u32,
    /// Log-probabilities when requested, else null.
    #[serde(default)]
    pub logprobs: Option<CompletionLogprobs>,
    /// Why generation stopped; null until the last chunk of a stream.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
}

/// Legacy log-probabilities: parallel arrays, one entry per token.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletionLogprobs {
    /// The tokens' texts.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Their log-probabilities (null for the first echoed prompt token).
    #[serde(default)]
    pub token_logprobs: Vec<Option<f32>>,
    /// The likeliest alternatives at each position, token text to log-probability.
    #[serde(default)]
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Character offset of each token in the returned text.
    #[serde(default)]
    pub text_offset: Vec<u32>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_from_sdk_body() {
        let request: CompletionRequest = serde_json::from_value(json!({
            "model": "gpt-3.5-turbo-instruct",
            "prompt": "Say this is a test",
            "max_tokens": 7,
            "temperature": 0,
            "stop": "\n",
            "logprobs": 2,
            "echo": true,
            "best_of": 1,
            "suffix": null,
            "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .unwrap();
        assert_eq!(request.prompt, Prompt::Text("Say this is a test".into()));
        assert_eq!(request.max_tokens(), 7);
        assert_eq!(request.temperature, Some(0.0));
        assert_eq!(request.stop_sequences(), ["\n"]);
        assert_eq!(request.logprobs, Some(2));
        assert!(request.is_stream() && request.include_usage());
        assert_eq!(request.suffix, None);
    }

    #[test]
    fn prompt_shapes_and_defaults() {
        for (prompt, len) in [
            (json!(["a", "b"]), 2),
            (json!([1, 2]), 1),
            (json!([[1], [2, 3]]), 2),
        ] {
            let request: CompletionRequest =
                serde_json::from_value(json!({"model": "m", "prompt": prompt.clone()})).unwrap();
            assert_eq!(request.prompt.len(), len);
            assert_eq!(request.max_tokens(), 16);
            assert_eq!(request.n(), 1);
            assert!(!request.is_stream());
            let back = serde_json::to_value(&request).unwrap();
            assert_eq!(back, json!({"model": "m", "prompt": prompt}));
        }
    }

    #[test]
    fn response_round_trip() {
        let value = json!({
            "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
            "object": "text_completion",
            "created": 1589478378,
            "model": "gpt-3.5-turbo-instruct",
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [{
                "text": "\n\nThis is indeed a test",
                "index": 0,
                "logprobs": null,
                "finish_reason": "length"
            }],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        });
        let parsed: Completion = serde_json::from_value(value).unwrap();
        assert_eq!(parsed.choices[0].finish_reason, Some(FinishReason::Length));
        let text = serde_json::to_string(&parsed).unwrap();
        assert_eq!(serde_json::from_str::<Completion>(&text).unwrap(), parsed);
    }

    #[test]
    fn chunk_serializes_null_usage_and_logprobs() {
        let chunk = CompletionChunk::new(
            "cmpl-1",
            7,
            "m",
            vec![CompletionChoice {
                text: "Hel".into(),
                index: 0,
                logprobs: Some(CompletionLogprobs {
                    tokens: vec!["Hel".into()],
                    token_logprobs: vec![Some(-0.5)],
                    top_logprobs: vec![Some(BTreeMap::from([("Hel".to_owned(), -0.5)]))],
                    text_offset: vec![0],
                }),
                finish_reason: None,
            }],
            None,
        );
        assert_eq!(
            serde_json::to_value(&chunk).unwrap(),
            json!({
                "id": "cmpl-1", "object": "text_completion", "created": 7, "model": "m",
                "choices": [{"text": "Hel", "index": 0, "finish_reason": null, "logprobs": {
                    "tokens": ["Hel"], "token_logprobs": [-0.5],
                    "top_logprobs": [{"Hel": -0.5}], "text_offset": [0]}}],
                "usage": null, "system_fingerprint": null
            })
        );
    }
}
