"""`llmcli.inspect.score` on the tiny models, every number recomputed here with torch.

References: transformers' own `model(ids, labels=ids).loss`, and a plain forward pass's
logits put through `torch.log_softmax`, `torch.topk` and a direct rank count.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmcli.errors import BadInput
from llmcli.inspect import score as sc
from tests.tiny_inspect_models import tiny_gemma_dir, untied_llama_dir  # noqa: F401  (fixtures)

TEXT = "The capital of France is Paris. Hello, world! 3 + 4 = 7."
LONG = " ".join(["The quick brown fox jumps over the lazy dog.", "The cat sat on the mat.", "Water boils at 100 degrees."] * 14)
_LOADED: dict[str, object] = {}


@pytest.fixture(params=["tied", "untied", "gemma3"])
def loaded(request, tiny_model_dir, untied_llama_dir, tiny_gemma_dir):  # noqa: F811
    from llmcli.models import load_model

    path = {"tied": tiny_model_dir, "untied": untied_llama_dir, "gemma3": tiny_gemma_dir}[request.param]
    if request.param not in _LOADED:
        _LOADED[request.param] = load_model(str(path))
    return _LOADED[request.param]


def raw_ids(tokenizer, text):
    from llmcli.prompting import build_raw_prompt

    return build_raw_prompt(tokenizer, text).ids


def logits_of(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double()


def test_mean_nll_is_transformers_own_loss(loaded):
    ids = raw_ids(loaded.tokenizer, TEXT)
    report = sc.score_text(loaded.model, loaded.tokenizer, TEXT)
    with torch.no_grad():
        loss = float(loaded.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    totals = report.scores.totals
    assert totals.tokens == len(ids) - 1
    assert abs(totals.mean_nll - loss) / loss < 1e-4
    assert totals.bits_per_token == pytest.approx(loss / math.log(2), rel=1e-4)
    assert totals.perplexity == pytest.approx(math.exp(loss), rel=1e-4)


def test_every_token_is_a_direct_log_softmax_rank_and_top3(loaded):
    ids = raw_ids(loaded.tokenizer, TEXT)
    logits = logits_of(loaded.model, ids)
    logprobs = torch.log_softmax(logits, dim=-1)
    report = sc.score_text(loaded.model, loaded.tokenizer, TEXT)
    assert [t.position for t in report.scores.tokens] == list(range(1, len(ids)))
    buckets = {name: 0 for name in sc.BUCKETS}
    for token in report.scores.tokens:
        row = token.position - 1
        assert token.id == ids[token.position]
        assert abs(token.logprob - float(logprobs[row, token.id])) < 1e-6
        rank = 1 + int((logits[row] > logits[row, token.id]).sum())
        assert token.rank == rank
        assert token.surprisal_bits == pytest.approx(-float(logprobs[row, token.id]) / math.log(2), abs=1e-6)
        top = torch.topk(logprobs[row], 3)
        assert [e.id for e in token.expected] == top.indices.tolist()
        assert [e.prob for e in token.expected] == pytest.approx(top.values.exp().tolist(), abs=1e-6)
        assert token.context == token.position
        buckets["top-10" if rank <= 10 else "top-100" if rank <= 100 else "top-1000" if rank <= 1000 else "beyond"] += 1
    assert dict(report.scores.totals.buckets) == buckets
    assert sum(buckets.values()) == report.scores.totals.tokens


def test_the_first_token_is_scored_from_bos_or_not_at_all(loaded):
    ids = raw_ids(loaded.tokenizer, TEXT)
    report = sc.score_text(loaded.model, loaded.tokenizer, TEXT)
    text_bytes = len(TEXT.encode("utf-8"))
    if ids[0] == loaded.tokenizer.bos_token_id:
        assert report.first == "bos" and report.leading == ()
        assert report.scores.totals.bytes == text_bytes  # every byte of the text was scored
    else:
        assert report.first == "unscored"
        assert [t.id for t in report.leading] == ids[:1]
        first = loaded.tokenizer.decode(ids[:1])
        assert report.scores.totals.bytes == text_bytes - len(first.encode("utf-8"))
    total_bits = -sum(t.logprob for t in report.scores.tokens) / math.log(2)
    assert report.scores.totals.bits_per_byte == pytest.approx(total_bits / report.scores.totals.bytes, rel=1e-12)


@pytest.mark.parametrize("stride", [16, 64, 100])
def test_a_text_longer_than_the_window_is_scored_once_per_token_with_stride_context(loaded, stride):
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = raw_ids(tokenizer, LONG)
    window = model.config.max_position_embeddings
    assert len(ids) > 2 * window
    calls = []
    scores = sc.score_ids(model, tokenizer, ids, stride=stride, progress=lambda done, total: calls.append((done, total)))
    assert [t.position for t in scores.tokens] == list(range(1, len(ids)))  # each exactly once, in order
    assert scores.windowed and scores.windows == len(calls)
    assert calls[-1] == (len(ids) - 1, len(ids) - 1) and calls == sorted(calls)
    bos = ids[0] == tokenizer.bos_token_id
    for token in scores.tokens:
        assert min(token.position, stride) <= token.context < window
    # Each window's first token (the least context) and a sample of the rest, recomputed.
    checked = [t for i, t in enumerate(scores.tokens) if i % 9 == 0 or t.context <= stride + 1]
    for token in checked:
        # the same probability from a forward pass over exactly the context it claims
        before = [ids[0], *ids[token.position - token.context + 1 : token.position]] if bos and token.context < token.position else ids[token.position - token.context : token.position]
        assert len(before) == token.context
        expected = torch.log_softmax(logits_of(model, before)[-1], dim=-1)[token.id]
        assert abs(token.logprob - float(expected)) < 1e-5


def test_a_stride_that_does_not_fit_the_window_is_refused(loaded):
    ids = raw_ids(loaded.tokenizer, LONG)
    for stride in (0, loaded.model.config.max_position_embeddings):
        with pytest.raises(BadInput, match="stride"):
            sc.score_ids(loaded.model, loaded.tokenizer, ids, stride=stride)


def test_a_reply_is_scored_after_its_prompt_only(loaded):
    tokenizer = loaded.tokenizer
    prompt = raw_ids(tokenizer, "Question: what is the capital of France? Answer:")
    reply = tokenizer(" Paris is the capital.", add_special_tokens=False)["input_ids"]
    report = sc.score_reply(loaded.model, tokenizer, prompt, reply, text=" Paris is the capital.", mode="chat")
    assert report.first == "reply"
    assert [t.position for t in report.scores.tokens] == list(range(len(prompt), len(prompt) + len(reply)))
    logprobs = torch.log_softmax(logits_of(loaded.model, prompt + reply), dim=-1)
    for token in report.scores.tokens:
        assert abs(token.logprob - float(logprobs[token.position - 1, token.id])) < 1e-6


def test_nothing_to_score_is_one_clear_error(loaded):
    with pytest.raises(BadInput, match="empty"):
        sc.score_text(loaded.model, loaded.tokenizer, "")
    single = next(w for w in ("Hello", "The", "a") if len(loaded.tokenizer(w, add_special_tokens=False)["input_ids"]) == 1)
    if raw_ids(loaded.tokenizer, single)[0] == loaded.tokenizer.bos_token_id:
        assert sc.score_text(loaded.model, loaded.tokenizer, single).scores.totals.tokens == 1  # scored from BOS
    else:
        with pytest.raises(BadInput, match="one token"):
            sc.score_text(loaded.model, loaded.tokenizer, single)


def test_the_json_is_strict_and_carries_every_token(loaded):
    report = sc.score_text(loaded.model, loaded.tokenizer, TEXT)
    data = json.loads(json.dumps(report.to_dict()), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    tokens = data["scores"]["tokens"]
    assert len(tokens) == report.scores.totals.tokens
    assert {"id", "text", "logprob", "rank", "expected", "surprisal_bits", "bucket", "prob"} <= set(tokens[0])
    assert data["scores"]["totals"]["buckets"] == dict(report.scores.totals.buckets)
    assert data["scores"]["totals"]["perplexity"] == pytest.approx(report.scores.totals.perplexity)


def test_plan_windows_covers_every_position_once():
    for length, start, window, stride, bos in [(300, 1, 128, 64, False), (300, 1, 128, 64, True), (1000, 250, 128, 1, False), (129, 1, 128, 126, True), (50, 10, 128, 64, False)]:
        plan = sc.plan_windows(length, start, window, stride, bos)
        scored = [p for _, end, first in plan for p in range(first, end)]
        assert scored == list(range(start, length))
        for begin, end, first in plan:
            assert (end - begin) + (1 if bos and begin > 0 else 0) <= window
            assert first - begin >= min(stride, first) or begin == 0
