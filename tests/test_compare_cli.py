"""`llmcli compare` end to end on the tiny models, through the real CLI.

Each side's numbers are checked against the command that computes them on its own
(`generate --json`, `probs --json`) and against torch on the models' own logits; the
rendering is checked at 80 columns, as plain text and with hostile model text.
"""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
import torch
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmcli.render.compare import Header, render_probs
from llmcli.render.compare_live import Column, columns_view
from tests.asserts import assert_one_line_error

PROMPT = "What is the capital of France?"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def other_vocab_dir(tiny_base_dir, tmp_path_factory):
    """A base model whose tokenizer has one token more: a different vocabulary."""
    path = tmp_path_factory.mktemp("other-vocab") / "model"
    shutil.copytree(tiny_base_dir, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.add_tokens(["<extra>"])
    model = AutoModelForCausalLM.from_pretrained(path)
    model.resize_token_embeddings(len(tokenizer))
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


def run_json(cli, command, *args, **kwargs) -> dict:
    result = cli(command, *args, "--json", **kwargs)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def last_logits(model_dir, ids) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].double()


# ---------------------------------------------------------------------------- generations


def test_each_side_generates_what_generate_gives_for_that_model(cli, tiny_base_dir, tiny_model_dir):
    data = run_json(cli, "compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "-t", "0", "-n", "8")
    base, instruct = data["models"]
    assert (base["side"], base["role"], base["mode"]) == ("A", "base", "raw")
    assert (instruct["side"], instruct["role"], instruct["mode"]) == ("B", "instruct", "chat")
    for side, model_dir in ((base, tiny_base_dir), (instruct, tiny_model_dir)):
        alone = run_json(cli, "generate", "-m", model_dir, PROMPT, "-t", "0", "-n", "8")
        ours = side["generation"]
        for key in ("model", "mode", "prompt", "prompt_token_ids", "text", "token_ids", "finish_reason", "usage"):
            assert ours[key] == alone[key], key
    assert data["prompt"] == PROMPT and data["system"] is None


def test_every_side_samples_with_the_same_seed(cli, tiny_base_dir, tiny_model_dir):
    data = run_json(cli, "compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "-t", "1.2", "-n", "6")
    seeds = {side["generation"]["settings"]["seed"] for side in data["models"]}
    assert len(seeds) == 1 and None not in seeds  # one seed drawn for all, and reported
    assert data["settings"]["seed"] in seeds
    (seed,) = seeds
    for side, model_dir in zip(data["models"], (tiny_base_dir, tiny_model_dir)):
        alone = run_json(cli, "generate", "-m", model_dir, PROMPT, "-t", "1.2", "-n", "6", "--seed", str(seed))
        assert side["generation"]["token_ids"] == alone["token_ids"]


def test_low_memory_gives_the_same_results_and_frees_each_model(cli, tiny_base_dir, tiny_model_dir):
    args = ("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "-t", "0", "-n", "5")
    normal = run_json(cli, *args)
    low = run_json(cli, *args, "--low-memory")
    assert [m["generation"]["token_ids"] for m in low["models"]] == [m["generation"]["token_ids"] for m in normal["models"]]
    probs_args = ("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "--probs")
    normal, low = run_json(cli, *probs_args), run_json(cli, *probs_args, "--low-memory")
    assert [m["probs"]["table"] for m in low["models"]] == [m["probs"]["table"] for m in normal["models"]]
    assert low["agreement"] == normal["agreement"]  # the logits outlive their freed model

    from llmcli.api import ModelPool

    base, instruct = str(tiny_base_dir), str(tiny_model_dir)
    pool = ModelPool([base, instruct, base], low_memory=True)
    pool.get(base)
    pool.done(base, still_needed=True)
    assert pool.is_loaded(base)  # a later side uses the same model: kept
    pool.get(instruct)
    pool.done(instruct, still_needed=False)
    assert not pool.is_loaded(instruct)


def test_a_model_on_two_sides_loads_once(cli, tiny_model_dir, monkeypatch):
    import llmcli.api.pool

    loads = []
    real = llmcli.api.pool.load
    monkeypatch.setattr("llmcli.api.pool.load", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    data = run_json(cli, "compare", "--template-vs-raw", "-m", tiny_model_dir, PROMPT, "-t", "0", "-n", "4")
    assert loads == [str(tiny_model_dir)]
    raw, chat = data["models"]
    assert (raw["mode"], chat["mode"]) == ("raw", "chat")
    assert raw["generation"]["prompt"] == PROMPT
    assert "<|im_start|>user\n" + PROMPT in chat["generation"]["prompt"]


def test_stop_understands_backslash_n_as_generate_does(cli, tiny_base_dir, tiny_model_dir):
    args = ("-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "-t", "0", "-n", "2", "--stop", r"\n", "--stop", r"a\tb")
    assert run_json(cli, "compare", *args)["settings"]["stop"] == ["\n", "a\tb"]


def test_raw_and_chat_force_one_mode_for_every_side(cli, tiny_base_dir, tiny_model_dir):
    raw = run_json(cli, "compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "--raw", "-t", "0", "-n", "2")
    assert [m["mode"] for m in raw["models"]] == ["raw", "raw"]
    chat = run_json(cli, "compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "--chat", "-t", "0", "-n", "2")
    assert [m["mode"] for m in chat["models"]] == ["template", "chat"]  # a base model chats through prompts/


def test_base_and_instruct_options_set_the_roles(cli, tiny_base_dir, tiny_model_dir):
    data = run_json(cli, "compare", "--base", tiny_model_dir, "--instruct", tiny_model_dir, PROMPT, "-t", "0", "-n", "2")
    assert [(m["side"], m["role"], m["mode"]) for m in data["models"]] == [("A", "base", "raw"), ("B", "instruct", "chat")]


def test_system_prompt_reaches_chat_sides_and_raw_sides_are_told(cli, tiny_base_dir, tiny_model_dir):
    result = cli("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "-s", "Be brief.", "-t", "0", "-n", "2", "--json")
    assert result.exit_code == 0, result.stderr
    base, instruct = json.loads(result.stdout)["models"]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in instruct["generation"]["prompt"]
    assert base["generation"]["prompt"] == PROMPT
    assert "warning: A (tiny-base" in result.stderr and "system prompt" in result.stderr


def test_piped_output_is_labelled_sections_with_stats_on_stderr(cli, tiny_base_dir, tiny_model_dir):
    result = cli("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "-t", "0", "-n", "6", "--show-prompt")
    assert result.exit_code == 0, result.stderr
    data = run_json(cli, "compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "-t", "0", "-n", "6")
    sections = result.stdout.split("\n== ")
    assert len(sections) == 2 and sections[0].startswith("== A: tiny-base")
    for section, side in zip(sections, data["models"]):
        gen = side["generation"]
        head, prompt_and_reply = section.split("\n-- prompt\n", 1)
        assert f"{side['side']}: " in head and side["mode"].replace("chat", "chat template").replace("raw", "raw text") in head
        assert f"{len(gen['prompt_token_ids'])} prompt tokens" in head
        prompt, reply = prompt_and_reply.split("\n-- reply\n", 1)
        assert prompt == gen["prompt"]  # neither tiny tokenizer adds a BOS the text lacks
        assert reply.rstrip("\n") == gen["text"].rstrip("\n")
    assert ANSI.search(result.stdout) is None
    stats = [line for line in result.stderr.splitlines() if line.startswith(("A: ", "B: "))]
    assert len(stats) == 2 and all("prompt tokens" in line and "tokens, hit the limit" in line for line in stats)
    assert "greedy (temperature 0)" in result.stderr


# ---------------------------------------------------------------------------- next-token tables


def test_probs_json_is_what_probs_gives_and_agreement_is_recomputed(cli, tiny_base_dir, tiny_model_dir):
    data = run_json(cli, "compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "--probs", "--num", "8")
    base, instruct = data["models"]
    alone_base = run_json(cli, "probs", "-m", tiny_base_dir, PROMPT, "--num", "8")
    alone_instruct = run_json(cli, "probs", "-m", tiny_model_dir, PROMPT, "--chat", "--num", "8")
    for ours, alone in ((base["probs"], alone_base), (instruct["probs"], alone_instruct)):
        assert ours["table"] == alone["table"]
        assert (ours["model"], ours["mode"], ours["prompt"], ours["prompt_tokens"]) == (alone["model"], alone["mode"], alone["prompt"], alone["prompt_tokens"])

    # Agreement, from the models' logits directly.
    logits_a = last_logits(tiny_base_dir, [t["id"] for t in base["probs"]["prompt_tokens"]])
    logits_b = last_logits(tiny_model_dir, [t["id"] for t in instruct["probs"]["prompt_tokens"]])
    (pair,) = data["agreement"]
    log_p, log_q = torch.log_softmax(logits_a, -1), torch.log_softmax(logits_b, -1)
    assert pair["kl"] == pytest.approx(float(torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="sum")), rel=1e-5)
    assert pair["kl_reverse"] == pytest.approx(float(torch.nn.functional.kl_div(log_p, log_q, log_target=True, reduction="sum")), rel=1e-5)
    assert pair["kl_bits"] == pytest.approx(pair["kl"] / math.log(2))
    texts_a = [r["text"] for r in alone_base["table"]["rows"]]
    texts_b = [r["text"] for r in alone_instruct["table"]["rows"]]
    assert pair["top1"] == [texts_a[0], texts_b[0]]
    assert pair["top1_agree"] == (texts_a[0] == texts_b[0])
    assert [s["text"] for s in pair["shared"]] == [t for t in dict.fromkeys(texts_a) if t in texts_b]
    assert pair["k"] == 8 and pair["same_vocabulary"] is True


def test_probs_with_different_vocabularies_compares_text_only(cli, tiny_base_dir, other_vocab_dir):
    data = run_json(cli, "compare", "-m", tiny_base_dir, "-m", other_vocab_dir, PROMPT, "--probs")
    (pair,) = data["agreement"]
    assert pair["same_vocabulary"] is False and pair["kl"] is None
    sizes = [len(AutoTokenizer.from_pretrained(d)) for d in (tiny_base_dir, other_vocab_dir)]
    assert sizes[0] != sizes[1] and f"({sizes[0]:,} and {sizes[1]:,} tokens)" in pair["kl_note"]
    # The extra token aside, the two models are the same: their top-10 texts match.
    rows = [m["probs"]["table"]["rows"] for m in data["models"]]
    assert pair["overlap"] == len({r["text"] for r in rows[0]} & {r["text"] for r in rows[1]})


def test_probs_table_and_agreement_render_in_80_columns(cli, tiny_base_dir, tiny_model_dir, other_vocab_dir):
    result = cli("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, "-m", other_vocab_dir, PROMPT, "--probs", "--show-prompt")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    assert all(line == line.rstrip() for line in out.splitlines())
    pairs = [line.split() for line in out.splitlines() if " vs " in line and "top-1" not in line]
    assert [(p[0], p[3]) for p in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    assert out.count("top-1 ") == 3 and out.count("top-10 ") == 3
    kl_lines = [line.split(None, 1)[1] for line in out.splitlines() if line.strip().startswith("KL ")]
    assert "A‖B" in kl_lines[0] and "bits" in kl_lines[0]  # the same vocabulary
    sizes = [len(AutoTokenizer.from_pretrained(d)) for d in (tiny_model_dir, other_vocab_dir)]
    assert all(f"different vocabularies ({sizes[0]:,} and {sizes[1]:,} tokens)" in line for line in kl_lines[1:])
    assert "<|im_start|>user↵" in out  # the chat prompt, shown


def test_probs_warns_that_sampling_options_do_not_apply(cli, tiny_base_dir, tiny_model_dir):
    result = cli("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, PROMPT, "--probs", "-t", "0", "--seed", "3")
    assert result.exit_code == 0
    assert "warning: --temperature, --seed do not apply to --probs" in result.stderr


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("-m", "x", "--base", "y"), ("-m and --base/--instruct",)),
        (("-m", "smollm2"), ("two models or more", "--template-vs-raw")),
        (("--raw", "--chat"), ("--raw and --chat",)),
        (("--template-vs-raw", "--raw"), ("--template-vs-raw", "drop --raw")),
        (("--template-vs-raw", "-m", "a", "-m", "b"), ("compares one model with itself",)),
        (("--raw", "--system", "hi"), ("system prompt needs chat mode",)),
        (("--num", "0", "--probs"), ("--num must be at least 1",)),
        (("-t", "-1"), ("temperature must be",)),
    ],
)
def test_bad_options_fail_before_loading_anything(cli, args, fragments):
    assert_one_line_error(cli("compare", PROMPT, *args), *fragments)


def test_a_model_that_cannot_load_is_named(cli, tiny_model_dir, tmp_path):
    result = cli("compare", "-m", tiny_model_dir, "-m", "nosuchmodel", PROMPT)
    assert_one_line_error(result, "model B (-m nosuchmodel)", "unknown model 'nosuchmodel'")
    result = cli("compare", "--base", tiny_model_dir, "--instruct", "smolm2", PROMPT)
    assert_one_line_error(result, "model B (--instruct smolm2)", "did you mean 'smollm2'")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    result = cli("compare", "-m", broken, "-m", tiny_model_dir, PROMPT, "-n", "2")
    assert_one_line_error(result, f"model A (-m {broken})", "cannot load")


def test_an_empty_prompt_is_refused(cli, tiny_model_dir):
    assert_one_line_error(cli("compare", "-m", tiny_model_dir, "-m", tiny_model_dir, "  "), "the prompt is empty")


# ---------------------------------------------------------------------------- rendering


def console(width=80, height=24) -> Console:
    return Console(width=width, height=height, force_terminal=True, color_system="truecolor", record=True)


def header(letter, model="m", role="base", mode="raw", prompt=(("hello", False),)) -> Header:
    return Header(letter, model, role, mode, 3, tuple(prompt))


LONG = " ".join(f"word{i:03d}" for i in range(200)) + " " + "x" * 95 + " end"


@pytest.mark.parametrize("count", [2, 3])
def test_columns_fit_80_columns_and_keep_every_word(count):
    columns = [Column(letter, "model", status="done", header=header(letter), text=LONG) for letter in "ABC"[:count]]
    c = console()
    c.print(columns_view(columns, c))
    lines = c.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    for i in range(count):  # read each column back: every word is there, the long one folded, not cut
        width = (80 - (count - 1)) // count - 2
        start = i * (width + 3)
        cells = [line[start : start + width + 2].strip(" │") for line in lines]
        text = " ".join(cells)
        assert all(f"word{n:03d}" in text for n in range(200))
        assert sum(len(run) for run in re.findall("x{5,}", "".join(cells))) == 95 and "end" in text


def test_the_live_view_shows_the_tail_and_fits_the_screen():
    columns = [Column("A", "a", status="running", header=header("A"), text=LONG), Column("B", "b")]
    c = console(height=20)
    c.print(columns_view(columns, c, height=c.height))
    screen = c.export_text()
    assert len(screen.splitlines()) < 20  # a line left for the cursor
    assert "more lines" in screen and "end" in screen and "word000" not in screen
    assert "waiting" in screen


def test_model_text_is_shown_literally():
    hostile = "[bold red]not markup[/] \x1b[31mred\x1b[0m [link=x]y[/link]"
    columns = [
        Column("A", "[b]m[/b]", status="done", header=header("A", model="[b]m[/b]", prompt=((hostile, False),)), text=hostile),
        Column("B", "b", status="done", header=header("B"), text="ok"),
    ]
    c = console(width=120)
    c.print(columns_view(columns, c, show_prompt=True))
    screen = c.export_text()
    assert "[bold red]not markup[/]" in screen and "[b]m[/b]" in screen and "[link=x]y[/link]" in screen
    assert "\\x1b[31mred" in screen
    assert "\x1b" not in screen


def test_probs_render_plain_when_not_a_terminal(tiny_model_dir):
    from llmcli.inspect.comparison import Distribution, pairwise
    from llmcli.inspect.next_token import next_token_table

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    logits = [torch.randn(len(tokenizer), generator=torch.Generator().manual_seed(s)) * 3 for s in (1, 2)]
    tables = [next_token_table(l, tokenizer) for l in logits]
    from llmcli.render.compare import ProbsSide

    sides = [ProbsSide(header(letter), table) for letter, table in zip("AB", tables)]
    agreements = pairwise([Distribution(s, t, l, tokenizer) for s, t, l in zip("AB", tables, logits)])
    c = Console(width=80, force_terminal=False, record=True)
    render_probs(sides, agreements, console=c)
    out = c.export_text()
    assert ANSI.search(out) is None and "█" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert tables[0].rows[0].text.replace(" ", "·") in out
    assert f"{agreements[0].kl_bits:.3f} bits" in out
