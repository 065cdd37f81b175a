"""End to end: configuration mistakes stop `gateway serve` at start with a message that says
what is wrong, instead of a server that fails later."""

from __future__ import annotations

import pytest

from gateway_process import serve_failure


def test_cuda_without_the_feature_is_a_clear_error(data_dir):
    stderr = serve_failure(data_dir, '[[models]]\npath = "models/all-minilm-l6-v2"\ndevice = "cuda"\n')
    assert "cuda" in stderr and "feature" in stderr, stderr


def test_unknown_field_is_named(data_dir):
    stderr = serve_failure(data_dir, "[server]\nlisten_address = \"127.0.0.1:1\"\n")
    assert "listen_address" in stderr, stderr


def test_missing_onnx_runtime_library_is_named(data_dir):
    stderr = serve_failure(data_dir, '[runtime]\nlibrary = "/nonexistent/libonnxruntime.so"\n')
    assert "/nonexistent/libonnxruntime.so" in stderr, stderr


def test_a_truncated_onnx_runtime_library_is_named_not_a_crash(data_dir, tmp_path):
    whole = (data_dir / "runtime" / "libonnxruntime.so").read_bytes()
    library = tmp_path / "libonnxruntime.so"
    library.write_bytes(whole[: len(whole) // 2])
    stderr = serve_failure(data_dir, f'[runtime]\nlibrary = "{library}"\n')
    assert str(library) in stderr and "truncated" in stderr, stderr


def test_a_file_that_is_no_library_is_named(data_dir, tmp_path):
    library = tmp_path / "libonnxruntime.so"
    library.write_text("not a library")
    stderr = serve_failure(data_dir, f'[runtime]\nlibrary = "{library}"\n')
    assert str(library) in stderr and "not an ELF shared library" in stderr, stderr


@pytest.mark.parametrize("path", ["models/does-not-exist"])
def test_missing_model_directory_is_named(data_dir, path):
    stderr = serve_failure(data_dir, f'[[models]]\npath = "{path}"\n')
    assert "does-not-exist" in stderr, stderr
