"""Failure matrix, security: what a model ships never runs, and secrets never reach a file.

- A model directory whose config.json has an `auto_map` pointing at its own marker.py (which
  writes a file when imported): without --trust-remote-code every command refuses it in one
  line and the file never appears; with the flag it runs (the control that the row tests
  something).
- Pickle checkpoints (.bin) are refused unless --trust-remote-code, the one switch that says
  "I trust what this model ships"; with safetensors beside them, the safetensors are read and
  the pickle is never opened.
- A chat template that tries to leave jinja2's sandbox fails safely: one line, nothing runs.
- API keys in the environment never reach a saved chat, stdout, stderr (even with --verbose),
  or any file llmcli writes.
"""

from __future__ import annotations

import json

import pytest

from tests.failures.conftest import HOSTILE_TEMPLATES
from tests.failures.matrix import Row, assert_no_traceback, check, parametrize, tree

TRUST = "pass --trust-remote-code"

REMOTE_CODE = [
    Row(f"remote-code/{name}", (*args, "-m", "{remote_code}"), "contains custom code", TRUST, stdin=stdin)
    for name, args, stdin in [
        ("generate", ("generate", "hi", "-n", "1"), None),
        ("info", ("info",), None),
        ("probs", ("probs", "hi"), None),
        ("score", ("score", "hi there"), None),
        ("chat", ("chat", "-n", "1"), b"hi\n"),
    ]
] + [
    Row("remote-code/compare", ("compare", "hi", "-n", "1", "-m", "{tiny}", "-m", "{remote_code}"), "model B", TRUST),
    Row("remote-code/tokenize-needs-none-of-it", ("tokenize", "hi", "-m", "{remote_code}")),  # the tokenizer alone: no code, no error
]


@parametrize(REMOTE_CODE)
def test_a_models_own_code_never_runs_without_the_flag(row, cli, places, tmp_path, monkeypatch):
    marker = tmp_path / "remote-code-ran"
    monkeypatch.setenv("LLMCLI_TEST_MARKER", str(marker))
    check(cli(*row.argv(**places), input=row.stdin), row)
    assert not marker.exists()


def test_with_the_flag_the_models_code_runs(zygote, child_env, broken, tmp_path):
    """The control: the same model with --trust-remote-code imports its marker.py."""
    r = zygote.run(["generate", "hi", "-n", "1", "-t", "0", "--trust-remote-code", "-m", broken["remote_code"]], env=child_env)
    assert r.code == 0, r.err
    assert (tmp_path / "remote-code-ran").read_text() == "the model's own code ran"


PICKLE = [
    Row("pickle-only/generate", ("generate", "hi", "-n", "1", "-m", "{pickle_only}"), "has only pickle checkpoints (pytorch_model.bin)", TRUST),
    Row("pickle-only/info", ("info", "-m", "{pickle_only}"), "has only pickle checkpoints", TRUST),
    Row("pickle-only/compare", ("compare", "hi", "-n", "1", "-m", "{tiny}", "-m", "{pickle_only}"), "has only pickle checkpoints", TRUST),
    Row("pickle-only/allowed", ("generate", "hi", "-n", "1", "--trust-remote-code", "-m", "{pickle_only}")),
    Row("pickle-only/tokenize-needs-no-weights", ("tokenize", "hi", "-m", "{pickle_only}")),
    Row("pickle-beside-safetensors", ("generate", "hi", "-n", "1", "-m", "{pickle_and_safetensors}")),
]


@parametrize(PICKLE)
def test_pickle_checkpoints_are_refused_unless_asked_for(row, cli, places, monkeypatch):
    import torch

    if "allowed" not in row.id:  # the pickle is never even opened
        monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called on a pickle"))
    check(cli(*row.argv(**places)), row)


# ---------------------------------------------------------------- chat templates

TEMPLATE_COMMANDS = {
    "generate": ("generate", "{message}", "-n", "1"),
    "tokenize": ("tokenize", "{message}", "--chat"),
    "probs": ("probs", "{message}", "--chat"),
    "compare": ("compare", "{message}", "-n", "1", "-m", "{base}"),
}
TEMPLATES = list(HOSTILE_TEMPLATES)
SANDBOX = "forbids"


@pytest.mark.parametrize("command", list(TEMPLATE_COMMANDS))
@pytest.mark.parametrize("template", TEMPLATES)
def test_a_hostile_chat_template_fails_safely(cli, places, tmp_path, template, command):
    """The message is the path the `globals` template would `touch` if it could reach os."""
    message = tmp_path / "pwned"
    args = [a.format(message=message, **{k: str(v) for k, v in places.items()}) for a in TEMPLATE_COMMANDS[command]]
    r = cli(*args, "-m", places[f"template_{template}"])
    row = Row(f"{template}/{command}", (), "the model's chat template rejected the conversation", SANDBOX)
    check(r, row)
    assert "is unsafe" in r.stderr
    assert not message.exists()


def test_a_hostile_template_in_chat_is_one_line_and_the_chat_goes_on(cli, places, tmp_path):
    message = tmp_path / "pwned"
    r = cli("chat", "-n", "1", "-m", places["template_globals"], input=f"/{message}\n/exit\n")  # "//path" sends "/path"
    assert_no_traceback(r.stderr)
    assert r.exit_code == 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: the model's chat template rejected the conversation") and SANDBOX in lines[1], r.stderr
    assert not message.exists()


def test_a_template_that_leaves_the_messages_out(cli, tiny_model_dir, tmp_path):
    """A template may ignore the conversation; tokenize --chat then counts no message tokens
    (it said "-2 tokens added around 2 message tokens")."""
    import shutil

    model = tmp_path / "ignores-messages"
    shutil.copytree(tiny_model_dir, model)
    (model / "chat_template.jinja").write_text("{{ 'nothing to see' }}")
    r = cli("tokenize", "hello there", "--chat", "--json", "-m", model)
    assert r.exit_code == 0, r.stderr
    (doc,) = json.loads(r.stdout)
    assert doc["text"] == "nothing to see"
    assert doc["message_tokens"] == 0 and doc["template_tokens"] == doc["count"]


@pytest.mark.parametrize("template", list(HOSTILE_TEMPLATES))
def test_the_engines_own_template_renderer_is_sandboxed(template, tmp_path):
    """llmcli.engine renders chat templates without transformers: the same sandbox."""
    from jinja2.exceptions import SecurityError

    from llmcli.engine.chat_template import render_chat

    message = tmp_path / "pwned"
    try:
        out = render_chat(HOSTILE_TEMPLATES[template], [{"role": "user", "content": str(message)}])
    except SecurityError:
        out = ""
    assert "class" not in out and "module" not in out
    assert not message.exists()


# ---------------------------------------------------------------- secrets

SECRETS = {
    "OPENAI_API_KEY": "sk-test-OPENAI-0123456789abcdef",
    "LLMCLI_API_KEY": "sk-test-LLMCLI-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "HF_TOKEN": "hf_test0123456789abcdef",
}


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_api_keys_never_reach_a_saved_chat_or_the_output(zygote, child_env, tiny_model_dir, tmp_path, verbose):
    saved = tmp_path / "chat.json"
    script = f"hello\n/show settings\n/show info\n/stats\n/save {saved}\n".encode()
    flags = ["--verbose"] if verbose else []
    r = zygote.run([*flags, "chat", "-n", "2", "-t", "0", "-m", tiny_model_dir], env={**child_env, **SECRETS}, stdin=script, cwd=tmp_path)
    assert r.code == 0, r.err
    assert saved.exists()
    generated = zygote.run([*flags, "generate", "hi", "-n", "2", "--json", "--stats", "-m", tiny_model_dir], env={**child_env, **SECRETS}, cwd=tmp_path)
    assert generated.code == 0, generated.err
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in SECRETS.values():
        for where, data in (("the saved chat", saved.read_bytes()), ("stdout", r.stdout + generated.stdout), ("stderr", r.stderr + generated.stderr), ("a file", written)):
            assert secret.encode() not in data, f"{secret} in {where}"
    assert set(tree(tmp_path)) >= {"chat.json"}
