"""`llmcli lens` end to end on the tiny models: the JSON against torch, errors, rendering."""

from __future__ import annotations

import json
import re

import pytest
import torch
from rich.console import Console

from llmcli.inspect import lens as ln
from llmcli.render.lens import render_report
from tests.asserts import assert_one_line_error

PROMPT = "The capital of France is"
HOSTILE = "Hi [bold]x\x1b[31m y"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from llmcli.models import load_model

    return load_model(str(tiny_model_dir))


def raw_ids(tokenizer, text):
    from llmcli.prompting import build_raw_prompt

    return build_raw_prompt(tokenizer, text).ids


def run_json(cli, *args):
    result = cli("lens", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_json_last_layer_is_the_models_distribution(cli, tiny_model_dir, loaded):
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "-k", "4")
    ids = raw_ids(loaded.tokenizer, PROMPT)
    with torch.no_grad():
        probs = torch.softmax(loaded.model(torch.tensor([ids])).logits[0, -1].double(), -1)
    assert data["positions"] == [len(ids) - 1]
    assert [row["label"] for row in data["rows"]] == ["embed", *map(str, range(loaded.model.config.num_hidden_layers))]
    last = data["rows"][-1]["cells"][0]
    assert [t["id"] for t in last["top"]] == torch.topk(probs, 4).indices.tolist()
    assert max(abs(t["prob"] - float(probs[t["id"]])) for t in last["top"]) < 1e-6


def test_grid_json_has_every_position_and_layers_thin_it(cli, tiny_model_dir, loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--grid", "--layers", "0")
    assert data["positions"] == list(range(len(ids)))
    assert [row["layer"] for row in data["rows"]] == [-1, 0, loaded.model.config.num_hidden_layers - 1]


def test_position_and_target(cli, tiny_model_dir, loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--position", "1")
    assert data["positions"] == [1] and data["target"]["source"] == "next" and data["target"]["id"] == ids[2]
    data = run_json(cli, "-m", tiny_model_dir, PROMPT, "--target", " Paris is")
    assert data["target"]["pieces"] == len(loaded.tokenizer(" Paris is", add_special_tokens=False)["input_ids"])
    shown = cli("lens", "-m", tiny_model_dir, PROMPT, "--target", " Paris is").stdout
    assert "target" in shown and "the first of its" in shown


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([""], ["empty"]),
        ([PROMPT, "--position", "99"], ["--position 99", "5 tokens", "0 to 4"]),
        ([PROMPT, "--position", "-6"], ["--position -6"]),
        ([PROMPT, "--target", ""], ["--target is empty"]),
        ([PROMPT, "--layers", "a:b"], ["--layers"]),
        ([PROMPT, "--layers", "7"], ["--layers", "2 layers"]),
        ([PROMPT, "--top-k", "0"], ["--top-k"]),
        ([PROMPT, "--json", "--html", "x.html"], ["--json"]),
        (["Hello " * 300], ["context window"]),
    ],
)
def test_bad_input_fails_in_one_line(cli, tiny_model_dir, args, fragments):
    assert_one_line_error(cli("lens", "-m", tiny_model_dir, *args), *fragments)


def test_piped_output_is_plain_and_literal(cli, tiny_model_dir):
    for args in ([], ["--grid"], ["--grid", "--target", " x"]):
        result = cli("lens", "-m", tiny_model_dir, HOSTILE, *args)
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout and "─" not in result.stdout
        assert "\\x1b" in result.stdout and "bold" in result.stdout
        assert all(line == line.rstrip() for line in result.stdout.splitlines())


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("grid", [False, True])
def test_terminal_view_is_literal_and_fits(loaded, width, grid):
    ids = raw_ids(loaded.tokenizer, HOSTILE * 3)
    report = ln.logit_lens(loaded.model, loaded.tokenizer, ids, target=" x", label="tiny")
    console = Console(force_terminal=True, width=width, color_system="truecolor", record=True)
    with console.capture() as capture:
        render_report(report, grid=grid, console=console)
    out = capture.get()
    text = ANSI.sub("", out)
    assert "\x1b" not in text and "\\x1b" in text
    assert all(len(line) <= width for line in text.splitlines())
    assert "embed" in text and "48;2;" in out  # shaded cells
    if grid:
        assert "input" in text and "next" in text


def test_svg_export_holds_the_tokens(cli, tiny_model_dir, tmp_path):
    svg = tmp_path / "lens.svg"
    result = cli("lens", "-m", tiny_model_dir, PROMPT, "--grid", "--svg", svg)
    assert result.exit_code == 0, result.stderr
    picture = svg.read_text(encoding="utf-8")
    assert picture.startswith("<svg") and "capital" in picture and "France" in picture and "embed" in picture
