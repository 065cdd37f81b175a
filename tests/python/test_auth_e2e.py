"""End to end: API keys, the token management API and the audit log, with the real `gateway`
binary. Projects, principals and management tokens are made with `gateway admin …` on the
database of the running server; keys are managed over HTTP and used with the OpenAI SDK. The
model API answers errors in OpenAI's shape, the management API in the shape of the STACKIT
model-serving API (`{"error": code, "message"}`); `test_modelserving_sdk_e2e.py` drives the
management API with that service's own SDK."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import openai
import pytest
from openai import OpenAI

from conftest import MODEL
from gateway_process import Gateway, admin

REGION = "eu01"
# `validUntil` of a key that never expires, as the managed service answers it.
NEVER_EXPIRES = "0001-01-01T00:00:00Z"
# Every plaintext credential this module sees, for the test that greps for them.
SECRETS: list[str] = []


@dataclass
class Tenant:
    """A project with an owner, the owner's management token and a model API key."""

    project_id: str
    subject: str
    token: str
    key: str
    key_id: str
    extra: dict = field(default_factory=dict)

    def tokens_path(self, project_id: str | None = None) -> str:
        return f"/v1/projects/{project_id or self.project_id}/regions/{REGION}/tokens"


def new_tenant(data_dir, name: str, role: str = "owner") -> Tenant:
    project = admin(data_dir, "project", "create", "--name", name)
    assert project["name"] == name and uuid.UUID(project["id"])
    subject = f"{name}-{uuid.uuid4().hex[:8]}"
    membership = admin(
        data_dir, "principal", "add", "--project", project["id"], "--subject", subject,
        "--email", f"{subject}@example.com", "--role", role,
    )
    assert membership["role"] == role
    token = admin(data_dir, "management-token", "create", "--subject", subject)["content"]
    key = admin(data_dir, "key", "create", "--project", project["id"], "--name", f"{name}-cli")
    assert key["content"].startswith("sk-") and key["maskedContent"].endswith("****")
    assert key["validUntil"] == NEVER_EXPIRES and key["state"] == "active"
    SECRETS.extend([token, key["content"]])
    return Tenant(project["id"], subject, token, key["content"], key["id"])


def call(gateway, method: str, path: str, credential: str | None = None, body=None, headers=None):
    """One request with http.client: (status, headers, JSON body, NDJSON lines or text)."""
    headers = dict(headers or {})
    if credential is not None:
        headers["authorization"] = f"Bearer {credential}"
    payload = None
    if body is not None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["content-type"] = "application/json"
    connection = http.client.HTTPConnection(gateway.address, timeout=30)
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    response_headers = {k.lower(): v for k, v in response.getheaders()}
    if response_headers.get("content-type", "").startswith("application/x-ndjson"):
        parsed = [json.loads(line) for line in raw.decode().splitlines() if line]
    else:
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
    return response.status, response_headers, parsed


def assert_openai_error(status, headers, body, expected_status, kind=None, code=None, param=None):
    assert status == expected_status, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert headers.get("x-request-id")
    if kind is not None:
        assert body["error"]["type"] == kind, body
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body


def assert_management_error(status, headers, body, expected_status, code=None, mentions=None):
    """The management API's error body: exactly `error` (a code) and `message`."""
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and isinstance(body["message"], str), body
    assert headers.get("x-request-id")
    if code is not None:
        assert body["error"] == code, body
    if mentions is not None:
        assert mentions in body["message"], body


def export(gateway, tenant: Tenant) -> list[dict]:
    status, headers, events = call(
        gateway, "GET", f"/v1/projects/{tenant.project_id}/audit-log/export", tenant.token
    )
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    return events


def embed(gateway, key: str):
    client = OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    return client.embeddings.create(model=MODEL, input="hello", encoding_format="float")


def seconds_until_rejected(gateway, key: str, limit: float = 5.0) -> float:
    """Polls `GET /v1/models` with `key` (any key may list its models) until it answers 401;
    returns how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status, headers, body = call(gateway, "GET", "/v1/models", key)
        if status == 401:
            assert_openai_error(status, headers, body, 401, "authentication_error", "invalid_api_key")
            return time.monotonic() - started
        assert status == 200, body
        time.sleep(0.05)
    raise AssertionError(f"key still accepted after {limit} s")


@pytest.fixture(scope="module")
def alice(data_dir, gateway) -> Tenant:
    return new_tenant(data_dir, "alice")


@pytest.fixture(scope="module")
def bob(data_dir, gateway) -> Tenant:
    return new_tenant(data_dir, "bob")


def test_public_routes_need_no_key(gateway):
    for path in ["/healthz", "/readyz", "/metrics"]:
        status, headers, _ = call(gateway, "GET", path)
        assert status == 200, path
        assert headers.get("x-request-id")


MODEL_ROUTES = [
    ("POST", "/v1/embeddings", {"model": MODEL, "input": "hi"}),
    ("GET", "/v1/models", None),
    ("GET", f"/v1/models/{MODEL}", None),
    ("GET", "/v1/nothing-here", None),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": []}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "hi"}),
    ("POST", "/v1/tokenize", {"model": MODEL, "prompt": "hi"}),
    ("POST", "/v1/detokenize", {"model": MODEL, "tokens": [1]}),
    ("GET", "/v1/embeddings", None),
]


def management_routes(project_id: str, token_id: str):
    tokens = f"/v1/projects/{project_id}/regions/{REGION}/tokens"
    return [
        ("POST", tokens, {"name": "x"}),
        ("GET", tokens, None),
        ("GET", f"{tokens}/{token_id}", None),
        ("PATCH", f"{tokens}/{token_id}", {"name": "y"}),
        ("DELETE", f"{tokens}/{token_id}", None),
        ("GET", f"/v1/projects/{project_id}/audit-log", None),
        ("GET", f"/v1/projects/{project_id}/audit-log/export", None),
    ]


def test_every_other_route_answers_401_without_a_valid_key(gateway, alice):
    unknown_key = "sk-AAAAAAAAAAAA-" + "B" * 43
    bodies = set()
    for method, path, body in MODEL_ROUTES:
        for credential in [None, "garbage", unknown_key, alice.token]:
            status, headers, answer = call(gateway, method, path, credential, body)
            assert_openai_error(status, headers, answer, 401, "authentication_error", "invalid_api_key")
            bodies.add(json.dumps(answer))
    assert len(bodies) == 1, "the 401 must not say why the key was refused"
    for method, path, body in management_routes(alice.project_id, alice.key_id):
        for credential in [None, "garbage", alice.key]:
            status, headers, answer = call(gateway, method, path, credential, body)
            assert_management_error(status, headers, answer, 401, "invalid_management_token")
    # the unauthenticated attempts on alice's project are in her audit log
    attempts = [e for e in export(gateway, alice) if e["action"] == "management.authenticate"]
    assert attempts and all(e["outcome"] == "failure" and e["actor"] is None for e in attempts)


def test_key_lifecycle_end_to_end(gateway, alice):
    # create
    status, _, body = call(
        gateway, "POST", alice.tokens_path(), alice.token,
        {"name": "ci", "description": "for CI", "ttlDuration": "30d"},
    )
    assert status == 202, body
    created = body["token"]
    SECRETS.append(created["content"])
    assert created["content"].startswith("sk-")
    assert created["name"] == "ci" and created["description"] == "for CI"
    assert created["region"] == REGION and created["state"] == "active"
    assert created["maskedContent"].endswith("****")
    valid_until = datetime.fromisoformat(created["validUntil"].replace("Z", "+00:00"))
    assert abs((valid_until - datetime.now(timezone.utc)).total_seconds() - 30 * 86400) < 60
    token_id = created["id"]
    one = f"{alice.tokens_path()}/{token_id}"

    # list and get never show the secret
    status, _, body = call(gateway, "GET", alice.tokens_path(), alice.token)
    assert status == 200
    listed = {t["id"]: t for t in body["tokens"]}
    assert token_id in listed and alice.key_id in listed
    assert all("content" not in t for t in body["tokens"])
    status, _, body = call(gateway, "GET", one, alice.token)
    assert status == 200 and body["token"]["id"] == token_id and "content" not in body["token"]

    # update
    status, _, body = call(gateway, "PATCH", one, alice.token, {"name": "ci-2", "description": "x"})
    assert status == 202, body
    assert body["token"]["name"] == "ci-2" and body["token"]["description"] == "x"
    assert call(gateway, "GET", one, alice.token)[2]["token"]["name"] == "ci-2"

    # the key works with the OpenAI SDK
    assert len(embed(gateway, created["content"]).data[0].embedding) == 384

    # delete: answered, then the key is refused within one second
    status, _, body = call(gateway, "DELETE", one, alice.token)
    assert status == 202 and body == {"message": "token deleted"}
    assert seconds_until_rejected(gateway, created["content"]) < 1.0
    with pytest.raises(openai.AuthenticationError):
        embed(gateway, created["content"])
    status, headers, body = call(gateway, "GET", one, alice.token)
    assert_management_error(status, headers, body, 404, "not_found")

    # every step is in the audit log export, with request id and client address
    events = [e for e in export(gateway, alice) if e["targetTokenId"] == token_id]
    actions = [e["action"] for e in events if e["outcome"] == "success"]
    assert actions == ["token.create", "token.update", "token.delete"], actions
    for event in events:
        assert event["actor"]["subject"] == alice.subject
        assert event["requestId"] and event["sourceIp"] == "127.0.0.1"
    assert events[1]["changes"] == {"name": "ci-2", "description": "x"}
    setup = [e["action"] for e in export(gateway, alice)][:4]
    assert setup == ["project.create", "principal.add", "management_token.create", "token.create"]


def test_the_accept_header_selects_the_ndjson_export(gateway, alice):
    path = f"/v1/projects/{alice.project_id}/audit-log"
    status, headers, events = call(
        gateway, "GET", path, alice.token, headers={"accept": "application/x-ndjson"}
    )
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    assert events == export(gateway, alice)


def test_an_expired_key_is_refused_within_a_second(gateway, alice):
    status, _, body = call(
        gateway, "POST", alice.tokens_path(), alice.token, {"name": "short", "ttlDuration": "3s"}
    )
    assert status == 202, body
    token = body["token"]
    SECRETS.append(token["content"])
    assert len(embed(gateway, token["content"]).data) == 1
    valid_until = datetime.fromisoformat(token["validUntil"].replace("Z", "+00:00"))
    time.sleep(max(0.0, (valid_until - datetime.now(timezone.utc)).total_seconds()))
    assert seconds_until_rejected(gateway, token["content"]) < 1.0
    status, _, body = call(gateway, "GET", f"{alice.tokens_path()}/{token['id']}", alice.token)
    assert status == 200 and body["token"]["state"] == "inactive"
    expiries = [
        e for e in export(gateway, alice)
        if e["action"] == "token.expire" and e["targetTokenId"] == token["id"]
    ]
    assert len(expiries) == 1 and expiries[0]["actor"] is None


def test_projects_are_isolated(gateway, alice, bob):
    # alice's owner token on every route of bob's project, with bob's ids: 404, never 403
    for method, path, body in management_routes(bob.project_id, bob.key_id):
        status, headers, answer = call(gateway, method, path, alice.token, body)
        assert_management_error(status, headers, answer, 404, "not_found")
    # bob's token id under alice's own project: 404 as well
    tokens = f"{alice.tokens_path()}/{bob.key_id}"
    for method, body in [("GET", None), ("PATCH", {"name": "stolen"}), ("DELETE", None)]:
        status, headers, answer = call(gateway, method, tokens, alice.token, body)
        assert_management_error(status, headers, answer, 404, "not_found")
    # unknown and malformed ids look the same
    for project in [str(uuid.uuid4()), "not-a-uuid"]:
        status, headers, answer = call(gateway, "GET", alice.tokens_path(project), alice.token)
        assert_management_error(status, headers, answer, 404, "not_found")
    # alice's model key is no management credential anywhere
    for method, path, body in management_routes(bob.project_id, bob.key_id):
        assert call(gateway, method, path, alice.key, body)[0] == 401
    # bob's key and its name are untouched, and nothing of alice's shows up in bob's project
    status, _, body = call(gateway, "GET", f"{bob.tokens_path()}/{bob.key_id}", bob.token)
    assert status == 200 and body["token"]["name"] == "bob-cli"
    assert len(embed(gateway, bob.key).data) == 1
    listed = call(gateway, "GET", bob.tokens_path(), bob.token)[2]["tokens"]
    assert [t["id"] for t in listed] == [bob.key_id]
    assert all(e["projectId"] == bob.project_id for e in export(gateway, bob))


@pytest.mark.parametrize(
    "body, mentions",
    [
        ({}, "invalid name: must be 1-200 characters"),
        ({"name": "   "}, "invalid name: must be 1-200 characters, not only whitespace"),
        ({"name": "x" * 201}, "invalid name: must be at most 200 characters"),
        ({"name": "ci.runner"}, r"invalid name: must match ^[0-9a-zA-Z\s_-]+$"),
        ({"name": 5}, "'name'"),
        ({"name": "a", "ttlDuration": "3x"}, "invalid ttlDuration"),
        ({"name": "a", "ttlDuration": "0d"}, "invalid ttlDuration"),
        ({"name": "a", "description": "d" * 2001}, "invalid description: must be at most 2000"),
        ({"name": "a", "description": "50%"}, r"must match ^[0-9a-zA-Z\s.:/-]+$"),
        ({"name": "a", "labels": {"-x": "1"}}, 'invalid labels: label key "-x" must be'),
        ({"name": "a", "labels": {"stackit": "1"}}, 'the prefix "stackit" is reserved'),
        ({"name": "a", "allowedModels": []}, "invalid allowedModels"),
    ],
)
def test_invalid_create_bodies_are_400_naming_the_field_and_rule(gateway, alice, body, mentions):
    status, headers, answer = call(gateway, "POST", alice.tokens_path(), alice.token, body)
    assert_management_error(status, headers, answer, 400, "invalid_request", mentions)


def test_other_validation_errors(gateway, alice):
    status, headers, answer = call(gateway, "POST", alice.tokens_path(), alice.token, b'{"name":')
    assert_management_error(status, headers, answer, 400, "invalid_request")
    path = f"/v1/projects/{alice.project_id}/regions/EU_1/tokens"
    status, headers, answer = call(gateway, "POST", path, alice.token, {"name": "a"})
    assert_management_error(status, headers, answer, 400, "invalid_request", "invalid regionId")
    one = f"{alice.tokens_path()}/{alice.key_id}"
    status, headers, answer = call(gateway, "PATCH", one, alice.token, {"name": ""})
    assert_management_error(status, headers, answer, 400, "invalid_request", "invalid name")
    status, headers, answer = call(
        gateway, "GET", f"{alice.tokens_path()}?label_selector=env%20in%20(a)", alice.token
    )
    assert_management_error(
        status, headers, answer, 400, "invalid_request", "invalid label_selector"
    )
    audit = f"/v1/projects/{alice.project_id}/audit-log"
    for query, param in [("limit=0", "limit"), ("limit=x", "limit"), ("cursor=abc", "cursor"),
                         ("from=yesterday", "from"), ("to=2026-13-01", "to")]:
        status, headers, answer = call(gateway, "GET", f"{audit}?{query}", alice.token)
        assert_management_error(status, headers, answer, 400, "invalid_request", param)


def test_audit_log_pages_follow_the_cursor(gateway, alice):
    audit = f"/v1/projects/{alice.project_id}/audit-log"
    events, cursor = [], ""
    while True:
        status, _, page = call(gateway, "GET", f"{audit}?limit=2&cursor={cursor}", alice.token)
        assert status == 200 and len(page["events"]) <= 2
        events.extend(page["events"])
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert events == export(gateway, alice)
    assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)
    status, _, page = call(gateway, "GET", f"{audit}?to=2000-01-01T00:00:00Z", alice.token)
    assert status == 200 and page["events"] == []


def test_a_restricted_key_sees_only_its_models(gateway, alice):
    status, _, body = call(
        gateway, "POST", alice.tokens_path(), alice.token,
        {"name": "restricted", "allowedModels": ["some-other-model"]},
    )
    assert status == 202, body
    restricted = body["token"]["content"]
    SECRETS.append(restricted)
    client = OpenAI(base_url=gateway.base_url + "/v1", api_key=restricted, max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        client.embeddings.create(model=MODEL, input="hello")
    assert raised.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(MODEL)
    assert [m.id for m in client.models.list()] == []
    status, _, body = call(
        gateway, "POST", alice.tokens_path(), alice.token,
        {"name": "allowed", "allowedModels": [MODEL]},
    )
    SECRETS.append(body["token"]["content"])
    assert len(embed(gateway, body["token"]["content"]).data) == 1


def test_a_viewer_may_read_but_not_write(gateway, data_dir, alice):
    subject = f"viewer-{uuid.uuid4().hex[:8]}"
    admin(data_dir, "principal", "add", "--project", alice.project_id, "--subject", subject,
          "--email", f"{subject}@example.com", "--role", "viewer")
    token = admin(data_dir, "management-token", "create", "--subject", subject)["content"]
    SECRETS.append(token)
    assert call(gateway, "GET", alice.tokens_path(), token)[0] == 200
    status, headers, answer = call(gateway, "POST", alice.tokens_path(), token, {"name": "v"})
    assert_management_error(status, headers, answer, 403, "insufficient_role")


def test_admin_cli_errors_exit_non_zero(data_dir):
    with pytest.raises(RuntimeError, match="not a project id"):
        admin(data_dir, "key", "create", "--project", "nope", "--name", "x")
    with pytest.raises(RuntimeError, match="project does not exist"):
        admin(data_dir, "key", "create", "--project", str(uuid.uuid4()), "--name", "x")
    with pytest.raises(RuntimeError, match="ttlDuration"):
        project = admin(data_dir, "project", "create", "--name", "cli-errors")
        admin(data_dir, "key", "create", "--project", project["id"], "--name", "x", "--ttl", "3x")


def test_a_patch_with_a_field_the_service_does_not_define_is_400(gateway, alice):
    """`PartialUpdateTokenPayload` has `name`, `description` and `labels` only."""
    one = f"{alice.tokens_path()}/{alice.key_id}"
    for body, name in [
        ({"allowedModels": [MODEL]}, "allowedModels"),
        ({"name": "x", "ttlDuration": "1d"}, "ttlDuration"),
    ]:
        status, headers, answer = call(gateway, "PATCH", one, alice.token, body)
        assert_management_error(status, headers, answer, 400, "invalid_request", mentions=name)
    token = call(gateway, "GET", one, alice.token)[2]["token"]
    assert "allowedModels" not in token and token["name"] != "x"


def add_principal(data_dir, tenant: Tenant, subject: str, role: str) -> None:
    admin(data_dir, "principal", "add", "--project", tenant.project_id, "--subject", subject,
          "--email", f"{subject}@example.com", "--role", role)


def test_a_revoked_management_token_is_refused_at_once(gateway, data_dir, alice):
    subject = f"revoked-{uuid.uuid4().hex[:8]}"
    add_principal(data_dir, alice, subject, "member")
    created = admin(data_dir, "management-token", "create", "--subject", subject)
    token = created["content"]
    SECRETS.append(token)
    assert call(gateway, "GET", alice.tokens_path(), token)[0] == 200

    listed = admin(data_dir, "management-token", "list", "--subject", subject)
    public_id = token.split("-")[1]
    assert listed == {"managementTokens": [{
        "id": created["id"], "maskedContent": f"gmt-{public_id}-****", "subject": subject,
        "createdAt": listed["managementTokens"][0]["createdAt"],
    }]}
    revoked = admin(data_dir, "management-token", "revoke", "--id", public_id)
    assert revoked["id"] == created["id"] and "content" not in revoked
    status, headers, answer = call(gateway, "GET", alice.tokens_path(), token)
    assert_management_error(status, headers, answer, 401, "invalid_management_token")
    assert admin(data_dir, "management-token", "list", "--subject", subject) == {
        "managementTokens": []
    }
    with pytest.raises(RuntimeError, match="no management token has that id"):
        admin(data_dir, "management-token", "revoke", "--id", created["id"])

    events = [e for e in export(gateway, alice) if e["targetTokenId"] == created["id"]]
    assert [e["action"] for e in events] == [
        "management_token.create", "management_token.revoke"
    ], events
    for event in events:
        assert event["actor"]["subject"] == "gateway-admin" and event["outcome"] == "success"
        assert event["changes"]["subject"] == subject


def test_a_removed_principal_loses_access(gateway, data_dir, alice, bob):
    subject = f"removed-{uuid.uuid4().hex[:8]}"
    add_principal(data_dir, alice, subject, "member")
    add_principal(data_dir, bob, subject, "viewer")
    created = admin(data_dir, "management-token", "create", "--subject", subject)
    token = created["content"]
    SECRETS.append(token)

    # without its role on alice's project, the principal gets 404 there and keeps bob's
    removed = admin(data_dir, "principal", "remove", "--project", alice.project_id,
                    "--subject", subject)
    assert removed == {"projectId": alice.project_id, "subject": subject, "role": "member",
                       "principalDeleted": False, "revokedManagementTokens": []}
    status, headers, answer = call(gateway, "GET", alice.tokens_path(), token)
    assert_management_error(status, headers, answer, 404, "not_found")
    assert call(gateway, "GET", bob.tokens_path(), token)[0] == 200
    with pytest.raises(RuntimeError, match="no role on that project"):
        admin(data_dir, "principal", "remove", "--project", alice.project_id, "--subject", subject)

    # without any role, the principal and its management tokens are gone
    last = admin(data_dir, "principal", "remove", "--project", bob.project_id, "--subject", subject)
    assert last["principalDeleted"] and last["revokedManagementTokens"] == [created["id"]]
    status, headers, answer = call(gateway, "GET", bob.tokens_path(), token)
    assert_management_error(status, headers, answer, 401, "invalid_management_token")
    with pytest.raises(RuntimeError, match="add the principal to a project first"):
        admin(data_dir, "management-token", "create", "--subject", subject)

    for tenant, deleted in [(alice, False), (bob, True)]:
        events = [e for e in export(gateway, tenant) if e["action"] == "principal.remove"
                  and e["changes"]["subject"] == subject]
        assert len(events) == 1 and events[0]["changes"]["principalDeleted"] is deleted, events
        issued = [e for e in export(gateway, tenant) if e["targetTokenId"] == created["id"]]
        assert [e["action"] for e in issued] == ["management_token.create"], issued


def test_no_plaintext_credential_in_database_log_or_audit_log(gateway, data_dir, alice, bob):
    """Runs last in this module: every secret created above is looked for everywhere."""
    secrets = SECRETS + [gateway.api_key]
    assert len(secrets) >= 8
    files = [p for p in data_dir.iterdir() if p.name.startswith("gateway.db")]
    assert any(p.name == "gateway.db-wal" for p in files), files
    stored = b"".join(p.read_bytes() for p in files)
    exported = json.dumps(export(gateway, alice) + export(gateway, bob))
    log = gateway.log
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret not in log
        assert secret not in exported
        # nor the secret part alone (after the public id)
        tail = secret.rsplit("-", 1)[1]
        if len(tail) >= 16:
            assert tail.encode() not in stored and tail not in log and tail not in exported


def database_bytes(data_dir) -> int:
    """The SQLite database's size on disk, its write-ahead log included."""
    return sum(path.stat().st_size for path in data_dir.glob("gateway.db*"))


def test_an_audit_flood_cannot_fill_the_disk(data_dir, gateway):
    """The attack of issue 25: 200 requests without a valid credential under
    `/v1/projects/<id>/…` (projects that do not exist, routes that do not exist) carrying a
    200 KB `x-request-id` grew the database by 48 MB. Now only projects that exist get audit
    rows, failed authentications stop writing past the per-address limit, and a request id
    longer than 128 characters is replaced by one of ours."""
    server = Gateway(data_dir, "models = []\n")
    try:
        tenant = new_tenant(data_dir, "audit-flood")
        huge_id = "r" * 200_000
        before = database_bytes(data_dir)
        statuses = set()
        for i in range(200):
            path = (f"/v1/projects/{uuid.uuid4()}/regions/{REGION}/tokens" if i % 2
                    else f"/v1/projects/{tenant.project_id}/no-such-route/{i}")
            status, _, _ = call(server, "GET", path, "gmt-guess", headers={"x-request-id": huge_id})
            statuses.add(status)
        growth = database_bytes(data_dir) - before
    finally:
        server.stop()
    assert statuses <= {401, 404, 429, 431}, statuses
    assert growth < 1_000_000, f"the database grew by {growth} bytes"
    events = export(gateway, tenant)
    refusals = [e for e in events if e["action"] == "management.authenticate"]
    assert 1 <= len(refusals) <= 30, len(refusals)
    assert all(len(e.get("requestId") or "") <= 128 for e in events)


def test_failed_management_authentications_are_limited_per_address(data_dir, gateway):
    """Past the limit an address gets 429 before any credential check, so that guessing
    tokens is slow and cannot fill the audit log; the real server sees the client's address."""
    config = "models = []\n\n[server]\nfailed_management_authentications_per_minute = 5\n"
    server = Gateway(data_dir, config)
    try:
        tenant = new_tenant(data_dir, "lockout")
        for _ in range(5):
            status, headers, body = call(server, "GET", tenant.tokens_path(), "gmt-nope-guess")
            assert_management_error(status, headers, body, 401, "invalid_management_token")
        status, headers, body = call(server, "GET", tenant.tokens_path(), "gmt-nope-guess")
        assert_management_error(status, headers, body, 429, "too_many_requests")
        assert 1 <= int(headers["retry-after"]) <= 12
        status, _, _ = call(server, "GET", tenant.tokens_path(), tenant.token)
        assert status == 429, "the address waits, whatever it sends"
        status, _, answer = call(server, "GET", "/v1/models", tenant.key)
        assert status == 200, "the model API is not affected"
    finally:
        server.stop()
    refusals = [e for e in export(gateway, tenant) if e["action"] == "management.authenticate"]
    assert len(refusals) == 5, "the attempts past the limit wrote nothing"
