"""End to end: the Responses API (`POST /v1/responses`) on the bundled SmolLM2 model through
the official `openai` SDK: text and message input, instructions, streamed events, structured
output with `responses.parse`, function tools (whole and streamed), function call outputs in
the input, usage, and nothing stored (`store: false`, `previous_response_id` refused)."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel, Field

from conftest import CHAT_MODEL
from test_embeddings_e2e import assert_error, post_json

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather of a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class City(BaseModel):
    city: str = Field(max_length=24)
    country: str = Field(max_length=24)


def test_text_input_answers_with_a_message_and_usage(client):
    response = client.responses.create(
        model=CHAT_MODEL, instructions="You are a helpful assistant.",
        input="What is the capital of France?", max_output_tokens=64, temperature=0, store=True,
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed"
    assert "Paris" in response.output_text
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant"
    assert response.store is False
    usage = response.usage
    assert usage.input_tokens > 0 and 0 < usage.output_tokens < 64
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_streamed_events_build_the_same_answer(client):
    whole = client.responses.create(
        model=CHAT_MODEL, instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Name a color."}]}],
        max_output_tokens=24, temperature=0,
    )
    stream = client.responses.create(
        model=CHAT_MODEL, instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Name a color."}]}],
        max_output_tokens=24, temperature=0, stream=True,
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in {"response.completed", "response.incomplete"}
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == whole.output_text
    final = events[-1].response
    assert final.output_text == whole.output_text
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_the_stream_helper_accumulates_the_response(client):
    with client.responses.stream(
        model=CHAT_MODEL, instructions="You are a helpful assistant.",
        input="What is the capital of France?", max_output_tokens=64, temperature=0,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.status == "completed" and "Paris" in final.output_text


def test_parse_returns_a_validated_object(client):
    response = client.responses.parse(
        model=CHAT_MODEL, input="Name a large city and its country.", text_format=City,
        max_output_tokens=80, temperature=0,
    )
    assert isinstance(response.output_parsed, City)


def test_a_forced_function_call_whole_and_streamed(client):
    response = client.responses.create(
        model=CHAT_MODEL, input="What is the weather in Paris?", tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=60, temperature=0,
    )
    (call,) = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_")
    assert set(json.loads(call.arguments)) == {"city"}
    stream = client.responses.create(
        model=CHAT_MODEL, input="What is the weather in Paris?", tools=[WEATHER],
        tool_choice="required", max_output_tokens=60, temperature=0, stream=True,
    )
    events = list(stream)
    done = [event.item for event in events if event.type == "response.output_item.done"]
    assert [item.type for item in done] == ["function_call"]
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(arguments) == json.loads(done[0].arguments)
    assert events[-1].response.output[0].name == "get_weather"


def test_function_outputs_in_the_input_continue_the_conversation(client):
    response = client.responses.create(
        model=CHAT_MODEL, tools=[WEATHER], tool_choice="none", max_output_tokens=30, temperature=0,
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18 degrees and sunny"},
        ],
    )
    assert response.output_text


def test_a_short_limit_makes_an_incomplete_response(client):
    response = client.responses.create(
        model=CHAT_MODEL, input="Tell me a long story.", max_output_tokens=3, temperature=0
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"


def test_nothing_is_stored_and_unsupported_inputs_are_refused(gateway, client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=CHAT_MODEL, input="Hi", previous_response_id="resp_1")
    assert refused.value.body["param"] == "previous_response_id"
    assert "stores no responses" in refused.value.body["message"]
    cases = [
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
        ({"input": [{"type": "reasoning"}]}, "input[0].type"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "Hi", "background": True}, "background"),
        ({"input": []}, "input"),
    ]
    for body, param in cases:
        status, _, answer = post_json(gateway, "/v1/responses", {"model": CHAT_MODEL, **body})
        assert_error(status, answer, 400, param)
