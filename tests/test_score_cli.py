"""`llmcli score` end to end on the tiny models: numbers against transformers, errors, rendering."""

from __future__ import annotations

import json
import re

import pytest
import torch
from rich.console import Console

from llmcli.inspect import score as sc
from llmcli.render.score import render_reports
from tests.asserts import assert_one_line_error
from tests.tiny_inspect_models import tiny_gemma_dir  # noqa: F401  (fixture)

TEXT = "The capital of France is Paris."
HOSTILE = "Hello [bold]world[/bold] and \x1b[31mred\x1b[0m\ttab\nnew line"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from llmcli.models import load_model

    return load_model(str(tiny_model_dir))


def run_json(cli, *args, **kwargs):
    result = cli("score", *args, "--json", **kwargs)
    assert result.exit_code == 0, result.stderr
    docs = json.loads(result.stdout)
    assert isinstance(docs, list)  # one document per -m, always a list
    return docs[0] if len(docs) == 1 else docs


def test_json_nll_is_the_labels_loss(cli, tiny_model_dir, loaded):
    from llmcli.prompting import build_raw_prompt

    data = run_json(cli, "-m", tiny_model_dir, TEXT)
    ids = build_raw_prompt(loaded.tokenizer, TEXT).ids
    with torch.no_grad():
        loss = float(loaded.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    assert abs(data["scores"]["totals"]["mean_nll"] - loss) / loss < 1e-4
    assert [t["id"] for t in data["scores"]["tokens"]] == ids[1:]
    assert data["first"] == "unscored" and data["leading"][0]["id"] == ids[0]


def test_two_models_give_a_list_and_bos_is_scored(cli, tiny_model_dir, tiny_gemma_dir):  # noqa: F811
    data = run_json(cli, "-m", tiny_model_dir, "-m", tiny_gemma_dir, TEXT)
    assert [d["first"] for d in data] == ["unscored", "bos"]
    assert data[0]["model"] != data[1]["model"]
    shown = cli("score", "-m", tiny_model_dir, "-m", tiny_gemma_dir, TEXT)
    assert shown.exit_code == 0 and "bits per byte" in shown.stdout and shown.stdout.count("Score ") == 2


def test_chat_scores_only_the_reply(cli, tiny_model_dir, loaded):
    from llmcli.prompting import Message, build_chat_prompt

    data = run_json(cli, "-m", tiny_model_dir, "--chat", "--user", "What is the capital of France?", " Paris is. ")
    prompt = build_chat_prompt(loaded.tokenizer, [Message("user", "What is the capital of France?")])
    reply = loaded.tokenizer("Paris is.", add_special_tokens=False)["input_ids"]
    assert data["first"] == "reply" and data["mode"] == "chat"
    assert [t["position"] for t in data["scores"]["tokens"]] == list(range(len(prompt.ids), len(prompt.ids) + len(reply)))
    with torch.no_grad():
        logprobs = torch.log_softmax(loaded.model(torch.tensor([prompt.ids + reply])).logits[0].double(), -1)
    for token in data["scores"]["tokens"]:
        assert abs(token["logprob"] - float(logprobs[token["position"] - 1, token["id"]])) < 1e-6


def test_a_long_text_is_windowed_and_says_so(cli, tiny_model_dir):
    long = "The cat sat on the mat. " * 60
    data = run_json(cli, "-m", tiny_model_dir, long, "--stride", "32")
    scores = data["scores"]
    assert scores["windows"] > 1 and scores["stride"] == 32
    assert [t["position"] for t in scores["tokens"]] == list(range(1, len(scores["tokens"]) + 1))
    shown = cli("score", "-m", tiny_model_dir, long, "--stride", "32")
    assert f"{scores['windows']} windows" in shown.stdout and "stride 32" in shown.stdout


def test_text_from_stdin_and_file(cli, tiny_model_dir, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    a = run_json(cli, "-m", tiny_model_dir, TEXT)
    assert run_json(cli, "-m", tiny_model_dir, input=TEXT) == a == run_json(cli, "-m", tiny_model_dir, "--file", path)


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([""], ["empty"]),
        (["The cat sat on the mat. " * 60, "--stride", "0"], ["--stride 0", "1 to"]),
        (["The cat sat on the mat. " * 60, "--stride", "500"], ["--stride 500"]),
        ([TEXT, "--user", "hi"], ["--chat"]),
        ([TEXT, "--json", "--svg", "x.svg"], ["--json"]),
        ([TEXT, "--surprises", "-1"], ["--surprises"]),
        ([TEXT, "--window", "1"], ["--window"]),
        (["   ", "--chat"], ["empty"]),
    ],
)
def test_bad_input_fails_in_one_line(cli, tiny_model_dir, args, fragments):
    assert_one_line_error(cli("score", "-m", tiny_model_dir, *args), *fragments)


def test_one_token_with_nothing_to_predict_it_from(cli, tiny_model_dir, loaded):
    word = next(w for w in ("The", "Hello", "a") if len(loaded.tokenizer(w, add_special_tokens=False)["input_ids"]) == 1)
    assert_one_line_error(cli("score", "-m", tiny_model_dir, word), "one token", "BOS")


def test_piped_output_is_plain_and_literal(cli, tiny_model_dir):
    from llmcli.render.pieces import token_text

    tokens = run_json(cli, "-m", tiny_model_dir, HOSTILE)["scores"]["tokens"]
    for args in ([], ["--by", "surprisal"]):
        result = cli("score", "-m", tiny_model_dir, HOSTILE, *args)
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout and "─" not in result.stdout
        rows = [line.split() for line in result.stdout.splitlines()]
        for token in tokens:  # one row per token: position, then the token drawn literally
            assert [str(token["position"]), token_text(token["text"]).plain] in [row[:2] for row in rows]
        assert "\\x1b" in result.stdout  # the ESC drawn as text
        assert all(line == line.rstrip() for line in result.stdout.splitlines())


def terminal(width: int) -> Console:
    return Console(force_terminal=True, width=width, color_system="truecolor", record=True)


@pytest.mark.parametrize("by", ["rank", "surprisal"])
@pytest.mark.parametrize("width", [80, 120])
def test_terminal_view_is_literal_coloured_and_fits(loaded, by, width):
    report = sc.score_text(loaded.model, loaded.tokenizer, HOSTILE, label="tiny")
    console = terminal(width)
    with console.capture() as capture:
        render_reports([report, report], by=by, console=console)
    out = capture.get()
    text = ANSI.sub("", out)
    assert "\x1b" not in text  # no escape of the model's own reached the terminal
    assert "[bold]world[/bold]" in text and "\\x1b[31mred" in text and "→tab" in text and "↵" in text
    assert all(len(line) <= width for line in text.splitlines())
    assert "48;2;" in out  # backgrounds: the tokens are coloured
    for name in sc.BUCKETS if by == "rank" else ("15+",):
        assert name in text


def test_svg_export_holds_the_tokens(cli, tiny_model_dir, tmp_path):
    svg, html = tmp_path / "score.svg", tmp_path / "score.html"
    result = cli("score", "-m", tiny_model_dir, TEXT, "--svg", svg, "--html", html)
    assert result.exit_code == 0, result.stderr
    picture = svg.read_text(encoding="utf-8")
    assert picture.startswith("<svg") and "capital" in picture and "France" in picture and "perplexity" in picture
    assert "France" in html.read_text(encoding="utf-8")
    assert str(svg) in result.stderr
