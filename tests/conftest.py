"""Shared fixtures: tiny models built once per session, an isolated cache, a CLI runner.

Unit tests never touch the real cache or the network: LLMCLI_CACHE_DIR points at a
session temp dir and HF_HUB_OFFLINE is set. Integration tests (marked `integration`)
use the real embedded models through the `real_cache` fixture, which points
LLMCLI_CACHE_DIR back at the user's cache so conversions are done once per machine.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.tiny_models import build_tiny_model, spm_like_dir, write_tiny_gguf

USER_CACHE = os.environ.get("LLMCLI_CACHE_DIR")


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    cache = tmp_path_factory.mktemp("llmcli-cache")
    saved = {k: os.environ.get(k) for k in ("LLMCLI_CACHE_DIR", "HF_HUB_OFFLINE", "LLMCLI_MODEL", "NO_COLOR")}
    os.environ["LLMCLI_CACHE_DIR"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("LLMCLI_MODEL", None)
    yield cache
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tiny models compute fastest on one thread (threading overhead dominates their
    small matrices), and far more so on a busy machine. Processes the tests start, and
    the benchmarks, keep torch's default."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a real BPE tokenizer and a ChatML chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-instruct"), chat_template=True)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """The same kind of model with no chat template: a 'base' model."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base"), chat_template=False)


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A Gemma-shaped tokenizer (`▁`, byte fallback, BOS) as a model directory."""
    return spm_like_dir(tmp_path_factory.mktemp("spm-like"), tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_gguf_master(tmp_path_factory, tiny_model_dir) -> Path:
    return write_tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


@pytest.fixture
def tiny_gguf(tmp_path, tiny_gguf_master) -> Path:
    """A fresh copy per test, so each test's conversion starts from an empty cache entry."""
    path = tmp_path / "tiny.gguf"
    shutil.copy(tiny_gguf_master, path)
    return path


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A cache dir of this test's own."""
    path = tmp_path / "cache"
    monkeypatch.setenv("LLMCLI_CACHE_DIR", str(path))
    return path


@pytest.fixture
def real_cache(monkeypatch):
    """For integration tests: the user's real llmcli cache, shared with `make chat`."""
    if USER_CACHE:
        monkeypatch.setenv("LLMCLI_CACHE_DIR", USER_CACHE)
    else:
        monkeypatch.delenv("LLMCLI_CACHE_DIR", raising=False)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


@pytest.fixture
def cli():
    """Run the real CLI in-process: `cli("info", "-m", path)` -> Result(exit_code, stdout, stderr)."""
    from llmcli.cli import app

    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict | None = None) -> Result:
        r = runner.invoke(app, [str(a) for a in args], input=input, env=env)
        if r.exception and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Result(r.exit_code, r.stdout, r.stderr, r.exception)

    return run
