//! Tests of chat completion responses and stream chunks against OpenAI's documented shapes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::openai::tools::{FunctionCall, FunctionCallDelta, ToolType};
use serde_json::json;

#[test]
fn response_example_round_trip() {
    let value = json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The image shows a wooden boardwalk path running through a lush green field or meadow.",
                "refusal": null,
                "annotations": []
            },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035"
    });
    let parsed: ChatCompletion = serde_json::from_value(value).unwrap();
    assert_eq!(parsed.object, ObjectType::ChatCompletion);
    assert_eq!(parsed.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(parsed.usage.unwrap().total_tokens, 1163);
    let text = serde_json::to_string(&parsed).unwrap();
    assert_eq!(
        serde_json::from_str::<ChatCompletion>(&text).unwrap(),
        parsed
    );
}

#[test]
fn response_serializes_refusal_null_and_omits_absent_tool_calls() {
    let completion = ChatCompletion::new(
        "chatcmpl-1",
        1700000000,
        "m",
        vec![ChatChoice {
            index: 0,
            message: ResponseMessage::text("Hi"),
            logprobs: None,
            finish_reason: Some(FinishReason::Length),
        }],
        Usage::new(3, 1),
    );
    let value = serde_json::to_value(&completion).unwrap();
    assert_eq!(
        value["choices"][0],
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": "Hi", "refusal": null},
            "logprobs": null,
            "finish_reason": "length"
        })
    );
    assert_eq!(value["object"], "chat.completion");
    assert_eq!(value["system_fingerprint"], json!(null));
    assert_eq!(value["usage"]["total_tokens"], 4);
}

#[test]
fn tool_call_response() {
    let message = ResponseMessage::tool_calls(vec![ToolCall {
        id: "call_abc123".into(),
        kind: ToolType::Function,
        function: FunctionCall {
            name: "get_current_weather".into(),
            arguments: "{\n\"location\": \"Boston, MA\"\n}".into(),
        },
    }]);
    assert_eq!(
        serde_json::to_value(&message).unwrap(),
        json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": "call_abc123",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}
            }],
            "refusal": null
        })
    );
    for reason in ["stop", "length", "tool_calls", "content_filter"] {
        let parsed: FinishReason = serde_json::from_value(json!(reason)).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), json!(reason));
    }
}

#[test]
fn chunk_serializes_usage_null() {
    let chunk = ChatCompletionChunk::new(
        "chatcmpl-123",
        1694268190,
        "gpt-4o-mini",
        vec![ChatChunkChoice {
            index: 0,
            delta: ChatDelta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..ChatDelta::default()
            },
            logprobs: None,
            finish_reason: None,
        }],
    );
    assert_eq!(
        serde_json::to_value(&chunk).unwrap(),
        json!({
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1694268190,
            "model": "gpt-4o-mini",
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": null,
                "finish_reason": null
            }],
            "usage": null
        })
    );
    let last = ChatCompletionChunk::new(
        "chatcmpl-123",
        1694268190,
        "gpt-4o-mini",
        vec![ChatChunkChoice {
            finish_reason: Some(FinishReason::Stop),
            ..ChatChunkChoice::default()
        }],
    );
    let value = serde_json::to_value(&last).unwrap();
    assert_eq!(value["choices"][0]["delta"], json!({}));
    assert_eq!(value["choices"][0]["finish_reason"], "stop");
    assert_eq!(value["usage"], json!(null));
}

#[test]
fn usage_chunk_has_empty_choices() {
    let chunk = ChatCompletionChunk::usage_chunk("chatcmpl-123", 1, "m", Usage::new(9, 12));
    let value = serde_json::to_value(&chunk).unwrap();
    assert_eq!(value["choices"], json!([]));
    assert_eq!(value["usage"]["prompt_tokens"], 9);
    assert_eq!(
        value["usage"]["completion_tokens_details"],
        json!({"reasoning_tokens": 0})
    );
    let back: ChatCompletionChunk = serde_json::from_value(value).unwrap();
    assert_eq!(back, chunk);
}

#[test]
fn tool_call_delta_chunk_round_trip() {
    let value = json!({
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "system_fingerprint": null, "usage": null,
        "choices": [{"index": 0, "logprobs": null, "finish_reason": null, "delta": {
            "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": ""}}]
        }}]
    });
    let chunk: ChatCompletionChunk = serde_json::from_value(value.clone()).unwrap();
    let calls = chunk.choices[0].delta.tool_calls.as_ref().unwrap();
    assert_eq!(
        calls[0].function,
        Some(FunctionCallDelta {
            name: Some("f".into()),
            arguments: Some(String::new())
        })
    );
    assert_eq!(serde_json::to_value(&chunk).unwrap(), value);
}

#[test]
fn logprobs_shape() {
    let value = json!({
        "content": [{
            "token": "Hello",
            "logprob": -0.31725305,
            "bytes": [72, 101, 108, 108, 111],
            "top_logprobs": [
                {"token": "Hello", "logprob": -0.31725305, "bytes": [72, 101, 108, 108, 111]},
                {"token": "Hi", "logprob": -1.3190403, "bytes": [72, 105]}
            ]
        }],
        "refusal": null
    });
    let parsed: ChoiceLogprobs = serde_json::from_value(value.clone()).unwrap();
    let content = parsed.content.as_ref().unwrap();
    assert_eq!(content[0].bytes.as_deref(), Some(&b"Hello"[..]));
    assert_eq!(content[0].top_logprobs[1].token, "Hi");
    // f32 values print in their shortest form, as written by OpenAI.
    let text = serde_json::to_string(&parsed).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        value
    );
}
