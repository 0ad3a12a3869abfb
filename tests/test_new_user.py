"""What a new user tripped over (2026-12-01), each a test that failed before its fix."""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest
from rich.console import Console

import llmcli
from llmcli.chat import commands
from llmcli.chat.loop import ChatLoop
from llmcli.chat.session import ChatSession
from llmcli.sampling import SamplingSettings
from tests.asserts import assert_one_line_error

HUGE_SEED = "99999999999999999999999"
GREEDY = SamplingSettings(temperature=0, max_new_tokens=4)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return llmcli.load(str(tiny_model_dir))


def chat(model, *lines, settings=GREEDY, width=300):
    out = Console(file=io.StringIO(), width=width, height=40, color_system=None)
    feed = iter(lines)
    loop = ChatLoop(model, ChatSession(model=model.label, settings=settings), lambda: next(feed, None), out, commands.dispatch, markdown=False)
    loop.run()
    return loop, out.file.getvalue()


# 1. A huge seed, and an error inside a turn


@pytest.mark.parametrize("command", [["generate", "-t", "0", "-n", "3"], ["probs", "--steps", "2", "-t", "1"]])
def test_a_huge_seed_is_one_line(cli, tiny_model_dir, command):
    result = cli(*command, "-m", tiny_model_dir, "--seed", HUGE_SEED, "hi")
    assert_one_line_error(result, "seed must be between 0 and", HUGE_SEED)


def test_a_huge_seed_in_chat_is_refused_and_the_chat_goes_on(tiny):
    loop, text = chat(tiny, f"/set seed {HUGE_SEED}", "hello", "again")
    assert "error: seed must be between 0 and" in text
    assert loop.session.settings.seed is None
    assert [m.role for m in loop.session.messages] == ["user", "assistant", "user", "assistant"]


def test_an_unexpected_error_in_a_turn_keeps_the_conversation(tiny, monkeypatch):
    loop, _ = chat(tiny, "first")
    kept = list(loop.session.messages)
    real = tiny.backend.generation

    def broken(*args, **kwargs):
        raise RuntimeError("the engine fell over")

    monkeypatch.setattr(tiny.backend, "generation", broken)
    out = Console(file=io.StringIO(), width=300, color_system=None)
    loop.out = loop.status = out
    loop.handle("second")
    assert "error: the reply failed: RuntimeError: the engine fell over" in out.file.getvalue()
    assert "hint: the conversation is kept" in out.file.getvalue()
    assert loop.session.messages == kept  # the unanswered message taken back, nothing lost
    monkeypatch.setattr(tiny.backend, "generation", real)
    loop.handle("third")
    assert loop.session.messages[-1].role == "assistant"


# 2. The system prompt the template adds by default


@pytest.fixture(scope="module")
def default_system_model(tiny_model_dir, tmp_path_factory):
    """The tiny model with SmolLM2's habit: a default system prompt when none is given."""
    path = tmp_path_factory.mktemp("default-system") / "m"
    shutil.copytree(tiny_model_dir, path)
    template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a tiny helper.<|im_end|>\n{% endif %}"
        + (path / "chat_template.jinja").read_text()
    )
    (path / "chat_template.jinja").write_text(template)
    return llmcli.load(str(path))


def test_the_templates_default_system_prompt_is_told_not_hidden(default_system_model, tiny):
    assert default_system_model.default_system == "You are a tiny helper."
    assert tiny.default_system is None
    loop, text = chat(default_system_model, "/system", "/show settings", "/system Be brief.", "/system", "/system none")
    assert "the chat template's default" in text and "You are a tiny helper." in text
    assert "none of yours; the template adds its default" in text
    assert "it replaces the chat template's default system prompt" in text
    assert "the chat template's default applies again" in text
    _, plain = chat(tiny, "/system")
    assert "no system prompt" in plain


# 3. /probs and /tokens before the first message


@pytest.mark.parametrize("command", ["/probs", "/tokens", "/tokens prompt"])
def test_views_before_the_first_message_say_so(tiny, command):
    _, text = chat(tiny, command)
    assert "nothing to show yet" in text and "error" not in text and "template" not in text


# 4. probs --steps streams, is bounded, and explains its marks


def test_unrolled_steps_arrive_one_at_a_time(tiny):
    unrolling = tiny.unroll("The cat", settings=SamplingSettings(temperature=0, max_new_tokens=5))
    seen = []
    for step in unrolling:
        seen.append((step.index, len(unrolling.generation.token_ids)))
    assert seen == [(i, i) for i in range(1, 6)]  # each step handed out as soon as it is picked


def test_steps_past_the_window_and_rows_past_the_vocabulary(cli, tiny_model_dir):
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, "--steps", "100000", "The cat"), "--steps 100,000", "context window")
    result = cli("probs", "-m", tiny_model_dir, "--num", "1000000", "The cat")
    assert result.exit_code == 0 and "shows all 512 tokens" in result.stderr
    sampled = cli("probs", "-m", tiny_model_dir, "--steps", "3", "-t", "1", "--seed", "1", "--num", "2", "The cat")
    assert ">#N, not among the N shown" in sampled.stdout


# 5. --help tells the truth about the default temperature


def test_help_shows_the_default_temperature_as_what_it_is(cli):
    words = lambda command: " ".join(cli(command, "--help").stdout.split())  # noqa: E731
    assert "recommendation, else 0.7" in re.sub(r"[│\s]+", " ", words("generate"))
    assert "recommendation" not in words("compare") and "The same for every model" in re.sub(r"[│\s]+", " ", words("compare"))


# 6. Suggestions for slash-command typos


def test_slash_command_typos_get_suggestions(tiny):
    _, text = chat(tiny, "/info", "/set temprature 1")
    assert "did you mean /show info?" in text
    assert "did you mean temperature?" in text


# 7. Piped output


@pytest.mark.parametrize("command", [["models"], ["info"], ["probs", "The cat", "--target", " sat on the mat"]])
def test_piped_output_has_no_padding_and_no_wrapped_cells(cli, tiny_model_dir, command):
    result = cli(*command, "-m", tiny_model_dir) if command != ["models"] else cli("models")
    assert result.exit_code == 0, result.stderr
    assert all(line == line.rstrip() for line in result.stdout.splitlines())
    if command[0] == "probs":
        assert re.search(r"ones before it, and the target's probability is the product", result.stdout)


@pytest.mark.parametrize("command, text", [(["probs", "--num", "400"], "hello"), (["tokenize", "--table"], "hello world " * 200)])
def test_a_reader_that_leaves_early_is_not_an_error(tiny_model_dir, command, text):
    import subprocess
    import sys

    line = f"{sys.executable} -m llmcli {' '.join(command)} -m {tiny_model_dir} '{text}' | head -c 20"
    for _ in range(3):  # when the reader leaves varies from run to run
        proc = subprocess.run(line + "; exit ${PIPESTATUS[0]}", shell=True, capture_output=True, executable="/bin/bash")
        assert proc.returncode == 0 and len(proc.stdout) == 20 and proc.stderr == b""


# 8. One count everywhere


def test_the_counts_agree(tiny):
    loop, text = chat(tiny, "hello", "/show prompt", "/tokens prompt", "/probs 3", "/stats")
    conversation = len(loop.build_prompt(generation_prompt=False).ids)
    assert f"context {conversation} / 128" in text  # the footer
    assert f"{conversation} tokens of 128" in text  # /show prompt
    assert f"{conversation} tokens ·" in text  # /tokens prompt
    prompt_tokens = loop.last.generation.prompt_tokens
    assert re.search(rf"chat prompt · {prompt_tokens} tokens", text)  # /probs where the reply began
    assert re.search(rf"prompt tokens\s+{prompt_tokens}\b", text)  # /stats
    assert f"re-read {prompt_tokens} prompt tokens" in text
    assert "the reply began with:" in text and "came next in the prompt" not in text


@pytest.fixture(scope="module")
def bos_model(spm_dir, tiny_base_dir, tmp_path_factory):
    """A base model whose tokenizer puts <bos> in front of everything, as Gemma's does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("bos-model") / "m"
    shutil.copytree(spm_dir, path)
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    model.resize_token_embeddings(len(AutoTokenizer.from_pretrained(path)))
    model.save_pretrained(path)
    return llmcli.load(str(path))


def test_show_prompt_shows_the_bos_the_model_reads(bos_model):
    loop, text = chat(bos_model, "hi", "/show prompt")
    prompt = loop.build_prompt(generation_prompt=False)
    assert prompt.ids[0] == bos_model.tokenizer.bos_token_id and not prompt.text.startswith("<bos>")
    shown = text.split("stopped at max_new_tokens", 1)[-1]
    assert shown.lstrip().startswith("<bos>")


# 9. Smaller ones


def test_save_and_load_mistakes(tiny, tmp_path, cli, tiny_model_dir):
    _, text = chat(tiny, f"/save {tmp_path / 'no' / 'dir' / 'x.json'}", f"/save {tmp_path / 'empty.json'}")
    assert "no such directory" in text and not (tmp_path / "no").exists()
    assert "saved no messages yet" in text
    result = cli("chat", "-m", tiny_model_dir, "--load", tmp_path / "nosuch.json", input="")
    assert_one_line_error(result, "no such file", "hint: give the path of a chat saved with /save")


def test_a_missing_option_value_points_at_the_subcommands_help(cli):
    result = cli("tokenize", "--model")
    assert result.exit_code == 2 and "see 'llmcli tokenize --help'" in result.stderr


def test_no_prompt_is_no_prompt_given(cli, tiny_model_dir):
    """Nothing given at all, in a terminal (stdin a tty), is "no prompt given"; given but blank
    (piped empty, or spaces) is "the prompt is empty"."""
    import os
    import subprocess
    import sys

    master, slave = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "llmcli", "generate", "-m", str(tiny_model_dir)], stdin=slave, capture_output=True, text=True)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1 and proc.stderr.startswith("error: no prompt given")
    assert_one_line_error(cli("generate", "-m", tiny_model_dir, input=""), "the prompt is empty")
    assert_one_line_error(cli("generate", "-m", tiny_model_dir, "   "), "the prompt is empty")


def test_tokenize_json_is_one_shape(cli, tiny_model_dir, spm_dir):
    one = json.loads(cli("tokenize", "-m", tiny_model_dir, "--json", "hi").stdout)
    two = json.loads(cli("tokenize", "-m", tiny_model_dir, "-m", spm_dir, "--json", "hi").stdout)
    assert isinstance(one, list) and isinstance(two, list) and len(one) == 1 and len(two) == 2
