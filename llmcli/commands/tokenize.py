"""`llmcli tokenize` and `llmcli detokenize`: the text as the model sees it, and back.

Only the tokenizer is loaded, never the weights. When the model's conversion cache entry
already holds a tokenizer.json (any built-in alias or GGUF file that was loaded once),
it is read with the `tokenizers` library directly: about 0.1 s where importing and
building a transformers tokenizer takes about 5 s. The ids are the same (the tests
compare them with transformers on hard text). `--chat` needs transformers' chat template,
so it always loads through `models.load_tokenizer`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
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
) -> None:
    """Show how a model's tokenizer cuts text into tokens: coloured spans, ids, counts.

    Several -m options show each model's tokens and a row of counts per model.
    """
    from llmcli.inspect.tokens import tokenize as tokenize_text
    from llmcli.render import tokens as show

    modes = [name for name, on in (("--table", table), ("--ids", ids), ("--count", count), ("--json", json)) if on]
    if len(modes) > 1:
        raise BadInput(f"{' and '.join(modes)} cannot be combined", "pick one output form")
    if system is not None and not chat:
        raise BadInput("--system only applies with --chat", "add --chat to render TEXT through the chat template")
    source = read_text(text, file)
    names = model or [None]

    if chat:
        results = [_chat(name, source, system) for name in names]
        if json:
            docs = [r.to_dict() for r in results]
            render.print_json(docs[0] if len(docs) == 1 else docs)
        elif ids:
            show.render_ids([r.tokenization for r in results])
        elif count:
            show.render_counts([r.tokenization for r in results])
        else:
            show.render_chat(results, table=table)
        return

    results = []
    for name in names:
        view, label = load_view(name)
        results.append(tokenize_text(view, source, label, add_special=add_special, parse_special=parse_special))
    if json:
        docs = [r.to_dict() for r in results]
        render.print_json(docs[0] if len(docs) == 1 else docs)
    elif ids:
        show.render_ids(results)
    elif count:
        show.render_counts(results)
    elif table:
        show.render_tables(results)
    else:
        show.render_spans(results)


def _chat(name: str | None, text: str, system: str | None):
    from llmcli.inspect.tokens import chat_tokenization
    from llmcli.tokens import TokenizerView
    from llmcli.models import load_tokenizer
    from llmcli.prompting import Message, build_chat_prompt

    tokenizer, ref = load_tokenizer(name)
    messages = ([Message("system", system.strip())] if system is not None else []) + [Message("user", text.strip())]
    prompt = build_chat_prompt(tokenizer, messages, add_generation_prompt=True)
    return chat_tokenization(
        TokenizerView(tokenizer),
        prompt.text,
        getattr(prompt, "ids", None),
        [(m.role, m.content) for m in messages],
        ref.alias or ref.name,
        prompt.mode,
    )


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
) -> None:
    """Turn token ids back into text."""
    from llmcli.inspect.tokens import detokenize as detokenize_ids
    from llmcli.inspect.tokens import parse_ids
    from llmcli.render import tokens as show

    if table and json:
        raise BadInput("--table and --json cannot be combined", "pick one output form")
    if ids:
        words = ids
    elif sys.stdin is None or sys.stdin.isatty():
        raise BadInput("no token ids given", "pass them as arguments (`llmcli detokenize 19556 905`) or on stdin")
    else:
        words = [_read_stdin()]
    token_ids = parse_ids(words)
    view, label = load_view(model)
    result = detokenize_ids(view, token_ids, label, skip_special=skip_special)
    if json:
        render.print_json(result.to_dict())
    else:
        show.render_detokenized(result, table=table)


# ---------------------------------------------------------------- input and loading


def read_text(text: str | None, file: Path | None) -> str:
    """TEXT, the --file, or stdin, byte for byte. Empty is fine (0 tokens)."""
    if text is not None and text != "-" and file is not None:
        raise BadInput("give the text or --file, not both", "drop one of them")
    if file is not None:
        try:
            data = file.expanduser().read_bytes()
        except FileNotFoundError:
            raise BadInput(f"no such file: {file}", "check the path given to --file") from None
        except IsADirectoryError:
            raise BadInput(f"{file} is a directory", "give --file a text file") from None
        except OSError as e:
            raise BadInput(f"cannot read {file}: {e.strerror or e}", "check the file's permissions") from None
        return _utf8(data, str(file))
    if text is not None and text != "-":
        return text
    if sys.stdin is None or sys.stdin.isatty():
        raise BadInput("nothing to tokenize", 'give the text (`llmcli tokenize "Hello"`), --file, or pipe it on stdin')
    return _read_stdin()


def _read_stdin() -> str:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return sys.stdin.read()
    return _utf8(stream.read(), "stdin")


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(
            f"{where} is not UTF-8 text (byte 0x{data[e.start]:02X} at offset {e.start})",
            "convert it first, e.g. `iconv -f latin1 -t utf-8`",
        ) from None


def load_view(name: str | None):
    """A TokenizerView for a model, and the label to show: the fast path when it can be taken."""
    from llmcli.tokens import TokenizerView
    from llmcli.models import cached_tokenizer_json, load_tokenizer, resolve

    ref = resolve(name)
    label = ref.alias or ref.name
    path = cached_tokenizer_json(ref)
    if path is not None:
        import tokenizers

        return TokenizerView(tokenizers.Tokenizer.from_file(str(path))), label
    tokenizer, _ = load_tokenizer(name)
    return TokenizerView(tokenizer), label


def register(app: typer.Typer) -> None:
    app.command()(tokenize)
    app.command()(detokenize)
