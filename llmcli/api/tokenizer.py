"""Tokenizing as the library offers it: a model's tokenizer alone, or a loaded model's.

`load_tokenizer(name)` reads only the tokenizer. When the model's conversion cache entry
already holds a tokenizer.json (any built-in alias or GGUF file loaded once), it is read
with the `tokenizers` library directly: about 0.1 s where importing and building a
transformers tokenizer takes seconds, and the ids are the same (tested on hard text).
Anything that needs the chat template loads transformers' tokenizer (`chat_tokens`).
"""

from __future__ import annotations

from typing import Any, Sequence

from llmcli.inspect import tokens as token_views
from llmcli.prompting import Message, Prompt
from llmcli.tokens import TokenizerView


class Tokenizing:
    """tokenize / detokenize / chat_tokens for anything with a `view`, a `label` and a chat prompt."""

    label: str
    view: TokenizerView

    def chat_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> Prompt:
        raise NotImplementedError

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> token_views.Tokenization:
        return token_views.tokenize(self.view, text, self.label, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids: Sequence[int], *, skip_special: bool = False) -> token_views.Detokenization:
        return token_views.detokenize(self.view, ids, self.label, skip_special=skip_special)

    def tokens(self, ids: Sequence[int]) -> token_views.Tokenization:
        """Token ids the model produced (not text tokenized again), as a Tokenization."""
        tokens = self.view.tokens(ids)
        return token_views.Tokenization(self.label, "".join(t.text for t in tokens), tokens, add_special=False)

    def chat_tokens(self, messages: Sequence[Message], *, add_generation_prompt: bool = True, prompt: Prompt | None = None) -> token_views.ChatTokenization:
        """The prompt a chat template builds from `messages`, tokenized, the template's tokens
        told apart from the messages' (or `prompt`, already built from them)."""
        prompt = prompt or self.chat_prompt(messages, add_generation_prompt=add_generation_prompt)
        pairs = [(m.role, m.content.strip()) for m in messages]
        return token_views.chat_tokenization(self.view, prompt.text, prompt.ids, pairs, self.label, prompt.mode)


class Tokenizer(Tokenizing):
    """A model's tokenizer without its weights."""

    def __init__(self, name: str | None):
        from llmcli.models import resolve

        self.name = name
        self.ref = resolve(name)
        self.label = self.ref.label
        self._hf: Any = None
        self.view = self._fast_view() or TokenizerView(self.hf)

    def _fast_view(self) -> TokenizerView | None:
        from llmcli.models import cached_tokenizer_json

        path = cached_tokenizer_json(self.ref)
        if path is None:
            return None
        import tokenizers

        return TokenizerView(tokenizers.Tokenizer.from_file(str(path)))

    @property
    def hf(self) -> Any:
        """transformers' tokenizer (loaded on first use: the chat template needs it)."""
        if self._hf is None:
            from llmcli.models import load_tokenizer

            self._hf, _ = load_tokenizer(self.name)
        return self._hf

    def chat_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> Prompt:
        from llmcli.prompting import build_chat_prompt

        return build_chat_prompt(self.hf, list(messages), add_generation_prompt=add_generation_prompt)

    def chat_tokens(self, messages: Sequence[Message], *, add_generation_prompt: bool = True, prompt: Prompt | None = None) -> token_views.ChatTokenization:
        self.view = TokenizerView(self.hf)  # the ids the template's prompt is encoded with
        return super().chat_tokens(messages, add_generation_prompt=add_generation_prompt, prompt=prompt)
