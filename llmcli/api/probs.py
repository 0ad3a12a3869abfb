"""The next-token report and the unrolled loop, assembled once for every client.

`probs`, chat's `/probs`, `compare --probs` (and the server's logprobs) all ask the same
question of a backend: the logits after a prompt. These functions ask it and hand the
numbers to the pure functions of `llmcli.inspect` (`next_token`, `sampler`).
"""

from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

from llmcli.inspect import next_token as nt
from llmcli.inspect.sampler import sampler_replay
from llmcli.prompting import Prompt
from llmcli.sampling import SamplingSettings


def table_at(backend: Any, ids: Sequence[int], *, position: int = -1, num: int = 10, temperatures: Sequence[float] = (1.0,)):
    """The table after the token at `position` (and the logits it came from), in one forward pass.

    At an earlier position the table also carries the token that actually came next.
    """
    index = nt.resolve_position(position, len(ids))
    logits = backend.logits(ids, keep=len(ids) - index)[0]
    actual = ids[index + 1] if index + 1 < len(ids) else None
    table = nt.next_token_table(logits, backend.tokenizer, num=num, temperatures=temperatures, position=index, actual_next=actual)
    return table, logits


def score_target(backend: Any, prompt_ids: Sequence[int], text: str) -> nt.TargetScore:
    """Rank, logit and probability of each token of `text` as a continuation of the prompt."""
    target = nt.encode_target(backend.tokenizer, text)
    nt.check_prompt(prompt_ids, backend.context_length, extra=len(target))
    # Position len(prompt) - 1 predicts target[0]; the last position predicts past the target.
    logits = backend.logits([*prompt_ids, *target], keep=len(target) + 1)[:-1]
    return nt.target_score(logits, backend.tokenizer, text, target)


def report(
    backend: Any,
    prompt: Prompt,
    *,
    ids: Sequence[int] | None = None,
    num: int = 10,
    temperatures: Sequence[float] = (1.0,),
    position: int = -1,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    sampler_temperature: float | None = None,
    targets: Sequence[str] = (),
    next_is: str = "prompt",
) -> nt.ProbsReport:
    """Everything `probs` shows about one prompt: the table (one column per temperature),
    the sampler replayed when a cut is set, and each target's score.

    `ids` overrides the ids the model reads (chat's `/probs` looks at where a reply began:
    the prompt plus the reply's first token, at the prompt's last position, `next_is="reply"`);
    the report's prompt tokens are still the prompt's.
    """
    if "logits" not in backend.capabilities:  # a remote model: the server's top 20
        at_end = position == -1 or (position == len(prompt.ids) - 1 and list((ids or prompt.ids)[: len(prompt.ids)]) == list(prompt.ids))
        return from_server_top(backend, prompt, num=num, temperatures=temperatures, at_end=at_end, targets=targets,
                               cuts={"top_k": top_k, "top_p": top_p, "min_p": min_p}, sampler_temperature=sampler_temperature)
    ids = list(prompt.ids if ids is None else ids)
    nt.check_prompt(ids, backend.context_length)
    start = time.perf_counter()
    table, logits = table_at(backend, ids, position=position, num=num, temperatures=temperatures)
    forward_seconds = time.perf_counter() - start
    replay = None
    if any(v is not None for v in (top_k, top_p, min_p)):
        t = sampler_temperature if sampler_temperature is not None else temperatures[0]
        replay = sampler_replay(logits, [r.id for r in table.rows], temperature=t, top_k=top_k, top_p=top_p, min_p=min_p)
    return nt.ProbsReport(
        model=backend.label,
        mode=prompt.mode,
        prompt=prompt.text,
        prompt_tokens=nt.prompt_tokens(backend.tokenizer, prompt.ids),
        table=table,
        sampler=replay,
        targets=tuple(score_target(backend, ids, t) for t in targets),
        timings={"load_seconds": backend.load_seconds, "forward_seconds": forward_seconds},
        logits=logits,
        next_is=next_is,
    )


def from_server_top(backend: Any, prompt: Prompt, *, num: int, temperatures: Sequence[float], at_end: bool, targets: Sequence[str], cuts: dict, sampler_temperature: float | None) -> nt.ProbsReport:
    """The report for a backend without logits, from its server's top 20 next tokens after
    the whole prompt (`at_end`): at most 20 rows, the other numbers recomputed over those
    tokens and marked approximate."""
    from llmcli.errors import BadInput
    from llmcli.inspect import top_logprobs as top

    if not at_end:
        raise BadInput("position: a server gives its top tokens after the whole prompt only", "looking inside the prompt needs a local model")
    if targets:
        raise BadInput("the target: scoring a continuation needs the whole distribution, which a server does not give", "use a local model")
    if not (prompt.text or prompt.ids or getattr(prompt, "messages", ())):
        raise BadInput("the prompt is empty: there is nothing to predict from", "give some text")
    start = time.perf_counter()
    entries = backend.top_logprobs(prompt)
    forward_seconds = time.perf_counter() - start
    entries = sorted(entries, key=lambda e: -e.logprob)
    ids = [backend.tokenizer.learn(e.id, e.bytes, e.text) for e in entries]
    logprobs = [e.logprob for e in entries]
    table = top.table(ids, logprobs, backend.tokenizer, num=num, temperatures=temperatures, position=len(prompt.ids) - 1)
    replay = None
    if any(v is not None for v in cuts.values()):
        t = sampler_temperature if sampler_temperature is not None else temperatures[0]
        replay = top.replay(ids, logprobs, [r.id for r in table.rows], temperature=t, **cuts)
    return nt.ProbsReport(
        model=backend.label,
        mode=prompt.mode,
        prompt=prompt.text,
        prompt_tokens=nt.prompt_tokens(backend.tokenizer, prompt.ids),
        table=table,
        sampler=replay,
        timings={"load_seconds": backend.load_seconds, "forward_seconds": forward_seconds},
        approximate=top.NOTE.format(n=len(entries)),
    )


class Unrolling:
    """The decode loop one step at a time: iterate for `Step`s as they are computed;
    `.result` (an `Unrolled`) once done. The picks are exactly `generate`'s."""

    def __init__(self, backend: Any, prompt: Prompt, settings: SamplingSettings, candidates: int = 5):
        self.backend, self.prompt, self.settings = backend, prompt, settings
        self.generation = backend.generation(prompt, settings, top_logprobs=candidates)
        self.steps: list[nt.Step] = []
        self._iterator = self._run()

    def __iter__(self) -> Iterator[nt.Step]:
        return self._iterator

    def _run(self) -> Iterator[nt.Step]:
        output = ""
        for index, event in enumerate(self.generation, start=1):
            output += event.text
            self.steps.append(nt.step(index, event, self.backend.tokenizer, output))
            yield self.steps[-1]

    @property
    def result(self) -> nt.Unrolled:
        for _ in self._iterator:  # finish first
            pass
        s = self.settings
        return nt.Unrolled(
            steps=tuple(self.steps),
            text=self.generation.text,
            finish_reason=self.generation.stats.finish_reason,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            seed=s.seed,
        )
