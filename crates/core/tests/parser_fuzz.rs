//! Property-based fuzz of the request parsers (issue 25): [`from_json_slice`] on the bodies of
//! `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`.
//!
//! - arbitrary bytes and arbitrary JSON never panic, and every failure is a [`WireError`]
//!   with a message, whose `param` (when there is one) is named in the message;
//! - numbers of every size and shape in the numeric fields parse exactly when they fit the
//!   field's type, and are refused naming the field otherwise;
//! - structurally valid requests parse to what was sent, serialize back to the same request,
//!   and their accessors give the values sent (or the documented defaults);
//! - a value of the wrong type or out of its type's range is refused naming the field;
//! - no error ever quotes a value of the request: every text the client wrote carries
//!   [`MARKER`], and no error (message or param) contains it.
//!
//! The ranges of the sampling parameters (`temperature` 0 to 2, `n` at most 8 …) are checked
//! by the API layer after parsing, not here: at this level a finite `temperature` of 7 parses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "parser_fuzz/strategies.rs"]
mod strategies;

use gateway_core::openai::{
    from_json_slice, ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ErrorType,
    WireError,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use strategies::{
    bad_chat_field, bad_message_field, chat_case, completion_case, embedding_case, json_value,
    nest, number_literal, request_like, text, ChatCase,
};

/// Carried by every text a generated request holds; no error may contain it.
const MARKER: &str = "PRIVMARK9c41";

/// `cases` cases per property, without regression files (found bugs become plain tests).
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Parses `bytes` as `T` and checks what every failure must be: a non-empty message, a
/// `param` that is non-empty and named in the message, a 400 `invalid_request_error` body
/// with the same `param`, and nothing of [`MARKER`].
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let result = from_json_slice::<T>(bytes);
    if let Err(error) = &result {
        assert!(!error.message().is_empty(), "{error:?}");
        assert_eq!(error.to_string(), error.message());
        if let Some(param) = error.param() {
            assert!(!param.is_empty(), "{error:?}");
            assert!(error.message().contains(param), "{error:?}");
        }
        if let WireError::Syntax { line, .. } = error {
            assert!(*line >= 1, "{error:?}");
            assert_eq!(error.param(), None);
        }
        let body = error.to_error_body();
        assert_eq!(body.http_status(), 400);
        assert_eq!(body.error.kind, ErrorType::InvalidRequest);
        assert_eq!(body.error.param.as_deref(), error.param());
        assert!(!format!("{error:?}").contains(MARKER), "{error:?}");
    }
    result
}

/// Parses `bytes` as each of the three request types ([`parse`]).
fn parse_all(bytes: &[u8]) {
    let _ = parse::<ChatCompletionRequest>(bytes);
    let _ = parse::<CompletionRequest>(bytes);
    let _ = parse::<EmbeddingRequest>(bytes);
}

/// What an integer literal (no fraction, no exponent) is worth, if it is one; `None` for
/// `-0`, which JSON parsers read as the float negative zero.
fn integer_value(literal: &str) -> Option<Option<i128>> {
    if literal.contains(['.', 'e', 'E']) || literal == "-0" {
        return None;
    }
    Some(literal.parse::<i128>().ok())
}

proptest! {
    #![proptest_config(config(512))]

    /// Property (a): arbitrary bytes, alone or after the start of a request body.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        prefix in prop::sample::select(vec!["", "{", r#"{"model":"m","#,
            r#"{"model":"m","messages":[{"role":"user","content":"#, r#"{"model":"m","input":["#]),
    ) {
        let mut body = prefix.as_bytes().to_vec();
        body.extend(&bytes);
        parse_all(&body);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Properties (b) and (d): arbitrary JSON, alone and as the fields of a request, never
    /// panics, and no error quotes a string or key of it.
    #[test]
    fn arbitrary_json_never_panics(value in json_value(), request in request_like()) {
        parse_all(&serde_json::to_vec(&value).unwrap());
        parse_all(&serde_json::to_vec(&request).unwrap());
    }

    /// Deep nesting in a field is parsed or refused, never a stack overflow: an unknown field
    /// is skipped at any depth, and `logit_bias` (read as JSON values) is refused naming it,
    /// or past serde_json's recursion limit (128) as a syntax error.
    #[test]
    fn deep_nesting_is_parsed_or_refused(
        depth in 0usize..300,
        objects in any::<bool>(),
        field in prop::sample::select(vec!["messages", "content", "input", "prompt", "x_unknown",
            "tools", "logit_bias", "stop"]),
    ) {
        let leaf = nest(json!(MARKER), depth, objects);
        let mut body = json!({ "model": "m", "messages": [], "input": "x", "prompt": "x" });
        if field == "content" {
            body["messages"] = json!([{ "role": "user", "content": leaf }]);
        } else {
            body[field] = leaf;
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        parse_all(&bytes);
        if field == "x_unknown" {
            prop_assert!(parse::<ChatCompletionRequest>(&bytes).is_ok());
            prop_assert!(parse::<CompletionRequest>(&bytes).is_ok());
            prop_assert!(parse::<EmbeddingRequest>(&bytes).is_ok());
        } else if field == "logit_bias" {
            let error = parse::<ChatCompletionRequest>(&bytes).unwrap_err();
            if objects && depth > 130 {
                prop_assert!(error.message().contains("recursion limit"), "{}", error);
            } else if depth < 120 {
                prop_assert_eq!(error.param(), Some("logit_bias"));
            }
        }
    }

    /// Number literals in the integer, seed and float fields parse exactly when they fit the
    /// field's type; otherwise the error names the field (or, beyond f64, says the number is
    /// out of range).
    #[test]
    fn numbers_parse_exactly_when_they_fit(
        literal in number_literal(),
        field in prop::sample::select(vec!["n", "max_tokens", "seed", "temperature", "top_p"]),
    ) {
        let body = format!(r#"{{"model":"m","messages":[],"{field}":{literal}}}"#);
        let parsed = parse::<ChatCompletionRequest>(body.as_bytes());
        let integer = integer_value(&literal);
        let fits = match field {
            "n" | "max_tokens" => integer.flatten().is_some_and(|v| u32::try_from(v).is_ok()),
            "seed" => integer.flatten().is_some_and(|v| i64::try_from(v).is_ok()),
            _ => literal.parse::<f64>().unwrap().is_finite(),
        };
        match parsed {
            Ok(request) => {
                prop_assert!(fits, "{literal} for {field} parsed to {request:?}");
                let value = integer.flatten();
                match field {
                    "n" => prop_assert_eq!(request.n.map(i128::from), value),
                    "max_tokens" => prop_assert_eq!(request.max_tokens.map(i128::from), value),
                    "seed" => prop_assert_eq!(request.seed.map(i128::from), value),
                    "temperature" => prop_assert!(request.temperature.is_some()),
                    _ => prop_assert!(request.top_p.is_some()),
                }
            }
            Err(error) => {
                prop_assert!(!fits, "{literal} for {field}: {error}");
                match &error {
                    WireError::Invalid { param, .. } => {
                        prop_assert_eq!(param.as_deref(), Some(field));
                    }
                    WireError::Syntax { .. } => {
                        prop_assert!(error.message().contains("number out of range"), "{}", error);
                    }
                }
            }
        }
    }

    /// Property (c): valid chat requests parse to what was sent, serialize back to it, and
    /// their accessors give the values sent or the defaults.
    #[test]
    fn valid_chat_requests_round_trip(case in chat_case()) {
        let ChatCase { body, expected } = case;
        let request: ChatCompletionRequest = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(&request, &expected);
        let again: ChatCompletionRequest = parse(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert_eq!(&again, &expected);
        prop_assert_eq!(request.n(), expected.n.unwrap_or(1));
        prop_assert_eq!(
            request.effective_max_tokens(),
            expected.max_completion_tokens.or(expected.max_tokens)
        );
        prop_assert_eq!(request.is_stream(), expected.stream == Some(true));
        prop_assert_eq!(
            request.include_usage(),
            expected.stream_options.is_some_and(|o| o.include_usage == Some(true))
        );
        let stop = expected.stop.as_ref().map_or(&[][..], |s| s.0.as_slice());
        prop_assert_eq!(request.stop_sequences(), stop);
        let sent = body["messages"].as_array().unwrap();
        for (message, sent) in request.messages.iter().zip(sent) {
            let text = match &sent["content"] {
                Value::String(text) => text.clone(),
                parts => parts.as_array().unwrap().iter()
                    .map(|part| part["text"].as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            prop_assert_eq!(message.text(), text);
        }
    }

    /// Property (c): valid completion requests parse to what was sent and serialize back.
    #[test]
    fn valid_completion_requests_round_trip(case in completion_case()) {
        let (body, expected) = case;
        let request: CompletionRequest = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(&request, &expected);
        let again: CompletionRequest = parse(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert_eq!(&again, &expected);
        prop_assert_eq!(request.max_tokens(), expected.max_tokens.unwrap_or(16));
        prop_assert_eq!(request.n(), expected.n.unwrap_or(1));
        prop_assert_eq!(request.prompt.len(), request.prompt.items().len());
    }

    /// Property (c): valid embedding requests parse to what was sent and serialize back.
    #[test]
    fn valid_embedding_requests_round_trip(case in embedding_case()) {
        let (body, expected) = case;
        let request: EmbeddingRequest = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(&request, &expected);
        let again: EmbeddingRequest = parse(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert_eq!(&again, &expected);
        prop_assert_eq!(request.input.is_tokens(), expected.input.is_tokens());
    }

    /// Properties (c) and (d): a valid chat request with one field of the wrong type or out
    /// of its type's range is refused, the error names that field, and it quotes no text.
    #[test]
    fn bad_chat_fields_are_named(case in chat_case(), bad in bad_chat_field()) {
        let (field, value) = bad;
        let mut body = case.body;
        body.insert(field.to_owned(), value);
        let bytes = serde_json::to_vec(&body).unwrap();
        let error = parse::<ChatCompletionRequest>(&bytes).unwrap_err();
        let is_field = |p: &str| p == field || p.starts_with(&format!("{field}["));
        prop_assert!(error.param().is_some_and(is_field), "{field}: {error:?}");
        prop_assert!(error.message().contains(&format!("'{field}")), "{error}");
    }

    /// Properties (c) and (d): a bad role or content in one message is refused naming that
    /// message's field, and quotes no text.
    #[test]
    fn bad_message_fields_are_named(
        case in chat_case().prop_filter("has messages", |c| !c.expected.messages.is_empty()),
        bad in bad_message_field(),
        pick in any::<prop::sample::Index>(),
    ) {
        let (field, value) = bad;
        let mut body = case.body;
        let messages = body["messages"].as_array_mut().unwrap();
        let index = pick.index(messages.len());
        messages[index][field] = value;
        let bytes = serde_json::to_vec(&body).unwrap();
        let error = parse::<ChatCompletionRequest>(&bytes).unwrap_err();
        let param = format!("messages[{index}].{field}");
        prop_assert_eq!(error.param(), Some(param.as_str()));
        let start = format!("Invalid value for '{param}': expected ");
        prop_assert!(error.message().starts_with(&start), "{}", error);
    }

    /// Property (d): a valid body cut short, or with one byte changed, is refused (or still
    /// parses) without quoting any text of it.
    #[test]
    fn damaged_bodies_quote_no_text(
        case in chat_case(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut bytes = serde_json::to_vec(&case.body).unwrap();
        let at = at.index(bytes.len());
        if cut {
            bytes.truncate(at);
            let error = parse::<ChatCompletionRequest>(&bytes).unwrap_err();
            prop_assert!(matches!(error, WireError::Syntax { .. }), "{error:?}");
        } else {
            bytes[at] = byte;
            let _ = parse::<ChatCompletionRequest>(&bytes);
        }
    }

    /// Property (d): token ids out of `u32` in `input` and `prompt` are refused naming their
    /// position, and the texts beside them are not quoted.
    #[test]
    fn bad_token_ids_are_named(
        tokens in prop::collection::vec(any::<u32>(), 0..4),
        bad in prop_oneof![(i64::MIN..0).prop_map(Value::from),
            (u64::from(u32::MAX) + 1..=u64::MAX).prop_map(Value::from)],
        nested in any::<bool>(),
        user in text(),
    ) {
        let mut ids: Vec<Value> = tokens.iter().map(|&t| Value::from(t)).collect();
        ids.push(bad);
        let (input, param) = if nested {
            (json!([[1], ids]), format!("input[1][{}]", tokens.len()))
        } else {
            (Value::Array(ids), format!("input[{}]", tokens.len()))
        };
        let body = json!({ "model": "m", "input": input, "user": user });
        let error = parse::<EmbeddingRequest>(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        prop_assert_eq!(error.param(), Some(param.as_str()));
        let mut body = body;
        let input = body["input"].take();
        body["prompt"] = input;
        let error = parse::<CompletionRequest>(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        let param = param.replace("input", "prompt");
        prop_assert_eq!(error.param(), Some(param.as_str()));
    }
}
