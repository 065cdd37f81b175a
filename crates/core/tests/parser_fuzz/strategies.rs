//! Generators of the request parser fuzz (`tests/parser_fuzz.rs`): client texts carrying
//! [`MARKER`], arbitrary JSON built from the request types' own words, structurally valid
//! chat, completion and embedding requests with the request each must parse to, values each
//! field refuses, and number literals of every shape.

use std::collections::BTreeMap;

use gateway_core::openai::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, ContentPart, EmbeddingRequest,
    EncodingFormat, MessageContent, Role, StopSequences, StreamOptions, TextOrTokens,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::MARKER;

/// A client-written text: arbitrary characters (any plane), then JSON's special characters
/// (quotes, backslashes, controls, U+2028, BOM), around [`MARKER`].
pub(crate) fn text() -> impl Strategy<Value = String> {
    (any::<String>(), "[\\x00-\\x1f\"\\\\/\u{2028}\u{feff}]{0,4}")
        .prop_map(|(a, b)| format!("{a}{MARKER}{b}"))
}

/// Field names and enum words of the three request types, so that generated JSON reaches
/// their deserializers and not only the "unknown field" path.
const KNOWN_WORDS: &str = "
    model messages role content type text name tools function tool_choice tool_calls
    tool_call_id response_format json_schema schema n stop max_tokens max_completion_tokens
    temperature top_p top_k seed presence_penalty frequency_penalty logit_bias logprobs
    top_logprobs stream stream_options include_usage user prompt suffix best_of echo input
    encoding_format dimensions image_url url input_audio file refusal system developer
    assistant tool float base64 auto none required json_object
";

/// The [`KNOWN_WORDS`].
fn known_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(KNOWN_WORDS.split_whitespace().collect::<Vec<_>>())
}

/// An object key: a known field name, or a client-chosen key carrying [`MARKER`].
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => known_word().prop_map(str::to_owned),
        1 => text(),
    ]
}

/// A JSON leaf: null, booleans, integers and floats of every size and sign (with the
/// boundaries of `u32` and `i64`), known words and marked texts.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0,
            -1,
            i64::from(u32::MAX),
            i64::from(u32::MAX) + 1,
            i64::MIN,
            i64::MAX
        ])
        .prop_map(Value::from),
        finite_float(),
        known_word().prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

/// Arbitrary JSON: leaves nested in arrays and objects up to 6 levels.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An arbitrary JSON object with a `model` and some top-level fields of the request types.
pub(crate) fn request_like() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), json_value(), 0..8).prop_map(|fields| {
        let mut object: Map<String, Value> = fields.into_iter().collect();
        object.insert("model".to_owned(), json!("m"));
        Value::Object(object)
    })
}

/// `value` wrapped in `depth` arrays, or in `depth` objects (`{"k": …}`) when `objects`.
pub(crate) fn nest(value: Value, depth: usize, objects: bool) -> Value {
    (0..depth).fold(value, |inner, _| {
        if objects {
            json!({ "k": inner })
        } else {
            json!([inner])
        }
    })
}

/// An optional field as a client may send it: absent, `null`, or a value.
#[derive(Debug, Clone)]
enum Sent<T> {
    Absent,
    Null,
    Value(T),
}

impl<T: Clone + Into<Value>> Sent<T> {
    /// What the parser must make of it.
    fn expected(&self) -> Option<T> {
        match self {
            Self::Absent | Self::Null => None,
            Self::Value(value) => Some(value.clone()),
        }
    }

    /// Writes it as `key` into `body`.
    fn write(&self, body: &mut Map<String, Value>, key: &str) {
        match self {
            Self::Absent => {}
            Self::Null => {
                body.insert(key.to_owned(), Value::Null);
            }
            Self::Value(value) => {
                body.insert(key.to_owned(), value.clone().into());
            }
        }
    }
}

/// An optional field drawn from `values`: absent, `null` or one of them.
fn sent<T: Clone + std::fmt::Debug>(
    values: impl Strategy<Value = T>,
) -> impl Strategy<Value = Sent<T>> {
    prop_oneof![
        2 => Just(Sent::Absent),
        1 => Just(Sent::Null),
        3 => values.prop_map(Sent::Value),
    ]
}

/// Floats as a client may send them for the sampling parameters: in and out of their ranges.
fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        -3.0f32..3.0,
        any::<f32>().prop_filter("finite", |f| f.is_finite())
    ]
}

/// `stop` as sent (one string or an array) and as parsed (always a list).
fn stop() -> impl Strategy<Value = (Value, Vec<String>)> {
    prop_oneof![
        text().prop_map(|s| (json!(s), vec![s])),
        prop::collection::vec(text(), 0..6).prop_map(|v| (json!(v), v)),
    ]
}

/// A chat message: role, content as a string or text parts, maybe a name.
fn message() -> impl Strategy<Value = ChatMessage> {
    let role = prop::sample::select(vec![
        Role::System,
        Role::User,
        Role::Assistant,
        Role::Developer,
    ]);
    let content = prop_oneof![
        text().prop_map(MessageContent::Text),
        prop::collection::vec(text().prop_map(|text| ContentPart::Text { text }), 0..4)
            .prop_map(MessageContent::Parts),
    ];
    (role, content, prop::option::of(text())).prop_map(|(role, content, name)| ChatMessage {
        name,
        content: Some(content),
        ..ChatMessage::new(role, "")
    })
}

/// Unknown top-level fields, which every request type ignores.
fn unknown_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    prop::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..3)
}

/// A generated chat request: the body a client sends and the request it must parse to.
#[derive(Debug, Clone)]
pub(crate) struct ChatCase {
    /// The body as sent.
    pub body: Map<String, Value>,
    /// The request it must parse to.
    pub expected: ChatCompletionRequest,
}

/// Structurally valid chat requests with every kind of sampling parameter.
pub(crate) fn chat_case() -> impl Strategy<Value = ChatCase> {
    let numbers = (
        sent(float()),
        sent(float()),
        sent(any::<u32>()),
        sent(any::<u32>()),
        sent(any::<u32>()),
        sent(any::<i64>()),
        sent(float()),
        sent(float()),
    );
    let flags = (
        sent(any::<bool>()),
        sent(any::<bool>()),
        sent(any::<u32>()),
        sent(text()),
    );
    (
        "[a-z0-9./-]{1,20}",
        prop::collection::vec(message(), 0..5),
        numbers,
        flags,
        prop::option::of(stop()),
        prop::option::of(prop::option::of(any::<bool>())),
        unknown_fields(),
    )
        .prop_map(
            |(model, messages, numbers, flags, stop, stream_options, unknown)| {
                let (temperature, top_p, n, max_tokens, max_completion, seed, presence, frequency) =
                    numbers;
                let (stream, logprobs, top_logprobs, user) = flags;
                let mut body: Map<String, Value> = unknown.into_iter().collect();
                body.insert("model".to_owned(), json!(model));
                body.insert(
                    "messages".to_owned(),
                    serde_json::to_value(&messages).unwrap(),
                );
                temperature.write(&mut body, "temperature");
                top_p.write(&mut body, "top_p");
                n.write(&mut body, "n");
                max_tokens.write(&mut body, "max_tokens");
                max_completion.write(&mut body, "max_completion_tokens");
                seed.write(&mut body, "seed");
                presence.write(&mut body, "presence_penalty");
                frequency.write(&mut body, "frequency_penalty");
                stream.write(&mut body, "stream");
                logprobs.write(&mut body, "logprobs");
                top_logprobs.write(&mut body, "top_logprobs");
                user.write(&mut body, "user");
                if let Some((sent, _)) = &stop {
                    body.insert("stop".to_owned(), sent.clone());
                }
                if let Some(include_usage) = stream_options {
                    body.insert(
                        "stream_options".to_owned(),
                        json!({ "include_usage": include_usage }),
                    );
                }
                let expected = ChatCompletionRequest {
                    model,
                    messages,
                    temperature: temperature.expected(),
                    top_p: top_p.expected(),
                    n: n.expected(),
                    max_tokens: max_tokens.expected(),
                    max_completion_tokens: max_completion.expected(),
                    seed: seed.expected(),
                    presence_penalty: presence.expected(),
                    frequency_penalty: frequency.expected(),
                    stream: stream.expected(),
                    logprobs: logprobs.expected(),
                    top_logprobs: top_logprobs.expected(),
                    user: user.expected(),
                    stop: stop.map(|(_, list)| StopSequences(list)),
                    stream_options: stream_options
                        .map(|include_usage| StreamOptions { include_usage }),
                    ..ChatCompletionRequest::default()
                };
                ChatCase { body, expected }
            },
        )
}

/// `prompt` / `input` as sent and as parsed: a text, texts, token ids or token-id arrays.
fn text_or_tokens() -> impl Strategy<Value = TextOrTokens> {
    prop_oneof![
        text().prop_map(TextOrTokens::Text),
        prop::collection::vec(text(), 0..4).prop_map(TextOrTokens::TextBatch),
        prop::collection::vec(any::<u32>(), 1..8).prop_map(TextOrTokens::Tokens),
        prop::collection::vec(prop::collection::vec(any::<u32>(), 0..6), 1..4)
            .prop_map(TextOrTokens::TokenBatch),
    ]
}

/// Structurally valid legacy completion requests.
pub(crate) fn completion_case() -> impl Strategy<Value = (Map<String, Value>, CompletionRequest)> {
    let numbers = (
        sent(any::<u32>()),
        sent(float()),
        sent(float()),
        sent(any::<u32>()),
        sent(any::<u32>()),
        sent(any::<u32>()),
        sent(any::<i64>()),
    );
    let flags = (
        sent(any::<bool>()),
        sent(any::<bool>()),
        sent(text()),
        sent(text()),
    );
    (
        "[a-z0-9./-]{1,20}",
        text_or_tokens(),
        numbers,
        flags,
        prop::option::of(stop()),
        unknown_fields(),
    )
        .prop_map(|(model, prompt, numbers, flags, stop, unknown)| {
            let (max_tokens, temperature, top_p, n, best_of, logprobs, seed) = numbers;
            let (stream, echo, suffix, user) = flags;
            let mut body: Map<String, Value> = unknown.into_iter().collect();
            body.insert("model".to_owned(), json!(model));
            body.insert("prompt".to_owned(), serde_json::to_value(&prompt).unwrap());
            max_tokens.write(&mut body, "max_tokens");
            temperature.write(&mut body, "temperature");
            top_p.write(&mut body, "top_p");
            n.write(&mut body, "n");
            best_of.write(&mut body, "best_of");
            logprobs.write(&mut body, "logprobs");
            seed.write(&mut body, "seed");
            stream.write(&mut body, "stream");
            echo.write(&mut body, "echo");
            suffix.write(&mut body, "suffix");
            user.write(&mut body, "user");
            if let Some((sent, _)) = &stop {
                body.insert("stop".to_owned(), sent.clone());
            }
            let expected = CompletionRequest {
                model,
                prompt,
                suffix: suffix.expected(),
                max_tokens: max_tokens.expected(),
                temperature: temperature.expected(),
                top_p: top_p.expected(),
                top_k: None,
                n: n.expected(),
                best_of: best_of.expected(),
                stream: stream.expected(),
                stream_options: None,
                logprobs: logprobs.expected(),
                echo: echo.expected(),
                stop: stop.map(|(_, list)| StopSequences(list)),
                presence_penalty: None,
                frequency_penalty: None,
                logit_bias: None,
                seed: seed.expected(),
                min_p: None,
                repetition_penalty: None,
                stop_token_ids: None,
                min_tokens: None,
                ignore_eos: None,
                guided_json: None,
                guided_choice: None,
                guided_regex: None,
                user: user.expected(),
            };
            (body, expected)
        })
}

/// Structurally valid embedding requests.
pub(crate) fn embedding_case() -> impl Strategy<Value = (Map<String, Value>, EmbeddingRequest)> {
    let format = sent(prop::sample::select(vec!["float", "base64"]));
    (
        "[a-z0-9./-]{1,20}",
        text_or_tokens(),
        format,
        sent(any::<u32>()),
        sent(text()),
        unknown_fields(),
    )
        .prop_map(|(model, input, format, dimensions, user, unknown)| {
            let mut body: Map<String, Value> = unknown.into_iter().collect();
            body.insert("model".to_owned(), json!(model));
            body.insert("input".to_owned(), serde_json::to_value(&input).unwrap());
            format.write(&mut body, "encoding_format");
            dimensions.write(&mut body, "dimensions");
            user.write(&mut body, "user");
            let encoding_format = match format.expected() {
                Some("base64") => EncodingFormat::Base64,
                _ => EncodingFormat::Float,
            };
            let expected = EmbeddingRequest {
                model,
                input,
                encoding_format,
                dimensions: dimensions.expected(),
                user: user.expected(),
            };
            (body, expected)
        })
}

/// Values no `u32` field takes: negative, beyond `u32::MAX`, fractional, or not a number.
fn bad_u32() -> impl Strategy<Value = Value> {
    prop_oneof![
        (i64::MIN..0).prop_map(Value::from),
        (u64::from(u32::MAX) + 1..=u64::MAX).prop_map(Value::from),
        finite_float(),
        not_a_number(),
    ]
}

/// Any finite float, which JSON writes with a fraction or an exponent (`5.0`, `1e300`), so
/// that no integer field takes it.
fn finite_float() -> impl Strategy<Value = Value> {
    any::<f64>().prop_filter_map("finite", |f| {
        serde_json::Number::from_f64(f).map(Value::Number)
    })
}

/// Values of another JSON type than a number (strings carry [`MARKER`]).
fn not_a_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        prop::collection::vec(text().prop_map(Value::from), 0..3).prop_map(Value::Array),
        text().prop_map(|t| json!({ "value": t })),
    ]
}

/// A field of a chat request and a value it refuses.
pub(crate) fn bad_chat_field() -> impl Strategy<Value = (&'static str, Value)> {
    let u32_field = prop::sample::select(vec![
        "n",
        "max_tokens",
        "max_completion_tokens",
        "top_k",
        "top_logprobs",
    ]);
    let float_field = prop::sample::select(vec![
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
    ]);
    let bool_field = prop::sample::select(vec!["stream", "logprobs", "parallel_tool_calls"]);
    let seed = prop_oneof![
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::from),
        finite_float(),
        not_a_number(),
    ];
    let not_a_bool = prop_oneof![
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from)
    ];
    prop_oneof![
        (u32_field, bad_u32()),
        (float_field, not_a_number()),
        (bool_field, not_a_bool),
        seed.prop_map(|v| ("seed", v)),
        prop_oneof![
            any::<bool>().prop_map(Value::from),
            prop::collection::vec(any::<i64>(), 1..3).prop_map(Value::from),
            text().prop_map(|t| json!({ "stop": t })),
        ]
        .prop_map(|v| ("stop", v)),
        not_a_number()
            .prop_filter("not an array", |v| !v.is_array())
            .prop_map(|v| ("messages", v)),
    ]
}

/// A message field and a value it refuses: a role outside the enum or of another JSON type
/// (null included), or content that is neither a string nor an array.
pub(crate) fn bad_message_field() -> impl Strategy<Value = (&'static str, Value)> {
    let role = prop_oneof![
        text().prop_map(Value::from),
        prop::sample::select(vec!["User", "bot", "", "function_call"]).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        finite_float(),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::collection::vec(text().prop_map(Value::from), 0..2).prop_map(Value::Array),
    ];
    let content = prop_oneof![
        finite_float(),
        any::<bool>().prop_map(Value::from),
        text().prop_map(|t| json!({ "text": t })),
    ];
    prop_oneof![
        role.prop_map(|v| ("role", v)),
        content.prop_map(|v| ("content", v))
    ]
}

/// Number literals of every shape: integers of up to 400 digits, fractions, exponents of up
/// to 4 digits, negative zero.
pub(crate) fn number_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,24})",
        "-?[1-9][0-9]{25,400}",
        "-?(0|[1-9][0-9]{0,12})\\.[0-9]{1,30}",
        "-?(0|[1-9][0-9]{0,6})(\\.[0-9]{1,6})?[eE][+-]?[0-9]{1,4}",
        prop::sample::select(vec![
            "4294967295",
            "4294967296",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "-0",
            "1e38",
            "4e38",
            "1e308",
            "2e308",
            "1e-400"
        ])
        .prop_map(str::to_owned),
    ]
}
