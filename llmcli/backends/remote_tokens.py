"""A remote model's tokens, as far as its server lets us know them.

`RemoteVocabulary` is a `TokenizerView` with no tokenizer behind it: it learns what each
token id stands for from what the server says (logprob entries carry each token's text and
exact bytes; llama.cpp's /tokenize gives each piece's bytes; vLLM's gives vocabulary
strings such as "Ġworld"), and asks the server (/tokenize, /detokenize) for the rest. So
everything that shows tokens (`probs`, `generate --logprobs`, `tokenize`, compare's prompt
line) works unchanged on a remote model.

Decisions:
- A token a server reports without an id (OpenAI's logprobs carry none; vLLM and Ollama
  add none; llama.cpp and llmcli serve do) gets a stand-in id below zero, one per distinct
  byte string, so a table can still tell its rows apart. Commands show such ids as "?".
- Vocabulary strings become bytes only when the vocabulary's kind is clear: byte-level
  BPE (GPT-2's shifted alphabet: "Ġ" is a space) or SentencePiece ("▁", "<0xNN>"). Any
  other string is asked for with /detokenize, which loses the bytes of a partial character
  (it decodes them to U+FFFD): the server gives nothing better.
- Special tokens are not known remotely: none is marked special.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from llmcli.tokens import TokenizerView, byte_level_table

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SHIFTED = re.compile("[\u0100-\u0143]")  # byte-level BPE's stand-ins for control bytes and the space


class RemoteVocabulary(TokenizerView):
    def __init__(self, encode: Callable[[str, bool, bool], list[int]], decode: Callable[[list[int]], str]):
        # No tokenizer to read: the view's fields say "unknown", and the server fills in the rest.
        self.hf = None
        self.backend = None
        self._decoder = "unknown"
        self.special_ids = frozenset()
        self.special_strings = ()
        self._encode, self._decode_remote = encode, decode
        self._bytes: dict[int, bytes] = {}
        self._pieces: dict[int, str] = {}
        self._stand_ins: dict[bytes, int] = {}
        self._lossy: set[int] = set()  # ids whose bytes came from decoding them alone
        self.kind: str | None = None  # "byte-level" | "sentencepiece" once the pieces tell

    # -- learning

    def learn(self, token_id: int | None, data: bytes | None, text: str) -> int:
        """Record what a token is; return its id (a stand-in below zero when the server gave none)."""
        data = data if data is not None else text.encode("utf-8")
        if token_id is None:
            token_id = self._stand_ins.setdefault(data, -(len(self._stand_ins) + 1))
        self._bytes.setdefault(token_id, data)
        return token_id

    def learn_pieces(self, ids: Sequence[int], pieces: Sequence[bytes | str | None], names: Sequence[str | None] = ()) -> None:
        """What /tokenize said of each id: exact bytes or a vocabulary string (`pieces`), and
        the vocabulary strings themselves when given beside exact bytes (`names`)."""
        for token_id, name in zip(ids, names):
            if isinstance(name, str):
                self._pieces.setdefault(token_id, name)
        strings = [p for p in (*pieces, *names) if isinstance(p, str)]
        if self.kind is None and strings:
            if any("▁" in s or _BYTE_PIECE.fullmatch(s) for s in strings):
                self.kind = "sentencepiece"
            elif any(_SHIFTED.search(s) for s in strings):
                self.kind = "byte-level"
        for token_id, piece in zip(ids, pieces):
            if isinstance(piece, bytes):
                self._bytes[token_id] = piece
                self._lossy.discard(token_id)
            elif isinstance(piece, str):
                self._pieces.setdefault(token_id, piece)
                data = self._piece_bytes(piece)
                if data is not None:
                    self._bytes.setdefault(token_id, data)

    def _piece_bytes(self, piece: str) -> bytes | None:
        if match := _BYTE_PIECE.fullmatch(piece):
            return bytes([int(match.group(1), 16)])
        if self.kind == "sentencepiece":
            return piece.replace("▁", " ").encode("utf-8")
        table = byte_level_table()
        if self.kind == "byte-level" and all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return piece.encode("utf-8") if piece.isascii() else None  # ASCII is the same bytes in every kind

    # -- TokenizerView

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return self._encode(text, add_special, parse_special)

    def decode(self, ids: Sequence[int], skip_special: bool = False, **_: Any) -> str:
        """Known tokens are joined here; otherwise the server decodes (and a stand-in id is never sent)."""
        ids = list(ids)
        if all(i in self._bytes and i not in self._lossy for i in ids):
            return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")
        return self._decode_remote([i for i in ids if i >= 0])

    @property
    def vocab_size(self) -> int:
        return 1 << 31  # unknown: the server says when an id is out of range

    def piece(self, token_id: int) -> str | None:
        if token_id in self._pieces:
            return self._pieces[token_id]
        data = self.token_bytes(token_id, "")
        return data.decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int, piece: str | None = None) -> bytes:
        if token_id not in self._bytes and token_id >= 0:
            # One token decoded alone: a partial character comes back as U+FFFD, so this is
            # good for showing the token, not for joining tokens into text.
            self._bytes[token_id] = self._decode_remote([token_id]).encode("utf-8")
            self._lossy.add(token_id)
        return self._bytes.get(token_id, b"")
