"""End to end: models served by upstream servers. A front gateway serves `relayed-chat` from two
real upstream processes (gateways of ours running SmolLM2, reached with a key of theirs) and
`relayed-embeddings` from one of them, and `estimated-chat` from a fixed-latency server that
reports no usage. Checked with the official SDK against the same requests sent to the upstream
directly: answers and usage equal, streamed and not; the front's bill is what the upstream
reported; an upstream killed under load costs no request that had not started; tokens the
upstream does not report are counted by the front and marked estimated."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import openai
import pytest
from conftest import CHAT_MODEL, MODEL, TEST_CONFIG
from gateway_process import REPO, Gateway, admin

FIXED_UPSTREAM = REPO / "target" / "debug" / "examples" / "fixed_upstream"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def upstreams(data_dir, api_key):
    servers = [Gateway(data_dir, TEST_CONFIG), Gateway(data_dir, TEST_CONFIG)]
    for server in servers:
        server.api_key = api_key
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def silent_upstream():
    """A fixed-latency server that reports no usage."""
    process = subprocess.Popen(
        [str(FIXED_UPSTREAM), "--no-usage", "--delay-ms", "5", "--model", "fixed"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base_url = json.loads(process.stdout.readline())["base_url"]
    yield base_url
    process.terminate()
    process.wait(10)


def front_config(upstreams, silent_upstream: str, key_file) -> str:
    servers = "".join(
        f"""
[[models.upstream.servers]]
url = "{server.base_url}/v1"
model = "{CHAT_MODEL}"
api_key_file = "{key_file}"
"""
        for server in upstreams
    )
    return f"""
[limits.base]
requests_per_minute = 1000000
tokens_per_minute = 1000000000

[[models]]
kind = "upstream"
id = "relayed-chat"
[models.upstream]
type = "chat"
# more than the upstream serves, so that the upstream refuses long prompts itself
context_length = 4096
health_check_interval_ms = 200
open_ms = 1000
{servers}

[[models]]
kind = "upstream"
id = "relayed-embeddings"
[models.upstream]
type = "embedding"
context_length = 256
dimensions = 384
[[models.upstream.servers]]
url = "{upstreams[0].base_url}/v1"
model = "{MODEL}"
api_key_file = "{key_file}"

[[models]]
kind = "upstream"
id = "estimated-chat"
[models.upstream]
type = "chat"
context_length = 4096
[[models.upstream.servers]]
url = "{silent_upstream}"
model = "fixed"
"""


@pytest.fixture(scope="module")
def front(tmp_path_factory, upstreams, silent_upstream, api_key):
    front_dir = tmp_path_factory.mktemp("front-data")
    key_file = front_dir / "upstream-key"
    key_file.write_text(api_key + "\n")
    server = Gateway(front_dir, front_config(upstreams, silent_upstream, key_file))
    project = admin(front_dir, "project", "create", "--name", "front")
    server.api_key = admin(front_dir, "key", "create", "--project", project["id"], "--name", "f")[
        "content"
    ]
    server.project_id = project["id"]
    yield server
    server.stop()


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)


def usage_by_model(front, model: str, requests: int, timeout: float = 20.0) -> dict:
    """The front's usage report group of `model`, once it holds `requests` requests."""
    deadline = time.monotonic() + timeout
    while True:
        report = admin(front.data_dir, "usage", "--project", front.project_id, "--group-by", "model")
        group = next((g for g in report["groups"] if g["group"] == model), None)
        if (group and group["requests"] >= requests) or time.monotonic() > deadline:
            return group or {}
        time.sleep(0.2)


def test_chat_and_embeddings_equal_the_upstream_and_bill_what_it_reported(front, upstreams):
    direct = sdk(upstreams[0])
    relayed = sdk(front)
    told = []
    asked = dict(messages=MESSAGES, max_tokens=16, temperature=0)
    expected = direct.chat.completions.create(model=CHAT_MODEL, **asked)
    answer = relayed.chat.completions.create(model="relayed-chat", **asked)
    assert answer.model == "relayed-chat"
    assert answer.choices[0].message.content == expected.choices[0].message.content
    assert answer.choices[0].finish_reason == expected.choices[0].finish_reason
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        expected.usage.prompt_tokens,
        expected.usage.completion_tokens,
    )
    told.append(answer.usage)

    chunks = list(
        relayed.chat.completions.create(
            model="relayed-chat", stream=True, stream_options={"include_usage": True}, **asked
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == expected.usage.completion_tokens
    assert usage[0].prompt_tokens == expected.usage.prompt_tokens
    told.append(usage[0])

    plain = list(relayed.chat.completions.create(model="relayed-chat", stream=True, **asked))
    assert all(c.usage is None for c in plain), "usage only when the client asks for it"
    text = "".join(c.choices[0].delta.content or "" for c in plain if c.choices)
    assert text == expected.choices[0].message.content
    told.append(expected.usage)

    inputs = ["The capital of France is Paris.", "A second input"]
    expected_vectors = direct.embeddings.create(model=MODEL, input=inputs)
    vectors = relayed.embeddings.create(model="relayed-embeddings", input=inputs)
    assert vectors.model == "relayed-embeddings"
    assert vectors.usage.prompt_tokens == expected_vectors.usage.prompt_tokens
    for got, want in zip(vectors.data, expected_vectors.data):
        assert got.embedding == pytest.approx(want.embedding, abs=1e-6)

    chat = usage_by_model(front, "relayed-chat", 3)
    assert chat["requests"] == 3 and chat["estimatedRequests"] == 0
    assert chat["inputTokens"] == sum(u.prompt_tokens for u in told)
    assert chat["outputTokens"] == sum(u.completion_tokens for u in told)
    embeddings = usage_by_model(front, "relayed-embeddings", 1)
    assert embeddings["inputTokens"] == expected_vectors.usage.prompt_tokens
    assert embeddings["estimatedRequests"] == 0


def test_an_upstream_without_usage_is_billed_with_an_estimate_marked_as_such(front):
    answer = sdk(front).chat.completions.create(
        model="estimated-chat", messages=MESSAGES, max_tokens=8
    )
    assert answer.choices[0].message.content
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    group = usage_by_model(front, "estimated-chat", 1)
    assert group["requests"] == 1 and group["estimatedRequests"] == 1
    assert group["inputTokens"] == answer.usage.prompt_tokens
    assert group["outputTokens"] == answer.usage.completion_tokens


def test_upstream_refusals_keep_the_upstream_out_of_the_message(front):
    too_long = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(front).chat.completions.create(model="relayed-chat", messages=too_long, max_tokens=4)
    assert refused.value.code == "context_length_exceeded"
    body = json.dumps(refused.value.body)
    for upstream_detail in ["127.0.0.1", CHAT_MODEL]:
        assert upstream_detail not in body, body


def test_a_killed_upstream_costs_no_request_that_had_not_started(front, upstreams):
    client = sdk(front)
    results: list[tuple[float, float, str]] = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            started = time.monotonic()
            try:
                client.chat.completions.create(
                    model="relayed-chat", messages=MESSAGES, max_tokens=4, temperature=0
                )
                outcome = "ok"
            except openai.APIStatusError as error:
                outcome = f"status {error.status_code}"
            except openai.APIConnectionError:
                outcome = "connection"
            results.append((started, time.monotonic(), outcome))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    victim = upstreams[1]
    victim.process.kill()
    killed = time.monotonic()
    victim.process.wait()
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join(30)

    after = [r for r in results if r[0] > killed]
    failed_after = [r for r in after if r[2] != "ok"]
    assert len(after) >= 8, results
    assert not failed_after, failed_after
    in_flight = [r for r in results if r[0] <= killed < r[1]]
    failed = [r for r in results if r[2] != "ok"]
    assert len(failed) <= len(in_flight), (failed, in_flight)
    metrics = urllib_get(front.base_url + "/metrics")
    assert 'gateway_engine_upstream_servers_available{model="relayed-chat"} 1' in metrics


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
