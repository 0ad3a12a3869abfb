"""A generation as the library hands it out: lazy, iterable, with the numbers after.

    response = model.generate("What is the capital of France?", temperature=0)
    for event in response:            # TokenEvent(id, text, logprob, top, end), as they come
        print(event.text, end="")
    response.text, response.stats     # read without iterating, they run the generation first

Decisions:
- A reply in chat modes starts at its first non-blank character: a plain-text template
  ends at `Assistant:`, so a base model's first token is a space. Raw completions keep
  every character.
- `consume(on_event)` is the one loop that streams a reply to a screen: Ctrl-C while the
  model computes ends the generation as "interrupted" (the engine catches it), and Ctrl-C
  while `on_event` draws does too (caught here), so the text so far is always kept.
  `allow` is a context manager factory for the chat's guard, which lets Ctrl-C in only
  while the engine computes.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Iterator

from llmcli.generation import Generation, GenerationStats, TokenEvent
from llmcli.prompting import Prompt
from llmcli.sampling import SamplingSettings


class Response:
    def __init__(self, generation: Generation, prompt: Prompt, settings: SamplingSettings, model: str, load_seconds: float = 0.0):
        self.generation = generation
        self.prompt = prompt
        self.settings = settings
        self.model = model
        self.load_seconds = load_seconds
        self.events: list[TokenEvent] = []
        self._text = ""
        self._started = False
        self._strip = prompt.mode != "raw"
        self._iterator = self._events()

    def __iter__(self) -> Iterator[TokenEvent]:
        return self._iterator

    def _events(self) -> Iterator[TokenEvent]:
        self._started = True
        for event in self.generation:
            if self._strip and not self._text and event.text:
                event = TokenEvent(event.id, event.text.lstrip(), event.logprob, event.top, event.end)
            self._text += event.text
            self.events.append(event)
            yield event

    def _run_if_not_started(self) -> None:
        """Reading the results of a generation nobody iterated runs it to the end; one the
        caller stopped iterating stays stopped (its finish reason is "interrupted")."""
        if not self._started:
            for _ in self._iterator:
                pass

    @property
    def text(self) -> str:
        """The reply's text (so far, while it is being iterated)."""
        self._run_if_not_started()
        return self._text

    def consume(
        self,
        on_event: Callable[[TokenEvent], Any] = lambda event: None,
        allow: Callable[[], ContextManager] = contextlib.nullcontext,
    ) -> Response:
        """Run to the end, handing each event to `on_event`; Ctrl-C anywhere ends it as interrupted."""
        try:
            while True:
                with allow():  # the engine itself turns Ctrl-C into finish_reason "interrupted"
                    event = next(self._iterator, None)
                if event is None:
                    break
                on_event(event)
        except KeyboardInterrupt:
            pass  # it came while drawing: reading .stats closes the generation as interrupted
        self.stats  # noqa: B018  (finishes the generation)
        return self

    @property
    def stats(self) -> GenerationStats:
        self._run_if_not_started()
        return self.generation.stats

    @property
    def finish_reason(self) -> str:
        return self.stats.finish_reason

    @property
    def token_ids(self) -> list[int]:
        self._run_if_not_started()
        return list(self.generation.token_ids)

    @property
    def interrupted(self) -> bool:
        return self.stats.finish_reason == "interrupted"

    def to_dict(self, tokenizer: Any = None, *, logprobs: bool = False) -> dict[str, Any]:
        """The whole run as one document (`generate --json`); `logprobs` in OpenAI's shape."""
        stats = self.stats
        data: dict[str, Any] = {
            "model": self.model,
            "mode": self.prompt.mode,
            "prompt": self.prompt.text,
            "prompt_token_ids": list(self.prompt.ids),
            "text": self.text,
            "token_ids": self.token_ids,
            "finish_reason": stats.finish_reason,
            "usage": {
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.generated_tokens,
                "total_tokens": stats.prompt_tokens + stats.generated_tokens,
            },
            "timings": {
                "load_seconds": self.load_seconds,
                "time_to_first_token": stats.time_to_first_token,
                "prefill_tokens_per_second": stats.prefill_tokens_per_second,
                "decode_tokens_per_second": stats.decode_tokens_per_second,
                "total_seconds": stats.total_seconds,
            },
            "peak_memory_bytes": stats.peak_memory_bytes,
            "settings": self.settings.to_dict(),
        }
        if logprobs:
            data["logprobs"] = {"content": [logprob_entry(tokenizer, e) for e in self.events]}
        return data


def logprob_entry(tokenizer: Any, event: TokenEvent) -> dict[str, Any]:
    """One token in OpenAI's logprobs shape: its text as the tokenizer decodes it alone, its
    exact bytes, and the top alternatives (log-probabilities before temperature)."""
    from llmcli.tokens import token_bytes

    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return {"token": text, "logprob": logprob, "bytes": list(token_bytes(tokenizer, token_id))}

    return entry(event.id, event.logprob) | {"top_logprobs": [entry(i, lp) for i, _piece, lp in event.top]}
