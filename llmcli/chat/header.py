"""The few lines an interactive chat opens with: what is loaded, and how to get help."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from llmcli import render

if TYPE_CHECKING:
    from llmcli.chat.loop import ChatLoop


def header_lines(loop: ChatLoop) -> list[Text]:
    from llmcli.models import ALIASES
    from llmcli.prompting import BASE_CHAT_TEMPLATE
    from llmcli.render.info import human_count

    model, info = loop.model, loop.model.summary()
    window = loop.context_length
    context = f"context window {window:,} tokens" if window else "context window unknown"
    if getattr(info, "remote", False):  # a model on a server (openai:…): what the server says
        title, facts = f"served at {info.base_url}", [context]
    else:
        title = ALIASES[info.alias].title if info.alias in ALIASES else info.source
        weights = f"{info.dtype} on {info.device}" + (f", {info.quantize} weights" if info.quantize != "none" else "")
        facts = [f"{human_count(info.parameters)} parameters", weights + (", compiled" if info.compiled else ""), context]
    first = Text.assemble((render.escape_controls(model.label), "bold cyan"), "  ", (render.escape_controls(title), "bold"))
    lines = [first, Text(" · ".join(facts), style="dim")]
    if not model.has_chat_template:
        lines.append(Text(f"a base model (no chat template): chatting through prompts/{BASE_CHAT_TEMPLATE}.txt", style="yellow"))
    lines.append(Text(f"sampling: {', '.join(render.sampling_words(loop.session.settings))} · /set to change", style="dim"))
    if loop.session.system:
        lines.append(Text.assemble(("system: ", "dim"), (_clip(render.escape_controls(loop.session.system)), "dim italic")))
    elif model.default_system:
        default = _clip(render.escape_controls(model.default_system), 34)
        lines.append(Text.assemble(("system: the template's default ", "dim"), (f"“{default}”", "dim italic"), (" · /system", "dim")))
    lines.append(Text("/help for commands · Alt-Enter for a new line · Ctrl-C stops a reply · Ctrl-D quits", style="dim"))
    return lines


def print_header(loop: ChatLoop) -> None:
    for line in header_lines(loop):
        loop.out.print(line)
    loop.out.print()


def _clip(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
