"""End to end: structured outputs and tool calls on the bundled SmolLM2 model, through the
clients application developers use: the `openai` SDK's `chat.completions.parse` with Pydantic
models, `response_format` `json_object` / `json_schema`, vLLM's `guided_*` fields, `tools` with
every `tool_choice` (whole and streamed), tool results in the history, and LangChain's
`with_structured_output` (all three methods) and `bind_tools`. Constrained outputs must parse
whatever the seed; unconstrained greedy outputs are the same as before."""

from __future__ import annotations

import json
from enum import Enum

import pytest
from pydantic import BaseModel, Field

from conftest import CHAT_MODEL
from test_embeddings_e2e import assert_error, post_json


class Color(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Pet(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=30)
    color: Color


class Owner(BaseModel):
    name: str = Field(max_length=16)
    pets: list[Pet] = Field(max_length=3)


class City(BaseModel):
    city: str = Field(max_length=24)
    country: str = Field(max_length=24)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 24},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 24}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_parse_returns_a_validated_pydantic_object(client):
    completion = client.chat.completions.parse(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Describe a person who owns two pets."}],
        response_format=Owner,
        max_tokens=200,
        temperature=0,
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Owner)
    assert Owner.model_validate_json(message.content) == message.parsed


@pytest.mark.parametrize("seed", range(6))
def test_constrained_outputs_parse_for_every_seed(client, seed):
    nested = client.chat.completions.parse(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Invent a pet owner."}],
        response_format=Owner,
        max_tokens=300,
        temperature=1.0,
        seed=seed,
    )
    assert isinstance(nested.choices[0].message.parsed, Owner)
    # Any JSON object has no bound on its strings: a small model may loop inside one until
    # its tokens run out, so only an output that ended is checked.
    anything = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Describe a city as JSON."}],
        response_format={"type": "json_object"},
        max_tokens=300,
        temperature=1.0,
        seed=seed,
    )
    choice = anything.choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    enum_only = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Pick a color."}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "pick",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"color": {"enum": ["red", "green", "blue"]}, "sure": {"type": "boolean"}},
                    "required": ["color", "sure"],
                    "additionalProperties": False,
                },
            },
        },
        max_tokens=40,
        temperature=1.0,
        seed=seed,
    )
    picked = json.loads(enum_only.choices[0].message.content)
    assert picked["color"] in {"red", "green", "blue"} and isinstance(picked["sure"], bool)
    assert set(picked) == {"color", "sure"}


def test_vllm_guided_fields(client):
    choice = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=10,
        extra_body={"guided_choice": ["yes", "no", "maybe"]},
    )
    assert choice.choices[0].message.content in {"yes", "no", "maybe"}
    pattern = client.completions.create(
        model=CHAT_MODEL,
        prompt="Phone number:",
        max_tokens=20,
        extra_body={"guided_regex": "[0-9]{3}-[0-9]{4}"},
    )
    text = pattern.choices[0].text
    assert len(text) == 8 and text[3] == "-" and (text[:3] + text[4:]).isdigit(), text
    schema = City.model_json_schema()
    guided = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Name a city."}],
        max_tokens=60,
        temperature=0,
        extra_body={"guided_json": json.dumps(schema)},
    )
    City.model_validate_json(guided.choices[0].message.content)


def test_bad_constraints_are_refused_with_the_field_named(gateway):
    cases = [
        ({"guided_regex": "("}, "guided_regex"),
        ({"guided_choice": []}, "guided_choice"),
        ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_regex"),
        ({"response_format": {"type": "json_object"}, "guided_choice": ["a"]}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}}, "response_format"),
        ({"response_format": {"type": "json_object"}, "min_tokens": 3}, "min_tokens"),
    ]
    for extra, param in cases:
        body = {"model": CHAT_MODEL, "messages": ASK_WEATHER, "max_tokens": 8, **extra}
        status, _, answer = post_json(gateway, "/v1/chat/completions", body)
        assert_error(status, answer, 400, param)
    # The server keeps serving.
    status, _, _ = post_json(gateway, "/v1/chat/completions", {"model": CHAT_MODEL, "messages": ASK_WEATHER, "max_tokens": 2})
    assert status == 200


def test_a_named_function_is_called_with_arguments_that_follow_its_schema(client):
    completion = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=ASK_WEATHER,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=80,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "unit"} and arguments["unit"] in {"celsius", "fahrenheit"}


@pytest.mark.parametrize("seed", range(4))
def test_required_calls_one_of_the_tools(client, seed):
    completion = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tools=[WEATHER, TIME],
        tool_choice="required",
        max_tokens=80,
        temperature=1.0,
        seed=seed,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name in {"get_weather", "get_time"}
    required = {"get_weather": {"city", "unit"}, "get_time": {"zone"}}[call.function.name]
    assert set(json.loads(call.function.arguments)) == required


def test_tool_calls_stream_as_openai_streams_them(client):
    for tool_choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        stream = client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK_WEATHER, tools=[WEATHER], tool_choice=tool_choice,
            max_tokens=80, temperature=0, stream=True,
        )
        name, arguments, ids, finish = "", "", set(), None
        for chunk in stream:
            delta = chunk.choices[0].delta
            for call in delta.tool_calls or []:
                assert call.index == 0
                ids.update([call.id] if call.id else [])
                name += call.function.name or ""
                arguments += call.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls" and name == "get_weather" and len(ids) == 1
        assert set(json.loads(arguments)) == {"city", "unit"}


def test_auto_answers_in_text_or_with_a_valid_call(client):
    completion = client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK_WEATHER, tools=[WEATHER], max_tokens=60, temperature=0
    )
    message = completion.choices[0].message
    if message.tool_calls:
        assert completion.choices[0].finish_reason == "tool_calls"
        assert all(call.function.name == "get_weather" for call in message.tool_calls)
        for call in message.tool_calls:
            json.loads(call.function.arguments)
    else:
        assert message.content


def test_tool_results_in_the_history_are_rendered(client):
    history = ASK_WEATHER + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
    ]
    completion = client.chat.completions.create(
        model=CHAT_MODEL, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=30, temperature=0
    )
    assert completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 40


def test_unconstrained_greedy_output_is_unchanged(client):
    plain = client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK_WEATHER, max_tokens=24, temperature=0
    )
    as_text = client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK_WEATHER, max_tokens=24, temperature=0,
        response_format={"type": "text"},
    )
    assert plain.choices[0].message.content == as_text.choices[0].message.content


def langchain_model(gateway):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=CHAT_MODEL, base_url=gateway.base_url + "/v1", api_key=gateway.api_key,
        temperature=0, max_tokens=200, max_retries=0,
    )


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_structured_output(gateway, method):
    model = langchain_model(gateway).with_structured_output(City, method=method)
    prompt = "Name a large city and its country."
    if method == "json_mode":
        prompt += ' Answer as JSON with the keys "city" and "country".'
    city = model.invoke(prompt)
    assert isinstance(city, City), city


def test_langchain_bind_tools(gateway):
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather of a city."""
        return f"sunny in {city}"

    # strict: the arguments' schema gets `additionalProperties: false`, so the grammar closes
    # the object after `city` (a lax schema lets a small model add keys until max_tokens).
    model = langchain_model(gateway).bind_tools([get_weather], tool_choice="get_weather",
                                                strict=True)
    message = model.invoke("What is the weather in Paris?")
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    assert get_weather.invoke(call["args"]).startswith("sunny in")


def test_unknown_fields_are_refused_by_name(gateway, client):
    status, _, answer = post_json(
        gateway, "/v1/chat/completions",
        {"model": CHAT_MODEL, "messages": ASK_WEATHER, "max_tokens": 4, "guided_grammar": "x"},
    )
    assert_error(status, answer, 400, "guided_grammar")
    assert answer["error"]["message"] == "Unrecognized request argument supplied: guided_grammar"
    status, _, answer = post_json(
        gateway, "/v1/completions", {"model": CHAT_MODEL, "prompt": "Hi", "best_of_n": 2}
    )
    assert_error(status, answer, 400, "best_of_n")
