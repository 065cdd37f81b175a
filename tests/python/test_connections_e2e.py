"""Connection hygiene of the real `gateway` binary (issue 25, item 1): a request head must
arrive within `header_read_timeout_secs` (half-open connections are closed, and cannot crowd
out other clients), at most `max_connections` are open at once (a flood over the cap only
delays others), a declared body over the limit
is refused before it is read, and a body that stops arriving is answered 408.

The gateway runs without models (no ONNX Runtime needed) and with short limits, so each check
takes a second or two."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from gateway_process import Gateway, create_api_key

CONFIG = """
models = []

[server]
max_body_bytes = 65536
header_read_timeout_secs = 1
body_read_timeout_secs = 1
max_connections = 64
shutdown_grace_secs = 2
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("connections")
    key = create_api_key(data_dir, "connections")
    gateway = Gateway(data_dir, CONFIG)
    gateway.api_key = key
    yield gateway
    gateway.stop()


def connect(gateway: Gateway) -> socket.socket:
    host, port = gateway.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def healthz_seconds(gateway: Gateway) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(gateway.base_url + "/healthz", timeout=10) as response:
        assert response.status == 200
    return time.monotonic() - started


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (it may answer first)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def half_open_flood(gateway: Gateway, count: int) -> list[socket.socket]:
    """`count` connections that each sent half a request head and then nothing."""
    flood = []
    for _ in range(count):
        sock = connect(gateway)
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        flood.append(sock)
    return flood


def test_half_open_requests_are_closed_and_others_are_served_meanwhile(server):
    flood = half_open_flood(server, 48)
    try:
        assert healthz_seconds(server) < 2, "48 hanging heads (under the cap) delayed a client"
        assert all(closed_within(sock, 4) for sock in flood), "half-open heads stayed open"
    finally:
        for sock in flood:
            sock.close()


def test_a_flood_over_the_connection_cap_only_delays_others(server):
    # 150 hanging heads against a cap of 64 and a 1 s head timeout: they are let in and closed
    # 64 at a time, so a client behind them waits about three timeouts, and the process never
    # holds more than 64 of them open.
    flood = half_open_flood(server, 150)
    try:
        assert healthz_seconds(server) < 6
        assert all(closed_within(sock, 6) for sock in flood), "half-open heads stayed open"
    finally:
        for sock in flood:
            sock.close()
    assert healthz_seconds(server) < 2


def test_idle_connections_are_closed_after_the_header_timeout(server):
    sock = connect(server)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert b"200 OK" in sock.recv(4096)
        assert closed_within(sock, 4), "a kept-alive connection that sends nothing stays open"
    finally:
        sock.close()


def answer_to_short_body(gateway: Gateway, declared: int, sent: bytes) -> tuple[bytes, float]:
    """Posts an embeddings request declaring `declared` body bytes but sending only `sent`;
    returns the first bytes of the answer and the seconds it took."""
    sock = connect(gateway)
    try:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: gateway\r\n"
            b"Authorization: Bearer " + gateway.api_key.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(declared).encode()
            + b"\r\n\r\n" + sent
        )
        answer = sock.recv(4096)
        return answer, time.monotonic() - started
    finally:
        sock.close()


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(server):
    answer, elapsed = answer_to_short_body(server, 1_000_000_000_000, b"{")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert elapsed < 2, "the declared body was waited for"


def test_a_body_that_stops_arriving_is_answered_408(server):
    answer, elapsed = answer_to_short_body(server, 100, b'{"model": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b'"type":"invalid_request_error"' in answer
    assert 0.8 < elapsed < 5
