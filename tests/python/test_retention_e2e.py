"""End to end: the retention of personal data and the gateway's own logs, with the real binary.

A principal acts through the management API (its subject, e-mail and client address land in
the audit log); `gateway admin retention run --as-of T` then runs the retention job as if it
were T, 30 days after a moment between the old and the recent events: exactly the old events
lose their subject (to a pseudonym), e-mail and source IP and keep everything else. The
gateway writes JSON log lines with `[logging] format = "json"`, and daily files with
`[logging] dir`, whose old ones the same job deletes.

Each test has its own database and usage journal (not the session's), so aging events here
touches no other test's data.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway_process import LISTENING, Gateway, admin
from test_auth_e2e import REGION, call

EMBEDDING_ONLY = """
[[models]]
path = "models/all-minilm-l6-v2"
"""
PSEUDONYM = re.compile(r"^pseudonym-[0-9a-f]{16}$")
OPERATOR = "gateway-admin"
# What an event keeps whatever its age.
KEPT = ("sequence", "id", "time", "projectId", "action", "outcome", "targetTokenId", "requestId")


def isolated_config(tmp_path: Path, extra: str) -> tuple[Path, str]:
    """A configuration with its own SQLite database and usage journal, written to a file for
    the admin commands; returns the file and its text."""
    text = f"""
[database]
url = "sqlite://{tmp_path / 'retention.db'}?mode=rwc"

[metering]
journal_dir = "{tmp_path / 'journal'}"
{extra}
{EMBEDDING_ONLY}
"""
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path, text


class JsonLogGateway(Gateway):
    """A gateway whose log lines are JSON: the address is read from the `message` field."""

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            try:
                message = json.loads(line).get("message", "")
            except ValueError:
                continue
            match = LISTENING.search(message)
            if match and not self._address_found.is_set():
                self.address = match.group(1)
                self._address_found.set()


class FileLogGateway(Gateway):
    """A gateway that logs into daily files in `log_dir`: the log is read from today's file."""

    def __init__(self, data_dir: Path, config_text: str, log_dir: Path):
        self.log_dir = log_dir
        super().__init__(data_dir, config_text)

    def today_file(self) -> Path:
        return self.log_dir / f"gateway.{datetime.now(timezone.utc):%Y-%m-%d}.log"

    def _read_log(self) -> None:
        seen = 0
        while self.process.poll() is None:
            path = self.today_file()
            lines = path.read_text().splitlines(keepends=True) if path.exists() else []
            for line in lines[seen:]:
                self.lines.append(line)
                match = LISTENING.search(line)
                if match and not self._address_found.is_set():
                    self.address = match.group(1)
                    self._address_found.set()
            seen = len(lines)
            time.sleep(0.1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def export(gateway, project_id: str, token: str) -> list[dict]:
    status, _, events = call(
        gateway, "GET", f"/v1/projects/{project_id}/audit-log/export", token
    )
    assert status == 200, events
    return events


def act(gateway, project_id: str, token: str, name: str) -> None:
    """A key created, renamed and deleted by the principal, and a request without credential."""
    tokens = f"/v1/projects/{project_id}/regions/{REGION}/tokens"
    status, _, body = call(gateway, "POST", tokens, token, {"name": name})
    assert status == 202, body
    one = f"{tokens}/{body['token']['id']}"
    assert call(gateway, "PATCH", one, token, {"name": f"{name}-2"})[0] == 202
    assert call(gateway, "DELETE", one, token)[0] == 202
    assert call(gateway, "GET", tokens)[0] == 401


def assert_pseudonymized(before: dict, after: dict, subject: str, email: str) -> None:
    """The old event without its personal data, and otherwise as it was."""
    for field in KEPT:
        assert after.get(field) == before.get(field), field
    assert after.get("reason") == before.get("reason")
    assert after["sourceIp"] is None
    if before["actor"] is None:
        assert after["actor"] is None
    elif before["actor"]["subject"] == OPERATOR:
        assert after["actor"] == before["actor"]
    else:
        assert PSEUDONYM.match(after["actor"]["subject"]), after
        assert after["actor"]["email"] == ""
    assert set(after["changes"]) == set(before["changes"])
    for key, value in before["changes"].items():
        if key == "subject":
            assert PSEUDONYM.match(after["changes"][key]), after
        elif key == "email":
            assert after["changes"][key] == ""
        else:
            assert after["changes"][key] == value, key
    text = json.dumps(after)
    assert subject not in text and email not in text and "127.0.0.1" not in text


def test_retention_pseudonymizes_exactly_the_old_events_and_logs_are_json(data_dir, tmp_path):
    config, text = isolated_config(tmp_path, '[logging]\nformat = "json"\n')
    run = lambda *args: admin(data_dir, "--config", str(config), *args)  # noqa: E731
    project = run("project", "create", "--name", "retention")["id"]
    subject = f"retention-{uuid.uuid4().hex[:8]}"
    email = f"{subject}@example.com"
    run("principal", "add", "--project", project, "--subject", subject, "--email", email,
        "--role", "owner")
    token = run("management-token", "create", "--subject", subject)["content"]

    gateway = JsonLogGateway(data_dir, text)
    try:
        act(gateway, project, token, "old")
        time.sleep(1.0)
        boundary = datetime.now(timezone.utc)
        time.sleep(1.0)
        act(gateway, project, token, "recent")
        before = export(gateway, project, token)
        old = [e for e in before if utc(e["time"]) < boundary]
        recent = [e for e in before if utc(e["time"]) >= boundary]
        assert len(old) == 7 and len(recent) == 4, [e["action"] for e in before]
        assert any(e["actor"] and e["actor"]["email"] == email for e in old)
        assert any(e["sourceIp"] == "127.0.0.1" for e in old)

        as_of = (boundary + timedelta(days=30)).isoformat()
        report = run("retention", "run", "--as-of", as_of)
        assert report["personalDataDays"] == 30
        assert utc(report["cutoff"]) == boundary
        assert report["auditEventsPseudonymized"] == len(old)
        assert report["logDir"] is None and report["logFilesDeleted"] == []

        after = export(gateway, project, token)
        assert len(after) == len(before)
        for b, a in zip(old, after[: len(old)]):
            assert_pseudonymized(b, a, subject, email)
        assert after[len(old):] == recent
        # One pseudonym per person: as the principal added, and as the actor of its requests.
        added = next(e for e in after if e["action"] == "principal.add")["changes"]["subject"]
        actors = {e["actor"]["subject"] for e in after[: len(old)] if e["actor"]}
        assert actors == {OPERATOR, added}

        again = run("retention", "run", "--as-of", as_of)
        assert again["auditEventsPseudonymized"] == 0
        assert export(gateway, project, token) == after
    finally:
        gateway.stop()

    # Every line the gateway wrote is one JSON object with a time, a level and a message.
    events = [json.loads(line) for line in gateway.lines if line.strip()]
    assert events and all({"timestamp", "level", "target"} <= set(e) for e in events)
    messages = [e.get("message", "") for e in events]
    assert any(m.startswith("listening on http://") for m in messages), messages
    loaded = next(e for e in events if e.get("message") == "model loaded")
    assert loaded["model"] == "all-minilm-l6-v2" and loaded["level"] == "INFO"


def test_the_job_deletes_old_daily_log_files(data_dir, tmp_path):
    log_dir = tmp_path / "logs"
    config, text = isolated_config(tmp_path, f'[logging]\ndir = "{log_dir}"\n')
    gateway = FileLogGateway(data_dir, text, log_dir)
    try:
        assert "listening on http://" in gateway.log
        assert gateway.process.poll() is None
        (log_dir / "gateway.2020-01-01.log").write_text("old\n")
        (log_dir / "gateway.2020-01-02.log.gz").write_text("not ours\n")
        (log_dir / "notes.log").write_text("not ours\n")
        report = admin(data_dir, "--config", str(config), "retention", "run")
        assert report["logDir"] == str(log_dir)
        assert report["logFilesDeleted"] == ["gateway.2020-01-01.log"]
        names = sorted(p.name for p in log_dir.iterdir())
        assert names == sorted(
            [gateway.today_file().name, "gateway.2020-01-02.log.gz", "notes.log"]
        )
    finally:
        gateway.stop()
