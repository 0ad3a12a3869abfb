"""The README's Python example runs as written, and prints what a direct computation gives."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def example() -> str:
    block = re.search(r"<!-- python-example -->\n```python\n(.*?)```\n<!-- /python-example -->", README.read_text(encoding="utf-8"), re.S)
    assert block, "the README lost its Python example"
    return block.group(1)


@pytest.mark.integration
def test_the_readme_python_example_runs_and_tells_the_truth(real_cache):
    proc = subprocess.run([sys.executable, "-c", example()], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the library prints nothing of its own
    lines = proc.stdout.splitlines()
    assert lines[0] == "The capital of France is Paris."
    assert re.fullmatch(r"\d+ tokens, [\d.]+ tokens/s", lines[1])

    from llmcli.models import load_model

    loaded = load_model("smollm2")
    ids = loaded.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(loaded.model(torch.tensor([ids])).logits[0, -1].double(), dim=-1)
    top = torch.topk(probs, 3)
    for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
        expected = f"{rank}  {loaded.tokenizer.decode([i])!r:10} {p:7.2%}"
        assert expected in lines, (expected, lines)
    assert lines[-1].startswith("perplexity ")
