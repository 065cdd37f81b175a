"""Batch invariance, end to end: a sequence's greedy tokens must not depend on which other
sequences share its decode batch. Ten prompts are served one at a time, then again all
together while six longer streams run beside them (sixteen sequences in the batch), through
the real `gateway` binary and the official OpenAI SDK; the first 32 tokens must be identical
for at least nine of the ten prompts (ties between near-equal logits may flip one)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

from conftest import CHAT_MODEL
from gateway_process import Gateway
from test_chat_e2e import SYSTEM, gateway_metrics

TOKENS = 32
QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Why is the sky blue?",
    "How many legs does a spider have?",
    "What do bees make?",
    "Give me a synonym for happy.",
    "What is two plus two?",
    "Describe a cat in one sentence.",
    "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?",
]
FILLERS = [
    "Write a long story about a dragon.",
    "Explain how a car engine works in detail.",
    "Describe the history of the Roman Empire.",
    "Write a poem about the sea.",
    "List ten fruits and describe each one.",
    "Explain photosynthesis step by step.",
]


def greedy_tokens(client: OpenAI, question: str, max_tokens: int = TOKENS) -> list[str]:
    completion = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=max_tokens, temperature=0, logprobs=True,
        messages=[SYSTEM, {"role": "user", "content": question}],
    )
    return [item.token for item in completion.choices[0].logprobs.content]


def engine_figure(gateway: Gateway, name: str) -> float:
    match = re.search(
        rf'gateway_engine_{name}{{model="{CHAT_MODEL}"}} ([0-9.e+-]+)', gateway_metrics(gateway)
    )
    assert match, f"no gateway_engine_{name} in /metrics"
    return float(match.group(1))


def test_greedy_tokens_do_not_depend_on_the_batch(data_dir, api_key):
    config = f"""
[[models]]
path = "models/{CHAT_MODEL}"
max_context = 1024
max_batch_sequences = 16
kv_budget_tokens = 16384
"""
    server = Gateway(data_dir, config)
    server.api_key = api_key
    try:
        def client() -> OpenAI:
            return OpenAI(base_url=server.base_url + "/v1", api_key=api_key, max_retries=0)

        alone = [greedy_tokens(client(), question) for question in QUESTIONS]
        steps_before = engine_figure(server, "steps")
        rows_before = engine_figure(server, "decode_rows")
        with ThreadPoolExecutor(len(QUESTIONS) + len(FILLERS)) as pool:
            fillers = [pool.submit(greedy_tokens, client(), q, 4 * TOKENS) for q in FILLERS]
            time.sleep(0.3)  # the fillers are in the batch before the questions arrive
            together = list(pool.map(lambda q: greedy_tokens(client(), q), QUESTIONS))
            for filler in fillers:
                assert len(filler.result()) > TOKENS
        rows = engine_figure(server, "decode_rows") - rows_before
        steps = engine_figure(server, "steps") - steps_before
    finally:
        server.stop()
    assert all(len(tokens) > 0 for tokens in alone)
    same = sum(a[:TOKENS] == b[:TOKENS] for a, b in zip(alone, together))
    assert same >= 9, [(a, b) for a, b in zip(alone, together) if a != b]
    # The questions really shared their steps: served one at a time there would be one row
    # per step; together the ten questions and six fillers average several.
    assert rows / steps > 4, (rows, steps)
