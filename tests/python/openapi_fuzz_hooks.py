"""Schemathesis hooks of `test_openapi_fuzz_e2e.py` (loaded by the `schemathesis` run it starts,
named in its configuration): a fuzzed chat or completion request runs the real model, so the
tokens and choices it asks for are capped before it is sent."""

from __future__ import annotations

import schemathesis

# The generation routes, whose requests run the model.
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")
# The most tokens a fuzzed request may ask for.
MAX_TOKENS = 4
# The most choices or candidates a fuzzed request may ask for.
MAX_CHOICES = 2


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def bounded(body):
    """`body` with the generation it asks for capped: at most MAX_TOKENS tokens (also when it
    names no limit, where a chat request would run to the end of the context) and MAX_CHOICES
    choices. Values of a wrong type or out of range below are left for the server to refuse."""
    if not isinstance(body, dict):
        return body
    for field in ("max_tokens", "max_completion_tokens"):
        if _whole_number(body.get(field)) and body[field] > MAX_TOKENS:
            body[field] = MAX_TOKENS
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = MAX_TOKENS
    for field in ("n", "best_of"):
        if _whole_number(body.get(field)) and body[field] > MAX_CHOICES:
            body[field] = MAX_CHOICES
    return body


@schemathesis.hook
def before_call(context, case, kwargs):
    """Caps the generation of chat and completion requests (every phase's requests pass here)."""
    if case.operation.path in GENERATION_PATHS:
        case.body = bounded(case.body)
