"""`tokenize` and `detokenize` on the embedded models, against transformers' own encode.

The reference tokenizer is transformers' `AutoTokenizer`, built once per model straight
from the GGUF file (what `llmcli` would use before any conversion), and the CLI runs on
a converted cache entry, so the fast `tokenizers` path is what is checked against it.
Building Gemma's tokenizer from its GGUF takes about half a minute.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from llmcli import models
from llmcli.cli import app
from tests.test_tokens import HARD_CASES

pytestmark = pytest.mark.integration

ALIASES = ["smollm2", "gemma3-270m"]


@functools.cache
def gguf_tokenizer(alias: str):
    """transformers' tokenizer read from the alias's GGUF file itself, not from llmcli's cache."""
    from transformers import AutoTokenizer

    path = models.ALIASES[alias].gguf()
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(params=ALIASES)
def alias(request, real_cache):
    """An embedded model, converted once so its cache entry (and tokenizer.json) exists."""
    from llmcli.models import cached_tokenizer_json

    if not models.ALIASES[request.param].installed():
        pytest.skip(f"{request.param} is not installed")
    ref = models.resolve(request.param)
    models.ensure_converted(ref)
    assert cached_tokenizer_json(ref) is not None
    return request.param


def run(*args: str, input: str | None = None, env: dict | None = None):
    r = CliRunner().invoke(app, list(args), input=input, env=env)
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


@pytest.mark.parametrize("text", HARD_CASES)
def test_ids_json_and_round_trip(alias, text):
    reference = gguf_tokenizer(alias)
    expected = reference.encode(text, split_special_tokens=True)
    r = run("tokenize", "-m", alias, "--ids", text)
    assert r.exit_code == 0, r.stderr
    assert [int(x) for x in r.stdout.split()] == expected
    (data,) = json.loads(run("tokenize", "-m", alias, "--json", text).stdout)
    assert [t["id"] for t in data["tokens"]] == expected
    assert [t["piece"] for t in data["tokens"]] == reference.convert_ids_to_tokens(expected)
    content = [t for t in data["tokens"] if not (t["special"] and t["id"] == reference.bos_token_id and t["index"] == 0)]
    assert b"".join(bytes.fromhex(t["bytes"]) for t in content) == text.encode()
    without = reference.encode(text, add_special_tokens=False, split_special_tokens=True)
    r = run("tokenize", "-m", alias, "--ids", "--no-add-special", text)
    assert [int(x) for x in r.stdout.split()] == without
    # detokenize gives the text back, byte for byte (piped: nothing added)
    back = run("detokenize", "-m", alias, "--skip-special", *map(str, expected))
    assert back.exit_code == 0, back.stderr
    assert back.stdout_bytes == text.encode()
    assert run("detokenize", "-m", alias, *map(str, without)).stdout_bytes == text.encode()


def test_parse_special_matches_transformers_default(alias):
    text = "<|im_start|>user\nhi<|im_end|> <bos>x<eos>"
    r = run("tokenize", "-m", alias, "--ids", "--parse-special", text)
    assert [int(x) for x in r.stdout.split()] == gguf_tokenizer(alias).encode(text)


def test_hostile_text_is_shown_literally(alias):
    text = "[bold]x[/bold] \x1b[31mred\x1b[0m \x1b]0;pwned\x07 \x1b[2J\x9b1m"
    for mode in ([], ["--table"], ["--json"]):
        r = run("tokenize", "-m", alias, *mode, text, env={"FORCE_COLOR": "1", "COLUMNS": "200"})
        leftover = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
        assert "\x1b" not in leftover and "\x07" not in leftover and "\x9b" not in leftover, mode
        assert "\x1b[31m" not in r.stdout and "\x1b[2J" not in r.stdout


def test_both_models_side_by_side(real_cache):
    text = "Tokenizers differ: naïve café, 日本語, 👩\u200d👩\u200d👧, def f(x): return x**2"
    r = run("tokenize", "-m", "smollm2", "-m", "gemma3-270m", text)
    assert r.exit_code == 0, r.stderr
    assert "── smollm2 ──" in r.stdout and "── gemma3-270m ──" in r.stdout
    counts = {line.split("\t")[0]: int(line.split("\t")[1]) for line in r.stdout.splitlines()[-2:]}
    assert counts == {a: len(gguf_tokenizer(a).encode(text, split_special_tokens=True)) for a in ALIASES}


def test_chat_x_ray_on_smollm2(real_cache):
    reference = gguf_tokenizer("smollm2")
    messages = [{"role": "user", "content": "Hi"}]
    rendered = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    (data,) = json.loads(run("tokenize", "--chat", "-m", "smollm2", "--json", "Hi").stdout)
    assert data["text"] == rendered and data["mode"] == "chat"
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    ids = reference.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # transformers 5 returns a BatchEncoding
    assert [t["id"] for t in data["tokens"]] == list(ids)
    assert [t["text"] for t in data["tokens"] if t["special"]] == ["<|im_start|>", "<|im_end|>"] * 2 + ["<|im_start|>"]
    assert data["template_tokens"] == len(ids) - len(reference.encode("Hi"))
    lines = run("tokenize", "--chat", "-m", "smollm2", "Hi").stdout.splitlines()
    assert lines[0] == "── smollm2 · chat template ──"
    assert "\n".join(lines[1:-2]).replace("│", "") == rendered.replace(" ", "·").replace("\n", "↵\n").removesuffix("\n")
    assert "<|im_start|>│user│↵│" in lines and "Hi│<|im_end|>│↵│" in lines
    assert lines[-1] == f"template: {data['template_tokens']} tokens added around 1 message token"


def test_chat_on_the_base_model_uses_the_plain_template(real_cache):
    (data,) = json.loads(run("tokenize", "--chat", "-m", "gemma3-270m", "--json", "Hi").stdout)
    assert data["mode"] == "template" and data["tokens"][0]["text"] == "<bos>"
    assert "User: Hi" in data["text"]


def test_tokenize_ids_on_a_warm_cache_imports_neither_torch_nor_transformers(real_cache):
    """The fast path: the cache entry's tokenizer.json read by `tokenizers` alone. (Its
    speed is measured in benchmarks/bench_process.py.)"""
    subprocess.run([sys.executable, "-m", "llmcli", "tokenize", "--ids", "hello"], check=True, capture_output=True)
    code = (
        "import sys\nfrom llmcli import cli\n"
        "try:\n    cli.app(['tokenize', '--ids', 'hello'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stderr, proc.stderr
    assert proc.stdout.split() == [str(i) for i in gguf_tokenizer("smollm2").encode("hello")]
