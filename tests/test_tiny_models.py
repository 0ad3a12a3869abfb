"""The tiny models other tests stand on: that they are what they claim to be.

The models are built once per module (a second or so); every test only reads them.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests import tiny_models
from tests.tiny_models import build_tiny_model, write_tiny_gguf

# Strings a byte-level tokenizer gets wrong first: accents (one or two code points), emoji outside
# the BMP (one with a skin-tone modifier), runs of spaces and tabs, a leading space, code, text the
# merges never saw, and the special tokens inside text.
SAMPLES = [
    "Hello, world!",
    "Café, naïve, résumé — déjà vu.",
    "e\u0301 (a combining accent)",
    "I love pizza 🍕 and 👍🏽!",
    "  two leading spaces,   three inside,\tand a tab",
    "line one\n\nline three\r\n",
    "no clean-up : a , b . c ! don 't",  # decode must not "clean up" spaces before punctuation
    "def add(a, b):\n    return a + b  # 3 + 4 = 7",
    "中文 and 日本語 were never in the training text",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    " ",
    "",
]

PROMPTS = ["Hello", "The capital of France is", "def add(a, b):", "Once upon a time"]


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("base"), chat_template=False)


@pytest.fixture(scope="module")
def gguf_path(chat_dir, tmp_path_factory):
    # A directory of its own, so nothing in it but the GGUF can be read by the loaders.
    return write_tiny_gguf(chat_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def tokenizer(chat_dir):
    return AutoTokenizer.from_pretrained(chat_dir)


@pytest.fixture(scope="module")
def model(chat_dir):
    return AutoModelForCausalLM.from_pretrained(chat_dir).eval()


@pytest.fixture(scope="module")
def gguf_tokenizer(gguf_path):
    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


@pytest.fixture(scope="module")
def gguf_model(gguf_path):
    return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).eval()


def logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


# --- tokenizer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", SAMPLES)
def test_tokenizer_round_trips_text_exactly(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_is_shaped_like_smollm2s(tokenizer):
    assert 300 <= len(tokenizer) <= 512
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.encode("Hello")[0] not in tokenizer.all_special_ids  # no BOS added
    assert tokenizer.encode("<|im_end|>") == [tokenizer.eos_token_id]  # special tokens stay whole
    # real merges: words that recur in the training text are single tokens
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("The capital of France is")) == [
        "The", "\u0120capital", "\u0120of", "\u0120France", "\u0120is"
    ]


def test_chat_template_is_chatml(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_base_model_has_no_chat_template(base_dir, tmp_path):
    assert not (base_dir / "chat_template.jinja").exists()
    assert not (base_dir / "chat_template.json").exists()
    assert "chat_template" not in json.loads((base_dir / "tokenizer_config.json").read_text())
    assert AutoTokenizer.from_pretrained(base_dir).chat_template is None

    gguf = write_tiny_gguf(base_dir, tmp_path / "base.gguf")
    assert AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf.name).chat_template is None


# --- model ----------------------------------------------------------------------------------------


def test_model_is_a_tiny_tied_float32_llama(chat_dir, model, tokenizer):
    config = model.config
    assert (chat_dir / "model.safetensors").is_file()
    assert config.model_type == "llama"
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (2, 64, 128)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.vocab_size == len(tokenizer)
    assert config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.dtype == torch.float32
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )


def test_same_seed_gives_the_same_model(model, tokenizer, tmp_path):
    ids = tokenizer.encode("Hello, world!")
    again = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "again")).eval()
    other = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "other", seed=1)).eval()
    assert torch.equal(logits(again, ids), logits(model, ids))
    assert not torch.allclose(logits(other, ids), logits(model, ids))


def test_next_token_distribution_is_far_from_uniform(model, tokenizer):
    probs = logits(model, tokenizer.encode("The capital of France is"))[-1].softmax(-1)
    top = probs.topk(5).values
    assert top[0] > 10 / len(tokenizer)
    assert len(set(top.tolist())) == 5  # a top-k table has no ties


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_generation_does_not_stop_at_once(model, tokenizer, prompt):
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    output = model.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1] :]
    assert len(output) == 20
    assert tokenizer.eos_token_id not in output.tolist()


def test_greedy_generation_after_a_chat_prompt_does_not_stop_at_once(model, tokenizer):
    messages = [{"role": "user", "content": "Hello"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt").input_ids
    output = model.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1] :]
    assert tokenizer.eos_token_id not in output.tolist()


# --- GGUF -----------------------------------------------------------------------------------------


def test_gguf_model_gives_the_same_logits(model, gguf_model, tokenizer):
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog. Café 🍕")
    assert len(ids) > 16  # long enough for a wrong rope base or q/k order to show
    assert (logits(gguf_model, ids) - logits(model, ids)).abs().max() < 1e-5


def test_gguf_config_keeps_what_the_logits_do_not_prove(gguf_model, model):
    gguf_config, config = gguf_model.config, model.config
    assert gguf_config.tie_word_embeddings
    assert gguf_config.vocab_size == config.vocab_size
    assert gguf_config.max_position_embeddings == config.max_position_embeddings
    assert (gguf_config.bos_token_id, gguf_config.eos_token_id, gguf_config.pad_token_id) == (
        config.bos_token_id,
        config.eos_token_id,
        config.pad_token_id,
    )


def test_gguf_needs_the_q_k_permutation(model, tokenizer, chat_dir, tmp_path, monkeypatch):
    """Without llama.cpp's permute the loader's un-permute scrambles q and k: the parity test can fail."""
    monkeypatch.setattr(tiny_models, "permute_for_gguf", lambda weights, *heads: weights)
    gguf = write_tiny_gguf(chat_dir, tmp_path / "unpermuted.gguf")
    unpermuted = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf.name).eval()
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog.")
    assert (logits(unpermuted, ids) - logits(model, ids)).abs().max() > 1e-3


@pytest.mark.parametrize("text", SAMPLES)
def test_gguf_tokenizer_encodes_like_the_hf_one(tokenizer, gguf_tokenizer, text):
    ids = tokenizer.encode(text)
    assert gguf_tokenizer.encode(text) == ids
    assert gguf_tokenizer.decode(ids) == text


def test_gguf_tokenizer_has_the_same_specials_and_template(tokenizer, gguf_tokenizer):
    assert len(gguf_tokenizer) == len(tokenizer)
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(gguf_tokenizer, name) == getattr(tokenizer, name), name
    assert sorted(gguf_tokenizer.all_special_ids) == sorted(tokenizer.all_special_ids)
    assert gguf_tokenizer.chat_template == tokenizer.chat_template
    assert gguf_tokenizer.decode([1, 42, 2], skip_special_tokens=True) == tokenizer.decode(
        [1, 42, 2], skip_special_tokens=True
    )
