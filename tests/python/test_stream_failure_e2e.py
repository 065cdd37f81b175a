"""The official `openai` SDK against the gateway's real HTTP layer when a backend fails.

Runs the `scripted_server` example of `gateway-api` (the real router, keys and streaming over
scripted backends, so that a failure can be made to happen in the middle of a stream) and
checks that the SDK raises instead of returning a truncated answer as complete, that a whole
answer's failure is a 500 naming only the request id, and that an overloaded model is a 503.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "target" / "debug" / "examples" / "scripted_server"


@pytest.fixture(scope="module")
def scripted():
    if not SERVER.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "gateway-api", "--example", "scripted_server"],
                       cwd=REPO, check=True)
    process = subprocess.Popen([str(SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(process.stdout.readline())
        yield openai.OpenAI(base_url=ready["base_url"], api_key=ready["api_key"], max_retries=0)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_stream_that_fails_midway_raises_in_the_sdk(scripted):
    stream = scripted.chat.completions.create(
        model="failing", stream=True, messages=[{"role": "user", "content": "hi"}])
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "Partial", "the text before the failure arrived"
    assert "request id" in raised.value.message
    assert "on purpose" not in raised.value.message


def test_a_whole_answer_that_fails_is_a_500(scripted):
    with pytest.raises(openai.InternalServerError) as raised:
        scripted.chat.completions.create(
            model="failing", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 500


def test_a_complete_stream_still_ends_normally(scripted):
    stream = scripted.chat.completions.create(
        model="scripted", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "say hello"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens == 2


def test_an_overloaded_model_is_a_503(scripted):
    with pytest.raises(openai.APIStatusError) as raised:
        scripted.chat.completions.create(model="busy", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 503


def test_a_prompt_kind_the_backend_lacks_is_a_400_naming_the_model(scripted):
    with pytest.raises(openai.BadRequestError) as raised:
        scripted.completions.create(model="scripted", prompt="hi")
    assert raised.value.body["param"] == "model"
