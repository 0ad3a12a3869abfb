"""The generation engine on the tiny model: parity with transformers, logprobs, text, stops.

Every expected value comes from a direct computation: `model.generate()`, a forward pass
without a cache, transformers' own logits warpers, the tokenizer's decode.
"""

from __future__ import annotations

import functools

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmcli.errors import LlmcliError
from llmcli.generation import TextStream, end_of_turn_ids, generate
from llmcli.sampling import SamplingSettings, apply_temperature, make_logits_processors, make_sampler, min_p_filter, top_k_filter, top_p_filter
from llmcli.prompting import Message, build_chat_prompt, build_raw_prompt
from llmcli.tokens import token_bytes

PROMPTS = ["The capital of France is", "def add(a, b):", "Once upon a time", "I love pizza 🍕 and"]
TRICKY = [
    "Hello, world! How are you today?",
    "Café, naïve, crème brûlée",
    "I love pizza 🍕 and 👍🏽!",
    "中文 and 日本語 were never seen",
    "  spaces,\ttabs\nand newlines\n\n",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def reference_greedy(model, ids, n, **kwargs):
    out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, **kwargs)
    return out[0, len(ids) :].tolist()


def reply_text(tokenizer, prompt_ids, reply_ids):
    """The text the reply adds to the prompt, by decoding both whole."""
    whole = tokenizer.decode(prompt_ids + reply_ids)
    return whole[len(tokenizer.decode(prompt_ids)) :]


def greedy(n=30, **kwargs):
    return SamplingSettings(temperature=0, max_new_tokens=n, **kwargs)


# ---------------------------------------------------------------- sampling pieces


@pytest.fixture
def logits():
    return torch.randn(512, generator=torch.Generator().manual_seed(3)) * 3


def kept(x):
    return set(torch.nonzero(torch.isfinite(x)).flatten().tolist())


def test_temperature_matches_transformers(logits):
    expected = TemperatureLogitsWarper(0.6)(None, logits[None])[0]
    assert torch.allclose(apply_temperature(logits, 0.6), expected)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_top_k_matches_transformers(logits, k):
    expected = TopKLogitsWarper(k)(None, logits[None].clone())[0]
    assert kept(top_k_filter(logits, k)) == kept(expected) and len(kept(expected)) == k


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_matches_transformers(logits, p):
    expected = TopPLogitsWarper(p)(None, logits[None].clone())[0]
    assert kept(top_p_filter(logits, p)) == kept(expected)
    probs = torch.softmax(logits, -1)
    survivors = sorted(kept(top_p_filter(logits, p)), key=lambda i: -probs[i])
    assert probs[survivors].sum() >= p > probs[survivors[:-1]].sum()  # the smallest set that holds p


@pytest.mark.parametrize("p", [0.5, 0.9, 0.999])
def test_top_p_on_a_wide_vocabulary_matches_transformers(p):
    """Flat logits over 50k tokens: nuclei of hundreds to tens of thousands of tokens, past the
    64 candidates top_p_filter looks at first, so each of its wider looks is exercised."""
    logits = torch.randn(50_000, generator=torch.Generator().manual_seed(4)) * 0.5
    expected = TopPLogitsWarper(p)(None, logits[None].clone())[0]
    assert len(kept(expected)) > 64
    assert kept(top_p_filter(logits, p)) == kept(expected)


def test_draw_never_returns_a_token_of_probability_zero(monkeypatch):
    from llmcli.sampling import draw

    probs = torch.tensor([0.0, 0.25, 0.0, 0.75, 0.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    assert {draw(probs, generator) for _ in range(500)} == {1, 3}
    # a uniform draw that lands on the total (rounding) takes the last token that can be drawn
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: torch.tensor(1.0))
    assert draw(probs) == 3


@pytest.mark.parametrize("m", [0.01, 0.1, 0.5])
def test_min_p_matches_transformers(logits, m):
    expected = MinPLogitsWarper(m)(None, logits[None].clone())[0]
    assert kept(min_p_filter(logits, m)) == kept(expected)


def test_filters_leave_logits_alone_when_off(logits):
    for x in (top_k_filter(logits, 0), top_p_filter(logits, 1.0), min_p_filter(logits, 0.0)):
        assert torch.equal(x, logits)


def test_repetition_penalty_matches_transformers(logits):
    seen = [3, 7, 7, 100, 511]
    (process,) = make_logits_processors(SamplingSettings(repetition_penalty=1.3))
    expected = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([seen]), logits[None].clone())[0]
    assert torch.allclose(process(seen, logits), expected)


def test_greedy_sampler_is_argmax(logits):
    assert make_sampler(SamplingSettings(temperature=0))(logits) == int(torch.argmax(logits))


def test_sampler_draws_from_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    sample = make_sampler(SamplingSettings(temperature=1.0), torch.Generator().manual_seed(0))
    draws = torch.bincount(torch.tensor([sample(logits) for _ in range(4000)]), minlength=5) / 4000
    assert torch.allclose(draws, torch.softmax(logits, -1), atol=0.03)


def test_sampler_never_draws_a_cut_token(logits):
    sample = make_sampler(SamplingSettings(temperature=1.5, top_k=5), torch.Generator().manual_seed(0))
    assert {sample(logits) for _ in range(300)} <= set(torch.topk(logits, 5).indices.tolist())


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -1},
        {"temperature": float("nan")},
        {"top_p": 1.5},
        {"top_p": 0},
        {"top_k": -1},
        {"min_p": 2},
        {"repetition_penalty": 0},
        {"max_new_tokens": 0},
        {"stop": ("",)},
    ],
)
def test_settings_out_of_range_are_user_errors(bad):
    with pytest.raises(LlmcliError) as e:
        SamplingSettings(**bad).validate()
    assert next(iter(bad)) in e.value.message and e.value.hint


# ---------------------------------------------------------------- the decode loop


@pytest.mark.parametrize("text", PROMPTS)
def test_greedy_raw_matches_model_generate(tiny, text):
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, text).ids
    generation = generate(model, tokenizer, ids, greedy(30)).run()
    assert generation.token_ids == reference_greedy(model, ids, 30)


def test_greedy_chat_matches_model_generate(tiny):
    model, tokenizer = tiny
    ids = build_chat_prompt(tokenizer, [Message("user", "What is the capital of France?")]).ids
    assert generate(model, tokenizer, ids, greedy(40)).run().token_ids == reference_greedy(model, ids, 40)


def test_greedy_with_repetition_penalty_matches_model_generate(tiny):
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, "The cat sat on the mat. The cat").ids
    ours = generate(model, tokenizer, ids, greedy(30, repetition_penalty=1.5)).run().token_ids
    assert ours == reference_greedy(model, ids, 30, repetition_penalty=1.5)


def test_logprobs_are_the_log_softmax_of_the_models_logits(tiny):
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, "Once upon a time").ids
    events = list(generate(model, tokenizer, ids, SamplingSettings(temperature=0.9, seed=1, max_new_tokens=12), top_logprobs=3))
    reply = [e.id for e in events]
    with torch.no_grad():  # one pass over everything, no cache: also checks the cached loop
        full = torch.log_softmax(model(torch.tensor([ids + reply])).logits[0].float(), dim=-1)
    for step, event in enumerate(events):
        expected = full[len(ids) - 1 + step]
        assert event.logprob == pytest.approx(float(expected[event.id]), abs=1e-4)
        values, top_ids = torch.topk(expected, 3)
        assert [i for i, _, _ in event.top] == top_ids.tolist()
        assert [lp for _, _, lp in event.top] == pytest.approx(values.tolist(), abs=1e-4)
        assert [piece for _, piece, _ in event.top] == [tokenizer.decode([i]) for i in top_ids.tolist()]


def test_same_seed_same_text_different_seed_different_text(tiny):
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, "Hello").ids

    def run(seed):
        return generate(model, tokenizer, ids, SamplingSettings(temperature=0.8, seed=seed, max_new_tokens=20)).run().token_ids

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_text_is_the_decoded_reply_and_the_joined_pieces(tiny):
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, "I love pizza 🍕 and").ids
    generation = generate(model, tokenizer, ids, greedy(40))
    pieces = [e.text for e in generation]
    assert "".join(pieces) == generation.text == reply_text(tokenizer, ids, generation.token_ids)


def test_stops_at_max_new_tokens(tiny):
    model, tokenizer = tiny
    generation = generate(model, tokenizer, build_raw_prompt(tokenizer, "Hello").ids, greedy(7)).run()
    assert len(generation.token_ids) == 7
    assert generation.stats.finish_reason == "length" and generation.stats.generated_tokens == 7


def test_stops_on_an_end_of_turn_token_and_does_not_print_it(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()  # its own copy: we change its config
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = build_raw_prompt(tokenizer, "The capital of France is").ids
    free = reference_greedy(model, ids, 20)
    k = next(i for i in range(3, 20) if free[i] not in free[:i])  # a token that first appears at step k
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, free[k]]
    generation = generate(model, tokenizer, ids, greedy(20))
    events = list(generation)
    assert generation.token_ids == free[: k + 1] == reference_greedy(model, ids, 20)
    assert events[-1].end and events[-1].id == free[k] and not any(e.end for e in events[:-1])
    assert generation.text == reply_text(tokenizer, ids, free[:k])
    assert generation.stats.finish_reason == "stop"


def test_end_of_turn_ids_come_from_config_and_tokenizer(tiny):
    model, tokenizer = tiny
    ids = end_of_turn_ids(model, tokenizer)
    assert model.generation_config.eos_token_id in ids and tokenizer.eos_token_id in ids
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") in ids


def test_stop_string_ends_the_text_before_it(tiny):
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, "Once upon a time").ids
    free = generate(model, tokenizer, ids, greedy(30)).run().text
    stop = free[len(free) // 2 : len(free) // 2 + 3]
    assert stop.strip(), "the greedy text should have some letters in the middle"
    generation = generate(model, tokenizer, ids, greedy(30, stop=(stop,)))
    pieces = [e.text for e in generation]
    assert generation.text == "".join(pieces) == free[: free.index(stop)]
    assert stop not in "".join(pieces)
    assert generation.stats.finish_reason == "stop"


def test_stop_strings_from_the_prompt_and_the_settings_both_count(tiny):
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, "Once upon a time").ids
    free = generate(model, tokenizer, ids, greedy(30)).run().text
    early, late = free[5:8], free[15:18]
    both = generate(model, tokenizer, ids, greedy(30, stop=(late,)), stop_strings=(early,)).run()
    assert both.text == free[: min(free.index(early), free.index(late))]


def test_prompt_over_the_context_window_is_an_error_with_the_counts(tiny):
    model, tokenizer = tiny
    window = model.config.max_position_embeddings
    with pytest.raises(LlmcliError) as e:
        generate(model, tokenizer, [5] * (window + 3), greedy())
    assert f"{window + 3:,}" in e.value.message and f"{window:,}" in e.value.message
    with pytest.raises(LlmcliError):
        generate(model, tokenizer, [5] * window, greedy())  # full: no room for a reply


def test_generation_stops_at_the_end_of_the_context_window(tiny):
    model, tokenizer = tiny
    window = model.config.max_position_embeddings
    generation = generate(model, tokenizer, [5] * (window - 4), greedy(50)).run()
    assert len(generation.token_ids) == 4 and generation.stats.finish_reason == "length"


def test_empty_prompt_is_an_error(tiny):
    model, tokenizer = tiny
    with pytest.raises(LlmcliError, match="empty"):
        generate(model, tokenizer, [], greedy())


def test_ctrl_c_while_the_model_computes_ends_the_generation_cleanly(tiny_model_dir, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    forward, calls = model.forward, []

    @functools.wraps(forward)
    def interrupted_on_the_fifth_pass(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", interrupted_on_the_fifth_pass)
    ids = build_raw_prompt(tokenizer, "Hello").ids
    generation = generate(model, tokenizer, ids, greedy(30))
    events = list(generation)  # no exception: the iteration just ends
    assert len(events) == 4 and generation.token_ids == [e.id for e in events]
    assert generation.stats.finish_reason == "interrupted" and generation.stats.generated_tokens == 4
    assert generation.text == "".join(e.text for e in events)


def test_a_caller_that_stops_early_gets_interrupted_stats(tiny):
    model, tokenizer = tiny
    generation = generate(model, tokenizer, build_raw_prompt(tokenizer, "Hello").ids, greedy(30))
    for n, _ in enumerate(generation, 1):
        if n == 3:
            break
    assert generation.stats.finish_reason == "interrupted" and generation.stats.generated_tokens == 3


def test_stats_add_up(tiny_model_dir, monkeypatch):
    """On a clock the test controls: the prefill pass takes 5 s and each decode pass 1 s,
    so every figure has one right value."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    now = [100.0]
    forward = model.forward

    @functools.wraps(forward)
    def timed(*args, **kwargs):
        now[0] += 5.0 if kwargs["input_ids"].shape[-1] > 1 else 1.0
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", timed)
    ids = build_raw_prompt(tokenizer, "Once upon a time").ids
    stats = generate(model, tokenizer, ids, greedy(20), clock=lambda: now[0]).run().stats
    assert stats.prompt_tokens == len(ids) > 1 and stats.generated_tokens == 20
    assert stats.time_to_first_token == 5.0  # the prefill, then the first token is sampled at once
    assert stats.prefill_tokens_per_second == len(ids) / 5.0
    assert stats.total_seconds == 5.0 + 19  # one pass for each token after the first
    assert stats.decode_tokens_per_second == 19 / 19.0
    assert stats.finish_reason == "length"
    assert stats.peak_memory_bytes > 0


# ---------------------------------------------------------------- streamed text


@pytest.fixture(scope="module")
def sentencepiece_like():
    """A Llama-2-style tokenizer: ▁ for spaces, byte fallback for anything unknown, and a
    decoder that strips the leading space of a sequence. Characters only, no merges, so
    every accent, emoji and CJK character arrives as 2-4 byte tokens."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab |= {f"<0x{b:02X}>": 3 + b for b in range(256)}
    for ch in "▁" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.!?'":
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("which", ["byte-level", "sentencepiece-like"])
@pytest.mark.parametrize("text", TRICKY)
def test_streamed_pieces_are_whole_characters(tiny, sentencepiece_like, which, text):
    tokenizer = tiny[1] if which == "byte-level" else sentencepiece_like
    prompt = tokenizer("Say it:", add_special_tokens=False)["input_ids"]
    reply = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    if which == "sentencepiece-like":
        reply = reply[1:]  # the normalizer's own leading ▁; the explicit space stays as a ▁ token
    stream = TextStream(tokenizer, prompt)
    pieces = [stream.push(token)[0] for token in reply]
    assert not any("\ufffd" in piece for piece in pieces)
    assert "".join(pieces) == reply_text(tokenizer, prompt, reply)
    assert "".join(pieces).rstrip() == (" " + text).rstrip()


def test_a_character_split_across_tokens_is_held_until_complete(sentencepiece_like):
    tokenizer = sentencepiece_like
    reply = tokenizer("🍕", add_special_tokens=False)["input_ids"][1:]  # four byte tokens
    assert len(reply) == 4
    stream = TextStream(tokenizer, tokenizer("a", add_special_tokens=False)["input_ids"])
    assert [stream.push(t)[0] for t in reply] == ["", "", "", "🍕"]


def test_an_unfinished_character_is_flushed_at_the_end(tiny):
    tokenizer = tiny[1]
    reply = tokenizer("🍕", add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer)
    assert stream.push(reply[0])[0] == ""
    assert stream.flush()[0] == tokenizer.decode(reply[:1])  # what decode gives: a replacement character


def test_text_that_may_start_a_stop_string_is_held_back(tiny):
    tokenizer = tiny[1]
    text = "Hello, world! How are you today?"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer, stop_strings=("world! Who",))
    out, stops = [], []
    for token in ids:
        piece, stopped = stream.push(token)
        out.append(piece)
        stops.append(stopped)
        assert not "".join(out).endswith(("w", "wo", "wor", "world", "world!"))
    assert "".join(out) == text and not any(stops)


def test_a_stop_string_split_over_tokens_is_never_printed(tiny):
    tokenizer = tiny[1]
    text = "The capital of France is Paris."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stop = "ance is P"
    stream = TextStream(tokenizer, stop_strings=(stop,))
    out = []
    for token in ids:
        piece, stopped = stream.push(token)
        out.append(piece)
        if stopped:
            break
    assert stopped and "".join(out) == text[: text.index(stop)]


# ---------------------------------------------------------------- token bytes


@pytest.mark.parametrize("text", TRICKY)
def test_token_bytes_add_up_to_the_text(tiny, sentencepiece_like, text):
    byte_level = tiny[1]
    ids = byte_level(text, add_special_tokens=False)["input_ids"]
    assert b"".join(token_bytes(byte_level, i) for i in ids) == text.encode()
    ids = sentencepiece_like(text, add_special_tokens=False)["input_ids"]
    assert b"".join(token_bytes(sentencepiece_like, i) for i in ids) == (" " + text).encode()


def test_special_token_bytes_are_its_text(tiny):
    tokenizer = tiny[1]
    assert token_bytes(tokenizer, tokenizer.eos_token_id) == tokenizer.eos_token.encode()


def test_top_logprobs_are_a_direct_log_softmax(tiny):
    """The alternatives of each step: the top N of log_softmax(logits) computed without a cache."""
    model, tokenizer = tiny
    ids = build_raw_prompt(tokenizer, "Hello").ids
    events = list(generate(model, tokenizer, ids, greedy(3), top_logprobs=5))
    so_far = list(ids)
    for event in events:
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([so_far])).logits[0, -1].double(), dim=-1)
        values, top_ids = torch.topk(logprobs, 5)
        assert [i for i, _, _ in event.top] == top_ids.tolist()
        assert [lp for _, _, lp in event.top] == pytest.approx(values.tolist(), abs=1e-5)
        assert [piece for _, piece, _ in event.top] == [tokenizer.decode([i]) for i in top_ids.tolist()]
        so_far.append(event.id)
