"""The generation engine: one short decode loop over the sampling pieces of `llmcli.sampling`.

    generation = generate(model, tokenizer, prompt.ids, SamplingSettings(temperature=0))
    for event in generation:          # TokenEvent(id, text, logprob, top)
        print(event.text, end="")
    generation.stats                  # GenerationStats: counts, timings, finish reason

The loop asks a decoder for logits: a callable that takes the next ids, extends its own
KV cache and returns the logits after the last one. By default it is transformers'
forward pass (`forward.decoder`); a faster engine passes its own (`decoder=`).

Decisions and gotchas:
- The decoder keeps the model's KV cache and is fed one token per step.
  With temperature 0 it picks `argmax` of the processed logits, which gives exactly the
  tokens `model.generate(do_sample=False)` gives (tests check it on the tiny model and
  on both embedded models).
- A token's `logprob` is the log-softmax of the model's raw logits: before temperature,
  the cuts and the repetition penalty. It is what the model thinks, not the sampler.
- Text is streamed by incremental detokenization: a window of ids is decoded and only
  the new suffix is handed out. A token can end in the middle of a UTF-8 character
  (byte-level BPE splits emoji and CJK across tokens); while the decoded text ends in
  U+FFFD it is held back until the character is complete. The window starts with the
  previous chunk so decoders that treat the first token specially (SentencePiece's
  leading space) see the same context both times.
- Stop strings are never printed: text that could be the start of a stop string is held
  back until it is either completed (generation stops there) or ruled out.
- The generation ends on any end-of-turn id (`end_of_turn_ids`: generation_config's and
  the tokenizer's EOS, plus known end tokens such as `<|im_end|>` or `<end_of_turn>` the
  vocabulary has as special tokens). That token is yielded as the last event, with its
  logprob and an empty text (or whatever text was still held back), and counted in
  `token_ids` and `generated_tokens`, as `model.generate()` returns it too.
  The invariant: `generation.text == "".join(event.text for event in events)`.
- KeyboardInterrupt raised while the model computes ends the iteration normally with
  finish reason `interrupted`. One raised in the caller's loop body cannot be caught
  here; closing the generation (or reading `.stats`) then also records `interrupted`.
- torch is imported inside functions: command modules import this module's dataclasses
  at import time, and `llmcli --help` must not import torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from llmcli.errors import BadInput, LlmcliError
from llmcli.sampling import SamplingSettings, make_logits_processors, make_sampler

if TYPE_CHECKING:
    from torch import Tensor

Decoder = Callable[[list[int]], "Tensor"]  # next ids -> float32 logits after the last one (CPU)

# Special tokens that end a turn in common chat formats; any that the vocabulary holds
# as a special token stops generation, even when generation_config does not list it.
END_TOKENS = (
    "<|im_end|>",  # ChatML: SmolLM2, Qwen
    "<|endoftext|>",
    "<end_of_turn>",  # Gemma
    "<|eot_id|>",  # Llama 3
    "<|end_of_text|>",
    "<|end|>",  # Phi-3
    "</s>",
    "<eos>",
)
# How many prompt ids the detokenizer decodes in front of the reply, for context.
_DETOKENIZE_CONTEXT = 4


@dataclass(frozen=True)
class TokenEvent:
    id: int
    text: str  # the printable text this token adds (may be "" while a character or a stop string is pending)
    logprob: float  # log-softmax of the raw logits at `id`
    top: tuple[tuple[int, str, float], ...] = ()  # the top-N (id, piece, logprob) when asked
    end: bool = False  # an end-of-turn token: it stopped the generation and adds no text of its own


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    generated_tokens: int
    time_to_first_token: float  # seconds from the start to the first sampled token (prefill included)
    prefill_tokens_per_second: float  # prompt tokens / time of the prefill forward pass
    decode_tokens_per_second: float  # tokens after the first / time after the first (0 with one token)
    total_seconds: float
    peak_memory_bytes: int  # CUDA: peak allocated; CPU: the process's peak resident set
    finish_reason: str  # "stop" | "length" | "interrupted"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------- the decode loop


def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    settings: SamplingSettings,
    *,
    stop_strings: Sequence[str] = (),
    top_logprobs: int = 0,
    context_length: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
    decoder: Decoder | None = None,
) -> Generation:
    """Start a generation (nothing runs until it is iterated). Raises LlmcliError on bad
    settings, an empty prompt, or a prompt that does not fit the context window."""
    settings.validate()
    if not prompt_ids:
        raise BadInput("the prompt is empty", "give some text to continue")
    if context_length is None:
        from llmcli.models import context_length as config_context_length

        context_length = config_context_length(model.config)
    if context_length and len(prompt_ids) >= context_length:
        raise LlmcliError(
            f"the prompt is {len(prompt_ids):,} tokens but the model's context window holds {context_length:,}"
            + (" (no room left for a reply)" if len(prompt_ids) == context_length else ""),
            "shorten the prompt",
        )
    room = context_length - len(prompt_ids) if context_length else settings.max_new_tokens
    return Generation(
        model,
        tokenizer,
        list(prompt_ids),
        settings,
        stop_strings=tuple(dict.fromkeys((*settings.stop, *stop_strings))),
        top_logprobs=top_logprobs,
        max_new_tokens=min(settings.max_new_tokens, room),
        clock=clock,
        decoder=decoder,
    )


class Generation:
    """An iterable of TokenEvents; afterwards `.text`, `.token_ids` and `.stats`."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt_ids: list[int],
        settings: SamplingSettings,
        *,
        stop_strings: tuple[str, ...],
        top_logprobs: int,
        max_new_tokens: int,
        clock: Callable[[], float] = time.perf_counter,
        decoder: Decoder | None = None,
    ):
        import torch

        from llmcli import forward

        self.model = model
        self.tokenizer = tokenizer
        self.prompt_ids = prompt_ids
        self.settings = settings
        self.top_logprobs = top_logprobs
        self.max_new_tokens = max_new_tokens
        self._clock = clock  # a seam: tests pass a clock they control
        self.end_ids = end_of_turn_ids(model, tokenizer)
        self.text = ""
        self.token_ids: list[int] = []
        self._stream = TextStream(tokenizer, prompt_ids[-_DETOKENIZE_CONTEXT:], stop_strings)
        self._generator = torch.Generator()  # sampling runs on the CPU: same seed, same draws on any device
        if settings.seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(settings.seed)
        self._sample = make_sampler(settings, self._generator)
        self._processors = make_logits_processors(settings)
        self._forward = decoder or forward.decoder(model)  # its own KV cache, for this generation
        self._stats: GenerationStats | None = None
        self._events = self._run()

    def __iter__(self) -> Iterator[TokenEvent]:
        return self._events

    def run(self) -> Generation:
        """Generate to the end without looking at the events; return self."""
        for _ in self._events:
            pass
        return self

    @property
    def stats(self) -> GenerationStats:
        if self._stats is None:
            self._events.close()  # stopped early by the caller: records "interrupted"
        if self._stats is None:
            raise RuntimeError("the generation has not started: iterate over it first")
        return self._stats

    def _run(self) -> Iterator[TokenEvent]:
        import torch

        start = self._clock()
        first_token_at = prefill_seconds = None
        finish = None
        try:
            logits = self._forward(self.prompt_ids)  # prefill: the whole prompt in one pass
            prefill_seconds = self._clock() - start
            for step in range(self.max_new_tokens):
                logprobs = torch.log_softmax(logits, dim=-1)  # what the model thinks
                scores = logits
                for process in self._processors:  # repetition penalty
                    scores = process(self.prompt_ids + self.token_ids, scores)
                token = self._sample(scores)  # greedy or a draw
                self.token_ids.append(token)
                first_token_at = first_token_at or self._clock()
                end = token in self.end_ids
                last = end or step == self.max_new_tokens - 1
                text, stopped = self._stream.flush() if end else self._stream.push(token, final=last)
                self.text += text
                if end or stopped:
                    finish = "stop"
                elif last:
                    finish = "length"
                yield TokenEvent(token, text, float(logprobs[token]), self._top(logprobs), end)
                if finish:
                    break
                logits = self._forward([token])  # one new token through the cached model
        except KeyboardInterrupt:
            finish = "interrupted"
        finally:
            self._finish(finish or "interrupted", start, prefill_seconds, first_token_at)

    def _top(self, logprobs: Tensor) -> tuple[tuple[int, str, float], ...]:
        if not self.top_logprobs:
            return ()
        import torch

        values, ids = torch.topk(logprobs, min(self.top_logprobs, logprobs.shape[-1]))
        return tuple(
            (i, self.tokenizer.decode([i], skip_special_tokens=False), v)
            for i, v in zip(ids.tolist(), values.tolist())
        )

    def _finish(self, reason: str, start: float, prefill_seconds: float | None, first_token_at: float | None) -> None:
        now = self._clock()
        n = len(self.token_ids)
        after_first = now - first_token_at if first_token_at else 0.0
        self._stats = GenerationStats(
            prompt_tokens=len(self.prompt_ids),
            generated_tokens=n,
            time_to_first_token=(first_token_at - start) if first_token_at else 0.0,
            prefill_tokens_per_second=len(self.prompt_ids) / prefill_seconds if prefill_seconds else 0.0,
            decode_tokens_per_second=(n - 1) / after_first if n > 1 and after_first > 0 else 0.0,
            total_seconds=now - start,
            peak_memory_bytes=peak_memory_bytes(self.model.device),
            finish_reason=reason,
        )


# ---------------------------------------------------------------- text and tokens


class TextStream:
    """Turns a growing list of token ids into text that is safe to print now.

    `push(id)` returns the new text and whether a stop string was completed. Text is
    held back while it ends in U+FFFD (a character whose bytes have not all arrived) or
    with what could be the beginning of a stop string; `final=True` (or `flush()`)
    hands out everything that is left, unless a stop string ends it first.
    """

    def __init__(self, tokenizer: Any, context_ids: Sequence[int] = (), stop_strings: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.ids = list(context_ids)
        self.prefix = 0  # the decode window starts here ...
        self.read = len(self.ids)  # ... and the text of ids[prefix:read] is already in `decoded`
        self.prefix_text = self._decode(self.ids)
        self.decoded = ""  # the reply's text, complete characters only
        self.emitted = 0  # how much of `decoded` has been handed out

    def push(self, token: int, *, final: bool = False) -> tuple[str, bool]:
        self.ids.append(token)
        self._advance(final)
        return self._release(final)

    def flush(self) -> tuple[str, bool]:
        """Everything still held back (the generation ended without a new text token)."""
        self._advance(final=True)
        return self._release(final=True)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _advance(self, final: bool) -> None:
        text = self._decode(self.ids[self.prefix :])
        if len(text) > len(self.prefix_text) and (final or not text.endswith("\ufffd")):
            self.decoded += text[len(self.prefix_text) :]
            self.prefix, self.read = self.read, len(self.ids)
            self.prefix_text = self._decode(self.ids[self.prefix : self.read])

    def _release(self, final: bool) -> tuple[str, bool]:
        # A stop string can only start in the part not yet handed out (that part was held).
        hits = [i for s in self.stop_strings if (i := self.decoded.find(s, self.emitted)) >= 0]
        if hits:
            end, stopped = min(hits), True
        else:
            end, stopped = len(self.decoded) - (0 if final else self._pending_stop()), False
        text = self.decoded[self.emitted : end]
        self.emitted = end
        return text, stopped

    def _pending_stop(self) -> int:
        """Length of the longest tail of the text that could be the start of a stop string."""
        room = len(self.decoded) - self.emitted
        return max(
            (k for s in self.stop_strings for k in range(min(len(s) - 1, room), 0, -1) if self.decoded.endswith(s[:k])),
            default=0,
        )


def end_of_turn_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Ids that end a generation: generation_config's EOS ids, the tokenizer's EOS, and
    the known end-of-turn tokens the vocabulary holds as special tokens."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    special = {t.content: i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    ids.update(special[name] for name in END_TOKENS if name in special)
    return frozenset(ids)


def peak_memory_bytes(device: Any) -> int:
    """Peak memory of this process: CUDA's peak allocation, else the peak resident set."""
    import torch

    if str(device).startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except ImportError:  # Windows
        return 0
