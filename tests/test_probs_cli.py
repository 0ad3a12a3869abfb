"""`llmcli probs` end to end on the tiny model: the CLI's numbers against torch, errors, rendering."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from llmcli.api import probs
from llmcli.inspect import next_token as nt
from llmcli.inspect.sampler import sampler_replay
from llmcli.render.probs import render_report
from tests.asserts import assert_one_line_error

PROMPT = "The capital of France is"
ANSI = re.compile(r"\x1b\[")


def backend(loaded):
    from llmcli.backends.local import LocalBackend

    return LocalBackend(loaded)


def unroll(loaded, ids, settings, candidates=5):
    """The decode loop unrolled on raw ids (llmcli.api.probs.Unrolling), to its result."""
    from llmcli.api.probs import Unrolling
    from llmcli.prompting import Prompt

    return Unrolling(backend(loaded), Prompt("", list(ids), "raw"), settings, candidates).result


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from llmcli.models import load_model

    return load_model(str(tiny_model_dir))


def last_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


def raw_ids(tokenizer, text):
    from llmcli.prompting import build_raw_prompt

    return build_raw_prompt(tokenizer, text).ids


def run_json(cli, *args, **kwargs) -> dict:
    result = cli("probs", *args, "--json", **kwargs)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------- numbers


def test_json_probabilities_are_softmax_of_the_models_logits(cli, tiny_model_dir, loaded):
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--num", "15", "--temperature", "0,0.5,1,1.5")
    logits = last_logits(loaded.model, raw_ids(loaded.tokenizer, PROMPT))
    rows = data["table"]["rows"]
    ids = [r["id"] for r in rows]
    assert ids == torch.topk(logits, 15).indices.tolist()
    assert [r["rank"] for r in rows] == list(range(1, 16))
    for r in rows:  # the command runs the engine, `loaded` transformers: logits agree to ~1e-6
        assert abs(r["logit"] - float(logits[r["id"]])) < 1e-5
        assert abs(r["logprob"] - float(torch.log_softmax(logits, -1)[r["id"]])) < 1e-5
    for column in data["table"]["columns"]:
        t = column["temperature"]
        if t == 0:
            expected = torch.zeros(len(ids))
            expected[0] = 1.0
            assert column["entropy"] == 0
        else:
            full = torch.softmax(logits / t, dim=-1)
            expected = full[ids]
            assert abs(column["entropy"] - float(-(full * full.log()).sum())) < 1e-4
        assert max(abs(a - float(b)) for a, b in zip(column["probs"], expected)) < 1e-6
        assert max(abs(a - float(b)) for a, b in zip(column["cumulative"], torch.cumsum(expected, 0))) < 1e-6
        assert abs(column["coverage"] - float(expected.sum())) < 1e-6
        assert column["entropy_bits"] == pytest.approx(column["entropy"] / math.log(2))


def test_json_sampler_survivors_match_the_definitions(cli, tiny_model_dir, loaded):
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "-t", "0.8", "--top-k", "60", "--top-p", "0.7", "--min-p", "0.1")
    logits = last_logits(loaded.model, raw_ids(loaded.tokenizer, PROMPT)).double()
    stages = {s["name"]: s for s in data["sampler"]["stages"]}
    assert list(stages) == ["temperature", "top-k", "top-p", "min-p"]
    dist = torch.softmax(logits / 0.8, -1)
    # top-k
    kept = set(torch.topk(dist, 60).indices.tolist())
    assert set(stages["top-k"]["survivor_ids"]) == kept
    dist = torch.where(torch.isin(torch.arange(len(dist)), torch.tensor(sorted(kept))), dist, 0)
    dist = dist / dist.sum()
    # top-p: the smallest prefix of the ranking holding at least 0.7
    order = torch.argsort(dist, descending=True)
    before = torch.cumsum(dist[order], 0) - dist[order]
    kept = set(order[before < 0.7].tolist())
    assert set(stages["top-p"]["survivor_ids"]) == kept
    dist = torch.where(torch.isin(torch.arange(len(dist)), torch.tensor(sorted(kept))), dist, 0)
    dist = dist / dist.sum()
    # min-p: at least 0.1 times the most likely
    kept = set(torch.nonzero(dist >= 0.1 * dist.max()).flatten().tolist())
    final = stages["min-p"]
    assert set(final["survivor_ids"]) == kept
    dist = torch.where(torch.isin(torch.arange(len(dist)), torch.tensor(sorted(kept))), dist, 0)
    dist = dist / dist.sum()
    assert abs(sum(final["survivor_probs"]) - 1) < 1e-6
    for i, p in zip(final["survivor_ids"], final["survivor_probs"]):
        assert abs(p - float(dist[i])) < 1e-6


def test_target_agrees_with_the_table(cli, tiny_model_dir, loaded):
    table = run_json(cli, "-m", tiny_model_dir, PROMPT)["table"]
    row = next(r for r in table["rows"] if not r["special"] and loaded.tokenizer.encode(r["text"], add_special_tokens=False) == [r["id"]])
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--target", row["text"], "--target", " Paris is")
    first, second = data["targets"]
    assert first["tokens"][0]["id"] == row["id"]
    assert first["tokens"][0]["rank"] == row["rank"]
    assert abs(first["prob"] - row["prob"]) < 1e-6
    assert len(second["tokens"]) >= 2
    assert second["prob"] == pytest.approx(math.prod(t["prob"] for t in second["tokens"]), rel=1e-9)


def test_position_shows_the_prediction_and_the_token_that_came_next(cli, tiny_model_dir, loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--position", "1", "--num", "3")
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids])).logits[0, 1]
    assert data["table"]["position"] == 1
    assert [r["id"] for r in data["table"]["rows"]] == torch.topk(logits, 3).indices.tolist()
    actual = data["table"]["actual_next"]
    assert actual["id"] == ids[2]
    assert abs(actual["prob"] - float(torch.softmax(logits, -1)[ids[2]])) < 1e-6


def test_steps_greedy_are_the_engines_tokens(cli, tiny_model_dir, loaded):
    from llmcli.generation import generate
    from llmcli.sampling import SamplingSettings

    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--steps", "10", "--temperature", "0")
    ids = raw_ids(loaded.tokenizer, PROMPT)
    reference = generate(loaded.model, loaded.tokenizer, ids, SamplingSettings(temperature=0, max_new_tokens=10)).run()
    assert [s["id"] for s in data["steps"]["steps"]] == reference.token_ids
    assert data["steps"]["text"] == reference.text
    assert data["steps"]["greedy"] is True
    # --steps with no temperature is greedy too
    default = run_json(cli, "-m", tiny_model_dir, PROMPT, "--steps", "10")
    assert [s["id"] for s in default["steps"]["steps"]] == reference.token_ids


def test_steps_match_llmcli_generate(cli, tiny_model_dir):
    if cli("generate", "--help").exit_code != 0:
        pytest.skip("no generate command registered yet")
    result = cli("generate", "-m", tiny_model_dir, "--raw", "--temperature", "0", "--max-new-tokens", "10", "--json", PROMPT)
    assert result.exit_code == 0, result.stderr
    generated = json.loads(result.stdout)
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--steps", "10", "--temperature", "0")
    ids = generated.get("token_ids") or [t["id"] for t in generated["tokens"]]
    assert [s["id"] for s in data["steps"]["steps"]] == ids


def test_chat_wraps_the_text_in_the_template(cli, tiny_model_dir, tiny_base_dir, loaded):
    from llmcli.prompting import Message, build_chat_prompt

    data = run_json(cli, "-m", tiny_model_dir, "What is the capital of France?", "--chat", "--system", "Be brief.")
    prompt = build_chat_prompt(loaded.tokenizer, [Message("system", "Be brief."), Message("user", "What is the capital of France?")])
    assert data["mode"] == "chat"
    assert [t["id"] for t in data["prompt_tokens"]] == prompt.ids
    assert data["prompt"].endswith("<|im_start|>assistant\n")
    logits = last_logits(loaded.model, prompt.ids)
    assert data["table"]["rows"][0]["id"] == int(torch.argmax(logits))
    base = run_json(cli, "-m", tiny_base_dir, "Hello", "--chat")
    assert base["mode"] == "template"


def test_prompt_from_stdin_and_file(cli, tiny_model_dir, tmp_path):
    from_arg = run_json(cli, "-m", tiny_model_dir, "Hello\n")
    from_stdin = run_json(cli, "-m", tiny_model_dir, input="Hello\n")
    path = tmp_path / "prompt.txt"
    path.write_text("Hello\n", encoding="utf-8")
    from_file = run_json(cli, "-m", tiny_model_dir, "--file", path)
    assert from_arg["prompt"] == from_stdin["prompt"] == from_file["prompt"] == "Hello\n"  # raw: byte for byte
    assert from_arg["table"] == from_stdin["table"] == from_file["table"]


@pytest.mark.parametrize("prompt", [" ", "\n", "\t  \n"])
def test_a_whitespace_only_prompt_works(cli, tiny_model_dir, prompt):
    result = cli("probs", "-m", tiny_model_dir, prompt)
    assert result.exit_code == 0, result.stderr
    assert "rank" in result.stdout


def test_the_json_is_strict(cli, tiny_model_dir):
    result = cli("probs", "-m", tiny_model_dir, PROMPT, "--json", "--top-p", "0.5", "--target", "x", "--steps", "2")
    json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--num", "0"], ["--num"]),
        (["--temperature", "abc"], ["abc"]),
        (["--temperature", "-1"], ["--temperature"]),
        (["--top-p", "0"], ["top_p"]),
        (["--top-p", "1.5"], ["top_p"]),
        (["--min-p", "2"], ["min_p"]),
        (["--position", "99"], ["--position 99", "5 tokens"]),
        (["--position", "-6"], ["--position -6"]),
        (["--system", "hi"], ["--chat"]),
        (["--temperature", "0.5,1", "--top-k", "5"], ["one --temperature"]),
        (["--temperature", "0.5,1", "--steps", "3"], ["one --temperature"]),
        (["--steps", "3", "--position", "1"], ["--position"]),
        (["--target", ""], ["--target"]),
        (["--verbose-steps"], ["--steps"]),
    ],
)
def test_bad_options_fail_in_one_line(cli, tiny_model_dir, args, fragments):
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, PROMPT, *args), *fragments)


def test_an_empty_prompt_on_a_model_without_bos_fails_in_one_line(cli, tiny_model_dir):
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, ""), "empty", "BOS")
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, input=""), "empty")


def test_a_prompt_longer_than_the_context_window_fails_in_one_line(cli, tiny_model_dir, loaded):
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, "Hello " * 300), "context window")


def test_a_non_integer_num_is_a_usage_error(cli, tiny_model_dir):
    result = cli("probs", "-m", tiny_model_dir, PROMPT, "--num", "ten")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


# ---------------------------------------------------------------------------- rendering


def test_piped_output_is_plain_text(cli, tiny_model_dir):
    for args in ([], ["-t", "0,1,2"], ["--top-k", "3", "--top-p", "0.5"], ["--target", " Paris is"], ["--steps", "3"], ["--steps", "2", "--verbose-steps"], ["--position", "2"]):
        result = cli("probs", "-m", tiny_model_dir, PROMPT, *args)
        assert result.exit_code == 0, result.stderr
        assert not ANSI.search(result.stdout), args
        assert "█" not in result.stdout and "─" not in result.stdout
        assert result.stderr == ""


def test_the_table_lists_ranks_ids_and_percentages(cli, tiny_model_dir, loaded):
    result = cli("probs", "-m", tiny_model_dir, PROMPT, "--num", "4")
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--num", "4")
    lines = result.stdout.splitlines()
    for row in data["table"]["rows"]:
        line = next(line for line in lines if re.match(rf"\s*{row['rank']}\s", line))
        assert str(row["id"]) in line
        assert f"{100 * row['prob']:.2f}%" in line
    assert "entropy" in result.stdout and "bits" in result.stdout
    assert f"{100 * data['table']['columns'][0]['coverage']:.2f}%" in result.stdout


def hostile_report() -> nt.ProbsReport:
    """Token text that would restyle a terminal if it were interpreted."""
    texts = ["[red]boom[/]", "\x1b[31mred", " two  spaces", "line\nbreak", "\ttab", "", "<|im_end|>", "no\u00a0break"]
    rows = tuple(
        nt.Candidate(rank=i + 1, id=100 + i, text=t, special=t == "<|im_end|>", logit=5.0 - i, logprob=math.log(0.1), prob=0.1)
        for i, t in enumerate(texts)
    )
    probs = tuple(r.prob for r in rows)
    cumulative = tuple(0.1 * (i + 1) for i in range(len(rows)))
    column = nt.TemperatureColumn(1.0, probs, cumulative, entropy=2.0, coverage=cumulative[-1])
    table = nt.NextTokenTable(position=1, vocab_size=1000, rows=rows, columns=(column,), entropy=2.0)
    tokens = (nt.PromptToken(1, "[link=x]hi", False), nt.PromptToken(2, "\x1b]0;title\x07", False))
    return nt.ProbsReport("tiny", "raw", "[link=x]hi\x1b]0;title\x07", tokens, table)


def render_to_terminal(report: nt.ProbsReport, **kwargs) -> str:
    console = Console(force_terminal=True, width=80, color_system="truecolor", record=True)
    with console.capture() as capture:
        render_report(report, console=console, **kwargs)
    return capture.get()


def test_token_text_is_shown_literally_and_never_interpreted():
    out = render_to_terminal(hostile_report())
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # drop Rich's own SGR styling
    assert "\x1b" not in plain and "\x07" not in plain
    assert "[red]boom[/]" in plain
    assert "\\x1b[31mred" in plain
    assert "·two··spaces" in plain and "line↵break" in plain and "→tab" in plain
    assert "(empty)" in plain and "<|im_end|>" in plain and "no\\u00a0break" in plain
    assert "[link=x]hi" in plain and "\\x1b]0;title\\x07" in plain


def test_terminal_output_fits_80_columns(loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    from llmcli.sampling import SamplingSettings

    logits = last_logits(loaded.model, ids)
    tokens = nt.prompt_tokens(loaded.tokenizer, ids)
    sweep = nt.next_token_table(logits, loaded.tokenizer, temperatures=(0, 0.5, 1, 1.5, 2))
    single = nt.next_token_table(logits, loaded.tokenizer, temperatures=(0.7,))
    replay = sampler_replay(logits, [r.id for r in single.rows], temperature=0.7, top_k=40, top_p=0.9, min_p=0.05)
    target = probs.score_target(backend(loaded), ids, " Paris is the capital")
    steps = unroll(loaded, ids, SamplingSettings(temperature=0, max_new_tokens=12))
    reports = [
        nt.ProbsReport("tiny", "raw", PROMPT, tokens, single, targets=(target,)),
        nt.ProbsReport("tiny", "raw", PROMPT, tokens, sweep),
        nt.ProbsReport("tiny", "raw", PROMPT, tokens, single, sampler=replay),
        nt.ProbsReport("tiny", "raw", PROMPT, tokens, single, steps=steps),
    ]
    for report in reports:
        for verbose in (False, True):
            out = render_to_terminal(report, verbose_steps=verbose)
            for line in re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines():
                assert len(line) <= 80, line
    out = render_to_terminal(reports[0])
    assert "█" in out  # bars on a terminal


def test_help_imports_no_torch():
    code = "import sys; from llmcli.cli import app; from llmcli.commands import probs; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prompt_file_problems_fail_in_one_line(cli, tiny_model_dir, tmp_path):
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, "--file", tmp_path / "missing.txt"), "missing.txt")
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, "--file", tmp_path), "cannot read")
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, PROMPT, "--file", tmp_path / "x"), "not both")
    assert run_json(cli, "-m", tiny_model_dir, "--file", "-", input="Hello")["prompt"] == "Hello"
