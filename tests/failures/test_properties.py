"""Failure matrix, properties (hypothesis): any text, through every view, comes out inert.

The text mixes ordinary Unicode with what could hurt a terminal or a layout: Rich markup (some of
it in styles no view uses, so an interpreted tag would show: blink, reverse, strike, a
background #123456, a link), ANSI and OSC escapes, C0 and C1 controls, bidi overrides, and — for
the views whose text does not come from the tokenizer — lone surrogates, as a saved chat or
surrogateescape input can carry them. Each view renders to a forced-terminal, truecolor console
writing strict UTF-8 bytes, and the bytes are checked (`assert_inert`): valid UTF-8, no ESC
except Rich's own SGR styling (and, for the live chat stream, the cursor moves Rich's Live
makes), none of the styles only the hostile markup asks for, no C1 control, no C0 control but
newline and tab, no bidi override or isolate; and nothing raised.

Views: tokens (spans, table, chat template, detokenized), probs (table with a temperature sweep
and sampler columns, with a target), the chat transcript (replayed, /show prompt, the live
Markdown and plain streams), compare (columns, and the --probs tables), score, lens (table and
grid), attention (heatmap and its labels), generate's stream and logprobs table, and --json.
Then: any id sequence detokenizes without raising (or is refused in one line when an id is
outside the vocabulary), and tokenize -> detokenize gives the text back.

Examples per test are kept small (EXAMPLES) so the whole folder stays fast on two cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rich.console import Console

from llmcli.errors import BadInput, LlmcliError

EXAMPLES = 25
FEW = 12  # for the views that run the model several times per example
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE = [
    "[bold]", "[/]", "[/bold]", "[blink]b[/blink]", "[reverse]r[/reverse]", "[strike]s", "[on #123456]bg",
    "[link=https://evil.example]click[/link]", "\\[", "[", "]",
    "\x1b[31m", "\x1b[2J", "\x1b[6n", "\x1b]8;;https://evil.example\x07x\x1b]8;;\x07", "\x1b]0;title\x07", "\x1bP1;2|x\x1b\\",
    "\x9b31m", "\x9d0;title\x9c", "\x07", "\x08", "\r", "\x00", "\x7f", "\x85",
    "\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200f", "\u200b", "\ufeff", "e\u0301",
    "🍕", "中文", "\t", "\n", "`x`", "**b**", "# h", "[a](https://evil.example)", "<b>", "```\ncode\n```",
]
_PIECES = st.one_of(st.sampled_from(HOSTILE), st.characters(exclude_categories=("Cs",)))
TEXT = st.lists(_PIECES, min_size=1, max_size=6).map("".join)  # short: it must fit the tiny model's 128 tokens
_SURROGATES = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)  # what surrogateescape makes of bytes
ANY_TEXT = st.lists(st.one_of(_PIECES, _SURROGATES), min_size=1, max_size=6).map("".join)

BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ESCAPE = re.compile(r"\x1b\[([0-9;]*)m")
_RICH_CURSOR = re.compile(r"\x1b\[\?25[lh]|\x1b\[[0-9]*[ABK]|\x1b\[2K|\r")  # what rich.live draws with


class _Bytes(io.BytesIO):
    def close(self) -> None:
        """Kept open: the text layer closes it when collected, and its bytes are still to be read."""


def terminal(width: int = 120) -> tuple[Console, io.BytesIO]:
    """A console that believes it is a truecolor terminal and writes strict UTF-8 bytes."""
    raw = _Bytes()
    file = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    console = Console(file=file, force_terminal=True, color_system="truecolor", width=width, height=40, legacy_windows=False, highlight=False)
    return console, raw


def _sgr_codes(params: str) -> list[str]:
    """The attribute codes of one SGR sequence, colours (38/48;5;n and 38/48;2;r;g;b) left out."""
    codes, parts, i = [], params.split(";") if params else ["0"], 0
    while i < len(parts):
        if parts[i] in ("38", "48", "58") and i + 1 < len(parts):
            i += 3 if parts[i + 1] == "5" else 5
            continue
        codes.append(parts[i])
        i += 1
    return codes


def assert_inert(data: bytes, *, live: bool = False) -> str:
    out = data.decode("utf-8")  # strict: what reached the terminal is UTF-8
    assert "48;2;18;52;86" not in out, "the markup [on #123456] was interpreted"
    for params in _ESCAPE.findall(out):
        for code in _sgr_codes(params):
            assert code not in ("5", "6", "7", "8", "9"), f"SGR {code} (blink/reverse/conceal/strike): markup was interpreted"
    rest = _ESCAPE.sub("", out)
    if live:
        rest = _RICH_CURSOR.sub("", rest)
    assert "\x1b" not in rest, f"an escape sequence other than styling: {rest[rest.index(chr(27)) - 10 : rest.index(chr(27)) + 20]!r}"
    bad = [c for c in rest if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F or c in BIDI]
    assert not bad, f"control characters reached the terminal: {bad!r}"
    return out


@contextlib.contextmanager
def consoles(width: int = 120):
    """Views that print on render.stdout()/stderr() print on recording terminals instead."""
    from llmcli import render

    out, out_raw = terminal(width)
    err, err_raw = terminal(width)
    saved = render.stdout, render.stderr
    render.stdout, render.stderr = (lambda: out), (lambda: err)
    try:
        yield out, out_raw, err_raw
    finally:
        render.stdout, render.stderr = saved


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import llmcli

    return llmcli.load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def base(tiny_base_dir):
    import llmcli

    return llmcli.load(str(tiny_base_dir))


# ---------------------------------------------------------------- tokens


@PROPERTY
@given(text=TEXT)
def test_token_views(tiny, text):
    from llmcli.prompting import Message
    from llmcli.render import tokens as show

    tokenization = tiny.tokenize(text)
    chat = tiny.chat_tokens([Message("system", text), Message("user", text)])
    detokenized = tiny.detokenize(tokenization.ids)
    with consoles() as (_, raw, _err):
        show.render_spans([tokenization])
        show.render_tables([tokenization])
        show.render_chat([chat])
        show.render_chat([chat], table=True)
        show.render_detokenized(detokenized)
        show.render_detokenized(detokenized, table=True)
    assert_inert(raw.getvalue())


# ---------------------------------------------------------------- probs


@PROPERTY
@given(text=TEXT, target=TEXT)
def test_probs_views(tiny, text, target):
    from llmcli.render.probs import render_report

    console, raw = terminal()
    try:
        reports = [
            tiny.next_token(text, temperatures=(0.5, 1.0, 2.0), targets=(target,)),
            tiny.next_token(text, top_k=5, top_p=0.9, min_p=0.01, num=8),
            tiny.next_token(text, mode="chat", system=text),
        ]
    except BadInput as e:  # over the tiny model's window: a one-line error of its own row
        assume("context window" not in e.message)
        raise
    for report in reports:
        render_report(report, console=console)
    assert_inert(raw.getvalue())


# ---------------------------------------------------------------- the chat transcript


def _loop(model, console, session, markdown=True):
    from llmcli.chat import commands
    from llmcli.chat.loop import ChatLoop

    return ChatLoop(model, session, lambda: None, console, commands.dispatch, markdown=markdown)


@PROPERTY
@given(user=ANY_TEXT, reply=ANY_TEXT, markdown=st.booleans())
def test_chat_transcript_replayed(tiny, user, reply, markdown):
    """A loaded chat's messages (a saved file can hold any text, lone surrogates included)."""
    from llmcli.chat import commands
    from llmcli.chat.session import ChatSession

    session = ChatSession(model="tiny", system=user, messages=[])
    session.add_user(user)
    session.add_assistant(reply, interrupted=True)
    console, raw = terminal()
    commands.replay(_loop(tiny, console, session, markdown))
    assert_inert(raw.getvalue())


@PROPERTY
@given(user=TEXT)
def test_chat_show_prompt_and_tokens(tiny, user):
    from llmcli.chat import commands
    from llmcli.chat.session import ChatSession

    session = ChatSession(model="tiny", system=user)
    session.add_user(user)
    session.add_assistant(user)
    console, raw = terminal()
    loop = _loop(tiny, console, session)
    for line in ("/show prompt", "/show template", "/tokens", "/show settings"):
        commands.dispatch(loop, line)
    assert_inert(raw.getvalue())


@PROPERTY
@given(pieces=st.lists(ANY_TEXT, min_size=1, max_size=4))
def test_chat_streams(pieces):
    """A reply streamed piece by piece: as live Markdown on a terminal, as plain text otherwise."""
    from llmcli.chat.stream import MarkdownStream, PlainStream

    console, raw = terminal()
    with MarkdownStream(console, refresh_per_second=1000) as stream:
        for piece in pieces:
            stream.feed(piece)
    assert_inert(raw.getvalue(), live=True)
    plain, plain_raw = terminal()
    with PlainStream(plain) as stream:
        for piece in pieces:
            stream.feed(piece)
    assert_inert(plain_raw.getvalue())


# ---------------------------------------------------------------- compare


@settings(PROPERTY, max_examples=FEW)
@given(text=TEXT, reply=ANY_TEXT, label=ANY_TEXT)
def test_compare_views(tiny, base, tiny_model_dir, tiny_base_dir, text, reply, label):
    from llmcli.commands.compare_sides import header, plan_sides, side_prompt
    from llmcli.render.compare import ProbsSide, render_probs
    from llmcli.render.compare_live import Column, columns_view

    console, raw = terminal()
    sides = plan_sides([str(tiny_model_dir), str(tiny_base_dir)], None, None)
    columns, probs_sides = [], []
    for side, model in zip(sides, (tiny, base)):
        prompt = side_prompt(model, text, None, side)
        h = header(side, model, prompt)
        columns.append(Column(side.letter, label, status="done", header=h, text=reply))
        report = model.next_token(prompt, num=5)
        probs_sides.append(ProbsSide(h, report.table))
    console.print(columns_view(columns, console, show_prompt=True))
    console.print(columns_view(columns, console, show_prompt=True, height=12))
    render_probs(probs_sides, (), show_prompt=True, console=console)
    assert_inert(raw.getvalue())


# ---------------------------------------------------------------- score, lens, attention


@settings(PROPERTY, max_examples=FEW)
@given(text=TEXT)
def test_score_lens_and_attention_views(tiny, text):
    from llmcli.render.attention import render_overview, render_pattern
    from llmcli.render.lens import render_report as render_lens
    from llmcli.render.score import render_reports

    console, raw = terminal()
    ids = tiny.prompt(text, mode="raw").ids
    if len(ids) >= 2:
        for by in ("rank", "surprisal"):
            render_reports([tiny.score(text)], by=by, console=console)
        with contextlib.suppress(LlmcliError):  # a reply that strips to nothing is an error row of its own
            render_reports([tiny.score(text, chat=True, user=text, system=text)], console=console)
    prompt = tiny.prompt(text, mode="raw")
    report = tiny.lens(prompt, positions=list(range(len(prompt.ids))), target=text[:3] or None)
    render_lens(report, console=console)
    render_lens(report, grid=True, console=console)
    render_pattern(tiny.attention(text), console=console)
    if len(ids) >= 2:
        render_pattern(tiny.attention(text, drop_first=True), console=console)
    if len(ids) >= 2:
        render_overview(tiny.attention_heads(text), console=console)
    assert_inert(raw.getvalue())


# ---------------------------------------------------------------- generate, --json, errors


@PROPERTY
@given(pieces=st.lists(ANY_TEXT, min_size=1, max_size=4))
def test_generate_stream_on_a_terminal(pieces, monkeypatch):
    """On a terminal, generate's stream shows control characters escaped (into a pipe the
    text goes out exactly, by design: it is the data)."""
    from types import SimpleNamespace

    from llmcli.render import generate

    console, raw = terminal()
    monkeypatch.setattr(generate.sys, "stdout", console.file)
    monkeypatch.setattr(console.file, "isatty", lambda: True)
    live = generate.LiveText()
    for piece in pieces:
        live.feed(SimpleNamespace(text=piece))
    live.close()
    assert_inert(raw.getvalue())


@PROPERTY
@given(text=TEXT)
def test_logprobs_table_and_stats(tiny, text):
    from llmcli.render.generate import print_logprobs, print_stats

    response = tiny.generate(text, temperature=0, max_new_tokens=4, top_logprobs=5)
    response.consume(lambda event: None)
    with consoles() as (_, _raw, err_raw):
        print_logprobs(tiny.tokenizer, response.events)
        print_stats(response.stats)
    assert_inert(err_raw.getvalue())


@PROPERTY
@given(text=ANY_TEXT)
def test_json_is_valid_and_inert(text, monkeypatch, capsys):
    """--json output: strict JSON (no NaN), no raw ESC/C1/bidi control, and the text intact."""
    from llmcli import render

    render.print_json({"text": text, "list": [text, {"k": text}]})
    out = capsys.readouterr().out
    data = out.encode("utf-8", "strict")
    assert_inert(data)
    assert json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) == {"text": text, "list": [text, {"k": text}]}


@PROPERTY
@given(message=ANY_TEXT, hint=ANY_TEXT)
def test_error_lines(message, hint):
    """An error quoting what the user typed stays one line (plus the hint), inert."""
    from llmcli import render

    console, raw = terminal()
    render.error(message, hint, console=console)
    out = assert_inert(raw.getvalue())
    assert out.count("\n") == 2 + message.count("\n") + hint.count("\n")


# ---------------------------------------------------------------- ids and round trips


@settings(PROPERTY, max_examples=50)
@given(ids=st.lists(st.integers(min_value=-3, max_value=520), max_size=12))
def test_any_id_sequence_detokenizes_or_is_refused_in_one_line(tiny, ids):
    from llmcli.render import tokens as show

    vocab = len(tiny.tokenizer)
    try:
        result = tiny.detokenize(ids)
    except BadInput as e:
        assert any(i < 0 or i >= vocab for i in ids), e.message
        return
    assert all(0 <= i < vocab for i in ids)
    with consoles() as (_, raw, _err):
        show.render_detokenized(result)
        show.render_detokenized(result, table=True)
    assert_inert(raw.getvalue())


@settings(PROPERTY, max_examples=50)
@given(text=TEXT)
def test_tokenize_then_detokenize_round_trips(tiny, text):
    tokenization = tiny.tokenize(text, add_special=False)
    assert tiny.detokenize(tokenization.ids).text == text


@settings(PROPERTY, max_examples=EXAMPLES)
@given(text=TEXT)
def test_round_trip_through_the_gguf_tokenizer(gguf_tokenizer, text):
    """The tokenizer rebuilt from a GGUF file and read back from the cache (tokenizers alone)."""
    tokenization = gguf_tokenizer.tokenize(text, add_special=False)
    assert gguf_tokenizer.detokenize(tokenization.ids).text == text


@pytest.fixture(scope="module")
def gguf_tokenizer(tiny_gguf_master, tmp_path_factory):
    import llmcli

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMCLI_CACHE_DIR", str(tmp_path_factory.mktemp("gguf-tokenizer-cache")))
        llmcli.load_tokenizer(str(tiny_gguf_master))  # builds and saves the tokenizer entry
        fast = llmcli.load_tokenizer(str(tiny_gguf_master))
        assert fast._hf is None  # read with `tokenizers` from the cache, not rebuilt
        yield fast


# SmolLM2's byte-level vocabulary has no token for these bytes (its GGUF file's token list
# lacks them too: it is the model's vocabulary): a character whose UTF-8 needs one loses that
# byte when tokenized, in llmcli as in any runtime. Four C0 controls, and the lead bytes of the
# unassigned planes U+40000-U+BFFFF; C0, C1 and F5-FF never occur in UTF-8.
NOT_IN_VOCABULARY = {"smollm2": {0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, *range(0xF5, 0x100)}, "gemma3-270m": set()}


@pytest.mark.integration
@pytest.mark.parametrize("alias", ["smollm2", "gemma3-270m"])
def test_round_trip_on_the_embedded_models(real_cache, alias):
    """On the real tokenizers, from the user's cache (converted there first on a fresh
    machine). Text needing a byte the vocabulary lacks is left out, and that list is checked
    to be exactly what the vocabulary lacks."""
    import llmcli

    tokenizer = llmcli.load_tokenizer(alias)
    missing = NOT_IN_VOCABULARY[alias]
    if missing:
        lost = {b for b in range(256) if tokenizer.detokenize(tokenizer.tokenize(bytes([b]).decode("latin-1").encode("utf-8").decode("utf-8"), add_special=False).ids).text == ""}
        assert {b for b in missing if b < 0x80} == {b for b in lost if b < 0x80}

    @settings(PROPERTY, max_examples=EXAMPLES)
    @given(text=TEXT)
    def round_trip(text):
        assume(not set(text.encode("utf-8")) & missing)
        ids = tokenizer.tokenize(text, add_special=False).ids
        assert tokenizer.detokenize(ids).text == text

    round_trip()
