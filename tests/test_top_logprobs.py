"""The server's top 20, recomputed in pure Python (`inspect.top_logprobs`), must say exactly
what the engine's own torch stages (`inspect.sampler.sampler_replay`, `next_token_table`)
say when given those same 20 numbers as the whole vocabulary. Hypothesis draws the numbers
and the sampler's settings.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcli.inspect import top_logprobs as top
from llmcli.inspect.sampler import sampler_replay

logprob_lists = st.lists(st.floats(min_value=-30, max_value=-1e-3, allow_nan=False), min_size=1, max_size=20, unique=True).map(lambda v: sorted(v, reverse=True))
temperatures = st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.5])


def vocabulary(ids):
    """A remote model's vocabulary that has learned ids 100, 101, ... as the texts "100", "101", ..."""
    from llmcli.backends.remote_tokens import RemoteVocabulary

    learned = RemoteVocabulary(encode=None, decode=None)
    for i in ids:
        learned.learn(i, str(i).encode(), str(i))
    return learned


@settings(max_examples=200, deadline=None)
@given(
    logprobs=logprob_lists,
    temperature=temperatures,
    top_k=st.none() | st.integers(min_value=0, max_value=25),
    top_p=st.none() | st.floats(min_value=0.05, max_value=1.0),
    min_p=st.none() | st.floats(min_value=0.0, max_value=1.0),
)
def test_the_replay_over_the_top_20_is_the_engines(logprobs, temperature, top_k, top_p, min_p):
    ids = list(range(len(logprobs)))
    shown = ids[:10]
    ours = top.replay(ids, logprobs, shown, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    engine = sampler_replay(torch.tensor(logprobs, dtype=torch.float64), shown, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    assert [(s.name, s.survivors) for s in ours.stages] == [(s.name, s.survivors) for s in engine.stages]
    for a, b in zip(ours.stages, engine.stages):
        assert math.isclose(a.mass_kept, b.mass_kept, abs_tol=1e-9)
        assert [p is None for p in a.probs] == [p is None for p in b.probs]
        assert all(math.isclose(p, q, abs_tol=1e-9) for p, q in zip(a.probs, b.probs) if p is not None)
        assert list(a.survivor_ids) == list(b.survivor_ids)


@settings(max_examples=100, deadline=None)
@given(logprobs=logprob_lists, t=temperatures)
def test_the_table_keeps_the_servers_probabilities_at_t1_and_renormalises_elsewhere(logprobs, t):
    ids = [100 + i for i in range(len(logprobs))]
    table = top.table(ids, logprobs, vocabulary(ids), num=10, temperatures=(t,), position=4)
    assert [r.id for r in table.rows] == ids[:10] and [r.text for r in table.rows] == [str(i) for i in ids[:10]]
    assert table.vocab_size == len(ids) and table.position == 4
    [column] = table.columns
    values = torch.tensor(logprobs, dtype=torch.float64)
    if t == 0:
        expected = torch.zeros_like(values)
        expected[0] = 1.0
    else:
        expected = values.exp() if t == 1 else torch.softmax(values / t, dim=-1)
    assert max(abs(p - q) for p, q in zip(column.probs, expected[:10].tolist())) < 1e-12
    assert math.isclose(column.coverage, float(expected[:10].sum()), abs_tol=1e-12)
    assert all(math.isclose(r.prob, math.exp(lp)) and r.logit == r.logprob == lp for r, lp in zip(table.rows, logprobs))
