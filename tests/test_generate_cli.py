"""`llmcli generate` end to end on the tiny models, through the real CLI.

Expected text, ids and logprobs come from transformers directly (`model.generate`, a
forward pass, `apply_chat_template`), never from numbers written down here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmcli.tokens import token_bytes
from llmcli.prompting import PROMPTS_DIR


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def roomy_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a 1,024-token window, for prompts longer than its own 128."""
    path = tmp_path_factory.mktemp("roomy") / "model"
    shutil.copytree(tiny_model_dir, path)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 1024
    (path / "config.json").write_text(json.dumps(config))
    return path


def greedy_reply(model, tokenizer, ids, n):
    out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n)[0, len(ids) :].tolist()
    whole = tokenizer.decode(ids + out)
    return out, whole[len(tokenizer.decode(ids)) :]


def as_printed(text):
    return text if text.endswith("\n") or not text else text + "\n"


def run_json(cli, *args, **kwargs):
    result = cli("generate", "--json", *args, **kwargs)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- what is generated


def test_greedy_raw_output_is_what_model_generate_produces(cli, tiny_model_dir, tiny):
    model, tokenizer = tiny
    result = cli("generate", "-m", tiny_model_dir, "--raw", "--temperature", "0", "--max-new-tokens", "20", "Once upon a time")
    assert result.exit_code == 0, result.stderr
    ids = tokenizer("Once upon a time")["input_ids"]
    _, text = greedy_reply(model, tokenizer, ids, 20)
    assert result.stdout == as_printed(text)
    assert result.stderr == ""


def test_json_has_the_ids_text_usage_and_logprobs_of_a_direct_computation(cli, tiny_model_dir, tiny):
    model, tokenizer = tiny
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "12", "--logprobs", "3", "The capital of France is")
    ids = tokenizer("The capital of France is")["input_ids"]
    reply, text = greedy_reply(model, tokenizer, ids, 12)
    assert data["mode"] == "raw" and data["prompt"] == "The capital of France is" and data["prompt_token_ids"] == ids
    assert data["token_ids"] == reply and data["text"] == text and data["finish_reason"] == "length"
    assert data["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 12, "total_tokens": len(ids) + 12}
    assert set(data["timings"]) >= {"time_to_first_token", "prefill_tokens_per_second", "decode_tokens_per_second", "total_seconds"}
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids + reply])).logits[0], dim=-1)
    content = data["logprobs"]["content"]
    assert [c["token"] for c in content] == [tokenizer.decode([i]) for i in reply]
    for step, (entry, token) in enumerate(zip(content, reply)):
        expected = logprobs[len(ids) - 1 + step]
        assert entry["logprob"] == pytest.approx(float(expected[token]), abs=1e-4)
        assert entry["bytes"] == list(token_bytes(tokenizer, token))
        values, top = torch.topk(expected, 3)
        assert [t["token"] for t in entry["top_logprobs"]] == [tokenizer.decode([i]) for i in top.tolist()]
        assert [t["logprob"] for t in entry["top_logprobs"]] == pytest.approx(values.tolist(), abs=1e-4)
    # A random model writes invalid UTF-8 too: the bytes decode to the text the way the tokenizer decodes.
    assert b"".join(bytes(c["bytes"]) for c in content).decode("utf-8", errors="replace") == text


def test_same_seed_same_output_different_seed_different_output(cli, tiny_model_dir):
    def run(seed):
        result = cli("generate", "-m", tiny_model_dir, "--temperature", "0.8", "--seed", seed, "-n", "20", "Hello")
        assert result.exit_code == 0, result.stderr
        return result.stdout

    assert run("7") == run("7")
    assert run("7") != run("8")


def test_stop_string_ends_the_output_and_is_not_printed(cli, tiny_model_dir):
    free = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "30", "Once upon a time")["text"]
    stop = free[10:13]
    result = cli("generate", "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "30", "--stop", "zzz", "--stop", stop, "Once upon a time")
    assert result.stdout == as_printed(free[: free.index(stop)])


# ---------------------------------------------------------------- which prompt the model sees


def test_instruct_model_gets_its_chat_template_with_the_message_stripped(cli, tiny_model_dir, tiny):
    _, tokenizer = tiny
    data = run_json(cli, "-m", tiny_model_dir, "-t", "0", "-n", "2", input="What is the capital of France?\n")
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    assert data["mode"] == "chat" and data["prompt"] == expected


def test_raw_keeps_stdin_byte_for_byte(cli, tiny_model_dir):
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "2", input="  two spaces and a newline\n")
    assert data["prompt"] == "  two spaces and a newline\n"


def test_argument_plus_piped_stdin_is_argument_blank_line_stdin(cli, tiny_model_dir):
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "2", "Summarize:", input="some text\n")
    assert data["prompt"] == "Summarize:\n\nsome text\n"


def test_dash_reads_stdin(cli, tiny_model_dir):
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "2", "-", input="from stdin")
    assert data["prompt"] == "from stdin"


def test_prompt_from_a_file(cli, tiny_model_dir, tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text("from a file\n", encoding="utf-8")
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "2", "--file", path)
    assert data["prompt"] == "from a file\n"


def test_base_model_defaults_to_raw_and_chats_through_the_plain_template(cli, tiny_base_dir):
    assert run_json(cli, "-m", tiny_base_dir, "-t", "0", "-n", "2", "Hello")["mode"] == "raw"
    data = run_json(cli, "-m", tiny_base_dir, "-t", "0", "-n", "2", "--chat", "Hello")
    assert data["mode"] == "template" and data["prompt"].endswith("\nUser: Hello\nAssistant:")


def test_a_system_prompt_on_a_base_model_implies_the_template(cli, tiny_base_dir):
    data = run_json(cli, "-m", tiny_base_dir, "-t", "0", "-n", "2", "--system", "Be terse.", "Hello")
    assert data["mode"] == "template" and "\nBe terse.\n" in data["prompt"]


def test_raw_overrides_the_chat_template(cli, tiny_model_dir):
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "2", "Hello")
    assert data["mode"] == "raw" and data["prompt"] == "Hello"


def test_named_system_prompt_from_prompts(cli, roomy_model_dir):
    data = run_json(cli, "-m", roomy_model_dir, "--prompt", "engineer", "-t", "0", "-n", "2", "Hello")
    system = (PROMPTS_DIR / "engineer.txt").read_text(encoding="utf-8").strip()
    assert data["prompt"].startswith(f"<|im_start|>system\n{system}<|im_end|>")


def test_system_prompt_from_a_file(cli, tiny_model_dir, tmp_path):
    path = tmp_path / "system.txt"
    path.write_text("Answer in French.\n", encoding="utf-8")
    data = run_json(cli, "-m", tiny_model_dir, "--system-file", path, "-t", "0", "-n", "2", "Hello")
    assert data["prompt"].startswith("<|im_start|>system\nAnswer in French.<|im_end|>")


# ---------------------------------------------------------------- output channels


def test_stats_go_to_stderr_and_stdout_stays_the_text(cli, tiny_model_dir):
    plain = cli("generate", "-m", tiny_model_dir, "-t", "0", "-n", "10", "Hello")
    with_stats = cli("generate", "-m", tiny_model_dir, "-t", "0", "-n", "10", "--stats", "Hello")
    assert with_stats.stdout == plain.stdout
    assert "prompt tokens" in with_stats.stderr and "10 tokens, hit the limit" in with_stats.stderr


def test_logprobs_table_goes_to_stderr(cli, tiny_model_dir, tiny):
    _, tokenizer = tiny
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "5", "Hello")
    result = cli("generate", "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "5", "--logprobs", "2", "Hello")
    assert result.stdout == as_printed(data["text"])
    model, _ = tiny
    rows = [line.split() for line in result.stderr.splitlines() if re.match(r"^\d+\s", line)]
    assert [int(cells[0]) for cells in rows] == [1, 2, 3, 4, 5]
    so_far = data["prompt_token_ids"]
    for cells, token in zip(rows, data["token_ids"]):
        with torch.no_grad():  # the model's own log-probability, computed here without a cache
            logprob = torch.log_softmax(model(torch.tensor([so_far])).logits[0, -1].double(), dim=-1)[token]
        assert cells[2] == str(token) and cells[3] == f"{float(logprob):.3f}"
        so_far = [*so_far, token]


def test_ctrl_c_keeps_what_was_generated(cli, tiny_model_dir, monkeypatch):
    from transformers import LlamaForCausalLM

    forward, calls = LlamaForCausalLM.forward, []

    @functools.wraps(forward)
    def interrupted_on_the_fourth_pass(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", interrupted_on_the_fourth_pass)
    result = cli("generate", "-m", tiny_model_dir, "--engine", "transformers", "--raw", "-t", "0", "-n", "30", "--json", "Hello")
    data = json.loads(result.stdout)
    assert result.exit_code == 130
    assert data["finish_reason"] == "interrupted" and len(data["token_ids"]) == 3


def test_a_closed_pipe_is_not_an_error(tiny_model_dir):
    """`llmcli generate … | head -c1`: the reader is gone before the first write."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llmcli", "generate", "-m", str(tiny_model_dir), "-t", "0", "-n", "20", "Hello"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert stderr.decode() == ""


# ---------------------------------------------------------------- errors a user can make


@pytest.mark.parametrize(
    "args, input, message",
    [
        (["generate", ""], None, "empty"),
        (["generate"], "", "empty"),
        (["generate", "   \n"], None, "empty"),
        (["generate", "--temperature", "-1", "Hi"], None, "temperature"),
        (["generate", "--top-p", "1.5", "Hi"], None, "top_p"),
        (["generate", "--max-new-tokens", "0", "Hi"], None, "max_new_tokens"),
        (["generate", "--file", "/no/such/file.txt"], None, "no such file"),
        (["generate", "--prompt", "no-such", "Hi"], None, "no-such"),
        (["generate", "--system-file", "/no/such/system.txt", "Hi"], None, "no such file"),
        (["generate", "--raw", "--chat", "Hi"], None, "--raw"),
        (["generate", "--raw", "--system", "x", "Hi"], None, "system"),
        (["generate", "--system", "x", "--prompt", "engineer", "Hi"], None, "--system"),
    ],
)
def test_user_errors_are_one_line_and_a_hint(cli, tiny_model_dir, args, input, message):
    result = cli(*args, "-m", tiny_model_dir, input=input)
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error:") and message in lines[0] and lines[1].startswith("hint:")


def test_prompt_over_the_context_window_says_the_counts(cli, tiny_model_dir, tiny):
    model, tokenizer = tiny
    text = "The quick brown fox jumps over the lazy dog. " * 30
    n = len(tokenizer(text)["input_ids"])
    window = model.config.max_position_embeddings
    assert n > window
    result = cli("generate", "-m", tiny_model_dir, "--raw", text)
    assert result.exit_code == 1 and result.stdout == ""
    assert f"{n:,}" in result.stderr and f"{window:,}" in result.stderr and "Traceback" not in result.stderr


def test_stop_understands_backslash_n_as_typed_in_a_shell(cli, tiny_model_dir):
    from llmcli.options import stop_strings

    assert stop_strings([r"\n", r"a\tb\\n", "é"]) == ("\n", "a\tb\\n", "é") and stop_strings(None) == ()
    free = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "40", "Once upon a time")["text"]
    assert free[3:5], "the greedy text is long enough"
    stop = free[3:5]
    typed = stop.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    data = run_json(cli, "-m", tiny_model_dir, "--raw", "-t", "0", "-n", "40", "--stop", typed, "Once upon a time")
    assert data["text"] == free[: free.index(stop)]
