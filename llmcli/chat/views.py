"""`/tokens` and `/probs`: the `tokenize` and `probs` views, at the chat's current point.

The numbers come from the model (`Model.tokens`, `Model.chat_tokens`, `Model.next_token`)
and the look from the standalone commands' renderers, printed on the loop's console, so
what the chat shows is what the commands show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from llmcli.chat.loop import ChatLoop


def show_tokens(loop: ChatLoop, which: str) -> None:
    """The last reply as the model wrote it (its own token ids when known), or the whole prompt."""
    from llmcli.render.tokens import header, spans, summary

    model, out = loop.model, loop.out
    if which == "reply":
        reply = loop.session.last_reply()
        if reply is None:
            loop.info("no reply yet; /tokens prompt shows the prompt")
            return
        if loop.last_reply_message is reply:  # exactly the tokens the model picked, end-of-turn token included
            result, note = model.tokens(loop.last_reply_ids), "the tokens the model generated"
        else:
            result = model.tokenize(reply.content, add_special=False)
            note = "the reply's text tokenized again (the generated ids are not at hand)"
        out.print(header(f"{model.label} · last reply · {note}"))
        if result.tokens:
            out.print(spans(result.tokens, out))
        out.print(summary(result))
        return
    if not loop.session.messages:
        loop.info("nothing to show yet · say something first")
        return
    prompt = loop.build_prompt(generation_prompt=loop.awaiting_reply)  # as /show prompt shows it
    chat = model.chat_tokens(loop.session.prompt_messages(), prompt=prompt)
    mode = "chat template" if prompt.mode == "chat" else "plain-text template"
    out.print(header(f"{model.label} · the prompt, as the model reads it · {mode}"))
    if chat.tokenization.tokens:
        out.print(spans(chat.tokenization.tokens, out, chat.parts))
    out.print(summary(chat.tokenization))
    line = Text(f"template: {chat.added:,} tokens added around {chat.message_tokens:,} message tokens", style="dim")
    if loop.context_length:
        line.append(f" · {chat.tokenization.count:,} of the {loop.context_length:,}-token window", style="dim")
    out.print(line)


def show_probs(loop: ChatLoop, top: int) -> None:
    """The next-token table at this point of the chat, at the session's temperature and cuts.

    After a reply, "this point" is where that reply began: the table shows what the model
    chose its first token from, and which one it picked. Otherwise (nothing said yet, or a
    message still unanswered) it is the first token of the reply to come.
    """
    from llmcli.render.probs import render_report

    model, settings = loop.model, loop.session.settings
    messages = loop.session.messages
    if not messages:
        loop.info("nothing to show yet · say something first (then /probs shows where the reply began)")
        return
    ids = position = None
    if messages and messages[-1].role == "assistant":
        reply = messages[-1]
        prompt = loop.build_prompt(upto=len(messages) - 1)
        if loop.last_reply_message is reply:
            first = loop.last_reply_ids[:1]
        else:
            first = model.tokenize(reply.content, add_special=False).ids[:1]
        ids, position = [*prompt.ids, *first], len(prompt.ids) - 1
        loop.info("where the last reply began: what its first token was picked from")
    else:
        prompt = loop.build_prompt()
    report = model.next_token(
        prompt,
        ids=ids,
        position=-1 if position is None else position,
        num=top,
        temperatures=tuple(sorted({1.0, settings.temperature})),
        top_k=settings.top_k,
        top_p=settings.top_p,
        min_p=settings.min_p,
        next_is="reply" if ids is not None else "prompt",
    )
    render_report(report, console=loop.out)


def _last_exchange(loop: ChatLoop):
    """The prompt the last reply answered and the reply's token ids, or None (said why)."""
    messages = loop.session.messages
    if not messages or messages[-1].role != "assistant":
        loop.info("no reply yet · say something first")
        return None
    reply = messages[-1]
    prompt = loop.build_prompt(upto=len(messages) - 1)
    if loop.last_reply_message is reply:
        ids = [i for i in loop.last_reply_ids if i not in loop.model.view.special_ids]  # the words, not the end token
    else:
        ids = loop.model.tokenize(reply.content, add_special=False).ids
    if not ids:
        loop.info("the last reply has no tokens to look at")
        return None
    return prompt, ids, reply.content


def show_score(loop: ChatLoop) -> None:
    """What the model thought of its own last reply: each token's surprise, in context."""
    from llmcli.render.score import render_reports

    found = _last_exchange(loop)
    if found:
        prompt, ids, text = found
        render_reports([loop.model.score_reply(prompt, ids, text=text)], console=loop.out)


def show_lens(loop: ChatLoop, top_k: int = 5) -> None:
    """The logit lens where the last reply began: each layer's guess at its first token."""
    from llmcli.render.lens import render_report

    found = _last_exchange(loop)
    if found:
        prompt, ids, _ = found
        at = len(prompt.ids) - 1
        report = loop.model.lens(prompt, ids=[*prompt.ids, ids[0]], positions=[at], top_k=top_k)
        render_report(report, position=at, console=loop.out)


def show_attention(loop: ChatLoop, layer: int | None = None) -> None:
    """The last exchange's attention: the reply's tokens looking back at the prompt."""
    from llmcli.render.attention import render_pattern

    found = _last_exchange(loop)
    if found:
        prompt, ids, _ = found
        every = [*prompt.ids, *ids]
        pattern = loop.model.attention(prompt, ids=every, layer=layer, start=max(0, len(prompt.ids) - 24))
        render_pattern(pattern, show_summary=False, console=loop.out)
