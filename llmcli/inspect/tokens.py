"""Text to tokens and back, as plain data: what `tokenize` and `detokenize` show.

A `TokenizerView` puts one interface over the two kinds of tokenizer llmcli meets: a
bare `tokenizers.Tokenizer` read from a cache entry's tokenizer.json (the fast path: it
loads in a tenth of a second where transformers takes seconds), and a transformers
tokenizer (everything else, and `--chat`, which needs `apply_chat_template`). Both give
the ids `tokenizer.encode` gives; the tests check it on hard text.

Decisions and gotchas:
- Literal special-token text in the input ("<|im_start|>") is not turned into a special
  token unless `parse_special` (transformers' `split_special_tokens=True`): tokenize
  shows what a user's text costs, and a prompt that smuggles in control tokens is exactly
  what a user wants to see split.
- A token's `bytes` are computed the way the tokenizer's decoder would produce them
  (byte-level BPE's byte-to-unicode map; SentencePiece's `▁` and `<0xNN>` byte fallback),
  so partial UTF-8 (an emoji over three tokens) is exact. Its `text` writes the bytes that
  do not make a whole character on their own as `<0xNN>`, never as a silent U+FFFD.
- Joined, the tokens' bytes are the input's bytes (plus any BOS/EOS the tokenizer adds).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

from llmcli.errors import BadInput

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_INT = re.compile(r"[+-]?\d+")


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Token:
    index: int
    id: int
    piece: str  # as the vocabulary stores it: "Ġhello", "▁hello", "<0xF0>", "<|im_start|>"
    text: str  # what it decodes to; bytes that are not a whole character written <0xNN>
    bytes: bytes
    special: bool

    @property
    def complete(self) -> bool:
        """True when the token's bytes are whole UTF-8 characters on their own."""
        try:
            self.bytes.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "piece": self.piece,
            "text": self.text,
            "bytes": self.bytes.hex(),
            "special": self.special,
        }


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


# ---------------------------------------------------------------- the tokenizer view


class TokenizerView:
    """Encode, decode and take apart tokens with either kind of tokenizer.

    `TokenizerView(tokenizers.Tokenizer)` is the fast path; `TokenizerView(hf_tokenizer)`
    calls transformers for encoding and decoding, so its ids are transformers' by
    construction.
    """

    def __init__(self, tokenizer: Any):
        import tokenizers

        self.hf = None if isinstance(tokenizer, tokenizers.Tokenizer) else tokenizer
        backend = tokenizer if self.hf is None else getattr(tokenizer, "_tokenizer", None)
        self.backend = backend if isinstance(backend, tokenizers.Tokenizer) else None
        self._decoder = _decoder_kind(self.backend)
        if self.backend is not None:
            added = self.backend.get_added_tokens_decoder()
        else:
            added = dict(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        self.special_ids = frozenset(i for i, t in added.items() if getattr(t, "special", False)) | frozenset(
            getattr(self.hf, "all_special_ids", ()) or ()
        )

    # -- the tokenizer's own operations

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        if self.hf is not None:
            return list(self.hf.encode(text, add_special_tokens=add_special, split_special_tokens=not parse_special))
        assert self.backend is not None
        self.backend.encode_special_tokens = not parse_special
        return list(self.backend.encode(text, add_special_tokens=add_special).ids)

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        if self.hf is not None:
            return self.hf.decode(list(ids), skip_special_tokens=skip_special, clean_up_tokenization_spaces=False)
        assert self.backend is not None
        return self.backend.decode(list(ids), skip_special_tokens=skip_special)

    @property
    def vocab_size(self) -> int:
        if self.hf is not None:
            return len(self.hf)
        assert self.backend is not None
        return self.backend.get_vocab_size(with_added_tokens=True)

    def piece(self, token_id: int) -> str | None:
        if self.hf is not None:
            piece = self.hf.convert_ids_to_tokens(token_id)
        else:
            assert self.backend is not None
            piece = self.backend.id_to_token(token_id)
        return piece if isinstance(piece, str) else None

    # -- taking a token apart

    def token_bytes(self, token_id: int, piece: str) -> bytes:
        """The bytes this token contributes to decoded text, as its decoder would produce them."""
        if self._decoder == "byte-level":
            table = _unicode_to_byte()
            if all(c in table for c in piece):
                return bytes(table[c] for c in piece)
            return piece.encode("utf-8")  # added tokens outside the byte alphabet ("\n") are literal
        if self._decoder in ("sentencepiece", "unknown"):
            match = _BYTE_PIECE.fullmatch(piece)
            if match:  # byte fallback: SentencePiece's decoder turns <0xNN> into the byte
                return bytes([int(match.group(1), 16)])
            if self._decoder == "sentencepiece" or "▁" in piece:
                return piece.replace("▁", " ").encode("utf-8")
        return self.decode([token_id]).encode("utf-8")

    def token(self, index: int, token_id: int) -> Token:
        piece = self.piece(token_id)
        if piece is None:
            raise BadInput(f"token id {token_id} is not in the vocabulary", f"ids run from 0 to {self.vocab_size - 1}")
        data = self.token_bytes(token_id, piece)
        return Token(index, token_id, piece, bytes_to_text(data), data, token_id in self.special_ids)

    def tokens(self, ids: Iterable[int]) -> tuple[Token, ...]:
        return tuple(self.token(i, token_id) for i, token_id in enumerate(ids))


def _decoder_kind(backend: Any) -> str:
    """"byte-level", "sentencepiece" (▁ for spaces, maybe <0xNN> fallback), "other", or "unknown"."""
    if backend is None or backend.decoder is None:
        return "unknown"
    try:
        state = json.loads(backend.decoder.__getstate__())
    except Exception:  # an exotic decoder: fall back to decoding tokens one by one
        return "other"
    kinds = json.dumps(state)
    if '"ByteLevel"' in kinds:
        return "byte-level"
    if "▁" in kinds or '"Metaspace"' in kinds or '"ByteFallback"' in kinds:
        return "sentencepiece"
    return "other"


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable stand-in character -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def segments(data: bytes) -> list[tuple[str, bytes | None]]:
    """Split bytes into runs of whole characters `(text, None)` and stray bytes `("", bytes)`."""
    out: list[tuple[str, bytes | None]] = []
    i = 0
    while i < len(data):
        try:
            out.append((data[i:].decode("utf-8"), None))
            break
        except UnicodeDecodeError as e:
            if e.start:
                out.append((data[i : i + e.start].decode("utf-8"), None))
            end = i + e.start + 1  # one stray byte at a time, so no whole character hides behind it
            out.append(("", data[i + e.start : end]))
            i = end
    merged: list[tuple[str, bytes | None]] = []
    for text, raw in out:  # neighbouring stray bytes make one run
        if raw is not None and merged and merged[-1][1] is not None:
            merged[-1] = ("", merged[-1][1] + raw)
        else:
            merged.append((text, raw))
    return merged


def bytes_to_text(data: bytes) -> str:
    """Decode UTF-8, writing each byte that is not part of a whole character as `<0xNN>`."""
    return "".join(text if raw is None else "".join(f"<0x{b:02X}>" for b in raw) for text, raw in segments(data))


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
    spans, start = [], 0
    prompt_bytes = prompt_text.encode("utf-8")
    for role, content in messages:
        needle = content.encode("utf-8")
        where = prompt_bytes.find(needle, start) if needle else -1
        if where >= 0:
            spans.append((where, where + len(needle), role))
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
    message_tokens = sum(len(view.encode(c, add_special=False)) for _, c in messages if c)
    system = next((c for r, c in messages if r == "system"), None)
    tokenization = Tokenization(model, prompt_text, tokens, add_special=False, parse_special=True)
    return ChatTokenization(tokenization, mode, tuple(parts), message_tokens, system)
