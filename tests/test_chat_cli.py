"""`llmcli chat` as scripts use it (stdin not a terminal), and on the real embedded models."""

from __future__ import annotations

from tests.asserts import assert_one_line_error

import json
import subprocess
import sys

import pytest

from llmcli.render import escape_controls


def test_piped_lines_are_turns_with_plain_replies_on_stdout_and_stats_on_stderr(cli, tiny_model_dir):
    r = cli("chat", "-m", tiny_model_dir, "-t", "0", "-n", "5", input="hello\n\nsecond question\n")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count("tok/s") == 2  # one stats line per reply: two turns, the blank line ignored
    assert "›" not in r.stdout and "/help" not in r.stdout  # no prompt, no header
    assert "\x1b[" not in r.stdout


def test_piped_replies_match_a_greedy_generate(cli, tiny_model_dir):
    chat = cli("chat", "-m", tiny_model_dir, "-t", "0", "-n", "5", input="hello\n")
    gen = cli("generate", "-m", tiny_model_dir, "-t", "0", "-n", "5", "--chat", "--json", "hello")
    assert gen.exit_code == 0, gen.stderr
    assert chat.stdout == escape_controls(json.loads(gen.stdout)["text"]) + "\n"


def test_slash_commands_work_in_a_pipe(cli, tiny_model_dir, tmp_path):
    path = tmp_path / "c.json"
    r = cli("chat", "-m", tiny_model_dir, "-t", "0", "-n", "4", input=f"hi\n/show prompt\n/save {path}\n/exit\nnever\n")
    assert r.exit_code == 0, r.stderr
    assert "<|im_start|>user\nhi<|im_end|>" in r.stdout  # the prompt as plain data
    assert len(json.loads(path.read_text(encoding="utf-8"))["messages"]) == 2
    assert r.stderr.count("tok/s") == 1


def test_stop_understands_backslash_n_as_generate_does(cli, tiny_model_dir, tmp_path):
    path = tmp_path / "c.json"
    r = cli("chat", "-m", tiny_model_dir, "--stop", r"\n", "--stop", r"a\tb", input=f"/save {path}\n")
    assert r.exit_code == 0, r.stderr
    assert json.loads(path.read_text(encoding="utf-8"))["settings"]["stop"] == ["\n", "a\tb"]


def test_load_continues_a_saved_chat_and_flags_override_its_settings(cli, tiny_model_dir, tmp_path):
    path = tmp_path / "c.json"
    cli("chat", "-m", tiny_model_dir, "-t", "0", "-n", "4", "--system", "Be brief.", input=f"hi\n/save {path}\n")
    r = cli("chat", "-m", tiny_model_dir, "--load", path, "-n", "3", input=f"/show settings\nmore\n/save {path}\n")
    assert r.exit_code == 0, r.stderr
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["messages"]) == 4 and data["system"] == "Be brief."
    assert data["settings"]["temperature"] == 0 and data["settings"]["max_new_tokens"] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (("--temperature", "-1"), "temperature must be"),
        (("--top-p", "0"), "top_p must be"),
        (("--system", "a", "--prompt", "engineer"), "both give a system prompt"),
        (("--prompt", "nope"), "no system prompt named 'nope'"),
        (("--load", "/nonexistent/chat.json"), "no such file"),
    ],
)
def test_bad_options_are_one_line_errors_before_loading(cli, args, message):
    r = cli("chat", "-m", "/nonexistent/model", *args, input="hi\n")
    assert r.exit_code == 1
    assert message in r.stderr and "Traceback" not in r.stderr


def test_unknown_model_is_one_line(cli):
    r = cli("chat", "-m", "/nonexistent/model", input="hi\n")
    assert r.exit_code == 1
    assert_one_line_error(r, "no such file or directory: /nonexistent/model", "hint: check the path")


def test_help_lists_the_chat_options(cli):
    r = cli("chat", "--help")
    for option in ("--system", "--prompt", "--temperature", "--top-p", "--max-new-tokens", "--load", "--seed"):
        assert option in r.stdout


# ---------------------------------------------------------------- the real embedded models


def llmcli(*args: str, input: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmcli", *args], input=input, capture_output=True, text=True, timeout=600
    )


@pytest.mark.integration
def test_smollm2_knows_the_capital_of_france(real_cache):
    r = llmcli("chat", "-m", "smollm2", "--temperature", "0", input="What is the capital of France?\n")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "tok/s" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.integration
def test_gemma_base_model_chats_through_the_text_template_and_stops_at_the_next_turn(real_cache):
    r = llmcli(
        "chat", "-m", "gemma3-270m", "--temperature", "0", "-n", "80",
        input="What is the capital of France?\nAnd of Italy?\n",
    )
    assert r.returncode == 0, r.stderr
    assert "User:" not in r.stdout  # it never writes the user's next turn
    assert r.stderr.count("tok/s") == 2
    assert "Paris" in r.stdout
