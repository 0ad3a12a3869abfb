"""Failure matrix, input: what a user can type or pipe into every command.

Empty and whitespace-only prompts, binary and non-UTF-8 stdin, files and command-line words,
prompts over the context window, every option at and past the ends of its range, NaN and
infinity spelled as floats, a huge --max-new-tokens. A row expecting an error expects exactly
one error line and one hint (exit 1, or 2 for a usage error Typer catches); a row expecting
success says what must be true of the output. Raw text is kept byte for byte by design, so a
whitespace-only prompt is an error where a chat message is built from it (generate, compare)
and a real prompt where the text is raw (probs, tokenize).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.failures.matrix import Row, assert_no_traceback, check, parametrize

LONG = "the cat sat on the mat " * 60  # ~480 tokens; the tiny model's window holds 128
LONGER = "the cat sat on the mat " * 20  # ~160 tokens: past the window, in few windows even with a small stride
LATIN1 = "café".encode("latin-1")
BINARY = bytes(range(256))
NOT_UTF8 = "not UTF-8 text"
CONVERT = "iconv"


def rows_for(commands, args, error, hint, *, tag, **extra):
    """The same row for each of `commands` (name -> command line before `args`)."""
    return [Row(f"{tag}{name}", (*command, *args), error, hint, **extra) for name, command in commands.items()]


# Every command that reads a text, and how to give it one.
TEXT_COMMANDS = {
    "generate": ("generate", "-n", "1", "-m", "{tiny}"),
    "probs": ("probs", "-m", "{tiny}"),
    "score": ("score", "-m", "{tiny}"),
    "lens": ("lens", "-m", "{tiny}"),
    "attention": ("attention", "-m", "{tiny}"),
    "compare": ("compare", "-n", "1", "-m", "{tiny}", "-m", "{base}"),
    "tokenize": ("tokenize", "-m", "{tiny}"),
}

EMPTY = [
    Row("empty/generate", ("generate", "", "-m", "{tiny}"), "the prompt is empty", "give some text"),
    Row("blank/generate", ("generate", " \n\t ", "-m", "{tiny}"), "the prompt is empty", "give some text"),
    Row("blank/generate-raw", ("generate", "--raw", "  ", "-m", "{tiny}"), "the prompt is empty", "give some text"),
    Row("empty-stdin/generate", ("generate", "-m", "{tiny}"), "the prompt is empty", "give some text", stdin=b""),
    Row("blank-stdin/generate", ("generate", "-m", "{tiny}"), "the prompt is empty", "give some text", stdin=b"\n\n  \n"),
    Row("empty-file/generate", ("generate", "--file", "{empty_file}", "-m", "{tiny}"), "the prompt is empty", "give some text"),
    Row("empty/probs-no-bos", ("probs", "", "-m", "{tiny}"), "the prompt is empty, and this model's tokenizer adds no BOS", "even a single space is a token"),
    Row("blank/probs-raw-is-text", ("probs", " \n", "-m", "{tiny}")),  # raw: two tokens to predict from
    Row("empty/probs-chat", ("probs", "", "--chat", "-m", "{tiny}")),  # the template's own tokens
    Row("empty/score", ("score", "", "-m", "{tiny}"), "the text is empty", "give some text"),
    Row("blank/score", ("score", "   ", "-m", "{tiny}"), "the text is empty", "give some text"),
    Row("one-token/score", ("score", "h", "-m", "{tiny}"), "the text is one token", "at least two tokens"),
    Row("empty/lens", ("lens", "", "-m", "{tiny}"), "the prompt is empty", "give some text"),
    Row("blank/lens", ("lens", "\t", "-m", "{tiny}"), "the prompt is empty", "give some text"),
    Row("empty/attention", ("attention", "", "-m", "{tiny}"), "the text is empty", "give some text"),
    Row("blank/attention", ("attention", "  ", "-m", "{tiny}"), "the text is empty", "give some text"),
    Row("empty/compare", ("compare", "", "-m", "{tiny}", "-m", "{base}"), "the prompt is empty", "give some text"),
    Row("blank/compare", ("compare", " ", "-m", "{tiny}", "-m", "{base}"), "the prompt is empty", "give some text"),
    Row("empty/tokenize-is-0-tokens", ("tokenize", "", "-m", "{tiny}", "--count")),
    Row("blank/tokenize", ("tokenize", "  ", "-m", "{tiny}", "--count")),
    Row("empty/tokenize-chat", ("tokenize", "", "--chat", "-m", "{tiny}")),
    Row("empty-stdin/detokenize", ("detokenize", "-m", "{tiny}"), stdin=b""),
    Row("empty/neighbors", ("neighbors", "", "-m", "{tiny}"), "the word is empty", "give a word"),
    Row("blank/neighbors", ("neighbors", "  ", "-m", "{tiny}"), "the word is empty", "give a word"),
    Row("empty/analogy", ("neighbors", "--analogy", "", "-m", "{tiny}"), "has no + or -", "king - man + woman"),
    Row("empty/stop", ("generate", "hi", "--stop", "", "-m", "{tiny}"), "stop must be non-empty strings", "valid:"),
    Row("empty/probs-target", ("probs", "hi", "--target", "", "-m", "{tiny}"), "--target is empty", "Paris"),
    Row("empty/lens-target", ("lens", "hi", "--target", "", "-m", "{tiny}"), "--target is empty", "Paris"),
    Row("empty/system-is-none", ("generate", "hi", "--system", "  ", "-n", "1", "-m", "{tiny}")),
    Row("blank-lines/chat", ("chat", "-n", "1", "-m", "{tiny}"), stdin=b"\n   \n\t\n"),  # skipped, no reply
]

NON_UTF8 = [
    *rows_for(TEXT_COMMANDS, ("--file", "{latin1_file}"), f"{NOT_UTF8} (byte 0xE9 at offset 3)", CONVERT, tag="latin1-file/"),
    *rows_for(TEXT_COMMANDS, ("--file", "{binary_file}"), f"{NOT_UTF8} (byte 0x80 at offset 128)", CONVERT, tag="binary-file/"),
    *rows_for(TEXT_COMMANDS, (), f"stdin is {NOT_UTF8} (byte 0xFF at offset 0)", CONVERT, stdin=b"\xff\xfe\x00binary", tag="binary-stdin/"),
    *rows_for(TEXT_COMMANDS, ("--file", "{tmp}"), "it is a directory", "give a text file", tag="file-is-a-dir/"),
    *rows_for(TEXT_COMMANDS, ("--file", "{missing}"), "no such file", "check the path", tag="file-missing/"),
    # A command-line word that is not UTF-8: Python passes it on with lone surrogates.
    *rows_for(TEXT_COMMANDS, ("hi \udcff there",), "is not UTF-8 text (byte 0xFF at offset 3)", CONVERT, tag="argv/"),
    Row("argv/neighbors", ("neighbors", "\udcff", "-m", "{tiny}"), "argument 2 is not UTF-8 text", CONVERT),
    Row("argv/detokenize", ("detokenize", "1\udcff", "-m", "{tiny}"), "argument 2 is not UTF-8 text", CONVERT),
    Row("argv/system", ("generate", "hi", "--system=\udce9", "-m", "{tiny}"), "argument 3 is not UTF-8 text (byte 0xE9 at offset 0)", CONVERT),
    Row("argv/stop", ("generate", "hi", "--stop", "a\udcffb", "-m", "{tiny}"), "argument 4 is not UTF-8 text", CONVERT),
    Row("argv/target", ("probs", "hi", "--target", "\udcff", "-m", "{tiny}"), "argument 4 is not UTF-8 text", CONVERT),
    Row("argv/path-that-exists-is-fine", ("tokenize", "--file", "{latin1_named_file}", "-m", "{tiny}", "--count")),
    Row("binary-stdin/detokenize", ("detokenize", "-m", "{tiny}"), f"stdin is {NOT_UTF8}", CONVERT, stdin=b"\xff1 2"),
    Row("latin1/system-file", ("generate", "hi", "--system-file", "{latin1_file}", "-m", "{tiny}"), NOT_UTF8, CONVERT),
    Row("binary/chat-load", ("chat", "--load", "{binary_file}", "-m", "{tiny}"), "cannot read", "a chat saved with /save"),
    Row("not-a-chat/chat-load", ("chat", "--load", "{empty_file}", "-m", "{tiny}"), "is not JSON", "a file written by /save"),
    Row("lone-surrogate/chat-load", ("chat", "--load", "{surrogate_chat}", "-m", "{tiny}"), "holds text that is not valid Unicode", "a file written by /save", stdin=b"hi\n"),
    Row("nul-bytes-are-text/tokenize", ("tokenize", "--file", "{nul_file}", "-m", "{tiny}")),
]

OVER_CONTEXT = [
    Row("generate", ("generate", LONG, "-m", "{tiny}"), "tokens but the model's context window holds 128", "shorten the prompt"),
    Row("generate-raw", ("generate", "--raw", LONG, "-m", "{tiny}"), "tokens but the model's context window holds 128", "shorten the prompt"),
    Row("probs", ("probs", LONG, "-m", "{tiny}"), "longer than the model's context window of 128", "shorten the prompt"),
    Row("probs-chat", ("probs", LONG, "--chat", "-m", "{tiny}"), "longer than the model's context window of 128", "shorten the prompt"),
    Row("probs-steps-past-the-window", ("probs", "hi", "--steps", "1000", "-m", "{tiny}"), "--steps 1,000 is more than the 126 tokens left", "window holds 128"),
    Row("score-is-windowed", ("score", LONG, "-m", "{tiny}", "--json")),
    Row("score-chat-is-windowed", ("score", LONG, "--chat", "-m", "{tiny}", "--json")),
    Row("lens", ("lens", LONG, "-m", "{tiny}"), "longer than the model's context window of 128", "shorten the prompt"),
    Row("attention", ("attention", LONG, "-m", "{tiny}"), "longer than the model's context window of 128", "shorten the prompt"),
    Row("compare", ("compare", LONG, "-n", "1", "-m", "{tiny}", "-m", "{base}"), "model A (-m", "shorten the prompt"),
    Row("compare-probs", ("compare", LONG, "--probs", "-m", "{tiny}", "-m", "{base}"), "longer than the model's context window", "shorten the prompt"),
    Row("tokenize-has-no-window", ("tokenize", LONG, "-m", "{tiny}", "--count")),
]


def sampling_rows(prefix: tuple[str, ...], tag: str) -> list[Row]:
    """Each sampling flag at the ends of its range (accepted) and past them (refused)."""
    ok = {
        "--temperature": ["0", "1e-300", "1e-45", "1e300"],
        "--top-p": ["1", "1e-300", "1e-45"],
        "--top-k": ["0", "1", "99999999999999999999"],
        "--min-p": ["0", "1", "1e-300"],
        "--repetition-penalty": ["1e-300", "1e-45", "1e300"],
        "--seed": ["0", str(2**64 - 1)],
        "--max-new-tokens": ["1"],
    }
    bad = {
        "--temperature": [("-0.1", "temperature must be ≥ 0"), ("nan", "got nan"), ("NaN", "got nan"), ("inf", "got inf"), ("-inf", "got -inf"), ("1e309", "got inf")],
        "--top-p": [("0", "top_p must be in (0, 1]"), ("1.0001", "top_p must be in (0, 1]"), ("nan", "got nan"), ("inf", "got inf"), ("-1", "got -1.0")],
        "--top-k": [("-1", "top_k must be ≥ 0")],
        "--min-p": [("1.1", "min_p must be in [0, 1]"), ("nan", "got nan"), ("-inf", "got -inf")],
        "--repetition-penalty": [("0", "repetition_penalty must be > 0"), ("-1", "must be > 0"), ("nan", "got nan"), ("inf", "got inf")],
        "--seed": [("-1", "seed must be between 0 and"), (str(2**64), "got 18446744073709551616")],
        "--max-new-tokens": [("0", "max_new_tokens must be ≥ 1"), ("-1", "got -1")],
    }
    usage = {"--temperature": "abc", "--top-k": "1.5", "--seed": "1e3", "--max-new-tokens": "ten"}
    rows = []
    for flag, values in ok.items():
        rows += [Row(f"{tag}{flag}={v}/ok", (*prefix, flag, v)) for v in values]
    for flag, cases in bad.items():
        rows += [Row(f"{tag}{flag}={v}", (*prefix, flag, v), fragment, "valid: temperature ≥ 0") for v, fragment in cases]
    rows += [Row(f"{tag}{flag}={v}/usage", (*prefix, flag, v), f"Invalid value for '{flag}'", "--help", code=2) for flag, v in usage.items()]
    return rows


OPTIONS = [
    *sampling_rows(("generate", "hi", "-n", "2", "-m", "{tiny}"), "generate"),
    # compare validates the same SamplingSettings: one refused value and one extreme that is accepted
    *[r for r in sampling_rows(("compare", "hi", "-n", "2", "-m", "{tiny}", "-m", "{base}"), "compare") if r.id in ("compare--temperature=nan", "compare--top-p=1e-300/ok")],
    Row("generate--logprobs=0/ok", ("generate", "hi", "-n", "1", "--logprobs", "0", "-m", "{tiny}")),
    Row("generate--logprobs=20/ok", ("generate", "hi", "-n", "1", "--logprobs", "20", "-m", "{tiny}")),
    Row("generate--logprobs=21", ("generate", "hi", "--logprobs", "21", "-m", "{tiny}"), "less than or equal to 20", "--help", code=2),
    Row("generate--logprobs=-1", ("generate", "hi", "--logprobs", "-1", "-m", "{tiny}"), "greater than or equal to 0", "--help", code=2),
    Row("generate--dtype=float8", ("generate", "hi", "--dtype", "float8", "-m", "{tiny}"), "Invalid value for '--dtype'", "--help", code=2),
    Row("generate--device=tpu", ("generate", "hi", "--device", "tpu", "-m", "{tiny}"), "Invalid value for '--device'", "--help", code=2),
    # probs
    Row("probs--num=0", ("probs", "hi", "--num", "0", "-m", "{tiny}"), "--num must be at least 1", "rows the table shows"),
    Row("probs--num=huge/ok", ("probs", "hi", "--num", "9" * 25, "-m", "{tiny}", "--json")),
    Row("probs--position=99", ("probs", "hi", "--position", "99", "-m", "{tiny}"), "--position 99", "positions"),
    Row("probs--position=-99", ("probs", "hi", "--position", "-99", "-m", "{tiny}"), "--position -99", "positions"),
    Row("probs--position=0/ok", ("probs", "hi", "--position", "0", "-m", "{tiny}")),
    Row("probs--steps=-1", ("probs", "hi", "--steps", "-1", "-m", "{tiny}"), "--steps must be 0 or more", "number of tokens"),
    Row("probs-t=0,1,nan", ("probs", "hi", "-t", "0,1,nan", "-m", "{tiny}"), "--temperature: nan is out of range", "temperatures are >= 0"),
    Row("probs-t=inf", ("probs", "hi", "-t", "inf", "-m", "{tiny}"), "--temperature: inf is out of range", "temperatures are >= 0"),
    Row("probs-t=-1", ("probs", "hi", "-t", "-1", "-m", "{tiny}"), "--temperature: -1 is out of range", "temperatures are >= 0"),
    Row("probs-t=empty", ("probs", "hi", "-t", "", "-m", "{tiny}"), "--temperature: '' is not a number", "comma-separated list"),
    Row("probs-t=1,,2", ("probs", "hi", "-t", "1,,2", "-m", "{tiny}"), "--temperature: '' is not a number", "comma-separated list"),
    Row("probs-t=1e-300/ok", ("probs", "hi", "-t", "1e-300", "-m", "{tiny}", "--json")),
    Row("probs-t=1e-300-steps/ok", ("probs", "hi", "-t", "1e-300", "--steps", "2", "-m", "{tiny}", "--json")),
    Row("probs--top-p=1e-300/ok", ("probs", "hi", "--top-p", "1e-300", "-m", "{tiny}", "--json")),
    Row("probs--top-p=0", ("probs", "hi", "--top-p", "0", "-m", "{tiny}"), "top_p must be in (0, 1]", "valid:"),
    Row("probs--min-p=-1", ("probs", "hi", "--min-p", "-1", "-m", "{tiny}"), "min_p must be in [0, 1]", "valid:"),
    Row("probs--seed=-1", ("probs", "hi", "--steps", "2", "-t", "1", "--seed", "-1", "-m", "{tiny}"), "seed must be between 0 and", "valid:"),
    # score
    Row("score--surprises=-1", ("score", "hi there", "--surprises", "-1", "-m", "{tiny}"), "--surprises must be 0 or more", "surprises table"),
    Row("score--window=1", ("score", "hi there", "--window", "1", "-m", "{tiny}"), "--window must be at least 2", "one forward pass"),
    Row("score--window=2/ok", ("score", LONGER, "--window", "2", "--stride", "1", "-m", "{tiny}", "--json")),
    Row("score--window=128/ok", ("score", LONGER, "--window", "128", "-m", "{tiny}", "--json")),
    Row("score--window=129", ("score", LONGER, "--window", "129", "-m", "{tiny}"), "--window 129 is more than the model's context window of 128", "at most 128 tokens"),
    Row("score--window=huge", ("score", "hi there", "--window", "9" * 25, "-m", "{tiny}"), "is more than the model's context window", "at most 128 tokens"),
    Row("score--stride=0", ("score", LONGER, "--stride", "0", "-m", "{tiny}"), "--stride 0 does not fit a window of 128 tokens", "1 to 127"),
    Row("score--stride=128", ("score", LONGER, "--stride", "128", "-m", "{tiny}"), "--stride 128 does not fit", "1 to 127"),
    Row("score--stride=127/ok", ("score", LONGER, "--stride", "127", "-m", "{tiny}", "--json")),
    # lens
    Row("lens--top-k=0", ("lens", "hi", "--top-k", "0", "-m", "{tiny}"), "--top-k must be at least 1", "each layer lists"),
    Row("lens--top-k=huge/ok", ("lens", "hi", "--top-k", "9" * 25, "-m", "{tiny}", "--json")),
    Row("lens--position=99", ("lens", "hi", "--position", "99", "-m", "{tiny}"), "--position 99", "positions"),
    Row("lens--layers=5", ("lens", "hi", "--layers", "5", "-m", "{tiny}"), "--layers", "layers"),
    Row("lens--layers=abc", ("lens", "hi", "--layers", "abc", "-m", "{tiny}"), "--layers", "e.g. --layers"),
    Row("lens--layers=::0", ("lens", "hi", "--layers", "::0", "-m", "{tiny}"), "--layers", "e.g. --layers"),
    # attention
    Row("attention--layer=2", ("attention", "hi", "--layer", "2", "-m", "{tiny}"), "--layer 2", "0"),
    Row("attention--layer=-3", ("attention", "hi", "--layer", "-3", "-m", "{tiny}"), "--layer -3", "0"),
    Row("attention--layer=-1/ok", ("attention", "hi", "--layer", "-1", "-m", "{tiny}")),
    Row("attention--head=4", ("attention", "hi", "--head", "4", "-m", "{tiny}"), "--head 4", "0"),
    Row("attention--head=3/ok", ("attention", "hi", "--head", "3", "-m", "{tiny}")),
    Row("attention--from=99", ("attention", "hi", "--from", "99", "-m", "{tiny}"), "--from 99 is outside the text", "positions run from 0"),
    Row("attention--to=0", ("attention", "hi", "--to", "0", "-m", "{tiny}"), "is not a range of this text", "--to is exclusive"),
    Row("attention--drop-first-one-token", ("attention", "h", "--drop-first", "-m", "{tiny}"), "--drop-first needs at least two tokens", "nothing but the first"),
    # neighbors
    Row("neighbors--num=0", ("neighbors", "the", "--num", "0", "-m", "{tiny}"), "--num must be at least 1", "how many neighbours"),
    Row("neighbors--num=huge/ok", ("neighbors", "the", "--num", "9" * 25, "-m", "{tiny}", "--json")),
    Row("neighbors--dims=0", ("neighbors", "the", "--vector", "--dims", "0", "-m", "{tiny}"), "--dims must be at least 1 (got 0)", "how many components"),
    Row("neighbors-analogy-cancels/ok", ("neighbors", "--analogy", "the - the", "-m", "{tiny}", "--json")),
]


@pytest.fixture
def input_places(places, tmp_path):
    files = {
        "empty_file": b"",
        "latin1_file": LATIN1,
        "binary_file": BINARY,
        "nul_file": b"hello\x00world",
        # JSON may spell a lone surrogate; a hand-edited chat file can hold one.
        "surrogate_chat": b'{"format": "llmcli-chat", "version": 1, "messages": [{"role": "user", "content": "caf\\udce9"}]}',
        os.fsdecode(b"caf\xe9-named.txt"): b"a file whose name is not UTF-8",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {
        **places,
        **{name: tmp_path / name for name in files if name.isidentifier()},
        "latin1_named_file": tmp_path / os.fsdecode(b"caf\xe9-named.txt"),
    }


def _files(folder):
    """The row's folder, but the cache: the engine may lay out a model's weights there."""
    return sorted(p.name for p in folder.iterdir() if p.name != "cache")


def _run(cli, row, input_places):
    before = _files(input_places["tmp"])
    r = cli(*row.argv(**input_places), input=row.stdin)
    check(r, row)
    assert _files(input_places["tmp"]) == before  # no stray file written
    return r


@parametrize(EMPTY)
def test_empty_and_blank_input(row, cli, cache_dir, input_places):
    r = _run(cli, row, input_places)
    if row.id == "empty/tokenize-is-0-tokens":
        assert r.stdout.strip() == "0"
    if row.id == "blank-lines/chat":
        assert r.stdout == "" and r.stderr == ""


@parametrize(NON_UTF8)
def test_binary_and_non_utf8_input(row, cli, cache_dir, input_places):
    r = _run(cli, row, input_places)
    if row.id == "nul-bytes-are-text/tokenize":
        assert "\\x00" in r.stdout and "\x00" not in r.stdout  # shown, escaped, never written raw


@parametrize(OVER_CONTEXT)
def test_prompts_over_the_context_window(row, cli, cache_dir, input_places):
    r = _run(cli, row, input_places)
    if row.id.startswith("score"):
        (report,) = json.loads(r.stdout)
        assert report["scores"]["windows"] > 1


@parametrize(OPTIONS)
def test_options_at_and_past_their_range(row, cli, cache_dir, input_places):
    r = _run(cli, row, input_places)
    if "--json" in row.args and row.error is None:
        json.loads(r.stdout, parse_constant=_no_nan)  # strict JSON: no NaN or Infinity


def _no_nan(constant):
    raise AssertionError(f"{constant} in --json output")


def test_a_huge_max_new_tokens_stops_at_the_window(cli, tiny_model_dir):
    r = cli("generate", "hi", "-n", str(10**30), "-t", "0", "--json", "-m", tiny_model_dir)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["finish_reason"] == "length"
    assert doc["usage"]["total_tokens"] == 128  # the whole window, and not a token past it


def test_a_chat_message_over_the_window_is_refused_and_the_chat_goes_on(cli, tiny_model_dir):
    r = cli("chat", "-n", "2", "-t", "0", "-m", tiny_model_dir, input=f"{LONG}\nhi\n")
    assert_no_traceback(r.stderr)
    assert r.exit_code == 0
    errors = [line for line in r.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert errors == ["error: the prompt is 492 tokens but the model's context window holds 128", "hint: shorten the prompt"]
    assert r.stdout.strip() != ""  # "hi" was answered


def test_a_non_utf8_chat_line_ends_the_chat_in_one_line(cli, tiny_model_dir):
    """Before: UnicodeDecodeError from stdin's text layer, a traceback."""
    r = cli("chat", "-n", "1", "-m", tiny_model_dir, input=b"hi\n\xff\xfe\nmore\n")
    assert_no_traceback(r.stderr)
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert errors == ["error: stdin line 2 is not UTF-8 text (byte 0xFF at offset 0)", "hint: convert it first, e.g. `iconv -f latin1 -t utf-8`"]


CHAT_SETTINGS = [
    ("/set temperature nan", "temperature must be ≥ 0 (0 = greedy); got nan"),
    ("/set temperature inf", "got inf"),
    ("/set top_p inf", "top_p must be in (0, 1]; got inf"),
    ("/set top_p 0", "top_p must be in (0, 1]"),
    ("/set min_p nan", "min_p must be in [0, 1]; got nan"),
    ("/set seed -1", "seed must be between 0 and"),
    ("/set max_new_tokens 0", "max_new_tokens must be ≥ 1"),
    ("/set top_k 1.5", "top_k must be an integer or 'none', not '1.5'"),
    ("/set temprature 1", "unknown setting 'temprature'"),
]


def test_chat_settings_past_their_range_and_at_its_extremes(cli, tiny_model_dir):
    """Each bad /set is one error line (the chat goes on); then replies at the extremes that
    used to crash the sampler (a temperature or penalty so small it rounds to 0 in float32)."""
    script = [line for line, _ in CHAT_SETTINGS] + [
        "/set max_new_tokens 99999999999999999999999",
        "/set temperature 1e-300",
        "hello",
        "/set repetition_penalty 1e-300",
        "/set temperature 1",
        "again",
        "/set top_p 1e-300",
        "more",
    ]
    r = cli("chat", "-m", tiny_model_dir, input="".join(f"{line}\n" for line in script))
    assert_no_traceback(r.stderr)
    assert r.exit_code == 0
    lines = r.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == len(CHAT_SETTINGS), r.stderr
    for (_, fragment), i in zip(CHAT_SETTINGS, errors):
        assert fragment in lines[i] and lines[i + 1].startswith("hint: "), lines[i : i + 2]
    assert "the reply failed" not in r.stderr
    assert len(r.stdout.splitlines()) >= 3  # three replies
