"""Turning what the user wrote into the token ids a model reads.

Three ways to build a prompt, one `Prompt` shape for all of them:

- `chat`: the messages rendered by the tokenizer's own chat template (an instruct model);
- `template`: a model with no chat template (a base model) chats through a plain-text
  template from `prompts/` (`base-chat.txt`: a preamble, then `User:` / `Assistant:`
  turns); the prompt carries the stop string where the next user turn would begin;
- `raw`: the text exactly as given, for completion.

Decisions and gotchas:
- A chat message is stripped of leading and trailing whitespace. Small instruct models
  are very sensitive to it: SmolLM2 answers "What is the capital of France?" with Paris
  but rambles in French when `echo`'s trailing newline is left in. Raw text is kept byte
  for byte.
- BOS appears exactly once, and only when the tokenizer adds one on a plain encode
  (Gemma adds `<bos>`, SmolLM2 adds nothing). Chat templates usually write the BOS text
  themselves, so the rendered text is encoded without special tokens and a BOS is added
  only if the tokenizer wants one and the template did not write it.
- Raw and plain-template text is encoded with `split_special_tokens=True`: a literal
  `<|im_end|>` typed by the user is text, not a control token. (transformers parses it
  by default.) A chat template's output must be parsed, since the template writes the
  special tokens as text; message content goes through the same parse, as it does in
  transformers' own `apply_chat_template(tokenize=True)`.

A plain-text template file is plain text with three placeholders: `{system}` (a line
that is dropped when there is no system prompt), `{user}` and `{assistant}`. The line
holding `{user}` and the one holding `{assistant}` are repeated for every turn; the text
before them is the preamble. The reply is left open after the assistant label
(`Assistant:` — no trailing space, so the model writes the space as part of its first
token, as it saw in training), and generation stops at a newline followed by the user
label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from llmcli.errors import BadInput, LlmcliError

PROMPTS_DIR = Path(__file__).parent / "prompts"
BASE_CHAT_TEMPLATE = "base-chat"
# Files in prompts/ that are chat templates, not system prompts.
CHAT_TEMPLATES = frozenset({BASE_CHAT_TEMPLATE})
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class Prompt:
    text: str  # as rendered (the chat template's output, or the raw text); BOS only if the template wrote it
    ids: list[int]
    mode: str  # "chat" | "template" | "raw"
    stop_strings: tuple[str, ...] = ()


# ---------------------------------------------------------------- building prompts


class TokenizerPrompts:
    """The prompt half of the backend protocol for a backend that holds its tokenizer here
    (`self.tokenizer`): the engine's and transformers'."""

    tokenizer: Any

    def has_chat_template(self) -> bool:
        return has_chat_template(self.tokenizer)

    def raw_prompt(self, text: str) -> Prompt:
        return build_raw_prompt(self.tokenizer, text)

    def chat_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> Prompt:
        return build_chat_prompt(self.tokenizer, list(messages), add_generation_prompt=add_generation_prompt)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_raw_prompt(tokenizer: Any, text: str) -> Prompt:
    """The text byte for byte; a BOS in front only if the tokenizer adds one."""
    return Prompt(text=text, ids=_encode_plain(tokenizer, text), mode="raw")


def build_chat_prompt(tokenizer: Any, messages: list[Message], *, add_generation_prompt: bool = True) -> Prompt:
    """Messages through the tokenizer's chat template, or the plain-text one for a base model."""
    messages = [_clean(m) for m in messages]
    if not has_chat_template(tokenizer):
        template = load_chat_template(BASE_CHAT_TEMPLATE)
        text = render_plain_template(template, messages, add_generation_prompt=add_generation_prompt)
        return Prompt(text, _encode_plain(tokenizer, text), "template", (plain_template_stop(template),))
    try:
        text = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
    except Exception as e:  # jinja2's TemplateError, or a template's own raise_exception()
        from jinja2.exceptions import SecurityError

        hint = "some templates allow no system message, or need user and assistant turns to alternate"
        if isinstance(e, SecurityError):  # the template reached for Python internals; the sandbox said no
            hint = "the template tried something jinja2's sandbox forbids: this model's chat template is broken or hostile"
        raise LlmcliError(f"the model's chat template rejected the conversation: {e}", hint) from e
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = _bos_added(tokenizer)
    if bos is not None and ids[:1] != [bos]:
        ids = [bos, *ids]
    return Prompt(text=text, ids=ids, mode="chat")


def template_default_system(tokenizer: Any) -> str | None:
    """The system prompt a chat template writes when the conversation has none (SmolLM2's
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face"), or None.

    Found by rendering the template twice: with a marker system message, which shows where
    a system message goes (between `before` and `after`), and with none; if the second has a
    system block of its own in the same place, that block's text is the default.
    """
    if not has_chat_template(tokenizer):
        return None
    marker, user = "\x00LLMCLI-SYSTEM\x00", "\x00LLMCLI-USER\x00"
    try:
        with_system = build_chat_prompt(tokenizer, [Message("system", marker), Message("user", user)], add_generation_prompt=False).text
        without = build_chat_prompt(tokenizer, [Message("user", user)], add_generation_prompt=False).text
    except LlmcliError:  # a template that takes no system message
        return None
    before, _, rest = with_system.partition(marker)
    after = rest[: rest.find(user)] if user in rest else ""
    end = without.find(after, len(before)) if after else -1
    if not before or not without.startswith(before) or end < 0 or user in without[: end]:
        return None
    return without[len(before) : end].strip() or None


def trim_to_context(
    tokenizer: Any, messages: list[Message], context_length: int, reserve: int
) -> tuple[list[Message], int]:
    """Drop the oldest turns until the prompt plus `reserve` tokens fits the context window.

    System messages and the last message always stay; a user message goes together with
    the assistant reply that follows it, so roles keep alternating. Returns the kept
    messages and how many were dropped. If even the shortest conversation does not fit,
    it is returned as is and `generate` reports the overflow with the counts.
    """
    kept = list(messages)
    dropped = 0

    def fits() -> bool:
        return len(build_chat_prompt(tokenizer, kept).ids) + reserve <= context_length

    while not fits():
        oldest = next((i for i, m in enumerate(kept[:-1]) if m.role != "system"), None)
        if oldest is None:
            break
        # A user message takes its reply with it, unless that reply is the last message.
        pair = kept[oldest].role == "user" and oldest + 2 < len(kept) and kept[oldest + 1].role == "assistant"
        count = 2 if pair else 1
        del kept[oldest : oldest + count]
        dropped += count
    return kept, dropped


def _clean(message: Message) -> Message:
    if message.role not in ROLES:
        raise ValueError(f"unknown role {message.role!r}; expected one of {ROLES}")
    return Message(message.role, message.content.strip())


def _encode_plain(tokenizer: Any, text: str) -> list[int]:
    """Text that holds no special tokens, encoded as such, with the tokenizer's BOS if it adds one."""
    ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    bos = _bos_added(tokenizer)
    return [bos, *ids] if bos is not None else list(ids)


def _bos_added(tokenizer: Any) -> int | None:
    """The BOS id if this tokenizer puts one in front of a plain encode, else None."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    with_specials = tokenizer("a")["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos if with_specials[:1] == [bos] and without[:1] != [bos] else None


# ---------------------------------------------------------------- the plain-text template


def render_plain_template(template: str, messages: list[Message], *, add_generation_prompt: bool = True) -> str:
    """Messages written out with a plain-text template (see the module docstring)."""
    preamble, user_line, assistant_line = _split_template(template)
    system = "\n".join(m.content for m in messages if m.role == "system" and m.content)
    if "{system}" in preamble:
        lines = preamble.split("\n")
        preamble = "\n".join(
            line.replace("{system}", system) for line in lines if system or "{system}" not in line
        )
    elif system:
        preamble = preamble.rstrip("\n") + "\n" + system + "\n\n"
    out = [preamble]
    for m in messages:
        if m.role == "user":
            out.append(user_line.replace("{user}", m.content))
        elif m.role == "assistant":
            out.append(assistant_line.replace("{assistant}", m.content))
    if add_generation_prompt:
        out.append(assistant_line.split("{assistant}")[0].rstrip())
        return "".join(out)
    return "".join(out).rstrip("\n")


def plain_template_stop(template: str) -> str:
    """Where the model starts writing the user's next turn: a newline and the user label."""
    _, user_line, _ = _split_template(template)
    return "\n" + user_line.split("{user}")[0].rstrip()


def _split_template(template: str) -> tuple[str, str, str]:
    """(preamble, user line with its newline, assistant line with its newline)."""
    lines = template.rstrip("\n").split("\n")
    try:
        user = next(i for i, line in enumerate(lines) if "{user}" in line)
        assistant = next(i for i, line in enumerate(lines) if "{assistant}" in line)
    except StopIteration:
        raise LlmcliError(
            "a plain-text chat template needs a line with {user} and a line with {assistant}"
        ) from None
    preamble = "".join(line + "\n" for line in lines[: min(user, assistant)])
    return preamble, lines[user] + "\n", lines[assistant] + "\n"


# ---------------------------------------------------------------- prompts/ files


def list_system_prompts() -> list[str]:
    """Names of the system prompts shipped in prompts/ (chat templates excluded)."""
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.txt") if p.stem not in CHAT_TEMPLATES)


def load_system_prompt(name: str) -> str:
    if name not in list_system_prompts():
        available = ", ".join(list_system_prompts()) or "none"
        raise BadInput(f"no system prompt named '{name}'", f"available: {available}")
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8").strip()


def load_chat_template(name: str = BASE_CHAT_TEMPLATE) -> str:
    """A plain-text chat template from prompts/."""
    path = PROMPTS_DIR / f"{name}.txt"
    if name not in CHAT_TEMPLATES or not path.exists():
        raise BadInput(f"no chat template named '{name}'", f"available: {', '.join(sorted(CHAT_TEMPLATES))}")
    return path.read_text(encoding="utf-8")
