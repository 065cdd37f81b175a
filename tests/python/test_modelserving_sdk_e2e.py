"""End to end: the token management API driven by the managed service's own Python SDK,
`stackit-modelserving` (pinned in scripts/requirements-test.txt), pointed at the real gateway
with a custom endpoint and a management token as its bearer token. Every answer goes through
the SDK's own deserialization (its pydantic models validate required fields and formats), and
refusals raise the SDK's own exceptions with the service's error body parsed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from openai import OpenAI
from stackit.core.configuration import Configuration
from stackit.modelserving.api.default_api import DefaultApi
from stackit.modelserving.exceptions import (
    BadRequestException,
    NotFoundException,
    UnauthorizedException,
)
from stackit.modelserving.models import (
    CreateTokenPayload,
    CreateTokenResponse,
    ErrorMessageResponse,
    GetTokenResponse,
    ListTokenResp,
    MessageResponse,
    PartialUpdateTokenPayload,
    Token,
    TokenCreated,
    UpdateTokenResponse,
)

from conftest import MODEL
from gateway_process import admin

REGION = "eu01"
# What the SDK makes of `validUntil` of a key that never expires (`0001-01-01T00:00:00Z`).
NEVER = datetime(1, 1, 1, tzinfo=timezone.utc)


@dataclass
class Tenant:
    """A project, its owner's management token and a key the admin CLI made (never expires)."""

    project_id: str
    token: str
    cli_key_id: str


@dataclass
class Created:
    """The two tokens made through the SDK: one with a TTL and labels, one without either."""

    labelled: TokenCreated
    forever: TokenCreated


def sdk(gateway, token: str) -> DefaultApi:
    return DefaultApi(Configuration(service_account_token=token, custom_endpoint=gateway.base_url))


@pytest.fixture(scope="module")
def tenant(data_dir, gateway) -> Tenant:
    project = admin(data_dir, "project", "create", "--name", "sdk")
    subject = f"sdk-{uuid.uuid4().hex[:8]}"
    admin(data_dir, "principal", "add", "--project", project["id"], "--subject", subject,
          "--email", f"{subject}@example.com", "--role", "owner")
    token = admin(data_dir, "management-token", "create", "--subject", subject)["content"]
    cli_key = admin(data_dir, "key", "create", "--project", project["id"], "--name", "sdk-cli")
    return Tenant(project["id"], token, cli_key["id"])


@pytest.fixture(scope="module")
def api(gateway, tenant) -> DefaultApi:
    return sdk(gateway, tenant.token)


@pytest.fixture(scope="module")
def created(api, tenant) -> Created:
    labelled = api.create_token_with_http_info(
        REGION,
        tenant.project_id,
        CreateTokenPayload(
            name="sdk ci_runner-1",
            description="SDK run: https://ci.example.com/1",
            ttl_duration="1h",
            labels={"env": "prod", "team": "ml"},
        ),
    )
    assert labelled.status_code == 202
    assert isinstance(labelled.data, CreateTokenResponse)
    forever = api.create_token(REGION, tenant.project_id, CreateTokenPayload(name="sdk forever"))
    assert isinstance(forever, CreateTokenResponse)
    return Created(labelled.data.token, forever.token)


def test_create_with_ttl_and_labels(gateway, created):
    token = created.labelled
    assert isinstance(token, TokenCreated)
    assert token.name == "sdk ci_runner-1"
    assert token.description == "SDK run: https://ci.example.com/1"
    assert token.labels == {"env": "prod", "team": "ml"}
    assert token.region == REGION and token.state == "active"
    expected = datetime.now(timezone.utc) + timedelta(hours=1)
    assert abs((token.valid_until - expected).total_seconds()) < 60
    assert token.content.startswith("sk-")
    # The key the SDK received works on the model API.
    client = OpenAI(base_url=gateway.base_url + "/v1", api_key=token.content, max_retries=0)
    assert len(client.embeddings.create(model=MODEL, input="hello").data[0].embedding) == 384


def test_create_without_ttl_never_expires(created):
    token = created.forever
    assert token.name == "sdk forever" and token.description is None
    assert token.valid_until == NEVER
    assert token.labels is None and token.state == "active"


def test_list_without_and_with_a_label_selector(api, tenant, created):
    listed = api.list_tokens(REGION, tenant.project_id)
    assert isinstance(listed, ListTokenResp)
    assert all(isinstance(t, Token) for t in listed.tokens)
    by_id = {str(t.id): t for t in listed.tokens}
    assert list(by_id) == [tenant.cli_key_id, str(created.labelled.id), str(created.forever.id)]
    # The admin CLI's key never expires either: the SDK reads the list all the same.
    assert by_id[tenant.cli_key_id].valid_until == NEVER
    assert by_id[tenant.cli_key_id].name == "sdk-cli"
    assert by_id[str(created.labelled.id)].labels == {"env": "prod", "team": "ml"}

    def names(selector: str) -> list[str]:
        answer = api.list_tokens(REGION, tenant.project_id, label_selector=selector)
        assert isinstance(answer, ListTokenResp)
        return [t.name for t in answer.tokens]

    assert names("env=prod") == ["sdk ci_runner-1"]
    assert names("env=prod,team=ml") == ["sdk ci_runner-1"]
    assert names("env!=prod") == ["sdk-cli", "sdk forever"]
    assert names("!team") == ["sdk-cli", "sdk forever"]
    assert names("team=ops") == []


def test_get(api, tenant, created):
    got = api.get_token(REGION, tenant.project_id, created.labelled.id)
    assert isinstance(got, GetTokenResponse) and isinstance(got.token, Token)
    assert got.token.id == created.labelled.id
    assert got.token.name == created.labelled.name
    assert got.token.labels == created.labelled.labels
    assert got.token.valid_until == created.labelled.valid_until
    forever = api.get_token(REGION, tenant.project_id, created.forever.id)
    assert forever.token.valid_until == NEVER


def test_update(api, tenant, created):
    answer = api.partial_update_token_with_http_info(
        REGION,
        tenant.project_id,
        created.labelled.id,
        PartialUpdateTokenPayload(
            name="sdk renamed",
            description="changed by the SDK",
            labels={"team": None, "tier": "gold"},
        ),
    )
    assert answer.status_code == 202
    assert isinstance(answer.data, UpdateTokenResponse)
    token = answer.data.token
    assert (token.name, token.description) == ("sdk renamed", "changed by the SDK")
    assert token.labels == {"env": "prod", "tier": "gold"}
    got = api.get_token(REGION, tenant.project_id, created.labelled.id).token
    assert (got.name, got.description, got.labels) == (token.name, token.description, token.labels)
    gold = api.list_tokens(REGION, tenant.project_id, label_selector="tier=gold")
    assert [t.name for t in gold.tokens] == ["sdk renamed"]
    cleared = api.partial_update_token(
        REGION, tenant.project_id, created.labelled.id, PartialUpdateTokenPayload(labels={})
    )
    assert isinstance(cleared, UpdateTokenResponse)
    assert cleared.token.labels is None and cleared.token.name == "sdk renamed"


def test_update_accepts_exactly_the_fields_of_the_sdk_payload(gateway, tenant, created):
    """The gateway refuses (400, naming it) every PATCH field the service's payload lacks; the
    SDK's model is the reference, so a new SDK field shows up here first."""
    assert set(PartialUpdateTokenPayload.model_fields) == {"name", "description", "labels"}
    client = sdk(gateway, tenant.token).api_client
    path = f"/v1/projects/{tenant.project_id}/regions/{REGION}/tokens/{created.labelled.id}"
    request = client.param_serialize(
        "PATCH", path, header_params={"Content-Type": "application/json"},
        body={"allowedModels": [MODEL]}, auth_settings=[],
    )
    answer = client.call_api(*request)
    answer.read()
    assert answer.status == 400 and b"allowedModels" in answer.data, answer.data


def test_delete(api, tenant, created):
    answer = api.delete_token_with_http_info(REGION, tenant.project_id, created.forever.id)
    assert answer.status_code == 202
    assert isinstance(answer.data, MessageResponse) and answer.data.message == "token deleted"
    remaining = [str(t.id) for t in api.list_tokens(REGION, tenant.project_id).tokens]
    assert str(created.forever.id) not in remaining and tenant.cli_key_id in remaining
    with pytest.raises(NotFoundException) as raised:
        api.get_token(REGION, tenant.project_id, created.forever.id)
    assert isinstance(raised.value.data, ErrorMessageResponse)
    assert raised.value.data.error == "not_found"


def test_a_refused_name_raises_bad_request(api, tenant):
    # The SDK checks the pattern itself; `model_construct` skips that, as another client would.
    payload = CreateTokenPayload.model_construct(name="ci.runner")
    with pytest.raises(BadRequestException) as raised:
        api.create_token(REGION, tenant.project_id, payload)
    assert raised.value.status == 400
    error = raised.value.data
    assert isinstance(error, ErrorMessageResponse)
    assert error.error == "invalid_request"
    assert error.message.startswith(r"invalid name: must match ^[0-9a-zA-Z\s_-]+$")
    # A name the SDK's own check lets through (a no-break space is `\s` to Python, not to the
    # service's RE2 pattern) is refused by the gateway the same way.
    with pytest.raises(BadRequestException) as raised:
        api.create_token(REGION, tenant.project_id, CreateTokenPayload(name="no\u00a0break"))
    assert raised.value.data.message.startswith("invalid name: must match")


def test_unknown_tokens_raise_not_found(api, tenant):
    with pytest.raises(NotFoundException) as raised:
        api.get_token(REGION, tenant.project_id, uuid.uuid4())
    assert raised.value.status == 404
    assert isinstance(raised.value.data, ErrorMessageResponse)
    assert raised.value.data.error == "not_found" and raised.value.data.message
    with pytest.raises(NotFoundException):
        api.delete_token(REGION, tenant.project_id, uuid.uuid4())
    with pytest.raises(NotFoundException):
        api.list_tokens(REGION, str(uuid.uuid4()))


def test_a_wrong_management_token_raises_unauthorized(gateway, tenant):
    with pytest.raises(UnauthorizedException) as raised:
        sdk(gateway, "gmt-AAAAAAAAAAAA-" + "B" * 43).list_tokens(REGION, tenant.project_id)
    assert raised.value.status == 401
    assert raised.value.data.error == "invalid_management_token"
