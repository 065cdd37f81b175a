"""End to end: a schema-driven fuzz run against the real `gateway` binary. Schemathesis reads
the server's own OpenAPI document (`/openapi.json`), generates valid and invalid requests for
every operation in it (the document's examples, the coverage phase's boundary and type cases,
random ones, then sequences that follow the links it infers, e.g. create a token and read it)
and sends them with the credential each operation names; the one check is that no answer is a
server error (5xx).

It runs against the session's gateway in a project of its own (its own key, management token
and token to change), so the keys, budgets and audit logs of other tests are untouched.
Chat and completion requests run the real small model, so `openapi_fuzz_hooks.py` caps the
tokens and choices they ask for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from conftest import CHAT_MODEL, MODEL
from gateway_process import admin

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
REGION = "eu01"
# Random requests per operation after the examples and coverage phases (the whole run sends
# about 3,400 requests and takes under a minute).
MAX_EXAMPLES = 100
# Fewer cases than this means the run did not reach the operations.
MIN_CASES = 1000
# The run's seed, so that a failure in CI can be reproduced.
SEED = 20260525


def fuzz_tenant(data_dir: Path) -> dict:
    """A project with an owner's management token, a model API key and a second key whose id
    the token routes' `{tokenId}` names."""
    project = admin(data_dir, "project", "create", "--name", "openapi-fuzz")
    subject = f"fuzz-{uuid.uuid4().hex[:8]}"
    admin(
        data_dir, "principal", "add", "--project", project["id"], "--subject", subject,
        "--email", f"{subject}@example.com", "--role", "owner",
    )
    token = admin(data_dir, "management-token", "create", "--subject", subject)["content"]
    key = admin(data_dir, "key", "create", "--project", project["id"], "--name", "fuzz")
    target = admin(data_dir, "key", "create", "--project", project["id"], "--name", "target")
    return {
        "project_id": project["id"],
        "management_token": token,
        "api_key": key["content"],
        "token_id": target["id"],
    }


def config_toml(tenant: dict) -> str:
    """The run's `schemathesis.toml`: each security scheme of the document with its bearer
    credential, the path ids of the fuzz project and the served models (so that requests reach
the models rather than stopping at a 404), the hooks, bounded generation."""
    text = json.dumps
    return f"""
hooks = {text(str(HERE / "openapi_fuzz_hooks.py"))}
request-timeout = 60
seed = {SEED}

[generation]
max-examples = {MAX_EXAMPLES}
database = "none"
no-shrink = true

[auth.openapi.api_key]
bearer = {text(tenant["api_key"])}

[auth.openapi.management_token]
bearer = {text(tenant["management_token"])}

[parameters]
"path.projectId" = {text(tenant["project_id"])}
"path.regionId" = {text(REGION)}
"path.tokenId" = {text(tenant["token_id"])}
"path.model" = {text(CHAT_MODEL)}

[[operations]]
include-path = ["/v1/chat/completions", "/v1/completions", "/v1/tokenize", "/v1/detokenize"]
parameters = {{ "body.model" = {text(CHAT_MODEL)} }}

[[operations]]
include-path = "/v1/embeddings"
parameters = {{ "body.model" = {text(MODEL)} }}

[[operations]]
include-path = "/v1/regions/{{regionId}}/chat/models/{{modelId}}"
parameters = {{ "path.modelId" = {text(CHAT_MODEL)} }}

[[operations]]
include-path = "/v1/regions/{{regionId}}/embedding/models/{{modelId}}"
parameters = {{ "path.modelId" = {text(MODEL)} }}
"""


def test_no_operation_answers_a_server_error(gateway, data_dir, tmp_path):
    """Every operation of the document, fuzzed through all of Schemathesis's phases: no answer
    is a 5xx (`not_a_server_error`, the only check), and the run really sent requests."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_toml(fuzz_tenant(data_dir)))
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "--no-color",
        "run", gateway.base_url + "/openapi.json",
        "--checks", "not_a_server_error",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--workers", "1",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts, output[-5000:]
    generated, passed = map(int, counts.groups())
    assert generated == passed >= MIN_CASES, output[-5000:]


def test_the_gateway_stayed_ready(gateway):
    """After the fuzz run the server still answers and is ready (nothing it was sent stopped a
    model's worker)."""
    with urllib.request.urlopen(gateway.base_url + "/readyz", timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ready"
