//! The OpenAI wire format as the gateway speaks it to an upstream: the request bodies built
//! from a [`GenerationRequest`] or embedding inputs, and the lenient reading of what comes
//! back (stream chunks, embeddings, error bodies), which ignores every field it does not use.

use gateway_backend::{
    ChatTurn, EmbeddingInputs, GenerationRequest, OutputConstraint, Prompt, TokenLogprob,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The path of a generation's endpoint below the base URL.
pub(crate) fn generation_path(prompt: &Prompt) -> &'static str {
    match prompt {
        Prompt::Chat(_) => "/chat/completions",
        Prompt::Text(_) | Prompt::Tokens(_) => "/completions",
    }
}

/// The body of a streamed generation, without `model` (each server names the model its own
/// way); usage is always asked for.
pub(crate) fn generation_body(request: &GenerationRequest) -> Map<String, Value> {
    let mut body = Map::new();
    let chat = matches!(request.prompt, Prompt::Chat(_));
    match &request.prompt {
        Prompt::Chat(turns) => body.insert("messages".into(), turns.iter().map(message).collect()),
        Prompt::Text(text) => body.insert("prompt".into(), json!(text)),
        Prompt::Tokens(tokens) => body.insert("prompt".into(), json!(tokens)),
    };
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    if request.choices != 1 {
        body.insert("n".into(), json!(request.choices));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    insert_sampling(&mut body, request, chat);
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    let ending = &request.ending;
    if !ending.stop_token_ids.is_empty() {
        body.insert("stop_token_ids".into(), json!(ending.stop_token_ids));
    }
    if ending.min_tokens > 0 {
        body.insert("min_tokens".into(), json!(ending.min_tokens));
    }
    if ending.ignore_eos {
        body.insert("ignore_eos".into(), json!(true));
    }
    if let Some(constraint) = &request.constraint {
        insert_constraint(&mut body, constraint, chat);
    }
    body
}

/// Sampling fields: OpenAI's always, vLLM's extensions only when they change something (a
/// server without them refuses them).
fn insert_sampling(body: &mut Map<String, Value>, request: &GenerationRequest, chat: bool) {
    let sampling = &request.sampling;
    body.insert("temperature".into(), json!(sampling.temperature));
    body.insert("top_p".into(), json!(sampling.top_p));
    // OpenAI's seed is a signed 64-bit integer; the API stored the client's bit for bit.
    let seed = i64::from_ne_bytes(sampling.seed.to_ne_bytes());
    body.insert("seed".into(), json!(seed));
    if sampling.presence_penalty != 0.0 {
        body.insert("presence_penalty".into(), json!(sampling.presence_penalty));
    }
    if sampling.frequency_penalty != 0.0 {
        body.insert(
            "frequency_penalty".into(),
            json!(sampling.frequency_penalty),
        );
    }
    if sampling.top_k > 0 {
        body.insert("top_k".into(), json!(sampling.top_k));
    }
    if sampling.min_p > 0.0 {
        body.insert("min_p".into(), json!(sampling.min_p));
    }
    if sampling.repetition_penalty != 1.0 {
        body.insert(
            "repetition_penalty".into(),
            json!(sampling.repetition_penalty),
        );
    }
    match (sampling.top_logprobs, chat) {
        (Some(top), true) => {
            body.insert("logprobs".into(), json!(true));
            body.insert("top_logprobs".into(), json!(top));
        }
        (Some(top), false) => {
            body.insert("logprobs".into(), json!(top));
        }
        (None, _) => {}
    }
}

/// A constraint as OpenAI's `response_format` on chat where it has one, else as vLLM's
/// `guided_*` fields.
fn insert_constraint(body: &mut Map<String, Value>, constraint: &OutputConstraint, chat: bool) {
    let (field, value) = match constraint {
        OutputConstraint::JsonObject if chat => ("response_format", json!({"type": "json_object"})),
        OutputConstraint::JsonSchema(schema) if chat => (
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}}),
        ),
        OutputConstraint::JsonObject => ("guided_json", json!({"type": "object"})),
        OutputConstraint::JsonSchema(schema) => ("guided_json", schema.clone()),
        OutputConstraint::Regex(pattern) => ("guided_regex", json!(pattern)),
        OutputConstraint::Choice(choices) => ("guided_choice", json!(choices)),
    };
    body.insert(field.into(), value);
}

/// A chat turn as an OpenAI message (tool call arguments as the JSON text the wire carries).
fn message(turn: &ChatTurn) -> Value {
    let mut message = json!({"role": turn.role, "content": turn.content});
    if !turn.tool_calls.is_empty() {
        let calls: Vec<Value> = turn
            .tool_calls
            .iter()
            .map(|call| {
                let arguments = match &call.function.arguments {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                json!({"id": call.id, "type": "function",
                       "function": {"name": call.function.name, "arguments": arguments}})
            })
            .collect();
        message["tool_calls"] = json!(calls);
    }
    if let Some(id) = &turn.tool_call_id {
        message["tool_call_id"] = json!(id);
    }
    message
}

/// The body of an embedding request, without `model`; vectors as floats.
pub(crate) fn embedding_body(inputs: &EmbeddingInputs) -> Map<String, Value> {
    let input = match inputs {
        EmbeddingInputs::Texts(texts) => json!(texts),
        EmbeddingInputs::Tokens(tokens) => json!(tokens),
    };
    let mut body = Map::new();
    body.insert("input".into(), input);
    body.insert("encoding_format".into(), json!("float"));
    body
}

/// `body` with its `model` set to `model` (replacing another server's), as bytes to send.
pub(crate) fn with_model(body: &mut Map<String, Value>, model: &str) -> bytes::Bytes {
    body.insert("model".into(), json!(model));
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    bytes::Bytes::from(text)
}

/// One chunk of a streamed chat completion or completion.
#[derive(Debug, Deserialize)]
pub(crate) struct Chunk {
    /// The choices that moved.
    #[serde(default)]
    pub(crate) choices: Vec<ChunkChoice>,
    /// The usage of the whole request (the last chunk, when asked for).
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
    /// An error the server reports inside the stream.
    #[serde(default)]
    pub(crate) error: Option<Value>,
}

/// One choice of a [`Chunk`].
#[derive(Debug, Deserialize)]
pub(crate) struct ChunkChoice {
    /// The choice, from 0.
    #[serde(default)]
    pub(crate) index: u32,
    /// Chat: the new content.
    #[serde(default)]
    pub(crate) delta: Option<Delta>,
    /// Completions: the new text.
    #[serde(default)]
    pub(crate) text: Option<String>,
    /// Why the choice ended, in its last chunk.
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    /// Log-probabilities of the chunk's tokens, chat's or legacy shape.
    #[serde(default)]
    pub(crate) logprobs: Option<Value>,
}

impl ChunkChoice {
    /// The chunk's new text.
    pub(crate) fn text(&self) -> &str {
        self.delta
            .as_ref()
            .and_then(|delta| delta.content.as_deref())
            .or(self.text.as_deref())
            .unwrap_or_default()
    }
}

/// The new content of a chat choice.
#[derive(Debug, Deserialize)]
pub(crate) struct Delta {
    /// Text, when the chunk has some.
    #[serde(default)]
    pub(crate) content: Option<String>,
}

/// Token counts as an upstream reports them.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct WireUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub(crate) prompt_tokens: usize,
    /// Generated tokens (absent for embeddings).
    #[serde(default)]
    pub(crate) completion_tokens: usize,
    /// Breakdown of the prompt tokens (vLLM and OpenAI; absent or `null` elsewhere).
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<WirePromptDetails>,
}

impl WireUsage {
    /// Of the prompt tokens, those the server took from its prompt cache (0 when not
    /// reported; never more than the prompt tokens).
    pub(crate) fn cached_prompt_tokens(&self) -> usize {
        self.prompt_tokens_details
            .and_then(|details| details.cached_tokens)
            .unwrap_or(0)
            .min(self.prompt_tokens)
    }
}

/// `usage.prompt_tokens_details` as an upstream reports it.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct WirePromptDetails {
    /// Prompt tokens served from the prompt cache (`null` when the server does not know).
    #[serde(default)]
    pub(crate) cached_tokens: Option<usize>,
}

/// An embeddings answer.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingAnswer {
    /// One item per input.
    pub(crate) data: Vec<EmbeddingItem>,
    /// The tokens of the inputs, when reported.
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

/// One vector of an [`EmbeddingAnswer`].
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingItem {
    /// The input it belongs to.
    pub(crate) index: usize,
    /// The vector.
    pub(crate) embedding: Vec<f32>,
}

/// The message of an error body: OpenAI's `{"error": {"message"}}`, or a top-level `message`
/// or `detail` as other servers write it.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value
        .pointer("/error/message")
        .or_else(|| value.get("error").filter(|e| e.is_string()))
        .or_else(|| value.get("message"))
        .or_else(|| value.get("detail"))?;
    message.as_str().map(str::to_owned)
}

/// The log-probabilities of a chunk's tokens, from chat's `{"content": [...]}` or the legacy
/// `{"tokens", "token_logprobs", "top_logprobs"}`; unreadable entries are left out.
pub(crate) fn logprobs(value: &Value) -> Vec<TokenLogprob> {
    if let Some(content) = value.get("content").and_then(Value::as_array) {
        return content.iter().filter_map(chat_logprob).collect();
    }
    let tokens = value.get("tokens").and_then(Value::as_array);
    let logprobs = value.get("token_logprobs").and_then(Value::as_array);
    let tops = value.get("top_logprobs").and_then(Value::as_array);
    let (Some(tokens), Some(logprobs)) = (tokens, logprobs) else {
        return Vec::new();
    };
    tokens
        .iter()
        .zip(logprobs)
        .enumerate()
        .filter_map(|(position, (token, logprob))| {
            let text = token.as_str()?.to_owned();
            let top = tops
                .and_then(|tops| tops.get(position))
                .and_then(Value::as_object)
                .map(|top| {
                    top.iter()
                        .filter_map(|(t, lp)| {
                            Some((t.clone(), t.as_bytes().to_vec(), lp.as_f64()? as f32))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(TokenLogprob {
                bytes: text.as_bytes().to_vec(),
                text,
                logprob: logprob.as_f64()? as f32,
                top,
            })
        })
        .collect()
}

/// One entry of chat's `logprobs.content`.
fn chat_logprob(entry: &Value) -> Option<TokenLogprob> {
    let (text, bytes, logprob) = token_entry(entry)?;
    let top = entry
        .get("top_logprobs")
        .and_then(Value::as_array)
        .map(|top| top.iter().filter_map(token_entry).collect())
        .unwrap_or_default();
    Some(TokenLogprob {
        text,
        bytes,
        logprob,
        top,
    })
}

/// `{"token", "logprob", "bytes"}`; the bytes default to the token's UTF-8.
fn token_entry(entry: &Value) -> Option<(String, Vec<u8>, f32)> {
    let text = entry.get("token")?.as_str()?.to_owned();
    let logprob = entry.get("logprob")?.as_f64()? as f32;
    let bytes = entry
        .get("bytes")
        .and_then(Value::as_array)
        .and_then(|bytes| {
            bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
        })
        .unwrap_or_else(|| text.as_bytes().to_vec());
    Some((text, bytes, logprob))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use gateway_backend::{Ending, SamplingParams};

    use super::*;

    #[test]
    fn a_chat_request_asks_for_a_stream_with_usage_and_only_the_fields_set() {
        let mut request = GenerationRequest::new(Prompt::Chat(vec![ChatTurn::new("user", "hi")]));
        request.max_tokens = Some(5);
        request.sampling = SamplingParams {
            temperature: 0.0,
            seed: u64::MAX,
            top_logprobs: Some(2),
            ..SamplingParams::default()
        };
        request.ending = Ending {
            ignore_eos: true,
            ..Ending::default()
        };
        request.constraint = Some(OutputConstraint::JsonSchema(json!({"type": "object"})));
        let body = Value::Object(generation_body(&request));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(
            (body["max_tokens"].clone(), body["top_logprobs"].clone()),
            (json!(5), json!(2))
        );
        assert_eq!(body["logprobs"], json!(true));
        assert_eq!(body["ignore_eos"], json!(true));
        assert_eq!(body["seed"], json!(-1));
        assert_eq!(
            body["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
        for absent in [
            "n",
            "stop",
            "top_k",
            "min_p",
            "repetition_penalty",
            "min_tokens",
            "model",
        ] {
            assert!(body.get(absent).is_none(), "{absent}");
        }
        let sent: Value =
            serde_json::from_slice(&with_model(&mut generation_body(&request), "up")).unwrap();
        assert_eq!(sent["model"], "up");
    }

    #[test]
    fn completions_take_constraints_as_guided_fields_and_legacy_logprobs() {
        let mut request = GenerationRequest::new(Prompt::Tokens(vec![1, 2]));
        request.constraint = Some(OutputConstraint::Choice(vec!["a".into(), "b".into()]));
        request.sampling.top_logprobs = Some(1);
        let body = Value::Object(generation_body(&request));
        assert_eq!(generation_path(&request.prompt), "/completions");
        assert_eq!(body["prompt"], json!([1, 2]));
        assert_eq!(body["guided_choice"], json!(["a", "b"]));
        assert_eq!(body["logprobs"], json!(1));
    }

    #[test]
    fn chunks_of_both_shapes_are_read() {
        let chat: Chunk = serde_json::from_str(
            r#"{"id":"x","choices":[{"index":1,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,
               "logprobs":{"content":[{"token":"Hi","logprob":-0.5,"bytes":[72,105],"top_logprobs":[{"token":"Hi","logprob":-0.5}]}]}}]}"#,
        )
        .unwrap();
        assert_eq!((chat.choices[0].index, chat.choices[0].text()), (1, "Hi"));
        let read = logprobs(chat.choices[0].logprobs.as_ref().unwrap());
        assert_eq!(read[0].bytes, b"Hi");
        assert_eq!(read[0].top.len(), 1);
        let legacy: Chunk = serde_json::from_str(
            r#"{"choices":[{"index":0,"text":" a","finish_reason":"length",
               "logprobs":{"tokens":[" a"],"token_logprobs":[-1.0],"top_logprobs":[{" a":-1.0," b":-2.0}]}}],
               "usage":null}"#,
        )
        .unwrap();
        assert_eq!(legacy.choices[0].text(), " a");
        assert_eq!(legacy.choices[0].finish_reason.as_deref(), Some("length"));
        let read = logprobs(legacy.choices[0].logprobs.as_ref().unwrap());
        assert_eq!((read[0].logprob, read[0].top.len()), (-1.0, 2));
        let usage: Chunk = serde_json::from_str(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(usage.usage.unwrap().completion_tokens, 4);
    }

    #[test]
    fn error_messages_are_found_in_the_usual_places() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad","type":"x"}}"#).unwrap(),
            "bad"
        );
        assert_eq!(
            error_message(br#"{"object":"error","message":"m"}"#).unwrap(),
            "m"
        );
        assert_eq!(error_message(br#"{"detail":"d"}"#).unwrap(), "d");
        assert!(error_message(b"<html>").is_none());
    }
}
