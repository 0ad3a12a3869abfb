"""`llmcli neighbors` end to end on the tiny models: the JSON against a direct cosine, errors, rendering."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from llmcli.inspect.neighbors import EmbeddingFacts, Neighbor, NeighborsReport, Word
from llmcli.render.neighbors import Refused, render_results
from tests.asserts import assert_one_line_error
from tests.tiny_inspect_models import tiny_gemma_dir  # noqa: F401  (fixture)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from llmcli.models import load_model

    return load_model(str(tiny_model_dir))


def run_json(cli, *args):
    result = cli("neighbors", *args, "--json")
    assert result.exit_code == 0, result.stderr
    docs = json.loads(result.stdout)
    assert isinstance(docs, list)  # one document per -m, always a list
    return docs[0] if len(docs) == 1 else docs


def test_json_scores_are_direct_cosines(cli, tiny_model_dir, loaded):
    data = run_json(cli, "-m", tiny_model_dir, "capital", "--num", "5", "--all-pieces")
    (query,) = loaded.tokenizer(" capital", add_special_tokens=False)["input_ids"]
    E = loaded.model.get_input_embeddings().weight.detach().double()
    scores = F.cosine_similarity(E, E[query][None], dim=-1)
    scores[[query, *loaded.tokenizer.all_special_ids]] = -2
    assert [n["id"] for n in data["neighbors"]] == torch.topk(scores, 5).indices.tolist()
    assert max(abs(n["score"] - float(scores[n["id"]])) for n in data["neighbors"]) < 1e-5
    assert data["positive"][0]["ids"] == [query]


def test_a_word_that_is_one_token_in_one_model_and_several_in_the_other(cli, tiny_model_dir, tiny_gemma_dir):  # noqa: F811
    data = run_json(cli, "-m", tiny_model_dir, "-m", tiny_gemma_dir, "capital")
    assert data[0]["method"] == "cosine" and "not one token" in data[1]["error"]
    shown = cli("neighbors", "-m", tiny_model_dir, "-m", tiny_gemma_dir, "capital")
    assert shown.exit_code == 0 and "not one token" in shown.stdout and "cosine" in shown.stdout
    averaged = run_json(cli, "-m", tiny_model_dir, "-m", tiny_gemma_dir, "capital", "--average")
    assert averaged[1]["positive"][0]["averaged"] is True


def test_analogy_and_vector_from_the_cli(cli, tiny_model_dir, loaded):
    data = run_json(cli, "-m", tiny_model_dir, "--analogy", "capital - France + dog", "--method", "mul", "--num", "3")
    assert data["method"] == "3cosmul" and data["expression"] == "capital - France + dog" and len(data["neighbors"]) == 3
    vector = run_json(cli, "-m", tiny_model_dir, "capital", "--vector", "--dims", "4")
    (query,) = loaded.tokenizer(" capital", add_special_tokens=False)["input_ids"]
    row = loaded.model.get_input_embeddings().weight[query].detach()
    assert vector["first"] == pytest.approx(row[:4].tolist(), abs=1e-7)
    assert vector["norm"] == pytest.approx(float(row.double().norm()), rel=1e-9)


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([], ["no token"]),
        (["  "], ["empty"]),
        (["zqxjkvw"], ["not one token", "--average"]),
        (["--analogy", "king man woman"], ["--analogy"]),
        (["--analogy", "king - + woman"], ["empty term"]),
        (["tower", "--analogy", "a - b + c"], ["not both"]),
        (["tower", "--num", "0"], ["--num"]),
        (["--analogy", "a - b + c", "--vector"], ["--vector"]),
        (["tower", "--json", "--svg", "n.svg"], ["--json"]),
    ],
)
def test_bad_input_fails_in_one_line(cli, tiny_model_dir, args, fragments):
    assert_one_line_error(cli("neighbors", "-m", tiny_model_dir, *args), *fragments)


def hostile() -> NeighborsReport:
    texts = ["[bold]x", "\x1b[31mred", " two  spaces", "tab\t", "nl\n"]
    found = tuple(Neighbor(i + 1, 10 + i, t, 0.9 - i / 10) for i, t in enumerate(texts))
    facts = EmbeddingFacts(1000, 64, True, 8.0, 900, "all pieces", False)
    return NeighborsReport("tiny", "cosine", (Word("[red]q", (5,), ("[red]q",), False),), (), found, facts, "[red]q")


@pytest.mark.parametrize("width", [80, 120])
def test_token_text_is_literal_and_fits(width):
    console = Console(force_terminal=True, width=width, color_system="truecolor", record=True)
    with console.capture() as capture:
        render_results([hostile()], console=console)
        render_results([hostile(), Refused("other", "'[red]q' is not one token here", "--average")], console=console)
    text = ANSI.sub("", capture.get())
    assert "\x1b" not in text
    for piece in ("[bold]x", "\\x1b[31mred", "·two··spaces", "tab→", "nl↵", "[red]q"):
        assert piece in text
    assert all(len(line) <= width for line in text.splitlines())


def test_piped_output_is_plain(cli, tiny_model_dir):
    for args in (["capital"], ["capital", "--vector"], ["--analogy", "capital - France + dog"], ["\x1b[31m", "--average", "--all-pieces"]):
        result = cli("neighbors", "-m", tiny_model_dir, *args)
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout and "─" not in result.stdout and "█" not in result.stdout
        assert all(line == line.rstrip() for line in result.stdout.splitlines())
    assert "\\x1b" in result.stdout  # the query's pieces drawn literally


def test_svg_export_holds_the_tokens(cli, tiny_model_dir, tmp_path):
    svg = tmp_path / "neighbors.svg"
    result = cli("neighbors", "-m", tiny_model_dir, "capital", "--svg", svg)
    assert result.exit_code == 0, result.stderr
    data = run_json(cli, "-m", tiny_model_dir, "capital")
    picture = svg.read_text(encoding="utf-8")
    assert picture.startswith("<svg") and "capital" in picture
    assert data["neighbors"][0]["text"].strip() in picture
