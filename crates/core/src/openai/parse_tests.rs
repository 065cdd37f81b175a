//! Tests of [`from_json_slice`]: the `param` path and message of each kind of bad body.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::openai::chat::ChatCompletionRequest;
use crate::openai::completions::CompletionRequest;
use crate::openai::embeddings::EmbeddingRequest;
use crate::openai::error::ErrorType;

fn chat_error(body: &str) -> WireError {
    from_json_slice::<ChatCompletionRequest>(body.as_bytes()).unwrap_err()
}

#[test]
fn parses_a_good_body() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let request: ChatCompletionRequest = from_json_slice(body).unwrap();
    assert_eq!(request.messages[0].text(), "hi");
}

#[test]
fn wrong_content_type_names_its_path() {
    let error = chat_error(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#);
    assert_eq!(error.param(), Some("messages[0].content"));
    assert!(error.message().contains("messages[0].content"), "{error}");
    assert!(
        error
            .message()
            .contains("a string or an array of content parts"),
        "{error}"
    );
    assert!(!error.message().contains("line"), "{error}");
}

#[test]
fn nested_paths() {
    let error = chat_error(
        r#"{"model":"m","messages":[{"role":"user","content":"a"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":7}]}]}"#,
    );
    assert_eq!(error.param(), Some("messages[1].content[1]"));
    let error = chat_error(r#"{"model":"m","messages":[{"role":"robot","content":"a"}]}"#);
    assert_eq!(error.param(), Some("messages[0].role"));
    assert!(
        error.message().contains("expected one of `system`"),
        "{error}"
    );
    assert!(!error.message().contains("robot"), "{error}");
    let error = chat_error(r#"{"model":"m","messages":[],"stop":[1]}"#);
    assert_eq!(error.param(), Some("stop[0]"));
    let error = chat_error(r#"{"model":"m","messages":[],"tool_choice":"sometimes"}"#);
    assert_eq!(error.param(), Some("tool_choice"));
    let error = chat_error(
        r#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":1}}]}"#,
    );
    assert_eq!(error.param(), Some("tools[0].function.name"));
}

#[test]
fn wrong_scalar_types() {
    let error = chat_error(r#"{"model":"m","messages":[],"temperature":"hot"}"#);
    assert_eq!(error.param(), Some("temperature"));
    assert_eq!(
        error.message(),
        "Invalid value for 'temperature': expected a number, got a string."
    );
    let error = chat_error(r#"{"model":"m","messages":[],"n":-1}"#);
    assert_eq!(error.param(), Some("n"));
    let error = chat_error(r#"{"model":"m","messages":"hi"}"#);
    assert_eq!(error.param(), Some("messages"));
}

#[test]
fn embedding_input_paths() {
    let error = from_json_slice::<EmbeddingRequest>(br#"{"model":"m","input":5}"#).unwrap_err();
    assert_eq!(error.param(), Some("input"));
    assert!(
        error.message().contains("an array of token-id arrays"),
        "{error}"
    );
    let error =
        from_json_slice::<EmbeddingRequest>(br#"{"model":"m","input":["a",1]}"#).unwrap_err();
    assert_eq!(error.param(), Some("input"));
    let error =
        from_json_slice::<EmbeddingRequest>(br#"{"model":"m","input":[[1,-2]]}"#).unwrap_err();
    assert_eq!(error.param(), Some("input[0][1]"));
    let error = from_json_slice::<EmbeddingRequest>(
        br#"{"model":"m","input":"a","encoding_format":"int8"}"#,
    )
    .unwrap_err();
    assert_eq!(error.param(), Some("encoding_format"));
    let error = from_json_slice::<CompletionRequest>(br#"{"model":"m","prompt":{}}"#).unwrap_err();
    assert_eq!(error.param(), Some("prompt"));
}

/// Regression (found by `tests/parser_fuzz.rs`): serde_json reports an enum field of the wrong
/// JSON type as the syntax error "expected value", which named no field.
#[test]
fn enum_fields_of_the_wrong_type_are_named() {
    let cases = [
        (
            r#"{"model":"m","messages":[{"role":0,"content":"x"}]}"#,
            "a number",
        ),
        (
            r#"{"model":"m","messages":[{"role":true,"content":"x"}]}"#,
            "a boolean",
        ),
        (
            r#"{"model":"m","messages":[{"role":null,"content":"x"}]}"#,
            "null",
        ),
        (
            r#"{"model":"m","messages":[{"role":[],"content":"x"}]}"#,
            "an array",
        ),
        (
            "{\"model\":\"m\",\n\"messages\":[{\"role\":\n-1}]}",
            "a number",
        ),
    ];
    for (body, found) in cases {
        let error = chat_error(body);
        assert_eq!(error.param(), Some("messages[0].role"), "{body}");
        assert_eq!(
            error.message(),
            format!("Invalid value for 'messages[0].role': expected a string, got {found}.")
        );
    }
    let error =
        from_json_slice::<EmbeddingRequest>(br#"{"model":"m","input":"x","encoding_format":5}"#)
            .unwrap_err();
    assert_eq!(error.param(), Some("encoding_format"));
    // A body that is not JSON stays a syntax error.
    let error = chat_error(r#"{"model":"m","messages":[{"role":,"content":"x"}]}"#);
    assert!(matches!(error, WireError::Syntax { .. }), "{error:?}");
}

#[test]
fn missing_fields_are_named() {
    let error = chat_error(r#"{"messages":[]}"#);
    assert_eq!(error.param(), Some("model"));
    assert_eq!(error.message(), "Missing required parameter: 'model'.");
    let error = chat_error(r#"{"model":"m","messages":[{"content":"x"}]}"#);
    assert_eq!(error.param(), Some("messages[0].role"));
    let error = from_json_slice::<EmbeddingRequest>(br#"{"model":"m"}"#).unwrap_err();
    assert_eq!(error.param(), Some("input"));
}

#[test]
fn syntax_errors_have_line_and_column() {
    let error = chat_error("{\"model\": \"m\",\n  \"messages\": [,]}");
    let WireError::Syntax { line, column, .. } = &error else {
        panic!("not a syntax error: {error:?}");
    };
    assert_eq!((*line, *column), (2, 16));
    assert!(error.message().contains("line 2 column 16"), "{error}");
    assert_eq!(error.param(), None);
    assert!(matches!(chat_error(""), WireError::Syntax { .. }));
    assert!(matches!(
        chat_error(r#"{"model":"m","messages":[]} x"#),
        WireError::Syntax { .. }
    ));
    assert!(matches!(
        chat_error(r#"{"model":"m""#),
        WireError::Syntax { .. }
    ));
}

#[test]
fn not_an_object() {
    for body in ["[1]", " []", r#"["m"]"#] {
        let error = chat_error(body);
        assert_eq!(error.param(), None);
        assert!(
            error.message().contains("expected a JSON object"),
            "{error}"
        );
    }
    let error = chat_error("7");
    assert_eq!(error.param(), None);
    assert_eq!(
        error.message(),
        "Invalid request body: expected an object, got an integer."
    );
}

#[test]
fn becomes_an_invalid_request_error() {
    let body: crate::openai::ErrorBody =
        chat_error(r#"{"model":"m","messages":[],"top_p":true}"#).into();
    assert_eq!(body.error.kind, ErrorType::InvalidRequest);
    assert_eq!(body.error.param.as_deref(), Some("top_p"));
    assert_eq!(body.http_status(), 400);
}

/// A marker in every place of a body whose value can be wrong.
const SECRET: &str = "PRIVMARK7f3a";

#[test]
fn no_message_quotes_a_value() {
    let chat = |field: &str| format!(r#"{{"model":"m","messages":[],{field}}}"#);
    let bodies = [
        format!(r#""{SECRET}""#),
        chat(&format!(r#""temperature":"{SECRET}""#)),
        chat(&format!(r#""max_tokens":"{SECRET}""#)),
        chat(&format!(r#""n":"{SECRET}""#)),
        chat(&format!(r#""seed":"{SECRET}""#)),
        chat(&format!(r#""stream":"{SECRET}""#)),
        chat(&format!(r#""stop":{{"x":"{SECRET}"}}"#)),
        chat(&format!(r#""tool_choice":"{SECRET}""#)),
        chat(&format!(r#""logit_bias":{{"{SECRET}":"{SECRET}"}}"#)),
        chat(&format!(r#""response_format":{{"type":"{SECRET}"}}"#)),
        format!(r#"{{"model":"m","messages":"{SECRET}"}}"#),
        format!(r#"{{"model":"m","messages":[{{"role":"{SECRET}","content":"x"}}]}}"#),
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"{SECRET}"}}]}}]}}"#
        ),
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"text","text":["{SECRET}"]}}]}}]}}"#
        ),
    ];
    for body in &bodies {
        let error = chat_error(body);
        assert!(!error.to_string().contains(SECRET), "{body}: {error}");
        assert!(
            !error.param().unwrap_or("").contains(SECRET),
            "{body}: {error:?}"
        );
    }
    let embedding = [
        format!(r#"{{"model":"m","input":{{"x":"{SECRET}"}}}}"#),
        format!(r#"{{"model":"m","input":["{SECRET}", 5]}}"#),
        format!(r#"{{"model":"m","input":"x","encoding_format":"{SECRET}"}}"#),
        format!(r#"{{"model":"m","input":"x","dimensions":"{SECRET}"}}"#),
    ];
    for body in &embedding {
        let error = from_json_slice::<EmbeddingRequest>(body.as_bytes()).unwrap_err();
        assert!(!format!("{error:?}").contains(SECRET), "{body}: {error}");
    }
    let error = from_json_slice::<CompletionRequest>(
        format!(r#"{{"model":"m","prompt":"x","logit_bias":{{"{SECRET}":true}}}}"#).as_bytes(),
    )
    .unwrap_err();
    assert_eq!(error.param(), Some("logit_bias"));
    assert!(!format!("{error:?}").contains(SECRET), "{error}");
}

#[test]
fn messages_say_what_was_expected() {
    let error = chat_error(r#"{"model":"m","messages":[],"n":1.5}"#);
    assert_eq!(
        error.message(),
        "Invalid value for 'n': expected an integer from 0 to 4294967295, got a number."
    );
    let error = from_json_slice::<EmbeddingRequest>(
        br#"{"model":"m","input":"x","encoding_format":"int8"}"#,
    )
    .unwrap_err();
    assert_eq!(
        error.message(),
        "Invalid value for 'encoding_format': expected `float` or `base64`."
    );
    let error = chat_error(r#"{"model":"m","messages":[],"logit_bias":{"1":"x"}}"#);
    assert_eq!(error.param(), Some("logit_bias"));
}

#[test]
fn unknown_fields_are_refused_by_name_or_ignored() {
    let refuse = |body: &str| {
        from_json_slice_with::<ChatCompletionRequest>(body.as_bytes(), UnknownFields::Refuse)
    };
    let top = refuse(r#"{"model":"m","messages":[],"frequency":1}"#).unwrap_err();
    assert_eq!(top.param(), Some("frequency"));
    assert_eq!(
        top.message(),
        "Unrecognized request argument supplied: frequency"
    );
    let nested = refuse(r#"{"model":"m","messages":[{"role":"user","content":"a","mood":"x"}]}"#)
        .unwrap_err();
    assert_eq!(nested.param(), Some("messages[0].mood"));
    let odd = refuse(r#"{"model":"m","messages":[],"what is the secret? tell me":1}"#).unwrap_err();
    assert_eq!(odd.param(), None);
    assert!(!odd.message().contains("secret"), "{odd}");
    let known = r#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"x-anything":1}}}],"guided_json":{"any":1}}"#;
    assert!(refuse(known).is_ok(), "free-form JSON fields hold anything");
    let lenient = from_json_slice_with::<ChatCompletionRequest>(
        br#"{"model":"m","messages":[],"frequency":1}"#,
        UnknownFields::Ignore,
    );
    assert!(lenient.is_ok());
    assert!(
        from_json_slice::<ChatCompletionRequest>(br#"{"model":"m","messages":[],"x":1}"#).is_ok()
    );
}
