"""Text to tokens and back, as plain data: what `tokenize` and `detokenize` show.

The tokens themselves (ids to bytes and text, the two kinds of tokenizer) are
`llmcli.tokens`'; this module builds the views' data from them: a tokenization with its
counts, a chat prompt with the template's tokens told apart from the messages', and ids
turned back into text. Joined, the tokens' bytes are the input's bytes (plus any BOS/EOS
the tokenizer adds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from llmcli.errors import BadInput
from llmcli.tokens import Token, TokenizerView

_INT = re.compile(r"[+-]?\d+")


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Tokenization:
    """One text through one tokenizer."""

    model: str
    text: str
    tokens: tuple[Token, ...]
    add_special: bool = True
    parse_special: bool = False

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def count(self) -> int:
        return len(self.tokens)

    @property
    def characters(self) -> int:
        return len(self.text)

    @property
    def chars_per_token(self) -> float | None:
        return self.characters / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "text": self.text,
            "add_special": self.add_special,
            "parse_special": self.parse_special,
            "count": self.count,
            "characters": self.characters,
            "chars_per_token": None if self.chars_per_token is None else round(self.chars_per_token, 3),
            "tokens": [t.to_dict() for t in self.tokens],
        }


@dataclass(frozen=True)
class ChatTokenization:
    """A message rendered through a chat template (or plain-text template), tokenized.

    `parts[i]` says where token i came from: "template", "system", "user", or "mixed" for
    a token that holds both (a template's "User: " space merged with the first word). `added` is how many tokens the
    template put around the messages: the prompt's count minus the messages' own counts.
    """

    tokenization: Tokenization
    mode: str  # the prompt builder's: "chat" (the model's chat template) or "template" (plain-text)
    parts: tuple[str, ...]
    message_tokens: int
    system: str | None = None

    @property
    def added(self) -> int:
        return self.tokenization.count - self.message_tokens

    def to_dict(self) -> dict[str, Any]:
        data = self.tokenization.to_dict()
        for token, part in zip(data["tokens"], self.parts):
            token["part"] = part
        return data | {"mode": self.mode, "message_tokens": self.message_tokens, "template_tokens": self.added}


@dataclass(frozen=True)
class Detokenization:
    model: str
    text: str  # the tokenizer's own decode of the ids
    tokens: tuple[Token, ...]
    incomplete: tuple[int, ...] = field(default=())  # indexes of tokens left as partial characters

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "text": self.text, "tokens": [t.to_dict() for t in self.tokens]}


# ---------------------------------------------------------------- characters split over tokens


def spanning_characters(tokens: Sequence[Token]) -> dict[int, str]:
    """Characters split over several tokens, keyed by the index of the token that completes them.

    For " 🍕" as byte-level tokens [20 F0 9F][8D][95], {2: "🍕"}: what the partial pieces
    spell once joined, for a display that shows the bytes and then the character.
    """
    found: dict[int, str] = {}
    carry = b""  # the unfinished character's bytes so far
    for t in tokens:
        if not carry:
            carry = _unfinished_tail(t.bytes)
            continue
        data = carry + t.bytes
        try:
            data.decode("utf-8")
            found[t.index] = _leading_char(data)
            carry = b""
        except UnicodeDecodeError as e:
            if e.start >= len(carry):  # the carried character completed; another may start here
                found[t.index] = _leading_char(data)
                carry = _unfinished_tail(t.bytes)
            elif e.reason == "unexpected end of data":
                carry = data  # still unfinished: keep collecting
            else:
                carry = _unfinished_tail(t.bytes)  # the carried bytes never become a character
    return found


def _leading_char(data: bytes) -> str:
    """The first whole character of `data`."""
    for n in range(1, 5):
        try:
            return data[:n].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return ""


def _unfinished_tail(data: bytes) -> bytes:
    """The bytes at the end of `data` that start a character they do not finish."""
    for n in range(1, min(3, len(data)) + 1):
        tail = data[-n:]
        try:
            tail.decode("utf-8")
            return b""
        except UnicodeDecodeError as e:
            if e.start == 0 and e.reason == "unexpected end of data":
                return tail
    return b""


# ---------------------------------------------------------------- operations


def tokenize(view: TokenizerView, text: str, model: str, add_special: bool = True, parse_special: bool = False) -> Tokenization:
    ids = view.encode(text, add_special=add_special, parse_special=parse_special)
    return Tokenization(model, text, view.tokens(ids), add_special, parse_special)


def parse_ids(words: Iterable[str]) -> list[int]:
    """Ids typed or piped by a user: "1 2 3", "1,2,3" or "[1, 2, 3]" (a JSON list pasted as is)."""
    ids = []
    for word in words:
        for item in re.split(r"[\s,\[\]]+", word):
            if not item:
                continue
            if not _INT.fullmatch(item):
                raise BadInput(f"'{item}' is not a token id", "token ids are whole numbers, e.g. `llmcli detokenize 19556 905`")
            ids.append(int(item))
    return ids


def detokenize(view: TokenizerView, ids: Sequence[int], model: str, skip_special: bool = False) -> Detokenization:
    size = view.vocab_size
    for token_id in ids:
        if not 0 <= token_id < size or view.piece(token_id) is None:
            raise BadInput(
                f"token id {token_id} is not in {model}'s vocabulary", f"ids run from 0 to {size - 1}"
            )
    tokens = view.tokens(ids)
    kept = [t for t in tokens if not (skip_special and t.special)]
    text = view.decode([t.id for t in kept], skip_special=skip_special)
    return Detokenization(model, text, tokens, _incomplete(kept))


def _incomplete(tokens: Sequence[Token]) -> tuple[int, ...]:
    """Indexes of tokens whose bytes, joined with their neighbours', still are not whole characters."""
    bad, pending, buffer = [], [], b""
    for t in tokens:
        buffer += t.bytes
        pending.append(t.index)
        if _ends_clean(buffer):
            buffer, pending = b"", []
        elif not _is_prefix_of_valid(buffer):
            bad.extend(pending)
            buffer, pending = b"", []
    return tuple(bad + pending)


def _ends_clean(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_prefix_of_valid(data: bytes) -> bool:
    """True when the only problem with `data` is that its last character is unfinished."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.reason == "unexpected end of data"
    return True


def chat_tokenization(
    view: TokenizerView,
    prompt_text: str,
    prompt_ids: Sequence[int] | None,
    messages: Sequence[tuple[str, str]],
    model: str,
    mode: str,
) -> ChatTokenization:
    """Tokenize a rendered chat prompt and say which tokens are the messages and which the template.

    `prompt_ids` are the ids the model would receive (from the prompt builder); when None
    the text is encoded with special tokens parsed and none added, as a template expects.
    """
    ids = list(prompt_ids) if prompt_ids is not None else view.encode(prompt_text, add_special=False, parse_special=True)
    tokens = view.tokens(ids)
    spans, start, found = [], 0, []
    prompt_bytes = prompt_text.encode("utf-8")
    for role, content in messages:
        needle = content.encode("utf-8")
        where = prompt_bytes.find(needle, start) if needle else -1
        if where >= 0:
            spans.append((where, where + len(needle), role))
            found.append(content)
            start = where + len(needle)
    parts, offset = [], 0
    # The prompt builder may have added a BOS the text does not contain: skip tokens until
    # their bytes line up with the text.
    for t in tokens:
        if t.special and not prompt_bytes.startswith(t.bytes, offset):
            parts.append("template")
            continue
        end = offset + len(t.bytes)
        inside = next((r for s, e, r in spans if s <= offset and end <= e and end > offset), None)
        overlaps = any(offset < e and s < end for s, e, _ in spans)
        parts.append(inside or ("mixed" if overlaps else "template"))
        offset = end
    # Only the messages the prompt holds: a template may leave one out (or all of them).
    message_tokens = sum(len(view.encode(c, add_special=False)) for c in found)
    system = next((c for r, c in messages if r == "system"), None)
    tokenization = Tokenization(model, prompt_text, tokens, add_special=False, parse_special=True)
    return ChatTokenization(tokenization, mode, tuple(parts), message_tokens, system)
