"""The agreement figures of `compare --probs`, checked against direct computations.

Logits here are random (seeded) or shaped by hand around known token texts; every expected
number is computed again from them with plain torch, never written down.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer

from llmcli.inspect.comparison import Distribution, agreement, kl_divergence, pairwise, prompt_segments, same_vocabulary
from llmcli.inspect.next_token import next_token_table, piece_text


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def other_tokenizer(tiny_model_dir, tmp_path_factory):
    """The same tokenizer plus one token: a different vocabulary."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["<extra>"])
    return tok


def random_logits(n: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale


def dist(side, logits, tokenizer, num=10) -> Distribution:
    return Distribution(side, next_token_table(logits, tokenizer, num=num), logits, tokenizer)


def torch_kl(p_logits, q_logits) -> float:
    """KL(P‖Q) the way torch's own loss computes it."""
    log_p = torch.log_softmax(p_logits.double(), -1)
    log_q = torch.log_softmax(q_logits.double(), -1)
    return float(torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="sum"))


def top_texts(logits, tokenizer, k):
    return [piece_text(tokenizer, i) for i in torch.topk(logits.double(), k).indices.tolist()]


def test_kl_matches_torch_and_is_zero_for_the_same_distribution():
    p, q = random_logits(512, 1), random_logits(512, 2)
    assert kl_divergence(p, q) == pytest.approx(torch_kl(p, q), rel=1e-9)
    assert kl_divergence(q, p) == pytest.approx(torch_kl(q, p), rel=1e-9)
    assert kl_divergence(p, q) != pytest.approx(kl_divergence(q, p))  # not symmetric
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(p, p + 5.0) == pytest.approx(0.0, abs=1e-12)  # a shift is the same softmax


def test_kl_is_infinite_where_q_rules_out_what_p_allows():
    p, q = random_logits(64, 1), random_logits(64, 2)
    q[int(torch.argmax(p))] = -math.inf
    assert kl_divergence(p, q) == math.inf
    p_masked = p.clone()
    p_masked[5] = -math.inf  # P gives 0 where Q gives mass: a zero term, not NaN
    assert math.isfinite(kl_divergence(p_masked, random_logits(64, 3)))


def test_agreement_with_the_same_vocabulary(tokenizer):
    a_logits = random_logits(len(tokenizer), 10)
    b_logits = a_logits + random_logits(len(tokenizer), 11, 1.0)  # related, so the top-10 lists overlap in part
    a, b = dist("A", a_logits, tokenizer), dist("B", b_logits, tokenizer)
    result = agreement(a, b)

    texts_a, texts_b = top_texts(a_logits, tokenizer, 10), top_texts(b_logits, tokenizer, 10)
    assert result.sides == ("A", "B")
    assert result.top1 == (texts_a[0], texts_b[0])
    assert result.top1_agree == (texts_a[0] == texts_b[0])
    assert result.k == 10
    assert [s.text for s in result.shared] == [t for t in dict.fromkeys(texts_a) if t in texts_b]
    assert 0 < result.overlap < 10
    ids_a, ids_b = torch.topk(a_logits, 10).indices, torch.topk(b_logits, 10).indices
    probs_a, probs_b = torch.softmax(a_logits.double(), -1), torch.softmax(b_logits.double(), -1)
    for s in result.shared:
        assert texts_a[s.ranks[0] - 1] == s.text and texts_b[s.ranks[1] - 1] == s.text
        assert s.probs == pytest.approx((float(probs_a[ids_a[s.ranks[0] - 1]]), float(probs_b[ids_b[s.ranks[1] - 1]])))
    assert result.same_vocabulary
    assert result.kl == pytest.approx(torch_kl(a_logits, b_logits), rel=1e-9)
    assert result.kl_reverse == pytest.approx(torch_kl(b_logits, a_logits), rel=1e-9)
    assert result.kl_bits == pytest.approx(result.kl / math.log(2))
    assert result.kl_note is None


def test_identical_predictions_agree_fully(tokenizer):
    logits = random_logits(len(tokenizer), 4)
    result = agreement(dist("A", logits, tokenizer), dist("B", logits.clone(), tokenizer))
    assert result.top1_agree and result.top1_agree_ignoring_whitespace
    assert result.overlap == result.k == 10
    assert result.kl == pytest.approx(0.0, abs=1e-12)


def test_a_different_vocabulary_has_no_kl_but_still_compares_text(tokenizer, other_tokenizer):
    assert not same_vocabulary(tokenizer, other_tokenizer)
    assert same_vocabulary(tokenizer, AutoTokenizer.from_pretrained(tokenizer.name_or_path))
    base = random_logits(len(tokenizer), 5)
    extended = torch.cat([base, torch.tensor([-20.0])])  # the same scores for the shared ids
    result = agreement(dist("A", base, tokenizer), dist("B", extended, other_tokenizer))
    assert not result.same_vocabulary
    assert result.kl is None and result.kl_reverse is None
    assert f"{len(tokenizer):,}" in result.kl_note and f"{len(other_tokenizer):,}" in result.kl_note
    assert result.top1_agree and result.overlap == 10  # texts agree even though vocabularies differ
    data = result.to_dict()
    assert data["kl"] is None and data["kl_bits"] is None and data["overlap"] == 10


def test_same_vocabulary_but_a_padded_output_layer_has_no_kl(tokenizer):
    base = random_logits(len(tokenizer), 6)
    padded = torch.cat([base, torch.full((64,), -5.0)])
    result = agreement(dist("A", base, tokenizer), dist("B", padded, tokenizer))
    assert result.same_vocabulary and result.kl is None
    assert "output layers" in result.kl_note


def single_token(tokenizer, text) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens in the tiny vocabulary"
    return ids[0]


def test_the_same_word_with_a_leading_space_differs_but_agrees_ignoring_whitespace(tokenizer):
    the, space_the = single_token(tokenizer, "The"), single_token(tokenizer, " The")
    a_logits, b_logits = random_logits(len(tokenizer), 7, 0.1), random_logits(len(tokenizer), 8, 0.1)
    a_logits[the] = 10.0
    b_logits[space_the] = 10.0
    result = agreement(dist("A", a_logits, tokenizer), dist("B", b_logits, tokenizer))
    assert result.top1 == ("The", " The")
    assert not result.top1_agree
    assert result.top1_agree_ignoring_whitespace
    stripped_a = {t.strip() for t in top_texts(a_logits, tokenizer, 10)} - {""}
    stripped_b = {t.strip() for t in top_texts(b_logits, tokenizer, 10)} - {""}
    assert set(result.shared_ignoring_whitespace) == stripped_a & stripped_b
    assert result.overlap_ignoring_whitespace >= 1 and "The" in result.shared_ignoring_whitespace


def test_pairwise_covers_every_pair_in_order(tokenizer):
    ds = [dist(side, random_logits(len(tokenizer), seed), tokenizer, num=5) for side, seed in zip("ABC", (1, 2, 3))]
    pairs = pairwise(ds)
    assert [p.sides for p in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    assert pairs[2].kl == pytest.approx(torch_kl(ds[1].logits, ds[2].logits), rel=1e-9)
    assert all(p.k == 5 for p in pairs)


def test_prompt_segments_mark_special_tokens_and_keep_the_text(tokenizer):
    from llmcli.prompting import Message, build_chat_prompt

    prompt = build_chat_prompt(tokenizer, [Message("user", "Café? 🍕")])
    segments = prompt_segments(tokenizer, prompt.ids)
    assert "".join(text for text, _ in segments) == tokenizer.decode(prompt.ids, skip_special_tokens=False)
    assert [text for text, special in segments if special] == ["<|im_start|>", "<|im_end|>", "<|im_start|>"]
    assert any("Café? 🍕" in text for text, special in segments if not special)  # split characters come out whole
