"""Shared fixtures: one prepared data directory, one model API key (created with the admin
CLI) and one running gateway per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gateway_process import Gateway, create_api_key, prepare_data_dir  # noqa: E402

MODEL = "all-minilm-l6-v2"
CHAT_MODEL = "smollm2-135m-instruct"

TEST_CONFIG = """
[server]
max_body_bytes = 1048576
request_timeout_secs = 30
shutdown_grace_secs = 10
# the auth tests refuse many credentials from one address on purpose
failed_management_authentications_per_minute = 100000

[limits.base]
requests_per_minute = 1000000
tokens_per_minute = 1000000000

[[models]]
path = "models/all-minilm-l6-v2"
max_inputs = 64

[[models]]
path = "models/smollm2-135m-instruct"
max_context = 1024
max_batch_sequences = 8
kv_budget_tokens = 8192
queue_capacity = 16
"""


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return prepare_data_dir(tmp_path_factory.mktemp("gateway-data"))


@pytest.fixture(scope="session")
def api_key(data_dir) -> str:
    """A model API key of a project made for the session, created with `gateway admin`."""
    return create_api_key(data_dir, "e2e-session")


@pytest.fixture(scope="session")
def gateway(data_dir, api_key):
    server = Gateway(data_dir, TEST_CONFIG)
    server.api_key = api_key
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(gateway):
    from openai import OpenAI

    return OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.api_key, max_retries=0)
