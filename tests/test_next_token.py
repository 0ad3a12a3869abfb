"""The next-token computations, checked against torch computed directly on the tiny model's logits.

Nothing here trusts a hard-coded number: every expected value is recomputed from a plain
`model(input_ids).logits` forward pass with `torch.softmax` / `torch.log_softmax`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmcli.errors import BadInput
from llmcli.api import probs
from llmcli.inspect import next_token as nt
from llmcli.inspect.sampler import sampler_replay
from llmcli.commands._input import parse_temperatures
from llmcli.tokens import piece_text

PROMPT = "The capital of France is"


def backend(loaded):
    from llmcli.backends.local import LocalBackend

    return LocalBackend(loaded)


def unroll(loaded, ids, settings, candidates=5):
    """The decode loop unrolled on raw ids (llmcli.api.probs.Unrolling), to its result."""
    from llmcli.api.probs import Unrolling
    from llmcli.prompting import Prompt

    return Unrolling(backend(loaded), Prompt("", list(ids), "raw"), settings, candidates).result


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from llmcli.models import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def ids(loaded):
    return loaded.tokenizer.encode(PROMPT, add_special_tokens=False)


def full_logits(model, ids) -> torch.Tensor:
    """The reference: every position's logits from a plain forward pass, float32."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


@pytest.fixture(scope="module")
def logits(loaded, ids):
    return full_logits(loaded.model, ids)[-1]


# ---------------------------------------------------------------------------- the table


def test_forward_logits_match_a_plain_forward_pass(loaded, ids, logits):
    kept = backend(loaded).logits(ids, keep=1)
    assert kept.shape == (1, logits.shape[-1])
    torch.testing.assert_close(kept[0], logits, rtol=0, atol=1e-5)
    every = backend(loaded).logits(ids, keep=len(ids))
    torch.testing.assert_close(every, full_logits(loaded.model, ids), rtol=0, atol=1e-5)


@pytest.mark.parametrize("temperatures", [(1.0,), (0.5, 1.0, 1.7), (0.25, 3.0)])
def test_every_probability_is_softmax_of_logits_over_t(loaded, logits, temperatures):
    table = nt.next_token_table(logits, loaded.tokenizer, num=12, temperatures=temperatures)
    expected_ids = torch.topk(logits, 12).indices.tolist()
    assert [r.id for r in table.rows] == expected_ids
    assert [r.rank for r in table.rows] == list(range(1, 13))
    assert all(a.logit >= b.logit for a, b in zip(table.rows, table.rows[1:]))
    log_softmax = torch.log_softmax(logits, dim=-1)
    for row in table.rows:
        assert row.logit == pytest.approx(float(logits[row.id]), abs=1e-6)
        assert row.logprob == pytest.approx(float(log_softmax[row.id]), abs=1e-6)
        assert row.prob == pytest.approx(float(torch.softmax(logits, -1)[row.id]), abs=1e-6)
    for column, t in zip(table.columns, temperatures):
        assert column.temperature == t
        reference = torch.softmax(logits / t, dim=-1)
        shown = reference[expected_ids]
        assert column.probs == pytest.approx(shown.tolist(), abs=1e-6)
        assert column.cumulative == pytest.approx(torch.cumsum(shown, 0).tolist(), abs=1e-6)
        assert column.coverage == pytest.approx(float(shown.sum()), abs=1e-6)
        ent = -(reference * torch.log(reference)).sum()
        assert column.entropy == pytest.approx(float(ent), abs=1e-4)
        assert column.entropy_bits == pytest.approx(float(ent) / math.log(2), abs=1e-4)
    assert table.entropy == pytest.approx(float(-(torch.softmax(logits, -1) * log_softmax).sum()), abs=1e-4)


def test_lower_temperature_sharpens_and_higher_flattens(loaded, logits):
    table = nt.next_token_table(logits, loaded.tokenizer, temperatures=(0.5, 1.0, 2.0))
    sharp, one, flat = table.columns
    assert sharp.probs[0] > one.probs[0] > flat.probs[0]
    assert sharp.entropy < one.entropy < flat.entropy


def test_temperature_zero_is_the_greedy_one_hot(loaded, logits):
    table = nt.next_token_table(logits, loaded.tokenizer, num=5, temperatures=(0.0, 1.0))
    greedy = table.columns[0]
    assert table.rows[0].id == int(torch.argmax(logits))
    assert greedy.probs == (1.0, 0.0, 0.0, 0.0, 0.0)
    assert greedy.cumulative == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert greedy.entropy == 0.0
    assert greedy.coverage == 1.0


def test_num_is_capped_at_the_vocabulary_and_must_be_positive(loaded, logits):
    table = nt.next_token_table(logits, loaded.tokenizer, num=10_000)
    assert len(table.rows) == logits.shape[-1] == table.vocab_size
    assert table.columns[0].coverage == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(BadInput, match="at least 1 row"):
        nt.next_token_table(logits, loaded.tokenizer, num=0)


@pytest.mark.parametrize(
    "text, expected",
    [("0.5,1,1.5", (0.5, 1.0, 1.5)), ("0", (0.0,)), (" 0.7 , 2 ", (0.7, 2.0)), ("1e-1", (0.1,))],
)
def test_parse_temperatures(text, expected):
    assert parse_temperatures(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "0.5,,1", "-1", "nan", "inf", "1;2"])
def test_parse_temperatures_refuses_nonsense(text):
    with pytest.raises(BadInput, match="--temperature"):
        parse_temperatures(text)


# ---------------------------------------------------------------------------- token text


def test_token_text_is_the_piece_and_partial_characters_show_their_bytes(loaded):
    tok = loaded.tokenizer
    space_the = tok.encode(" the", add_special_tokens=False)
    assert piece_text(tok, space_the[0]).startswith(" ")
    pizza = tok.encode("🍕", add_special_tokens=False)
    assert len(pizza) > 1  # the emoji is split into byte pieces
    pieces = [piece_text(tok, i) for i in pizza]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == "".join(f"<0x{b:02X}>" for b in "🍕".encode())  # as tokenize writes them
    assert nt.special_ids(tok) >= {tok.convert_tokens_to_ids("<|im_end|>")}
    assert nt.prompt_tokens(tok, [2])[0].special


# ---------------------------------------------------------------------------- positions


def test_position_table_is_the_prediction_at_that_token(loaded, ids):
    every = full_logits(loaded.model, ids)
    for position in range(len(ids)):
        table, logits = probs.table_at(backend(loaded), ids, position=position, num=5)
        torch.testing.assert_close(logits, every[position], rtol=0, atol=1e-5)
        assert table.position == position
        assert [r.id for r in table.rows] == torch.topk(every[position], 5).indices.tolist()
        if position + 1 < len(ids):
            actual = table.actual_next
            assert actual is not None and actual.id == ids[position + 1]
            reference = torch.softmax(every[position], -1)
            assert actual.prob == pytest.approx(float(reference[actual.id]), abs=1e-6)
            assert actual.rank == 1 + int((every[position] > every[position, actual.id]).sum())
        else:
            assert table.actual_next is None


def test_negative_positions_count_from_the_end(loaded, ids):
    a, _ = probs.table_at(backend(loaded), ids, position=-2)
    b, _ = probs.table_at(backend(loaded), ids, position=len(ids) - 2)
    assert a == b


@pytest.mark.parametrize("position", [5, 99, -6])
def test_position_out_of_range_is_refused(loaded, ids, position):
    assert len(ids) == 5
    with pytest.raises(BadInput, match="outside the prompt"):
        probs.table_at(backend(loaded), ids, position=position)


def test_empty_and_too_long_prompts_are_refused():
    with pytest.raises(BadInput, match="empty"):
        nt.check_prompt([], 128)
    with pytest.raises(BadInput, match="context window of 128"):
        nt.check_prompt(list(range(129)), 128)
    nt.check_prompt(list(range(128)), 128)


# ---------------------------------------------------------------------------- targets


def test_a_one_token_target_agrees_with_the_table(loaded, ids, logits):
    table = nt.next_token_table(logits, loaded.tokenizer, num=10)
    # Pieces that are whole text on their own (not a byte of a character) round-trip to their id.
    rows = [r for r in table.rows if not r.special and loaded.tokenizer.encode(r.text, add_special_tokens=False) == [r.id]]
    assert len(rows) >= 3
    for row in rows:
        score = probs.score_target(backend(loaded), ids, row.text)
        assert [t.id for t in score.tokens] == [row.id]
        (token,) = score.tokens
        assert token.rank == row.rank
        assert token.logit == pytest.approx(row.logit, abs=1e-5)
        assert token.prob == pytest.approx(row.prob, abs=1e-6)
        assert score.prob == pytest.approx(row.prob, abs=1e-6)


def test_a_multi_token_target_is_scored_token_by_token(loaded, ids):
    text = " Paris, and the capital"
    target = loaded.tokenizer.encode(text, add_special_tokens=False)
    assert len(target) > 2
    every = full_logits(loaded.model, ids + target)
    score = probs.score_target(backend(loaded), ids, text)
    assert [t.id for t in score.tokens] == target
    for i, token in enumerate(score.tokens):
        position_logits = every[len(ids) - 1 + i]
        reference = torch.log_softmax(position_logits, -1)[token.id]
        assert token.logprob == pytest.approx(float(reference), abs=1e-5)
        assert token.rank == 1 + int((position_logits > position_logits[token.id]).sum())
    assert score.logprob == pytest.approx(sum(t.logprob for t in score.tokens), abs=1e-9)
    assert score.prob == pytest.approx(math.prod(t.prob for t in score.tokens), rel=1e-9)
    assert score.first_rank == score.tokens[0].rank


def test_target_text_with_special_token_text_stays_literal(loaded, ids):
    score = probs.score_target(backend(loaded), ids, "<|im_end|>")
    assert 2 not in [t.id for t in score.tokens]


def test_an_empty_target_is_refused(loaded, ids):
    with pytest.raises(BadInput, match="the target is empty"):
        probs.score_target(backend(loaded), ids, "")


# ---------------------------------------------------------------------------- the report as JSON


def test_report_json_is_strict_json(loaded, ids, logits):
    table = nt.next_token_table(logits, loaded.tokenizer, num=4, temperatures=(0.0, 1.0))
    report = nt.ProbsReport(
        model="tiny",
        mode="raw",
        prompt=PROMPT,
        prompt_tokens=nt.prompt_tokens(loaded.tokenizer, ids),
        table=table,
        targets=(probs.score_target(backend(loaded), ids, " Paris"),),
    )
    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    again = json.loads(text)
    assert again["table"]["rows"][0]["id"] == table.rows[0].id
    assert again["table"]["columns"][1]["probs"] == list(table.columns[1].probs)
    assert again["table"]["entropy_bits"] == pytest.approx(table.entropy / math.log(2))


# ---------------------------------------------------------------------------- the sampler replay


def top_p_definition(probs: torch.Tensor, p: float) -> set[int]:
    """The smallest set of most likely tokens whose probabilities add up to at least p."""
    order = torch.argsort(probs, descending=True)
    kept, total = set(), 0.0
    for i in order.tolist():
        kept.add(i)
        total += float(probs[i])
        if total >= p:
            break
    return kept


def min_p_definition(probs: torch.Tensor, m: float) -> set[int]:
    """Every token at least m times as likely as the most likely one."""
    return set(torch.nonzero(probs >= m * probs.max()).flatten().tolist())


def check_stage(stage, expected: set[int], vocab: int) -> torch.Tensor:
    """The stage keeps exactly `expected`, renormalised to sum to 1; returns its distribution."""
    assert stage.survivors == len(expected)
    if len(expected) < vocab:
        assert set(stage.survivor_ids) == expected
        assert sum(stage.survivor_probs) == pytest.approx(1.0, abs=1e-9)
        assert list(stage.survivor_probs) == sorted(stage.survivor_probs, reverse=True)
    dist = torch.zeros(vocab, dtype=torch.float64)
    for i, p in zip(stage.survivor_ids, stage.survivor_probs):
        dist[i] = p
    return dist


@pytest.mark.parametrize("t, k, p, m", [(1.0, None, 0.9, None), (0.7, 40, 0.8, 0.05), (1.5, None, None, 0.1), (1.0, 5, None, None), (2.0, 100, 0.95, 0.02)])
def test_sampler_replay_keeps_exactly_what_the_definitions_say(loaded, logits, t, k, p, m):
    vocab = logits.shape[-1]
    shown = torch.topk(logits, 10).indices.tolist()
    replay = sampler_replay(logits, shown, temperature=t, top_k=k, top_p=p, min_p=m)
    expected_names = ["temperature"] + [n for n, v in (("top-k", k), ("top-p", p), ("min-p", m)) if v is not None]
    assert [s.name for s in replay.stages] == expected_names

    # Recompute each stage from its definition on the previous stage's distribution.
    dist = torch.softmax(logits.double() / t, dim=-1)
    temperature_stage = replay.stages[0]
    assert temperature_stage.survivors == vocab and temperature_stage.mass_kept == pytest.approx(1.0)
    assert temperature_stage.probs == pytest.approx(dist[shown].tolist(), abs=1e-6)
    for stage in replay.stages[1:]:
        if stage.name == "top-k":
            expected = set(torch.topk(dist, k).indices.tolist())
        elif stage.name == "top-p":
            expected = top_p_definition(dist, p)
        else:
            expected = min_p_definition(dist, m)
        assert stage.mass_kept == pytest.approx(float(dist[list(expected)].sum()), abs=1e-6)
        renormalised = torch.zeros_like(dist)
        renormalised[list(expected)] = dist[list(expected)] / dist[list(expected)].sum()
        got = check_stage(stage, expected, vocab)
        torch.testing.assert_close(got, renormalised, rtol=0, atol=1e-6)
        for i, shown_p in zip(shown, stage.probs):
            assert (shown_p is None) == (i not in expected)
            if shown_p is not None:
                assert shown_p == pytest.approx(float(renormalised[i]), abs=1e-6)
        dist = renormalised


def test_sampler_replay_at_temperature_zero_keeps_only_the_argmax(loaded, logits):
    shown = torch.topk(logits, 3).indices.tolist()
    replay = sampler_replay(logits, shown, temperature=0, top_p=0.5)
    for stage in replay.stages:
        assert stage.survivor_ids == (int(torch.argmax(logits)),)
        assert stage.probs == (1.0, None, None)


def test_sampler_replay_uses_the_engine_stages(loaded, logits, monkeypatch):
    from llmcli import sampling

    calls = []
    for name in ("apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter"):
        original = getattr(sampling, name)
        monkeypatch.setattr(sampling, name, lambda x, v, _f=original, _n=name: calls.append(_n) or _f(x, v))
    sampler_replay(logits, [0], temperature=0.8, top_k=50, top_p=0.9, min_p=0.05)
    assert calls == ["apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter"]


# ---------------------------------------------------------------------------- the loop


def test_unrolled_greedy_steps_are_the_engines_tokens(loaded, ids):
    from llmcli.generation import generate
    from llmcli.sampling import SamplingSettings

    settings = SamplingSettings(temperature=0, max_new_tokens=8)
    unrolled = unroll(loaded, ids, settings, candidates=4)
    reference = generate(loaded.model, loaded.tokenizer, ids, settings).run()
    assert [s.id for s in unrolled.steps] == reference.token_ids
    assert unrolled.text == reference.text
    assert unrolled.finish_reason == reference.stats.finish_reason
    with torch.no_grad():
        expected = loaded.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=8)[0, len(ids) :]
    assert [s.id for s in unrolled.steps] == expected.tolist()
    context = list(ids)
    for step in unrolled.steps:
        every = full_logits(loaded.model, context)[-1]
        reference_logprobs = torch.log_softmax(every, -1)
        assert step.rank == 1 and step.candidates[0].id == step.id
        assert [a.id for a in step.candidates] == torch.topk(every, 4).indices.tolist()
        assert step.prob == pytest.approx(float(reference_logprobs[step.id].exp()), abs=1e-5)
        context.append(step.id)
    assert unrolled.steps[-1].output == unrolled.text


def test_unrolled_sampling_is_reproducible_with_a_seed(loaded, ids):
    from llmcli.sampling import SamplingSettings

    settings = SamplingSettings(temperature=1.0, top_k=20, seed=7, max_new_tokens=6)
    a = unroll(loaded, ids, settings)
    b = unroll(loaded, ids, settings)
    assert [s.id for s in a.steps] == [s.id for s in b.steps]
    assert not a.greedy
