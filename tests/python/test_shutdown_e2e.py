"""End to end: SIGTERM drains in-flight requests before the gateway exits."""

from __future__ import annotations

import concurrent.futures
import time

from openai import OpenAI

from conftest import MODEL, TEST_CONFIG
from gateway_process import Gateway


def test_sigterm_finishes_in_flight_requests(data_dir, api_key):
    server = Gateway(data_dir, TEST_CONFIG)
    client = OpenAI(base_url=server.base_url + "/v1", api_key=api_key, max_retries=0)
    long_texts = ["a long text to embed " * 40] * 8

    def embed():
        response = client.embeddings.create(model=MODEL, input=long_texts, encoding_format="float")
        return response, time.monotonic()

    try:
        embed()  # warm the client's imports and connection pool
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(embed) for _ in range(4)]
            time.sleep(0.3)
            terminated_at = time.monotonic()
            server.terminate()
            results = [future.result(timeout=60) for future in futures]
        assert all(len(response.data) == 8 for response, _ in results)
        assert any(finished > terminated_at for _, finished in results), "nothing was in flight"
        assert server.process.wait(30) == 0
        assert "draining in-flight requests" in server.log
    finally:
        server.stop()
