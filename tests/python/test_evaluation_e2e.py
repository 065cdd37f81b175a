"""End to end: legacy completions for evaluation harnesses — `echo` with `logprobs` returns the
prompt's tokens and their log-probabilities (the first token has none), `max_tokens: 0` scores
a prompt without generating, the scores agree with the log-probability of a generated token,
and a natural sentence scores higher than the same words shuffled, as log-likelihood
evaluations rely on."""

from __future__ import annotations

import json
import math

from conftest import CHAT_MODEL
from test_embeddings_e2e import assert_error, post_json

PROMPT = "The capital of France is"


def score(client, prompt, **fields):
    completion = client.completions.create(
        model=CHAT_MODEL, prompt=prompt, echo=True, logprobs=1, max_tokens=0, temperature=0,
        **fields,
    )
    return completion.choices[0]


def test_echo_returns_the_prompt_with_its_log_probabilities(client):
    choice = score(client, PROMPT)
    assert choice.text == PROMPT
    assert choice.finish_reason == "length"
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == PROMPT
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(lp is not None and lp <= 0 for lp in logprobs.token_logprobs[1:])
    assert all(len(top) == 1 for top in logprobs.top_logprobs[1:])
    for token, logprob, top in zip(logprobs.tokens[1:], logprobs.token_logprobs[1:], logprobs.top_logprobs[1:]):
        best = max(top.values())
        assert logprob <= best + 1e-5
        if token in top:
            assert abs(top[token] - logprob) < 1e-5
    offsets = logprobs.text_offset
    assert offsets == sorted(offsets) and offsets[0] == 0


def test_scores_agree_with_a_generated_tokens_log_probability(client):
    generated = client.completions.create(
        model=CHAT_MODEL, prompt=PROMPT, max_tokens=1, temperature=0, logprobs=1
    ).choices[0]
    token, logprob = generated.logprobs.tokens[0], generated.logprobs.token_logprobs[0]
    scored = score(client, PROMPT + token)
    assert scored.logprobs.tokens[-1] == token
    assert abs(scored.logprobs.token_logprobs[-1] - logprob) < 1e-3


def test_a_natural_sentence_is_likelier_than_its_words_shuffled(client):
    natural = score(client, "The cat sat on the mat and looked out of the window.")
    shuffled = score(client, "Window the mat out cat of looked and on sat the the.")
    total = lambda choice: sum(lp for lp in choice.logprobs.token_logprobs if lp is not None)  # noqa: E731
    assert total(natural) > total(shuffled) + 5


def test_echo_with_generation_whole_and_streamed(client, gateway):
    whole = client.completions.create(
        model=CHAT_MODEL, prompt=PROMPT, echo=True, max_tokens=4, temperature=0
    ).choices[0]
    assert whole.text.startswith(PROMPT) and len(whole.text) > len(PROMPT)
    assert whole.logprobs is None
    stream = client.completions.create(
        model=CHAT_MODEL, prompt=PROMPT, echo=True, max_tokens=4, temperature=0, stream=True
    )
    chunks = [chunk.choices[0].text for chunk in stream if chunk.choices]
    assert chunks[0] == PROMPT
    assert "".join(chunks) == whole.text
    status, _, answer = post_json(gateway, "/v1/completions",
                                  {"model": CHAT_MODEL, "prompt": PROMPT, "max_tokens": 0})
    assert_error(status, answer, 400, "max_tokens")


def test_token_prompts_are_echoed_and_billed_without_completion(client, gateway):
    status, _, tokens = post_json(gateway, "/v1/tokenize", {"model": CHAT_MODEL, "prompt": PROMPT})
    assert status == 200, tokens
    completion = client.completions.create(
        model=CHAT_MODEL, prompt=tokens["tokens"], echo=True, logprobs=0, max_tokens=0
    )
    choice = completion.choices[0]
    assert choice.text == PROMPT
    assert len(choice.logprobs.tokens) == tokens["count"]
    assert all(top is None or top == {} for top in choice.logprobs.top_logprobs)
    assert completion.usage.prompt_tokens == tokens["count"]
    assert completion.usage.completion_tokens == 0
    assert math.isfinite(sum(lp for lp in choice.logprobs.token_logprobs if lp is not None))
    json.dumps(completion.model_dump())
