"""End to end: no prompt, completion, embedding input or output reaches a log line, a file of
the data directory (database, usage journal, anything), the `/metrics` output or the body of
a failed request.

One marker string goes into every field a client can put content in, on every model route,
in requests that succeed (whole and streamed) and in requests that fail (400 for a wrong
type, an unknown enum value, a rule broken, malformed JSON, a prompt over the context; 401;
404; 413), and the text the models answered (a chat answer, a completion, an embedding) is
looked for as well. A failed request's body may name the parameter, never quote its value.

The model id is an identifier, not content: the 404 of an unknown model names the id the
client sent (as OpenAI's does), so a marker sent as the model id may come back in that body,
and only there (it must still reach no log line, file or metric).
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from pathlib import Path

import pytest

from conftest import CHAT_MODEL, MODEL
from test_auth_e2e import call, new_tenant

MARKER = f"PRIVMARK{uuid.uuid4().hex}"
# A token id outside every vocabulary: token ids are content too, so no message quotes it.
FOREIGN_TOKEN = 987654321
CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
TOKENIZE, DETOKENIZE = "/v1/tokenize", "/v1/detokenize"
# Longer than `max_body_bytes` of the session's gateway (1 MiB).
OVERSIZED = 1024 * 1024 + 64 * 1024
# The marker, far over any model's context.
LONG = " ".join([MARKER] * 300)
# What an answer must hold at least to be looked for (short strings occur by chance).
MIN_SNIPPET = 24


def conversation() -> list[dict]:
    """A chat with the marker in a system, a user and an assistant turn."""
    return [
        {"role": "system", "content": f"You are a helpful assistant. {MARKER}"},
        {"role": "user", "content": f"Remember this code: {MARKER}"},
        {"role": "assistant", "content": f"I will remember {MARKER}."},
        {"role": "user", "content": f"Describe the sea in two sentences. {MARKER}"},
    ]


def chat(**fields) -> dict:
    return {"model": CHAT_MODEL, "messages": conversation(), "max_tokens": 8, **fields}


def completion(**fields) -> dict:
    return {"model": CHAT_MODEL, "prompt": f"Once upon a time {MARKER}", "max_tokens": 8, **fields}


def embedding(**fields) -> dict:
    return {"model": MODEL, "input": f"a sentence about {MARKER}", **fields}


def user_says(content) -> list[dict]:
    return [{"role": "user", "content": content}]


# A chat body cut in its first turn, for malformed JSON around the marker.
OPEN_TURN = f'{{"model": "{CHAT_MODEL}", "messages": [{{"role": "user", '

# (route, body, status, param): requests that must fail without quoting the marker. A body of
# bytes is sent as it is (malformed JSON); `param` None is not checked.
FAILING = [
    # chat: a wrong type or an unknown value in each field
    (CHAT, chat(temperature=MARKER), 400, "temperature"),
    (CHAT, chat(max_tokens=MARKER), 400, "max_tokens"),
    (CHAT, chat(n=MARKER), 400, "n"),
    (CHAT, chat(seed=MARKER), 400, "seed"),
    (CHAT, chat(stream=MARKER), 400, "stream"),
    (CHAT, chat(messages=MARKER), 400, "messages"),
    (CHAT, chat(messages=[{"role": MARKER, "content": MARKER}]), 400, "messages[0].role"),
    (CHAT, chat(messages=user_says({"text": MARKER})), 400, "messages[0].content"),
    (CHAT, chat(messages=user_says([{"type": MARKER, "text": MARKER}])), 400,
     "messages[0].content[0].type"),
    (CHAT, chat(messages=user_says([{"type": "text", "text": [MARKER]}])), 400, None),
    (CHAT, chat(stop={"x": MARKER}), 400, "stop"),
    (CHAT, chat(user={"id": MARKER}), 400, "user"),
    (CHAT, chat(logit_bias={MARKER: MARKER}), 400, "logit_bias"),
    (CHAT, chat(tool_choice=MARKER), 400, "tool_choice"),
    (CHAT, chat(response_format={"type": MARKER}), 400, "response_format.type"),
    (CHAT, chat(stream_options=MARKER, stream=True), 400, "stream_options"),
    (CHAT, chat(temperature=MARKER, stream=True), 400, "temperature"),
    # chat: well-formed, but a rule is broken
    (CHAT, chat(stop=[MARKER] * 5), 400, "stop"),
    (CHAT, chat(temperature=9, stream=True), 400, "temperature"),
    (CHAT, chat(logit_bias={"1": 5}), 400, "logit_bias"),
    (CHAT, chat(tools=[{"type": "function", "function": {"name": f"{MARKER}!", "description": MARKER}}]),
     400, "tools"),
    (CHAT, chat(messages=user_says([{"type": "image_url", "image_url": {"url": MARKER}}])), 400,
     "messages[0].content[0]"),
    (CHAT, chat(messages=[{"role": "tool", "content": MARKER}]), 400,
     "messages[0].tool_call_id"),
    (CHAT, chat(guided_regex=f"({MARKER}"), 400, "guided_regex"),
    (CHAT, chat(response_format={"type": "json_schema",
                                 "json_schema": {"name": "x", "schema": {"type": MARKER}}}),
     400, "response_format"),
    (CHAT, chat(tool_choice={"type": "function", "function": {"name": MARKER}},
                tools=[{"type": "function", "function": {"name": "f"}}]), 400, "tool_choice"),
    ("/v1/responses", {"model": CHAT_MODEL, "input": MARKER, "previous_response_id": MARKER},
     400, "previous_response_id"),
    (CHAT, chat(max_tokens=5000), 400, "messages"),
    (CHAT, chat(messages=user_says(LONG)), 400, "messages"),
    (CHAT, chat(messages=user_says(LONG), stream=True), 400, "messages"),
    (CHAT, chat(model=MODEL), 400, "model"),
    # chat: malformed JSON around the marker
    (CHAT, f'{OPEN_TURN}"content": "{MARKER}'.encode(), 400, None),
    (CHAT, f'{OPEN_TURN}"content": "{MARKER}\\q"}}]}}'.encode(), 400, None),
    (CHAT, f"{OPEN_TURN}{MARKER}}}]}}".encode(), 400, None),
    (CHAT, json.dumps(chat()).encode() + f" {MARKER}".encode(), 400, None),
    (CHAT, json.dumps(MARKER).encode(), 400, None),
    (CHAT, json.dumps([MARKER]).encode(), 400, None),
    # chat: an unknown model (the id is not the marker here)
    (CHAT, chat(model=f"no-such-model-{uuid.uuid4().hex[:8]}"), 404, "model"),
    # legacy completions
    (COMPLETIONS, completion(prompt={"text": MARKER}), 400, "prompt"),
    (COMPLETIONS, completion(prompt=[MARKER, 5]), 400, "prompt"),
    (COMPLETIONS, completion(prompt=[[MARKER]]), 400, None),
    (COMPLETIONS, completion(max_tokens=MARKER), 400, "max_tokens"),
    (COMPLETIONS, completion(stop=[MARKER, {"x": MARKER}]), 400, "stop[1]"),
    (COMPLETIONS, completion(suffix=MARKER), 400, "suffix"),
    (COMPLETIONS, completion(echo=True, logprobs=9), 400, "logprobs"),
    (COMPLETIONS, completion(prompt=LONG), 400, "prompt"),
    (COMPLETIONS, completion(prompt=[MARKER, LONG], stream=True), 400, "prompt"),
    (COMPLETIONS, completion(prompt=[1, FOREIGN_TOKEN]), 400, "prompt"),
    # embeddings
    (EMBEDDINGS, embedding(input={"x": MARKER}), 400, "input"),
    (EMBEDDINGS, embedding(input=[MARKER, 5]), 400, "input"),
    (EMBEDDINGS, embedding(encoding_format=MARKER), 400, "encoding_format"),
    (EMBEDDINGS, embedding(dimensions=MARKER), 400, "dimensions"),
    (EMBEDDINGS, embedding(dimensions=7), 400, "dimensions"),
    (EMBEDDINGS, embedding(user=[MARKER]), 400, "user"),
    (EMBEDDINGS, embedding(input=[MARKER, ""]), 400, None),
    (EMBEDDINGS, embedding(input=[MARKER] * 65), 400, "input"),
    (EMBEDDINGS, embedding(input=LONG), 400, "input"),
    (EMBEDDINGS, embedding(input=[[101, FOREIGN_TOKEN]]), 400, "input"),
    (EMBEDDINGS, embedding(model=CHAT_MODEL), 400, "model"),
    # tokenize and detokenize
    (TOKENIZE, {"model": CHAT_MODEL, "prompt": MARKER, "messages": conversation()}, 400,
     "messages"),
    (TOKENIZE, {"model": CHAT_MODEL, "prompt": {"x": MARKER}}, 400, "prompt"),
    (TOKENIZE, {"model": CHAT_MODEL, "messages": [{"role": MARKER, "content": MARKER}]}, 400,
     "messages[0].role"),
    (TOKENIZE, {"model": MODEL, "prompt": MARKER}, 400, "model"),
    (DETOKENIZE, {"model": CHAT_MODEL, "tokens": MARKER}, 400, "tokens"),
    (DETOKENIZE, {"model": CHAT_MODEL, "tokens": [MARKER]}, 400, "tokens[0]"),
    (DETOKENIZE, {"model": CHAT_MODEL, "tokens": [1, FOREIGN_TOKEN]}, 400, "tokens"),
]


def post(gateway, path: str, key: str | None, body, chunked: bool = False):
    """One POST; (status, headers, raw body). A dict is sent as JSON, bytes as they are; a
    chunked body is sent without a `Content-Length`."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    connection = http.client.HTTPConnection(gateway.address, timeout=30)
    try:
        if chunked:
            pieces = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
            connection.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
        else:
            connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post_oversized(gateway, key: str, chunked: bool):
    """The 413 of a body of markers over the limit. A chunked body's connection may be reset
    under the client while it still writes (the gateway drains only a declared length), so
    that case is tried a few times."""
    body = chat(messages=user_says(MARKER * (OVERSIZED // len(MARKER))))
    for _ in range(12):
        try:
            return post(gateway, CHAT, key, body, chunked=chunked)
        except (ConnectionError, http.client.HTTPException):
            time.sleep(0.05)
    raise AssertionError("no answer to an oversized body")


def stream_text(raw: bytes, text_of) -> str:
    """The text of an SSE answer's chunks (`text_of` reads one choice)."""
    text = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[len("data: "):])
            assert "error" not in chunk, chunk
            text.extend(text_of(choice) or "" for choice in chunk.get("choices", []))
    return "".join(text)


def snippet(text: str) -> str:
    """A part of an answer long enough not to occur anywhere by chance."""
    text = text.strip()
    assert len(text) >= MIN_SNIPPET, f"answer too short to look for: {text!r}"
    middle = (len(text) - MIN_SNIPPET) // 2
    return text[middle:middle + MIN_SNIPPET]


def succeed(gateway, key: str, path: str, body: dict) -> bytes:
    status, _, raw = post(gateway, path, key, body)
    assert status == 200, raw
    return raw


def answers_of_successful_requests(gateway, key: str) -> list[str]:
    """Sends the marker in every content field of requests that succeed; returns parts of what
    the models answered (chat and completion texts, an embedding)."""
    found = []
    whole = json.loads(succeed(gateway, key, CHAT, chat(
        max_tokens=32, temperature=0, stop=[MARKER], user=MARKER, seed=7)))
    found.append(snippet(whole["choices"][0]["message"]["content"]))
    streamed = succeed(gateway, key, CHAT, chat(
        max_tokens=32, temperature=0.7, seed=11, stream=True,
        stream_options={"include_usage": True}, user=MARKER))
    found.append(snippet(stream_text(streamed, lambda c: c["delta"].get("content"))))
    legacy = json.loads(succeed(gateway, key, COMPLETIONS, completion(
        max_tokens=24, temperature=0, user=MARKER, stop=MARKER)))
    found.append(snippet(legacy["choices"][0]["text"]))
    streamed = succeed(gateway, key, COMPLETIONS, completion(
        prompt=[MARKER, f"{MARKER} and then"], max_tokens=24, seed=3, stream=True))
    found.append(snippet(stream_text(streamed, lambda c: c.get("text"))))
    vectors = json.loads(succeed(gateway, key, EMBEDDINGS, embedding(
        encoding_format="base64", user=MARKER)))
    found.append(vectors["data"][0]["embedding"][:MIN_SNIPPET * 2])
    floats = succeed(gateway, key, EMBEDDINGS, embedding(
        input=[MARKER, f"more about {MARKER}"], encoding_format="float")).decode()
    start = floats.rindex('"embedding":[') + len('"embedding":[')
    found.append(floats[start:start + MIN_SNIPPET * 2])  # the numbers as the gateway wrote them
    tokens = json.loads(succeed(gateway, key, TOKENIZE, {"model": CHAT_MODEL, "prompt": MARKER}))
    succeed(gateway, key, TOKENIZE, {"model": CHAT_MODEL, "messages": conversation()})
    text = json.loads(succeed(gateway, key, DETOKENIZE,
                              {"model": CHAT_MODEL, "tokens": tokens["tokens"]}))
    assert MARKER in text["prompt"], "detokenize answers the marker it was given as tokens"
    return found


def wait_for_records(gateway, tenant, count: int, timeout: float = 20.0) -> None:
    """Waits until the usage report of `tenant` counts `count` requests (their records are in
    the database, not only in the journal)."""
    deadline = time.monotonic() + timeout
    path = f"/v1/projects/{tenant.project_id}/usage"
    while time.monotonic() < deadline:
        status, _, body = call(gateway, "GET", path, tenant.token)
        assert status == 200, body
        if body["total"] and body["total"][0]["requests"] >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} usage records after {timeout} s")


@pytest.fixture(scope="module")
def exchanged(gateway, data_dir):
    """Every request of this module, sent once: the failed answers and the parts of the
    successful ones to look for."""
    tenant = new_tenant(data_dir, "privacy")
    failed = []
    for path, body, status, param in FAILING:
        got = post(gateway, path, tenant.key, body)
        failed.append((path, body, status, param, got))
    for chunked in (False, True):
        failed.append((CHAT, "oversized", 413, None, post_oversized(gateway, tenant.key, chunked)))
    failed.append((CHAT, "bad key", 401, None, post(gateway, CHAT, "sk-wrong-key", chat())))
    by_model_id = post(gateway, CHAT, tenant.key, chat(model=MARKER))
    answers = answers_of_successful_requests(gateway, tenant.key)
    assert len(answers) == 6 and all(len(text) >= MIN_SNIPPET for text in answers), answers
    # chat whole and streamed, two completions, two embeddings
    wait_for_records(gateway, tenant, 6)
    return {"failed": failed, "by_model_id": by_model_id, "answers": answers}


def searched(exchanged) -> list[str]:
    """The marker and the parts of the answers."""
    return [MARKER, *exchanged["answers"]]


def test_failed_requests_name_the_parameter_never_the_content(exchanged):
    problems = []
    for path, body, status, param, (got_status, headers, raw) in exchanged["failed"]:
        shown = f"{path} {body if isinstance(body, str) else str(body)[:120]}"
        if got_status != status:
            problems.append(f"{shown}: status {got_status}, not {status}: {raw[:200]!r}")
        if MARKER.encode() in raw or str(FOREIGN_TOKEN).encode() in raw:
            problems.append(f"{shown}: quotes the content: {raw[:300]!r}")
        if any(MARKER in f"{name}: {value}" for name, value in headers.items()):
            problems.append(f"{shown}: a header quotes the content: {headers}")
        error = json.loads(raw)["error"]
        if not error["message"] or (param is not None and error["param"] != param):
            problems.append(f"{shown}: not an error naming {param}: {raw[:200]!r}")
    assert not problems, "\n".join(problems)


def test_an_unknown_model_id_is_named_only_in_its_own_404(exchanged):
    status, _, raw = exchanged["by_model_id"]
    assert status == 404, raw
    error = json.loads(raw)["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    assert error["message"].count(MARKER) == 1, "the id is named, the marked messages are not"


def test_no_log_line_holds_content(gateway, exchanged):
    log = gateway.log
    assert "usage" in log, "the log holds the usage lines of the successful requests"
    for text in searched(exchanged):
        lines = [line for line in log.splitlines() if text in line]
        assert not lines, f"{text!r} logged: {lines[:3]}"


def test_no_file_of_the_data_dir_holds_content(data_dir, exchanged):
    files = [path for path in Path(data_dir).rglob("*") if path.is_file()]
    assert any(path.name.startswith("gateway.db") for path in files), files
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # a journal segment moved into the database meanwhile
        assert MARKER.encode() not in data, f"the marker is stored in {path}"
        inside = path.relative_to(data_dir).parts[0]
        if inside in ("models", "runtime"):
            continue  # the models' own files hold natural text and numbers
        for text in exchanged["answers"]:
            assert text.encode() not in data, f"{text!r} is stored in {path}"


def test_no_metric_holds_content(gateway, exchanged):
    status, _, text = call(gateway, "GET", "/metrics")
    assert status == 200 and "gateway_requests_total" in text
    for needle in searched(exchanged):
        assert needle not in text, f"{needle!r} in /metrics"

