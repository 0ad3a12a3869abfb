"""`llmcli tokenize` and `llmcli detokenize` through the real CLI, on the tiny models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from typer.testing import CliRunner

from llmcli import models
from llmcli.cli import app
from tests.test_tokens import HARD_CASES, hf_tokenizer

SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colour codes Rich itself writes


def ids_of(stdout: str) -> list[int]:
    return [int(x) for x in stdout.split()]


# ---------------------------------------------------------------- ids, json, count


@pytest.mark.parametrize("text", HARD_CASES)
def test_ids_and_json_equal_transformers(cli, tiny_model_dir, text):
    expected = hf_tokenizer(tiny_model_dir).encode(text, split_special_tokens=True)
    r = cli("tokenize", "-m", tiny_model_dir, "--ids", text)
    assert r.exit_code == 0, r.stderr
    assert ids_of(r.stdout) == expected
    (data,) = json.loads(cli("tokenize", "-m", tiny_model_dir, "--json", text).stdout)  # a list, one per -m
    assert [t["id"] for t in data["tokens"]] == expected
    assert data["count"] == len(expected) and data["characters"] == len(text)
    assert data["text"] == text


def test_add_special_and_parse_special(cli, tiny_model_dir):
    hf = hf_tokenizer(tiny_model_dir)
    text = "hi<|im_end|>"
    assert ids_of(cli("tokenize", "-m", tiny_model_dir, "--ids", text).stdout) == hf.encode(text, split_special_tokens=True)
    assert ids_of(cli("tokenize", "-m", tiny_model_dir, "--ids", "--parse-special", text).stdout) == hf.encode(text)
    assert hf.convert_tokens_to_ids("<|im_end|>") in ids_of(
        cli("tokenize", "-m", tiny_model_dir, "--ids", "--parse-special", text).stdout
    )


def test_bos_follows_add_special(cli, spm_dir):
    hf = hf_tokenizer(spm_dir)
    with_bos = ids_of(cli("tokenize", "-m", spm_dir, "--ids", "hello").stdout)
    without = ids_of(cli("tokenize", "-m", spm_dir, "--ids", "--no-add-special", "hello").stdout)
    assert with_bos == hf.encode("hello") and with_bos[0] == hf.bos_token_id
    assert without == hf.encode("hello", add_special_tokens=False) == with_bos[1:]


def test_count(cli, tiny_model_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "--count", "Hello world")
    assert r.stdout == f"{len(hf_tokenizer(tiny_model_dir).encode('Hello world'))}\n"


def test_output_forms_do_not_combine(cli, tiny_model_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "--ids", "--json", "x")
    assert r.exit_code == 1 and "--ids and --json" in r.stderr


# ---------------------------------------------------------------- the human views


def test_spans_piped_are_plain_with_separators(cli, tiny_model_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "Hello world\tx\n")
    assert r.exit_code == 0
    assert "\x1b" not in r.stdout
    pieces = hf_tokenizer(tiny_model_dir).tokenize("Hello world\tx\n")
    lines = r.stdout.splitlines()
    assert len(lines) == 2  # the spans (the last token's newline drawn as ↵), the summary
    assert lines[0].count("│") == len(pieces) - 1
    assert lines[0].replace("│", "") == "Hello·world→x↵"
    assert re.fullmatch(r"\d+ tokens · 14 characters · [\d.]+ characters/token", lines[-1])


def test_table_piped_is_tab_separated(cli, tiny_model_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "--table", "Hello world")
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == ["#", "id", "piece", "text", "bytes"]
    hf = hf_tokenizer(tiny_model_dir)
    ids = hf.encode("Hello world")
    rows = [line.split("\t") for line in lines[1 : 1 + len(ids)]]
    assert [int(row[1]) for row in rows] == ids
    assert [row[2] for row in rows] == hf.convert_ids_to_tokens(ids)
    assert "".join(row[3] for row in rows) == "Hello·world"


def test_partial_characters_are_shown_as_bytes(cli, tiny_model_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "🦀")
    assert "<0xF0>" in r.stdout and "\ufffd" not in r.stdout


def test_several_models_side_by_side(cli, tiny_model_dir, spm_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "-m", spm_dir, "Hello world")
    assert r.exit_code == 0
    counts = [len(hf_tokenizer(d).encode("Hello world")) for d in (tiny_model_dir, spm_dir)]
    assert f"── {tiny_model_dir} ──" in r.stdout and f"── {spm_dir} ──" in r.stdout
    summary = r.stdout.splitlines()[-3:]
    assert summary[0].split("\t")[:2] == ["model", "tokens"]
    assert [int(line.split("\t")[1]) for line in summary[1:]] == counts
    ids = cli("tokenize", "-m", tiny_model_dir, "-m", spm_dir, "--ids", "Hello world").stdout.splitlines()
    assert [ids_of(line.split("\t")[1]) for line in ids] == [hf_tokenizer(d).encode("Hello world") for d in (tiny_model_dir, spm_dir)]
    docs = json.loads(cli("tokenize", "-m", tiny_model_dir, "-m", spm_dir, "--json", "Hello world").stdout)
    assert [d["count"] for d in docs] == counts


# ---------------------------------------------------------------- nothing from the input reaches the terminal


HOSTILE = "[bold]x[/bold] [red]y\x1b[31mred\x1b[0m \x1b]0;pwned\x07 \x1b[2J\x9b1m end"


@pytest.mark.parametrize("mode", [[], ["--table"], ["--chat"], ["--json"], ["--ids"]])
@pytest.mark.parametrize("colour", [False, True])
def test_markup_and_escapes_are_shown_literally(cli, tiny_model_dir, mode, colour):
    env = {"FORCE_COLOR": "1", "COLUMNS": "200"} if colour else {}
    r = cli("tokenize", "-m", tiny_model_dir, *mode, HOSTILE, env=env)
    assert r.exit_code == 0, r.stderr
    leftover = SGR.sub("", r.stdout)
    assert "\x1b" not in leftover and "\x07" not in leftover and "\x9b" not in leftover
    assert "\x1b[31m" not in r.stdout and "\x1b[2J" not in r.stdout
    if not mode:
        shown = leftover.replace("│", "").replace("\n", "")
        assert "[bold]x[/bold]" in shown.replace("·", " ")
    if mode == ["--table"] and not colour:
        shown = "".join(line.split("\t")[3] for line in r.stdout.splitlines()[1:-1])
        assert "[bold]x[/bold]" in shown.replace("·", " ")
    if mode in ([], ["--table"]):
        assert "\\x1b" in leftover
    if colour and not mode:
        assert r.stdout != leftover  # coloured spans were drawn


def test_detokenize_to_a_terminal_escapes_controls(cli, tiny_model_dir):
    ids = hf_tokenizer(tiny_model_dir).encode("a\x1b[2Jb [bold]c[/bold]")
    r = cli("detokenize", "-m", tiny_model_dir, *map(str, ids), env={"FORCE_COLOR": "1"})
    assert "\x1b[2J" not in r.stdout and "\\x1b[2J" in SGR.sub("", r.stdout)
    assert "[bold]c[/bold]" in SGR.sub("", r.stdout)


# ---------------------------------------------------------------- --chat


def test_chat_shows_the_template(cli, tiny_model_dir):
    from llmcli.prompting import Message, build_chat_prompt

    hf = hf_tokenizer(tiny_model_dir)
    prompt = build_chat_prompt(hf, [Message("system", "Be brief."), Message("user", "Hello there")])
    (data,) = json.loads(cli("tokenize", "-m", tiny_model_dir, "--chat", "--system", "Be brief.", "--json", "Hello there\n").stdout)
    assert data["text"] == prompt.text
    assert [t["id"] for t in data["tokens"]] == prompt.ids
    assert data["template_tokens"] == len(prompt.ids) - len(hf.encode("Hello there")) - len(hf.encode("Be brief."))
    r = cli("tokenize", "-m", tiny_model_dir, "--chat", "Hello there")
    lines = r.stdout.splitlines()
    assert lines[0].endswith("· chat template ──")
    shown = "\n".join(lines[1:-2]).replace("│", "")
    rendered = hf.apply_chat_template([{"role": "user", "content": "Hello there"}], tokenize=False, add_generation_prompt=True)
    assert shown == rendered.replace(" ", "·").replace("\n", "↵\n").removesuffix("\n")
    assert "<|im_start|>" in lines[1] and lines[-1].startswith("template: ")


def test_chat_on_a_base_model(cli, tiny_base_dir):
    r = cli("tokenize", "-m", tiny_base_dir, "--chat", "Hi")
    assert r.exit_code == 0, r.stderr
    assert "plain-text template" in r.stdout and "User:" in r.stdout.replace("│", "")


def test_system_needs_chat(cli, tiny_model_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "--system", "x", "Hi")
    assert r.exit_code == 1 and "--chat" in r.stderr


# ---------------------------------------------------------------- input


def test_empty_input_is_zero_tokens(cli, tiny_model_dir):
    r = cli("tokenize", "-m", tiny_model_dir, "")
    assert r.exit_code == 0 and r.stdout.strip() == "0 tokens · 0 characters"
    assert cli("tokenize", "-m", tiny_model_dir, "--count", input="").stdout == "0\n"
    assert json.loads(cli("tokenize", "-m", tiny_model_dir, "--json", "").stdout)[0]["tokens"] == []


def test_stdin_and_file_are_read_byte_for_byte(cli, tiny_model_dir, tmp_path):
    hf = hf_tokenizer(tiny_model_dir)
    text = "  two lines\nwith a trailing newline\n"
    assert ids_of(cli("tokenize", "-m", tiny_model_dir, "--ids", input=text).stdout) == hf.encode(text)
    assert ids_of(cli("tokenize", "-m", tiny_model_dir, "--ids", "-", input=text).stdout) == hf.encode(text)
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    assert ids_of(cli("tokenize", "-m", tiny_model_dir, "--ids", "-f", path).stdout) == hf.encode(text)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing.txt", "no such file"),
        (lambda p: (p / "latin1.txt").write_bytes(b"caf\xe9") and p / "latin1.txt", "is not UTF-8 text (byte 0xE9 at offset 3)"),
        (lambda p: p, "is a directory"),
    ],
)
def test_bad_file_is_one_line(cli, tiny_model_dir, tmp_path, setup, message):
    r = cli("tokenize", "-m", tiny_model_dir, "-f", setup(tmp_path))
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error:") and message in lines[0]
    assert lines[1].startswith("hint:") and "Traceback" not in r.stderr and r.stdout == ""


def test_non_utf8_stdin(cli, tiny_model_dir):
    r = CliRunner().invoke(app, ["tokenize", "-m", str(tiny_model_dir)], input=b"\xff\xfe")
    assert r.exit_code == 1 and "stdin is not UTF-8" in r.stderr


# ---------------------------------------------------------------- detokenize


@pytest.mark.parametrize("text", HARD_CASES)
def test_detokenize_gives_back_the_text(cli, tiny_model_dir, text):
    ids = hf_tokenizer(tiny_model_dir).encode(text, split_special_tokens=True)
    r = CliRunner().invoke(app, ["detokenize", "-m", str(tiny_model_dir), *map(str, ids)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == text.encode()  # piped: exactly the text, nothing added (\r\n too)
    assert json.loads(cli("detokenize", "-m", tiny_model_dir, "--json", *map(str, ids)).stdout)["text"] == text


def test_detokenize_reads_stdin_and_skips_special(cli, spm_dir):
    ids = hf_tokenizer(spm_dir).encode("hello world")
    assert cli("detokenize", "-m", spm_dir, input=json.dumps(ids)).stdout == "<bos>hello world"
    assert cli("detokenize", "-m", spm_dir, "--skip-special", input=" ".join(map(str, ids))).stdout == "hello world"


def test_detokenize_table(cli, tiny_model_dir):
    hf = hf_tokenizer(tiny_model_dir)
    ids = hf.encode("Hello world")
    lines = cli("detokenize", "-m", tiny_model_dir, "--table", *map(str, ids)).stdout.splitlines()
    assert [line.split("\t")[2] for line in lines[1 : 1 + len(ids)]] == hf.convert_ids_to_tokens(ids)


def test_detokenize_warns_about_an_unfinished_character(cli, spm_dir):
    ids = hf_tokenizer(spm_dir).encode("a🍕", add_special_tokens=False)
    r = cli("detokenize", "-m", spm_dir, *map(str, ids[:-1]))
    assert r.exit_code == 0 and "warning:" in r.stderr and "part of a character" in r.stderr


@pytest.mark.parametrize("bad, named", [("99999", "99999"), ("12abc", "'12abc'"), ("1.5", "'1.5'")])
def test_detokenize_bad_id_is_one_line(cli, tiny_model_dir, bad, named):
    r = cli("detokenize", "-m", tiny_model_dir, "5", bad)
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and named in lines[0] and lines[1].startswith("hint:")


# ---------------------------------------------------------------- the fast path


def test_a_gguf_tokenizer_takes_the_fast_path_with_the_same_ids(cli, tiny_gguf, cache_dir, tiny_model_dir):
    from llmcli.models import cached_tokenizer_json

    text = HARD_CASES[4] + HARD_CASES[6] + HARD_CASES[10]
    ref = models.resolve(str(tiny_gguf))
    assert cached_tokenizer_json(ref) is None
    slow = cli("tokenize", "-m", tiny_gguf, "--json", text)  # transformers, straight from the GGUF
    saved = cached_tokenizer_json(ref)
    assert saved is not None and saved.parent.parent.name == "tokenizers"  # tokenizer-only entry
    fast = cli("tokenize", "-m", tiny_gguf, "--json", text)
    models.ensure_converted(ref)
    assert cached_tokenizer_json(ref).parent == models.cache_entry(tiny_gguf)  # the full entry now
    converted = cli("tokenize", "-m", tiny_gguf, "--json", text)
    assert json.loads(fast.stdout) == json.loads(slow.stdout) == json.loads(converted.stdout)
    assert [t["id"] for t in json.loads(fast.stdout)[0]["tokens"]] == hf_tokenizer(tiny_model_dir).encode(
        text, split_special_tokens=True
    )


def test_the_fast_path_imports_no_transformers(tiny_gguf, cache_dir):
    models.ensure_converted(models.resolve(str(tiny_gguf)))
    code = (
        "import sys\n"
        "from llmcli.cli import app\n"
        f"app(['tokenize', '--ids', '-m', {str(tiny_gguf)!r}, 'hello'], standalone_mode=False)\n"
        "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    env = os.environ | {"LLMCLI_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
