"""`/tokens` and `/probs`: the `tokenize` and `probs` views, at the chat's current point.

Both reuse the inspect modules for the numbers and their renderers for the look, printed
on the loop's console, so what the chat shows is what the standalone commands show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from llmcli.chat.loop import ChatLoop


def show_tokens(loop: ChatLoop, which: str) -> None:
    """The last reply as the model wrote it (its own token ids when known), or the whole prompt."""
    from llmcli.inspect.tokens import Tokenization, chat_tokenization, tokenize
    from llmcli.tokens import TokenizerView
    from llmcli.render.tokens import header, spans, summary

    view = TokenizerView(loop.loaded.tokenizer)
    out = loop.out
    label = loop.loaded.label
    if which == "reply":
        reply = loop.session.last_reply()
        if reply is None:
            loop.info("no reply yet; /tokens prompt shows the prompt")
            return
        ids = loop.last_reply_ids if loop.last_reply_message is reply else None
        if ids is not None:  # exactly the tokens the model picked, end-of-turn token included
            result = Tokenization(label, reply.content, view.tokens(ids), add_special=False)
            note = "the tokens the model generated"
        else:
            result = tokenize(view, reply.content, label, add_special=False)
            note = "the reply's text tokenized again (the generated ids are not at hand)"
        out.print(header(f"{label} · last reply · {note}"))
        if result.tokens:
            out.print(spans(result.tokens, out))
        out.print(summary(result))
        return
    prompt = loop.build_prompt(generation_prompt=loop.awaiting_reply)  # as /show prompt shows it
    messages = [(m.role, m.content.strip()) for m in loop.session.prompt_messages()]
    mode = "chat template" if prompt.mode == "chat" else "plain-text template"
    chat = chat_tokenization(view, prompt.text, prompt.ids, messages, label, mode)
    out.print(header(f"{label} · the prompt, as the model reads it · {mode}"))
    if chat.tokenization.tokens:
        out.print(spans(chat.tokenization.tokens, out, chat.parts))
    out.print(summary(chat.tokenization))
    window = loop.context_length
    line = Text(f"template: {chat.added:,} tokens added around {chat.message_tokens:,} message tokens", style="dim")
    if window:
        line.append(f" · {chat.tokenization.count:,} of the {window:,}-token window", style="dim")
    out.print(line)


def show_probs(loop: ChatLoop, top: int) -> None:
    """The next-token table at this point of the chat, at the session's temperature and cuts.

    After a reply, "this point" is where that reply began: the table shows what the model
    chose its first token from, and which one it picked. Otherwise (nothing said yet, or a
    message still unanswered) it is the first token of the reply to come.
    """
    from llmcli.inspect import next_token as nt
    from llmcli.render.probs import render_report

    tokenizer = loop.loaded.tokenizer
    settings = loop.session.settings
    messages = loop.session.messages
    if messages and messages[-1].role == "assistant":
        reply = messages[-1]
        prompt = loop.build_prompt(upto=len(messages) - 1)
        reply_ids = loop.last_reply_ids if loop.last_reply_message is reply else tokenizer(reply.content, add_special_tokens=False)["input_ids"]
        ids, position = list(prompt.ids) + list(reply_ids[:1]), len(prompt.ids) - 1
        loop.info("where the last reply began: what its first token was picked from")
    else:
        prompt = loop.build_prompt()
        ids, position = list(prompt.ids), -1
    nt.check_prompt(ids, loop.context_length)
    temperatures = tuple(sorted({1.0, settings.temperature}))
    table, logits = nt.table_at(loop.loaded.model, tokenizer, ids, position=position, num=top, temperatures=temperatures)
    replay = None
    if any(v is not None for v in (settings.top_k, settings.top_p, settings.min_p)):
        replay = nt.sampler_replay(
            logits,
            [r.id for r in table.rows],
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            min_p=settings.min_p,
        )
    report = nt.ProbsReport(
        model=loop.loaded.label,
        mode=prompt.mode,
        prompt=prompt.text,
        prompt_tokens=nt.prompt_tokens(tokenizer, ids),
        table=table,
        sampler=replay,
    )
    render_report(report, console=loop.out)
