"""Starts the real `gateway` binary on a loopback port for end-to-end tests and stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "debug" / "gateway"
LISTENING = re.compile(r"listening on http://(\S+)")


def prepare_data_dir(data_dir: Path) -> Path:
    """Lays out a data dir (ONNX Runtime library, imported MiniLM) with the repo's script."""
    subprocess.run(
        [str(REPO / "scripts" / "prepare-data.sh"), str(data_dir), str(BINARY)],
        check=True,
    )
    return data_dir


def admin(data_dir: Path, *args: str) -> dict:
    """Runs `gateway admin ARGS…` on the data dir's database (the one `serve` uses, also while it
    runs) and returns the one JSON object it prints."""
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
    for name in ("GATEWAY_DATABASE_URL", "GATEWAY_CONFIG"):
        env.pop(name, None)
    result = subprocess.run(
        [str(BINARY), "admin", *args], capture_output=True, text=True, env=env, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"gateway admin {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def create_api_key(data_dir: Path, project_name: str = "e2e") -> str:
    """Creates a project and a model API key in it with the admin CLI; returns the key."""
    project = admin(data_dir, "project", "create", "--name", project_name)
    created = admin(data_dir, "key", "create", "--project", project["id"], "--name", project_name)
    return created["content"]


class Gateway:
    """A running `gateway serve` whose log is collected in memory. `api_key` is the model API
    key tests send (set by the fixtures)."""

    def __init__(
        self,
        data_dir: Path,
        config_text: str = "",
        extra_env: dict | None = None,
        listen: str = "127.0.0.1:0",
        config_name: str = "gateway-test.toml",
    ):
        self.data_dir = data_dir
        self.api_key: str | None = None
        config = data_dir / config_name
        config.write_text(config_text)
        env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir), RUST_LOG="info,gateway=debug")
        env.pop("ORT_DYLIB_PATH", None)
        env.pop("GATEWAY_DATABASE_URL", None)
        env.update(extra_env or {})
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(config), "--listen", listen],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._address_found = threading.Event()
        self.address = ""
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._address_found.wait(60):
            self.stop()
            raise RuntimeError("gateway did not start:\n" + self.log)
        self.base_url = f"http://{self.address}"
        self._wait_ready()

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and not self._address_found.is_set():
                self.address = match.group(1)
                self._address_found.set()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gateway never became ready:\n" + self.log)

    @property
    def log(self) -> str:
        """Everything the gateway has printed so far."""
        return "".join(self.lines)

    def terminate(self) -> None:
        """Sends SIGTERM, as an orchestrator does on shutdown."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """Stops the gateway (SIGTERM, then SIGKILL) and returns its exit code."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def serve_failure(data_dir, config_text: str, extra_env: dict | None = None) -> str:
    """Runs `gateway serve` with `config_text`, expects it to exit non-zero, returns stderr."""
    config = data_dir / "broken.toml"
    config.write_text(config_text)
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
    env.pop("ORT_DYLIB_PATH", None)
    env.update(extra_env or {})
    result = subprocess.run(
        [str(BINARY), "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    if result.returncode <= 0:
        raise AssertionError(f"gateway serve exited with {result.returncode}:\n{result.stderr}")
    return result.stderr
