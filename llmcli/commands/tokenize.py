"""`llmcli tokenize` and `llmcli detokenize`: the text as the model sees it, and back.

Only the tokenizer is loaded, never the weights (`llmcli.load_tokenizer`: the cached
tokenizer.json read by `tokenizers` alone when there is one, ~0.1 s). `--json` is always
a list, one document per -m. Text is read byte for byte; empty text is 0 tokens.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import _input
from llmcli.errors import BadInput

Models = Annotated[
    Optional[list[str]],
    typer.Option(
        "-m",
        "--model",
        help="Alias (smollm2, gemma3-270m), a .gguf file, a Hugging Face directory or hub id; "
        "repeat it to compare tokenizers. Default: $LLMCLI_MODEL or smollm2.",
        rich_help_panel=options.LOADING,
        show_default=False,
        metavar="MODEL",
    ),
]
OUTPUT = "Output"


def tokenize(
    text: Annotated[
        Optional[str],
        typer.Argument(
            help="The text, kept byte for byte. Omit it (or give -) to read --file or stdin.",
            show_default=False,
            metavar="TEXT",
        ),
    ] = None,
    model: Models = None,
    file: Annotated[
        Optional[Path], typer.Option("--file", "-f", help="Read the text from this UTF-8 file.", show_default=False)
    ] = None,
    table: Annotated[bool, typer.Option("--table", help="One row per token: index, id, piece, text, bytes.", rich_help_panel=OUTPUT)] = False,
    ids: Annotated[bool, typer.Option("--ids", help="Only the ids, space-separated on one line.", rich_help_panel=OUTPUT)] = False,
    count: Annotated[bool, typer.Option("--count", help="Only the number of tokens.", rich_help_panel=OUTPUT)] = False,
    json: Annotated[
        bool, typer.Option("--json", help="JSON: the tokens {index, id, piece, text, bytes (hex), special} and counts.", rich_help_panel=OUTPUT)
    ] = False,
    add_special: Annotated[
        bool,
        typer.Option("--add-special/--no-add-special", help="Add the tokens the tokenizer adds to a plain encode (BOS...)."),
    ] = True,
    parse_special: Annotated[
        bool,
        typer.Option("--parse-special", help="Turn special-token text in the input (<|im_end|>) into special tokens."),
    ] = False,
    chat: Annotated[
        bool,
        typer.Option("--chat", help="Render TEXT as a user message through the chat template and show the whole prompt."),
    ] = False,
    system: Annotated[
        Optional[str], typer.Option("--system", help="With --chat: a system message before TEXT.", show_default=False)
    ] = None,
    svg: options.Svg = None,
    html: options.Html = None,
    base_url: options.BaseUrl = None,
    api_key_env: options.ApiKeyEnv = None,
) -> None:
    """Show how a model's tokenizer cuts text into tokens: coloured spans, ids, counts.

    Several -m options show each model's tokens and a row of counts per model.
    """
    from llmcli.api import load_tokenizer
    from llmcli.prompting import Message
    from llmcli.render import tokens as show
    from llmcli.render import views

    modes = [name for name, on in (("--table", table), ("--ids", ids), ("--count", count), ("--json", json)) if on]
    if len(modes) > 1:
        raise BadInput(f"{' and '.join(modes)} cannot be combined", "pick one output form")
    views.check_exports(json or ids or count, svg, html)
    if system is not None and not chat:
        raise BadInput("--system only applies with --chat", "add --chat to render TEXT through the chat template")
    source = _input.read_text("tokenize", text, file, empty_ok=True, what="text")
    tokenizers = [load_tokenizer(name, base_url=base_url, api_key_env=api_key_env) for name in model or [None]]
    if chat:
        messages = ([Message("system", system.strip())] if system is not None else []) + [Message("user", source.strip())]
        chats = [t.chat_tokens(messages) for t in tokenizers]
        results = [c.tokenization for c in chats]
    else:
        chats = None
        results = [t.tokenize(source, add_special=add_special, parse_special=parse_special) for t in tokenizers]
    if json:
        render.print_json([r.to_dict() for r in (chats or results)])
    elif ids:
        show.render_ids(results)
    elif count:
        show.render_counts(results)
    else:
        console = views.recording(bool(svg or html))
        if chats:
            show.render_chat(chats, table=table, console=console)
        elif table:
            show.render_tables(results, console=console)
        else:
            show.render_spans(results, console=console)
        views.save_exports(console, svg, html, title="llmcli tokenize")


def detokenize(
    ids: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Token ids (spaces or commas; a pasted [1, 2, 3] works). Omit them to read stdin.",
            show_default=False,
            metavar="IDS...",
        ),
    ] = None,
    model: options.Model = None,
    table: Annotated[bool, typer.Option("--table", help="One row per id: index, id, piece, text, bytes.")] = False,
    skip_special: Annotated[bool, typer.Option("--skip-special", help="Leave special tokens (BOS, <|im_end|>...) out of the text.")] = False,
    json: options.Json = False,
    base_url: options.BaseUrl = None,
    api_key_env: options.ApiKeyEnv = None,
) -> None:
    """Turn token ids back into text."""
    from llmcli.api import load_tokenizer
    from llmcli.inspect.tokens import parse_ids
    from llmcli.render import tokens as show

    if table and json:
        raise BadInput("--table and --json cannot be combined", "pick one output form")
    if not ids and (sys.stdin is None or sys.stdin.isatty()):
        raise BadInput("no token ids given", "pass them as arguments (`llmcli detokenize 19556 905`) or on stdin")
    token_ids = parse_ids(ids or [_input.read_text("detokenize", "-", None, empty_ok=True, what="token ids")])
    result = load_tokenizer(model, base_url=base_url, api_key_env=api_key_env).detokenize(token_ids, skip_special=skip_special)
    if json:
        render.print_json(result.to_dict())
    else:
        show.render_detokenized(result, table=table)


def register(app: typer.Typer) -> None:
    app.command()(tokenize)
    app.command()(detokenize)
