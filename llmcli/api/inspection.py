"""Looking inside a model: score, logit lens, attention, embeddings, as methods of `Model`.

Each method builds the token ids the way the command and the chat both need them, then
hands the model's own modules to the pure computations of `llmcli.inspect` (`score`,
`lens`, `attention`, `neighbors`). They need a backend that holds the weights in this
process (capabilities "hidden_states", "attentions", "embeddings"); one that does not (a
remote server) gets one clear error.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from llmcli.errors import LlmcliError
from llmcli.prompting import Message, Prompt


class Inspecting:
    backend: Any
    label: str

    def _weights(self, capability: str) -> tuple[Any, Any]:
        """The in-process transformers model and its tokenizer."""
        if capability not in self.backend.capabilities or getattr(self.backend, "model", None) is None:
            raise LlmcliError(f"{self.label} gives no {capability.replace('_', ' ')}", "this view needs a model loaded in this process")
        return self.backend.model, self.backend.tokenizer

    # ---------------------------------------------------------------- score

    def score(
        self,
        text: str,
        *,
        chat: bool = False,
        user: str | None = None,
        system: str | None = None,
        stride: int | None = None,
        window: int | None = None,
        progress: Callable[[int, int], Any] | None = None,
    ):
        """How surprised the model is by each token of `text` (a `ScoreReport`): byte for byte,
        or with `chat` as the assistant's reply to `user` inside the chat template (only the
        reply's tokens are scored)."""
        from llmcli.inspect import score as sc

        if "remote" in self.backend.capabilities:
            return self._score_served(text, chat=chat, stride=stride, window=window)
        model, tokenizer = self._weights("logits")
        options = {"stride": stride, "window": window, "progress": progress}
        if not chat:
            return sc.score_text(model, tokenizer, text, label=self.label, **options)
        reply = text.strip()
        if not reply:
            raise LlmcliError("the reply is empty: there is nothing to score", "give the assistant's reply as the text")
        messages = ([Message("system", system)] if system is not None else []) + [Message("user", user or "")]
        prompt = self.chat_prompt(messages)  # type: ignore[attr-defined]
        # The plain template ends at "Assistant:" with no space: the reply's first token carries it.
        continuation = " " + reply if prompt.mode == "template" else reply
        reply_ids = tokenizer(continuation, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return sc.score_reply(model, tokenizer, prompt.ids, list(reply_ids), text=reply, mode=prompt.mode, label=self.label, **options)

    def _score_served(self, text: str, *, chat: bool, stride: int | None, window: int | None):
        """A remote model scores a raw text from its server's own log-probabilities of it
        (echo + logprobs, the server's top 20 at each position), in one pass."""
        from llmcli.inspect import score as sc

        if chat or stride is not None or window is not None:
            flag = "--chat" if chat else "--stride/--window"
            raise LlmcliError(f"{flag} needs the model in this process: a server scores a raw text in one pass", "leave it out, or use a local model")
        if not text.strip():
            raise LlmcliError("the text is empty: there is nothing to score", 'give some text, e.g. llmcli score "The capital of France is Paris."')
        return sc.score_served(self.prompt_logprobs(text, top=20), label=self.label)  # type: ignore[attr-defined]

    def score_reply(self, prompt: Prompt, reply_ids: Sequence[int], *, text: str = "", progress: Callable[[int, int], Any] | None = None):
        """Score `reply_ids` as the continuation of `prompt` (chat's /score: what the model
        thought of its own words, in the conversation they were written in)."""
        from llmcli.inspect import score as sc

        model, tokenizer = self._weights("logits")
        return sc.score_reply(model, tokenizer, prompt.ids, list(reply_ids), text=text, mode=prompt.mode, label=self.label, progress=progress)

    # ---------------------------------------------------------------- lens

    def lens(
        self,
        prompt: str | Prompt,
        *,
        mode: str = "raw",
        positions: Sequence[int] | None = None,
        layers: Sequence[int] | str | None = None,
        top_k: int = 5,
        target: str | None = None,
        ids: Sequence[int] | None = None,
    ):
        """The logit lens (a `LensReport`): each block's output through the model's own final
        norm and head, at `positions` (default the last), for `layers` (a list, or a slice
        written "0:30:3"; default all). `ids` overrides the prompt's (chat's /lens: the prompt
        and the reply's first token)."""
        from llmcli.inspect import lens as ln
        from llmcli.inspect.next_token import check_prompt, resolve_position

        model, tokenizer = self._weights("hidden_states")
        ids = list(self._built(prompt, mode).ids if ids is None else ids)
        check_prompt(ids, self.backend.context_length)
        count = model.config.get_text_config().num_hidden_layers
        chosen = ln.parse_layers(layers, count) if isinstance(layers, str) else layers
        where = [resolve_position(p, len(ids)) for p in (positions if positions is not None else [-1])]
        return ln.logit_lens(model, tokenizer, ids, positions=where, layers=chosen, top_k=top_k, target=target, label=self.label)

    # ---------------------------------------------------------------- attention

    def attention(
        self,
        text: str | Prompt,
        *,
        mode: str = "raw",
        layer: int | None = None,
        head: int | None = None,
        drop_first: bool = False,
        start: int = 0,
        end: int | None = None,
        ids: Sequence[int] | None = None,
    ):
        """One layer's attention pattern (an `AttentionPattern`): a query head's, or the mean
        over the layer's heads; the model's own weights from one eager forward pass."""
        from llmcli.inspect import attention as at

        model, tokenizer = self._weights("attentions")
        ids = self._ids(text, mode, ids)
        return at.attention_pattern(model, tokenizer, ids, layer=layer, head=head, drop_first=drop_first, start=start, end=end, label=self.label)

    def attention_heads(self, text: str | Prompt, *, mode: str = "raw"):
        """Every head of every layer, summarised (a `HeadOverview`): to find the interesting ones."""
        from llmcli.inspect import attention as at

        model, tokenizer = self._weights("attentions")
        return at.head_overview(model, tokenizer, self._ids(text, mode, None), label=self.label)

    # ---------------------------------------------------------------- embeddings

    def neighbors(self, word: str, *, k: int = 10, all_pieces: bool = False, center: bool = False, average: bool = False):
        """The nearest tokens to `word` in the input embedding matrix, by cosine."""
        from llmcli.inspect import neighbors as nb

        model, tokenizer = self._weights("embeddings")
        return nb.nearest(model, tokenizer, word, k=k, all_pieces=all_pieces, center=center, average=average, label=self.label)

    def analogy(self, expression: str, *, method: str = "add", k: int = 10, all_pieces: bool = False, center: bool = False, average: bool = False):
        """`a - b + c` in embedding space: 3CosAdd (`add`) or 3CosMul (`mul`)."""
        from llmcli.inspect import neighbors as nb

        model, tokenizer = self._weights("embeddings")
        return nb.analogy(model, tokenizer, expression, method=method, k=k, all_pieces=all_pieces, center=center, average=average, label=self.label)

    def vector(self, word: str, *, dims: int = 8, average: bool = False):
        """A token's embedding vector itself: its first numbers, its norm, where it sits."""
        from llmcli.inspect import neighbors as nb

        model, tokenizer = self._weights("embeddings")
        return nb.vector(model, tokenizer, word, dims=dims, average=average, label=self.label)

    # ---------------------------------------------------------------- helpers

    def _built(self, prompt: str | Prompt, mode: str) -> Prompt:
        return prompt if isinstance(prompt, Prompt) else self.prompt(prompt, mode=mode)  # type: ignore[attr-defined]

    def _ids(self, text: str | Prompt, mode: str, ids: Sequence[int] | None) -> list[int]:
        from llmcli.inspect.next_token import check_prompt

        ids = list(ids if ids is not None else self._built(text, mode).ids)
        check_prompt(ids, self.backend.context_length)
        return ids
