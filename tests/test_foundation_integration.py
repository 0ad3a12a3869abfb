"""The embedded models, for real: info numbers from their configs, and the cache at work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

EXPECTED = {
    "smollm2": {"layers": 30, "hidden_size": 576, "attention_heads": 9, "kv_heads": 3, "vocab_size": 49152, "chat_template": True},
    "gemma3-270m": {"layers": 18, "hidden_size": 640, "attention_heads": 4, "kv_heads": 1, "vocab_size": 262144, "chat_template": False},
}


@pytest.mark.parametrize("alias", EXPECTED)
def test_info_of_embedded_models(real_cache, alias):
    from llmcli.models import load_model

    proc = subprocess.run([sys.executable, "-m", "llmcli", "info", "-m", alias, "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key, value in EXPECTED[alias].items():
        assert data[key] == value, key
    loaded = load_model(alias)
    assert not loaded.converted  # the subprocess above left it in the cache
    assert data["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert data["loaded_from"]["cache_entry"] == str(loaded.path)
