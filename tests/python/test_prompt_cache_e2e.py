"""The prompt cache, end to end through the real `gateway` binary and the official OpenAI SDK:
greedy outputs and their log-probabilities are identical with the cache off, cold and warm
(including prompts whose uncached rest is a single token); `usage.prompt_tokens_details.
cached_tokens` says how many prompt tokens came from it (whole blocks of 16, never the last
token), in whole answers and in a stream's usage chunk; a chat's second turn reuses its first
turn's prompt; a budget of one block evicts the least recently used prefix; the usage record
bills the cached tokens at the plan's cached input price. The exactness holds for the default
(q4) graph and for the f16 graph, whose key/value cache and prefix cache hold f16."""

from __future__ import annotations

import pytest
from openai import OpenAI

from decimal import Decimal

from conftest import CHAT_MODEL
from gateway_process import Gateway
from model_files import smollm2_path
from test_auth_e2e import call, new_tenant
from test_batch_invariance_e2e import engine_figure
from test_embeddings_e2e import post_json
from test_llama_import import import_model
from test_metering_e2e import MILLION, PRICE_IN, PRICE_OUT, metering_tables, wait_for_requests

BLOCK = 16
LONG_SYSTEM = "You are the support assistant of a bicycle shop. " + " ".join(
    f"Rule {i}: answer politely and briefly, and mention part number {1000 + 7 * i} when it helps."
    for i in range(48)
)
QUESTIONS = [
    "Which tyre fits a city bike?",
    "How often should I oil the chain?",
    "Do you repair electric bikes?",
]
TOKENS = 12


PRICE_CACHED = Decimal("0.05")
METERING = metering_tables(f'cached_input_per_million = "{PRICE_CACHED}"\n')


def serve(data_dir, api_key, prompt_cache_mib: int | None, metering: str = "",
          model_dir: str = CHAT_MODEL) -> Gateway:
    setting = "" if prompt_cache_mib is None else f"prompt_cache_mib = {prompt_cache_mib}"
    server = Gateway(data_dir, f"""{metering}
[[models]]
path = "models/{model_dir}"
max_context = 2048
{setting}
""")
    server.api_key = api_key
    return server


def client_of(server: Gateway) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)


def cached_of(usage) -> int:
    details = usage.prompt_tokens_details
    return details.cached_tokens if details else 0


def whole_blocks_before_last(prompt_tokens: int) -> int:
    return (prompt_tokens - 1) // BLOCK * BLOCK


def chat(client: OpenAI, messages: list[dict]) -> tuple[list[tuple[str, float]], int, int]:
    """Greedy tokens with their log-probabilities, prompt tokens and cached tokens."""
    completion = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=TOKENS, temperature=0, logprobs=True, messages=messages,
    )
    tokens = [(item.token, item.logprob) for item in completion.choices[0].logprobs.content]
    return tokens, completion.usage.prompt_tokens, cached_of(completion.usage)


def complete_ids(client: OpenAI, ids: list[int]) -> tuple[list[tuple[str, float]], int]:
    """Greedy tokens with their log-probabilities after a prompt of token ids, and cached tokens."""
    completion = client.completions.create(
        model=CHAT_MODEL, prompt=ids, max_tokens=TOKENS, temperature=0, logprobs=1,
    )
    logprobs = completion.choices[0].logprobs
    assert completion.usage.prompt_tokens == len(ids)
    return list(zip(logprobs.tokens, logprobs.token_logprobs)), cached_of(completion.usage)


def token_ids(server: Gateway, text: str) -> list[int]:
    status, _, answer = post_json(server, "/v1/tokenize", {"model": CHAT_MODEL, "prompt": text})
    assert status == 200, answer
    return answer["tokens"]


def system_chat(question: str) -> list[dict]:
    return [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": question}]


# Prompt lengths in token ids, in the order served. Without the cache 40, 33 and 17 run whole
# from the start, the others in chunks of 256. With it, each finds the blocks of the ones
# before: 33, 17, 273 and 257 leave a single token to run, 288 a whole block.
ID_PROMPT_LENGTHS = [40, 33, 17, 300, 273, 257, 288]
ID_PROMPT_CACHED = [0, 32, 16, 32, 272, 256, 272]


def serve_all(server: Gateway) -> tuple[list, list]:
    """The id prompts and the chats, each as (tokens with log-probabilities, cached tokens)."""
    client = client_of(server)
    ids = token_ids(server, LONG_SYSTEM)
    assert len(ids) > 1000
    by_ids = [complete_ids(client, ids[:length]) for length in ID_PROMPT_LENGTHS]
    chats = []
    for question in QUESTIONS:
        tokens, prompt_tokens, cached = chat(client, system_chat(question))
        chats.append((tokens, cached, prompt_tokens))
    return by_ids, chats


def f16_model(data_dir) -> str:
    """SmolLM2 imported as the f16 graph under the chat model's id (once per session)."""
    directory = f"{CHAT_MODEL}-f16"
    out = data_dir / "models" / directory
    if not (out / "model-card.json").is_file():
        card = import_model(smollm2_path(), out, "--weights", "f16", "--id", CHAT_MODEL)
        assert card["quantization"] == "f16"
    return directory


@pytest.mark.parametrize("weights", ["auto", "f16"])
def test_outputs_are_identical_with_and_without_the_prompt_cache(data_dir, api_key, weights):
    model_dir = f16_model(data_dir) if weights == "f16" else CHAT_MODEL
    server = serve(data_dir, api_key, 0, model_dir=model_dir)
    try:
        off_ids, off_chats = serve_all(server)
        assert engine_figure(server, "prompt_cache_hit_tokens") == 0
    finally:
        server.stop()
    server = serve(data_dir, api_key, None, model_dir=model_dir)
    try:
        cold_ids, cold_chats = serve_all(server)
        warm_ids, warm_chats = serve_all(server)
        hits = engine_figure(server, "prompt_cache_hit_tokens")
        held = engine_figure(server, "prompt_cache_bytes")
    finally:
        server.stop()

    assert [cached for _, cached in off_ids] == [0] * len(ID_PROMPT_LENGTHS)
    assert [cached for _, cached, _ in off_chats] == [0] * len(QUESTIONS)
    for served in (cold_ids, warm_ids):
        assert [tokens for tokens, _ in served] == [tokens for tokens, _ in off_ids]
    for served in (cold_chats, warm_chats):
        assert [tokens for tokens, _, _ in served] == [tokens for tokens, _, _ in off_chats]
    assert all(len(tokens) == TOKENS for tokens, _ in off_ids)

    assert [cached for _, cached in cold_ids] == ID_PROMPT_CACHED
    assert [cached for _, cached in warm_ids] == [
        whole_blocks_before_last(length) for length in ID_PROMPT_LENGTHS
    ]
    first, *others = cold_chats
    assert first[1] == 0, "the system prompt differs from the id prompts' text after its start"
    for _, cached, prompt_tokens in others:
        assert cached % BLOCK == 0 and 1000 < cached < prompt_tokens
    for _, cached, prompt_tokens in warm_chats:
        assert cached == whole_blocks_before_last(prompt_tokens)
    assert hits == sum(c for _, c in cold_ids + warm_ids) + sum(
        c for _, c, _ in cold_chats + warm_chats
    )
    assert held > 0


@pytest.fixture(scope="module")
def caching_server(data_dir, api_key):
    server = serve(data_dir, api_key, None, METERING)
    yield server
    server.stop()


def test_a_second_turn_reuses_the_first_turns_prompt(caching_server):
    client = client_of(caching_server)
    first_turn = system_chat("Can I bring my bike in on Sunday?")
    answer = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=24, temperature=0, messages=first_turn,
    )
    assert cached_of(answer.usage) == 0
    second_turn = first_turn + [
        {"role": "assistant", "content": answer.choices[0].message.content},
        {"role": "user", "content": "And on Monday?"},
    ]
    _, prompt_tokens, cached = chat(client, second_turn)
    assert prompt_tokens > answer.usage.prompt_tokens
    assert cached == answer.usage.prompt_tokens // BLOCK * BLOCK


def test_a_streams_usage_chunk_carries_the_cached_tokens(caching_server):
    client = client_of(caching_server)
    messages = system_chat("Is a helmet included?")
    chat(client, messages)
    stream = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=4, temperature=0, messages=messages, stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert len(usage) == 1
    assert cached_of(usage[0]) == whole_blocks_before_last(usage[0].prompt_tokens)


def test_a_budget_of_one_block_keeps_the_most_recent_prefix(data_dir, api_key):
    # 1 MiB holds one block of SmolLM2 (16 positions × 45 KiB), not two.
    server = serve(data_dir, api_key, 1)
    try:
        client = client_of(server)
        ids = token_ids(server, LONG_SYSTEM)
        first, second = ids[:40], ids[200:240]
        served = [complete_ids(client, prompt)[1] for prompt in (first, first, second, first)]
        held = engine_figure(server, "prompt_cache_bytes")
    finally:
        server.stop()
    assert served == [0, BLOCK, 0, 0]
    assert held == BLOCK * 46_080


def test_cached_tokens_are_billed_at_the_plans_cached_price(caching_server, data_dir):
    tenant = new_tenant(data_dir, "prompt-cache-billing")
    body = {"model": CHAT_MODEL, "messages": system_chat("Do you sell tandems?"),
            "max_tokens": 4, "temperature": 0}
    answers = []
    for _ in range(2):
        status, headers, answer = call(
            caching_server, "POST", "/v1/chat/completions", tenant.key, body)
        assert status == 200, answer
        answers.append((Decimal(headers["x-request-cost"]), answer["usage"]))
    (first_cost, first), (second_cost, second) = answers
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert first["prompt_tokens"] == second["prompt_tokens"]
    assert cached == whole_blocks_before_last(second["prompt_tokens"]) > 0
    assert second_cost == (
        (second["prompt_tokens"] - cached) * PRICE_IN + cached * PRICE_CACHED
        + second["completion_tokens"] * PRICE_OUT
    ) / MILLION
    assert second_cost < first_cost
    total = wait_for_requests(caching_server, tenant, 2)["total"][0]
    assert total["requests"] == 2
    assert total["cachedInputTokens"] == first["prompt_tokens_details"]["cached_tokens"] + cached
    assert Decimal(total["cost"]) == first_cost + second_cost
