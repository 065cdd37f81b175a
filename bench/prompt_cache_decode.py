"""Chat decode with and without the prompt cache, in one run: does keeping and looking up
prompt blocks cost the decode throughput of prompts that share almost nothing?

The release `gateway` serves bench/decode.py's workload (distinct essay prompts, which share
only the chat template's first block of 16 tokens; greedy, `max_tokens` 128) with
`prompt_cache_mib = 0` and with the default 256, alternating in two rounds (off, on, then
on, off), at 16 streams (2 requests each) and 64 streams (1 request each). Prints each
measurement (aggregate generated tokens/s and TTFT p50) and the medians per setting.

Usage: .venv/bin/python bench/prompt_cache_decode.py DATA_DIR GATEWAY_BINARY
       (bench/prompt_cache.sh builds the release gateway and prepares ./data)
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode  # noqa: E402
from decode import gateway_process  # noqa: E402

SETTINGS = (0, 256)
LEVELS = ((16, 2), (64, 1))
ROUNDS = 2


def main() -> None:
    data_dir, binary = Path(sys.argv[1]), Path(sys.argv[2])
    gateway_process.BINARY = binary.resolve()
    rates: dict[int, dict[int, list[float]]] = {mib: {s: [] for s, _ in LEVELS} for mib in SETTINGS}
    index = 0
    for round_ in range(ROUNDS):
        for mib in SETTINGS if round_ % 2 == 0 else SETTINGS[::-1]:
            server = decode.OurGateway(
                data_dir, decode.DECODE_SETTINGS + f"prompt_cache_mib = {mib}\n")
            try:
                for streams, per_stream in LEVELS:
                    level = decode.run_level(server, streams, per_stream, index)
                    index += streams * per_stream
                    rates[mib][streams].append(level["rate"])
                    print(f"prompt_cache_mib = {mib}, {streams} streams: {level['rate']:.1f} "
                          f"tokens/s, TTFT p50 {1000 * statistics.median(level['ttfts']):.0f} ms",
                          flush=True)
            finally:
                server.stop()
    print("\n| prompt_cache_mib | " + " | ".join(f"{s} streams, tokens/s" for s, _ in LEVELS) + " |")
    print("|---|" + "---|" * len(LEVELS))
    for mib in SETTINGS:
        medians = (f"{statistics.median(rates[mib][s]):.1f}" for s, _ in LEVELS)
        print(f"| {mib} | " + " | ".join(medians) + " |")


if __name__ == "__main__":
    main()
