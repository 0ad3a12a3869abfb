"""`llmcli attention` end to end on the tiny models: the JSON against eager output_attentions, errors, the heatmap."""

from __future__ import annotations

import json
import re

import pytest
import torch
from rich.console import Console

from llmcli.inspect import attention as at
from llmcli.render.attention import render_overview, render_pattern
from tests.asserts import assert_one_line_error
from tests.tiny_inspect_models import tiny_gemma_dir  # noqa: F401  (fixture)

TEXT = "The cat sat on the mat. The dog sat on the log."
LONG = "The quick brown fox jumps over the lazy dog. " * 8
HOSTILE = "Hi [bold]x[/bold] \x1b[31mred"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from llmcli.models import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager", dtype=torch.float32).eval()


def raw_ids(tokenizer, text):
    from llmcli.prompting import build_raw_prompt

    return build_raw_prompt(tokenizer, text).ids


def run_json(cli, *args):
    result = cli("attention", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("args, layer, head", [([], 1, None), (["--layer", "0", "--head", "3"], 0, 3), (["--layer", "-1", "--mean"], 1, None)])
def test_json_weights_are_eager_output_attentions(cli, tiny_model_dir, loaded, reference, args, layer, head):
    data = run_json(cli, "-m", tiny_model_dir, TEXT, *args)
    ids = raw_ids(loaded.tokenizer, TEXT)
    with torch.no_grad():
        truth = reference(torch.tensor([ids]), output_attentions=True).attentions[layer][0].double()
    truth = truth.mean(dim=0) if head is None else truth[head]
    assert data["layer"] == layer and data["head"] == head
    assert float((torch.tensor(data["weights"], dtype=torch.float64) - truth).abs().max()) < 1e-5
    assert [t["id"] for t in data["tokens"]] == ids
    assert data["arch"]["kv_groups"] == [[0, 1], [2, 3]] and data["arch"]["layer_types"] == ["full_attention"] * 2


def test_heads_overview_json(cli, tiny_model_dir):
    data = run_json(cli, "-m", tiny_model_dir, TEXT, "--heads")
    assert len(data["entropy"]) == 2 and len(data["entropy"][0]) == 4 and len(data["sink"][1]) == 4


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([""], ["empty"]),
        ([TEXT, "--layer", "2"], ["--layer 2", "2 layers", "from 0 to 1"]),
        ([TEXT, "--head", "4"], ["--head 4", "4 heads", "from 0 to 3"]),
        ([TEXT, "--head", "1", "--mean"], ["--head and --mean"]),
        ([TEXT, "--from", "99"], ["--from 99"]),
        ([TEXT, "--from", "5", "--to", "3"], ["--from 5"]),
        ([TEXT, "--heads", "--layer", "1"], ["--heads"]),
        ([TEXT, "--json", "--svg", "a.svg"], ["--json"]),
        (["Hello " * 300], ["context window"]),
    ],
)
def test_bad_input_fails_in_one_line(cli, tiny_model_dir, args, fragments):
    assert_one_line_error(cli("attention", "-m", tiny_model_dir, *args), *fragments)


def test_piped_output_is_plain_and_literal(cli, tiny_model_dir):
    for args in ([], ["--drop-first"], ["--heads"], ["--head", "0", "--from", "2"]):
        result = cli("attention", "-m", tiny_model_dir, HOSTILE, *args)
        assert result.exit_code == 0, result.stderr
        out = result.stdout
        assert "\x1b" not in out and "─" not in out and "█" not in out
        assert all(line == line.rstrip() for line in out.splitlines())
        if "--heads" not in args:  # the token labels: ESC drawn as text, markup kept as text
            assert "\\x1b" in out and "[" in out


def terminal(width: int) -> Console:
    return Console(force_terminal=True, width=width, color_system="truecolor", record=True)


@pytest.mark.parametrize("width, cell", [(80, 1), (120, 2)])
def test_a_40_token_heatmap_fits_80_and_120_columns_unwrapped(loaded, width, cell):
    ids = raw_ids(loaded.tokenizer, LONG)[:40]
    pattern = at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=0, label="tiny")
    console = terminal(width)
    with console.capture() as capture:
        render_pattern(pattern, console=console)
    lines = ANSI.sub("", capture.get()).splitlines()
    assert all(len(line) <= width for line in lines)
    heat = [line for line in lines if re.match(rf"\s*\d+ .{{10}} [ ·]{{{cell * 40}}}$", line)]
    assert len(heat) == 40  # every query one whole line: the grid did not wrap
    for q, line in enumerate(heat):  # the causal mask: one dot per key after the query
        assert line[-cell * 40 :].count("·") == 40 - 1 - q


def test_a_long_text_is_cut_to_the_last_tokens_with_a_note(loaded):
    ids = raw_ids(loaded.tokenizer, LONG)
    pattern = at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=1, head=0)
    console = terminal(80)
    with console.capture() as capture:
        render_pattern(pattern, console=console, show_summary=False)
    text = ANSI.sub("", capture.get())
    keep = 80 - (3 + 1 + 10 + 1)
    assert f"the last {keep} of {len(ids)} tokens" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_terminal_labels_are_literal(loaded):
    ids = raw_ids(loaded.tokenizer, HOSTILE)
    console = terminal(80)
    with console.capture() as capture:
        render_pattern(at.attention_pattern(loaded.model, loaded.tokenizer, ids, label="tiny"), console=console)
        render_overview(at.head_overview(loaded.model, loaded.tokenizer, ids, label="tiny"), console=console)
    out = capture.get()
    text = ANSI.sub("", out)
    assert "\x1b" not in text
    assert "\\x1b" in text and "[" in text  # ESC drawn as text; the markup's pieces (`[`, `bo`...) kept
    assert "48;2;" in out  # shaded cells


def test_a_sliding_window_shows_as_dashes(tiny_gemma_dir):  # noqa: F811
    from llmcli.models import load_model
    from tests.tiny_inspect_models import GEMMA_SLIDING_WINDOW

    loaded = load_model(str(tiny_gemma_dir))
    ids = raw_ids(loaded.tokenizer, TEXT)
    pattern = at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=0, head=0)
    console = Console(width=200, record=True)  # not a terminal: plain characters
    with console.capture() as capture:
        render_pattern(pattern, console=console, show_summary=False)
    text = capture.get()
    assert f"last {GEMMA_SLIDING_WINDOW} tokens" in text and "sliding window" in text
    n = len(ids)
    last_row = next(line for line in text.splitlines() if re.match(rf"{n - 1} ", line))
    cells = last_row[len(str(n - 1)) + 1 + 10 + 1 :]
    width = len(cells) // n  # two characters a cell when there is room
    hidden = (n - GEMMA_SLIDING_WINDOW) * width  # keys further back than the window
    assert cells[:hidden] == "-" * hidden and len(cells) == n * width and "-" not in cells[hidden:]


def test_svg_export_holds_the_tokens(cli, tiny_model_dir, tmp_path):
    svg = tmp_path / "attention.svg"
    result = cli("attention", "-m", tiny_model_dir, TEXT, "--svg", svg)
    assert result.exit_code == 0, result.stderr
    picture = svg.read_text(encoding="utf-8")
    assert picture.startswith("<svg") and "sat" in picture and "The" in picture and "query" in picture
