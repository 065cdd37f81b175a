//! Tests of the chat completion request types against bodies as the SDKs send them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::openai::tools::{ResponseFormat, ToolChoice, ToolChoiceMode, ToolType};
use serde_json::json;

fn parse(value: serde_json::Value) -> ChatCompletionRequest {
    serde_json::from_value(value).unwrap()
}

#[test]
fn default_example() {
    let request = parse(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"}
        ]
    }));
    assert_eq!(request.model, "gpt-4o");
    assert_eq!(request.messages.len(), 2);
    assert_eq!(request.messages[0].role, Role::Developer);
    assert_eq!(request.messages[1].text(), "Hello!");
    assert_eq!(request.effective_max_tokens(), None);
    assert_eq!(request.n(), 1);
    assert!(!request.is_stream() && !request.include_usage());
    assert!(request.stop_sequences().is_empty());
}

#[test]
fn image_input_example() {
    let request = parse(json!({
        "model": "gpt-4o",
        "messages": [{
            "role": "user",
            "content": [
                {"type": "text", "text": "What's in this image?"},
                {"type": "image_url", "image_url": {
                    "url": "https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg",
                    "detail": "high"
                }}
            ]
        }],
        "max_tokens": 300
    }));
    let content = request.messages[0].content.as_ref().unwrap();
    assert_eq!(content.text(), "What's in this image?");
    let (index, part) = content.first_non_text_part().unwrap();
    assert_eq!((index, part.kind()), (1, "image_url"));
    let ContentPart::ImageUrl { image_url } = part else {
        panic!("not an image part: {part:?}");
    };
    assert_eq!(image_url.detail, Some(ImageDetail::High));
    assert_eq!(request.effective_max_tokens(), Some(300));
}

#[test]
fn other_part_types_are_representable() {
    let request = parse(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-abc"}},
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"}
            ]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}
        ]
    }));
    let kinds: Vec<_> = match request.messages[0].content.as_ref().unwrap() {
        MessageContent::Parts(parts) => parts.iter().map(ContentPart::kind).collect(),
        MessageContent::Text(_) => panic!("parts expected"),
    };
    assert_eq!(kinds, ["input_audio", "file", "text", "text"]);
    assert_eq!(request.messages[0].text(), "a\nb");
    assert_eq!(request.messages[1].text(), "");
}

#[test]
fn tools_and_tool_round_trip_messages() {
    let request = parse(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "What's the weather like in Boston today?"},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_abc123", "type": "function",
                "function": {"name": "get_current_weather", "arguments": "{\"location\": \"Boston, MA\"}"}
            }]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": "{\"temperature\": 22}"}
        ],
        "tools": [{
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                    },
                    "required": ["location"]
                },
                "strict": false
            }
        }],
        "tool_choice": "auto",
        "parallel_tool_calls": true
    }));
    let tools = request.tools.as_ref().unwrap();
    assert_eq!(tools[0].kind, ToolType::Function);
    assert_eq!(tools[0].function.name, "get_current_weather");
    assert_eq!(
        tools[0].function.parameters.as_ref().unwrap()["required"],
        json!(["location"])
    );
    assert_eq!(tools[0].function.strict, Some(false));
    assert_eq!(
        request.tool_choice,
        Some(ToolChoice::Mode(ToolChoiceMode::Auto))
    );
    let assistant = &request.messages[1];
    assert_eq!(assistant.content, None);
    let calls = assistant.tool_calls.as_ref().unwrap();
    assert_eq!(
        calls[0].function.arguments,
        "{\"location\": \"Boston, MA\"}"
    );
    assert_eq!(
        request.messages[2].tool_call_id.as_deref(),
        Some("call_abc123")
    );

    // Serializing leaves absent fields out, so the body can be forwarded upstream.
    let back = serde_json::to_value(&request).unwrap();
    assert!(back.get("stop").is_none());
    assert!(back["messages"][0].get("tool_calls").is_none());
    assert_eq!(parse(back), request);
}

#[test]
fn stop_as_string_array_and_null() {
    let one = parse(json!({"model": "m", "messages": [], "stop": "\n"}));
    assert_eq!(one.stop_sequences(), ["\n"]);
    let many = parse(json!({"model": "m", "messages": [], "stop": ["END", "###"]}));
    assert_eq!(many.stop.as_ref().unwrap().len(), 2);
    assert_eq!(many.stop_sequences(), ["END", "###"]);
    let none = parse(json!({"model": "m", "messages": [], "stop": null}));
    assert_eq!(none.stop, None);
    assert_eq!(serde_json::to_value(&one.stop).unwrap(), json!(["\n"]));
}

#[test]
fn sampling_parameters() {
    let request = parse(json!({
        "model": "m",
        "messages": [{"role": "system", "content": "s", "name": "boss"}],
        "n": 2,
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "temperature": 0.7,
        "top_p": 1,
        "top_k": 40,
        "seed": -5,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "logprobs": true,
        "top_logprobs": 2,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-1234",
        "response_format": {"type": "json_object"},
        "metadata": {"ignored": "yes"},
        "store": false,
        "reasoning_effort": "low"
    }));
    assert_eq!(request.messages[0].name.as_deref(), Some("boss"));
    assert_eq!(request.n(), 2);
    assert_eq!(request.effective_max_tokens(), Some(20));
    assert_eq!(request.temperature, Some(0.7));
    assert_eq!(request.top_p, Some(1.0));
    assert_eq!(request.top_k, Some(40));
    assert_eq!(request.seed, Some(-5));
    assert_eq!(request.logit_bias.as_ref().unwrap()["50256"], -100.0);
    assert_eq!(
        (request.logprobs, request.top_logprobs),
        (Some(true), Some(2))
    );
    assert!(request.is_stream() && request.include_usage());
    assert_eq!(request.user.as_deref(), Some("user-1234"));
    assert_eq!(request.response_format, Some(ResponseFormat::JsonObject));
}

#[test]
fn sdk_sends_nulls_for_optionals() {
    let request = parse(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi", "name": null}],
        "n": null, "temperature": null, "tools": null, "tool_choice": null,
        "stream_options": null, "logit_bias": null, "response_format": null
    }));
    assert_eq!(request.n(), 1);
    assert_eq!(request.tools, None);
}

#[test]
fn constructors() {
    let tool = ChatMessage::tool("call_1", "42");
    assert_eq!(tool.role, Role::Tool);
    assert_eq!(tool.tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(
        serde_json::to_value(ChatMessage::user("hi")).unwrap(),
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(ChatMessage::system("s").role, Role::System);
    assert_eq!(ChatMessage::assistant("a").role, Role::Assistant);
}

#[test]
fn rejects_unknown_role_and_part() {
    let bad_role = json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]});
    assert!(serde_json::from_value::<ChatCompletionRequest>(bad_role).is_err());
    let bad_part =
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]});
    assert!(serde_json::from_value::<ChatCompletionRequest>(bad_part).is_err());
}
