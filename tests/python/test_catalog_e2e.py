"""End to end: the catalog and the model lifecycle with the real `gateway` binary. The product
API's views are read by the managed service's own SDK (`stackit-modelserving`: its client and
its models' `from_json`); a deprecated model answers with its notice headers, a retired one
through its successor (billed under the successor's plan) or with 410; an announcement with
too little notice stops the gateway at start, naming the model and the rule."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from stackit.core.configuration import Configuration
from stackit.modelserving.api.default_api import DefaultApi
from stackit.modelserving.exceptions import NotFoundException
from stackit.modelserving.models import (
    GetChatModelResponse,
    GetEmbeddingsModelResp,
    ListModelsResponse,
)

from conftest import CHAT_MODEL, MODEL
from gateway_process import BINARY, Gateway
from test_auth_e2e import call, new_tenant

REGION = "eu01"


def day(offset: int) -> str:
    """The UTC date `offset` days from today."""
    return (datetime.now(timezone.utc) + timedelta(days=offset)).strftime("%Y-%m-%d")


def test_the_services_sdk_reads_the_catalog(gateway):
    api = DefaultApi(Configuration(service_account_token="unused", custom_endpoint=gateway.base_url))
    listed = api.list_models(REGION)
    by_name = {model.displayed_name: model for model in listed.models}
    assert set(by_name) >= {CHAT_MODEL, MODEL}
    chat = by_name[CHAT_MODEL]
    assert chat.type == "chat" and chat.category == "standard" and chat.region == REGION
    assert chat.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert [sku.id for sku in chat.skus] == [
        "standard-input-tokens", "standard-cached-input-tokens", "standard-output-tokens"]
    details = api.get_chat_model(REGION, str(chat.id)).model
    assert details.context_length == 1024, "the served context (max_context), not the card's"
    assert details.size > 50_000_000 and details.bits == 4 and details.quantization_method == "PTQ"
    embedding = api.get_embedding_model(REGION, str(by_name[MODEL].id)).model
    assert embedding.output_dimension == 384
    assert [sku.id for sku in embedding.skus] == ["standard-input-tokens"]
    with pytest.raises(NotFoundException):
        api.get_embedding_model(REGION, str(chat.id))
    # the same JSON through the SDK's models' own parsers
    for path, model in [
        (f"/v1/regions/{REGION}/models", ListModelsResponse),
        (f"/v1/regions/{REGION}/chat/models/{chat.id}", GetChatModelResponse),
        (f"/v1/regions/{REGION}/embedding/models/{MODEL}", GetEmbeddingsModelResp),
    ]:
        status, _, body = call(gateway, "GET", path)
        assert status == 200
        assert model.from_json(json.dumps(body)) is not None


LIFECYCLE_CONFIG = f"""
[limits.base]
requests_per_minute = 100000
tokens_per_minute = 100000000

[[models]]
path = "models/all-minilm-l6-v2"
plan = "plus"
displayed_name = "MiniLM current"
tags = ["embedding", "english"]

[[models]]
path = "models/all-minilm-l6-v2"
id = "minilm-sunsetting"
[models.deprecation]
announced = "{day(-10)}"
retires = "{day(100)}"
successor = "{MODEL}"

[[models]]
path = "models/all-minilm-l6-v2"
id = "minilm-retired"
[models.deprecation]
announced = "{day(-300)}"
retires = "{day(-1)}"
successor = "{MODEL}"

[[models]]
path = "models/all-minilm-l6-v2"
id = "minilm-gone"
[models.deprecation]
announced = "{day(-400)}"
retires = "{day(-10)}"
"""


@pytest.fixture(scope="module")
def lifecycle(data_dir):
    server = Gateway(data_dir, LIFECYCLE_CONFIG)
    yield server
    server.stop()


def embed(gateway, key: str, model: str):
    return call(gateway, "POST", "/v1/embeddings", key, {"model": model, "input": "lifecycle"})


def test_a_deprecated_model_says_so_and_when_it_goes(lifecycle, data_dir):
    tenant = new_tenant(data_dir, "lifecycle-deprecated")
    status, headers, body = embed(lifecycle, tenant.key, "minilm-sunsetting")
    assert status == 200
    announced = datetime.strptime(day(-10), "%Y-%m-%d").replace(tzinfo=timezone.utc)
    assert headers["deprecation"] == f"@{int(announced.timestamp())}"
    retires = datetime.strptime(day(100), "%Y-%m-%d").replace(tzinfo=timezone.utc)
    assert headers["sunset"] == retires.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert f'</v1/models/{MODEL}>; rel="successor-version"' in headers["link"]
    status, headers, _ = embed(lifecycle, tenant.key, MODEL)
    assert status == 200 and "deprecation" not in headers


def test_a_retired_model_is_served_by_its_successor_or_gone(lifecycle, data_dir):
    tenant = new_tenant(data_dir, "lifecycle-retired")
    status, headers, body = embed(lifecycle, tenant.key, "minilm-retired")
    assert status == 200, body
    assert body["model"] == MODEL and headers["x-model-retired"] == "minilm-retired"
    status, _, body = embed(lifecycle, tenant.key, "minilm-gone")
    assert status == 410
    assert body["error"]["code"] == "model_retired" and body["error"]["param"] == "model"
    status, _, usage = call(
        lifecycle, "GET", f"/v1/projects/{tenant.project_id}/usage", tenant.token
    )
    assert status == 200
    assert [g["group"] for g in usage["groups"]] == [MODEL]
    assert [line["plan"] for line in usage["billing"]] == ["plus"], "the successor's plan"
    status, _, models = call(lifecycle, "GET", "/v1/models", tenant.key)
    states = {m["id"]: m["lifecycle"]["state"] for m in models["data"]}
    assert states == {
        MODEL: "active", "minilm-sunsetting": "deprecated",
        "minilm-retired": "retired", "minilm-gone": "retired",
    }
    current = next(m for m in models["data"] if m["id"] == MODEL)
    assert current["plan"] == "plus" and current["tags"] == ["embedding", "english"]
    assert current["displayed_name"] == "MiniLM current"


def test_announcements_list_past_and_coming_deprecations(lifecycle):
    status, _, body = call(lifecycle, "GET", "/v1/announcements")
    assert status == 200
    assert [(a["model"], a["state"]) for a in body["announcements"]] == [
        ("minilm-sunsetting", "deprecated"), ("minilm-retired", "retired"),
        ("minilm-gone", "retired"),
    ]
    status, headers, feed = call(
        lifecycle, "GET", "/v1/announcements", headers={"accept": "application/atom+xml"}
    )
    assert status == 200 and headers["content-type"] == "application/atom+xml"
    assert feed.count("<entry>") == 3 and "minilm-gone" in feed


@pytest.mark.parametrize(
    "retires, successor, rule",
    [(151, None, "6 months without a successor"), (80, MODEL, "3 months when a direct successor")],
)
def test_too_little_notice_stops_the_gateway_at_start(data_dir, retires, successor, rule):
    successor_line = f'successor = "{successor}"' if successor else ""
    config = data_dir / f"short-notice-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(f"""
[[models]]
path = "models/all-minilm-l6-v2"

[[models]]
path = "models/all-minilm-l6-v2"
id = "minilm-hasty"
[models.deprecation]
announced = "{day(0)}"
retires = "{day(retires)}"
{successor_line}
""")
    started = time.monotonic()
    result = subprocess.run(
        [str(BINARY), "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
        env={"GATEWAY_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "model minilm-hasty" in result.stderr and rule in result.stderr, result.stderr
    assert time.monotonic() - started < 30, "refused before any model loads"
