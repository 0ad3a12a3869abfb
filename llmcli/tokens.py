"""Token text: the one owner of what a token id stands for, as bytes and as text.

A `TokenizerView` puts one interface over the two kinds of tokenizer llmcli meets: a
bare `tokenizers.Tokenizer` read from a cache entry's tokenizer.json (the fast path: it
loads in a tenth of a second where transformers takes seconds), and a transformers
tokenizer (everything else, and anything that needs the chat template). Both give the
ids `tokenizer.encode` gives; the tests check it on hard text. `view(tokenizer)` returns
the view of a tokenizer, made once.

Decisions and gotchas:
- A token's bytes are computed the way the tokenizer's decoder produces them (byte-level
  BPE's byte-to-unicode map, GPT-2's; SentencePiece's `▁` and `<0xNN>` byte fallback),
  so partial UTF-8 (an emoji over three tokens) is exact.
- Text shows bytes that do not make a whole character on their own as `<0xNN>`, never as
  a silent U+FFFD: the same notation in every command, `--json` included.
- Literal special-token text in the input ("<|im_start|>") is not turned into a special
  token unless asked (`parse_special`): what a user's text costs is what tokenize shows.
- Special ids are the tokenizer's special tokens and its added tokens marked special.

Nothing here imports torch, transformers or Rich.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence

from llmcli.errors import BadInput

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


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


class TokenizerView:
    """Encode, decode and take apart tokens with either kind of tokenizer."""

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
        self.special_strings = tuple(
            sorted({getattr(added[i], "content", "") for i in self.special_ids if i in added} - {""}, key=len, reverse=True)
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

    def token_bytes(self, token_id: int, piece: str | None = None) -> bytes:
        """The bytes this token contributes to decoded text, as its decoder would produce them."""
        piece = self.piece(token_id) if piece is None else piece
        if piece is None:
            return b""
        if token_id in self.special_ids:
            return piece.encode("utf-8")
        if self._decoder == "byte-level":
            table = byte_level_table()
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

    def pieces(self, ids: Sequence[int]) -> list[str | None]:
        """Many ids' pieces in one call (a whole vocabulary: one call, not 262,144)."""
        if self.hf is not None:
            found = self.hf.convert_ids_to_tokens(list(ids))
        else:
            assert self.backend is not None
            found = [self.backend.id_to_token(i) for i in ids]
        return [p if isinstance(p, str) else None for p in found]

    def many_bytes(self, ids: Sequence[int]) -> list[bytes | None]:
        """`token_bytes` of many ids (None for an id the vocabulary does not have)."""
        return [None if piece is None else self.token_bytes(i, piece) for i, piece in zip(ids, self.pieces(ids))]

    def text(self, token_id: int) -> str:
        """What one token stands for on its own, partial characters as `<0xNN>`."""
        return bytes_to_text(self.token_bytes(token_id))

    def token(self, index: int, token_id: int) -> Token:
        piece = self.piece(token_id)
        if piece is None:
            raise BadInput(f"token id {token_id} is not in the vocabulary", f"ids run from 0 to {self.vocab_size - 1}")
        data = self.token_bytes(token_id, piece)
        return Token(index, token_id, piece, bytes_to_text(data), data, token_id in self.special_ids)

    def tokens(self, ids: Iterable[int]) -> tuple[Token, ...]:
        return tuple(self.token(i, token_id) for i, token_id in enumerate(ids))


_VIEWS: weakref.WeakKeyDictionary[Any, TokenizerView] = weakref.WeakKeyDictionary()


def view(tokenizer: Any) -> TokenizerView:
    """The TokenizerView of `tokenizer`, made once per tokenizer object."""
    if isinstance(tokenizer, TokenizerView):
        return tokenizer
    try:
        return _VIEWS[tokenizer]
    except (KeyError, TypeError):
        made = TokenizerView(tokenizer)
        try:
            _VIEWS[tokenizer] = made
        except TypeError:  # not weak-referenceable: no cache
            pass
        return made


# The shortcuts most callers need, for any tokenizer.


def token_bytes(tokenizer: Any, token_id: int) -> bytes:
    return view(tokenizer).token_bytes(token_id)


def piece_text(tokenizer: Any, token_id: int) -> str:
    """What one token stands for on its own; bytes of a partial character as `<0xNN>`."""
    return view(tokenizer).text(token_id)


def special_ids(tokenizer: Any) -> frozenset[int]:
    return view(tokenizer).special_ids


def special_strings(tokenizer: Any) -> tuple[str, ...]:
    """The special tokens' texts, longest first (so `<|im_start|>` wins over `<|`)."""
    return view(tokenizer).special_strings


# ---------------------------------------------------------------- bytes and text


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
def byte_level_table() -> dict[str, int]:
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
    return "".join(text if raw is None else hex_bytes(raw) for text, raw in segments(data))


def hex_bytes(raw: bytes) -> str:
    """`<0xF0><0x9F>`: bytes that are not a whole character, as every view writes them."""
    return "".join(f"<0x{b:02X}>" for b in raw)
