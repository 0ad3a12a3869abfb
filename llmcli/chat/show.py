"""`/show settings|prompt|template|info`: what the chat holds, and what the model reads.

`/show prompt` is the exact text the model receives (after trimming to the window, with
the BOS a tokenizer puts in front), special tokens marked and each newline drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.chat.session import SETTABLE

if TYPE_CHECKING:
    from llmcli.chat.loop import ChatLoop


def show_settings(loop: ChatLoop) -> None:
    settings = loop.session.settings
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column()
    for key in SETTABLE:
        table.add_row(Text(key), Text(_value(getattr(settings, key))))
    table.add_row("system prompt", _system_in_effect(loop))
    loop.out.print(table)


def _system_in_effect(loop: ChatLoop) -> Text:
    """The system prompt in effect, in words: the user's, the template's default, or none."""
    if loop.session.system:
        return render.literal(_clip(loop.session.system, 60))
    default = loop.model.default_system
    if default:
        return Text.assemble(("none of yours; the template adds its default: ", "dim"), render.literal(f"“{_clip(default, 60)}”"))
    return Text("none", style="dim")


def show_prompt(loop: ChatLoop) -> None:
    """The exact text the model reads (after trimming), special tokens marked.

    With a message waiting for its reply, that is the whole prompt, up to where the reply
    begins. After a reply, it is the conversation so far: the next prompt is this text,
    then the user's next message and the template's assistant prefix.
    """
    pending = loop.awaiting_reply
    prompt = loop.build_prompt(generation_prompt=pending)
    text = _with_bos(loop, prompt)
    window = loop.context_length
    count = f"{len(prompt.ids):,} tokens" + (f" of {window:,}" if window else "")
    how = {"chat": "chat template", "template": "plain-text template"}.get(prompt.mode, prompt.mode)
    where = "the reply starts here" if pending else "your next message goes after this"
    if not loop.out.is_terminal:
        text = render.escape_controls(text)
        loop.out.print(text, markup=False, highlight=False, end="" if text.endswith("\n") else "\n")
        loop.status.print(Text(f"{count} · {how} · {where}", style="dim"))
        return
    if not text:
        loop.info(f"the prompt is empty so far ({how}, no system prompt); {where}")
        return
    from llmcli.tokens import special_strings

    body = marked_prompt(text, list(special_strings(loop.model.tokenizer)))
    body.append("▏", style="bold green")  # where the model (or your next message) takes over
    title = Text("the prompt, as the model reads it", style="bold")
    subtitle = Text(f"{count} · {how} · ↵ newline · ▏ {where}", style="dim")
    loop.out.print(Panel(body, title=title, title_align="left", subtitle=subtitle, subtitle_align="left", box=box.ROUNDED))


def _with_bos(loop: ChatLoop, prompt) -> str:
    """The prompt's text with the BOS the tokenizer puts in front of it (Gemma's `<bos>`), so
    what is shown is every token the model reads, as /tokens prompt counts them."""
    tokenizer = loop.model.tokenizer
    if prompt.ids and prompt.ids[0] == getattr(tokenizer, "bos_token_id", None):
        bos = tokenizer.convert_ids_to_tokens(prompt.ids[0])
        if not prompt.text.startswith(bos):
            return bos + prompt.text
    return prompt.text


def show_template(loop: ChatLoop) -> None:
    from llmcli import prompting

    template = getattr(loop.model.tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one is what chat uses
        template = template.get("default") or next(iter(template.values()), None)
    if template:
        loop.out.print(Text("the tokenizer's chat template (Jinja):", style="dim"))
        loop.out.print(Syntax(template, "jinja", word_wrap=True, background_color="default"))
        return
    name = prompting.BASE_CHAT_TEMPLATE
    loop.out.print(Text(f"no chat template (a base model): llmcli chats through prompts/{name}.txt,", style="dim"))
    loop.out.print(Text("its {user} and {assistant} lines repeated for each turn; the reply stops where the next user line would begin:", style="dim"))
    loop.out.print(Panel(render.literal(prompting.load_chat_template(name).rstrip("\n")), box=box.ROUNDED, expand=False))


def show_info(loop: ChatLoop) -> None:
    from llmcli.render.info import render_info

    render_info(loop.model.info(), loop.model.load_seconds, console=loop.out)


def marked_prompt(text: str, specials: list[str]) -> Text:
    """Prompt text with special tokens highlighted and each newline shown as a dim ↵."""
    out = Text()
    specials = sorted((s for s in specials if s), key=len, reverse=True)
    i = 0
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit:
            out.append(render.escape_controls(hit), style="bold magenta")
            i += len(hit)
        elif text[i] == "\n":
            out.append("↵\n", style="dim")
            i += 1
        else:
            j = i + 1
            while j < len(text) and text[j] != "\n" and not any(text.startswith(s, j) for s in specials):
                j += 1
            out.append(render.escape_controls(text[i:j]))
            i = j
    return out


def _value(value) -> str:
    return "off" if value is None else str(value)


def _clip(text: str | None, width: int = 50) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
