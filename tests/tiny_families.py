"""Tiny random models of every family the engine implements, built with transformers and saved in
Hugging Face format (config.json + model.safetensors + tokenizer), for parity tests.

    path = build_family("gemma3", tmp_path / "gemma3")
    FAMILIES                     # the names, each exercising a different part of the engine

Each model has hidden_size 64 and 2-4 layers, so a forward pass takes milliseconds, yet between
them they use every switch of the engine: tied and untied heads; Llama 3 rope scaling; q/k/v,
o and MLP biases; GQA (4 query heads on 2 or 1 KV heads); Qwen3's qk-norm with a head_dim that is
not hidden/heads; Mistral's and Qwen2's sliding windows; Gemma 3's alternation of sliding and
global layers with their two rope thetas, `query_pre_attn_scalar`, the embedding scale and
`final_logit_softcapping`; and Gemma 3's multimodal wrapper (`gemma3`, with a tiny vision tower).
Windows are 6 positions, shorter than the tests' prompts, so a wrong window shows in the logits.

transformers initialises norm weights to 1 (Gemma: 0) and biases to 0, which would let a missing
norm or bias go unnoticed; every norm weight and bias is randomised after construction.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
    SiglipVisionConfig,
)

from tests.tiny_models import build_tiny_tokenizer, spm_like_dir

WINDOW = 6
_COMMON = dict(
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    initializer_range=0.2,  # logits wide enough that greedy choices and softmaxes are not flat
    dtype="float32",
)


def _llama(vocab: int) -> LlamaConfig:
    """SmolLM2's shape: tied head, default rope with its theta."""
    return LlamaConfig(
        vocab_size=vocab,
        num_hidden_layers=2,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        **_COMMON,
    )


def _llama3(vocab: int) -> LlamaConfig:
    """Untied, biases everywhere, Llama 3.1 rope scaling with an original length short enough that
    the tiny head's frequencies fall in all three bands (kept, ramped, divided by the factor)."""
    return LlamaConfig(
        vocab_size=vocab,
        num_hidden_layers=3,
        tie_word_embeddings=False,
        attention_bias=True,
        mlp_bias=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        **_COMMON,
    )


def _mistral(vocab: int) -> MistralConfig:
    """A sliding window on every layer; untied."""
    return MistralConfig(
        vocab_size=vocab, num_hidden_layers=2, sliding_window=WINDOW, tie_word_embeddings=False, **_COMMON
    )


def _qwen2(vocab: int) -> Qwen2Config:
    """q/k/v biases; the window on layers from max_window_layers=1 on (layer 0 global); tied."""
    return Qwen2Config(
        vocab_size=vocab,
        num_hidden_layers=3,
        use_sliding_window=True,
        sliding_window=WINDOW,
        max_window_layers=1,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        **_COMMON,
    )


def _qwen3(vocab: int) -> Qwen3Config:
    """qk-norm, head_dim 32 (not 64 / 4), untied, linear rope scaling."""
    return Qwen3Config(
        vocab_size=vocab,
        num_hidden_layers=2,
        head_dim=32,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0},
        **_COMMON,
    )


def _gemma3_text(vocab: int, *, softcap: float | None = 3.0) -> Gemma3TextConfig:
    """Gemma 3 270M's shape in miniature: one KV head, head_dim 16, sliding/global alternation with
    two thetas, query_pre_attn_scalar 24 (not head_dim). `final_logit_softcapping` is 3, so it
    bends most logits; `attn_logit_softcapping` is set too, which transformers' Gemma 3 ignores."""
    common = {**_COMMON, "num_key_value_heads": 1}
    return Gemma3TextConfig(
        vocab_size=vocab,
        num_hidden_layers=4,
        head_dim=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        sliding_window=WINDOW,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
        },
        query_pre_attn_scalar=24,
        final_logit_softcapping=softcap,
        attn_logit_softcapping=5.0,
        tie_word_embeddings=True,
        **common,
    )


def _gemma3_wrapper(vocab: int) -> Gemma3Config:
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    return Gemma3Config(
        text_config=_gemma3_text(vocab, softcap=None).to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=4,
        image_token_index=vocab - 1,
        boi_token_index=vocab - 2,
        eoi_token_index=vocab - 3,
    )


_CONFIGS = {
    "llama": _llama,
    "llama3": _llama3,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma3_text": _gemma3_text,
    "gemma3": _gemma3_wrapper,
}
FAMILIES = tuple(_CONFIGS)


def build_family(name: str, path: Path, seed: int = 0) -> Path:
    """Save the tiny `name` model with a tokenizer into `path`; return `path`.

    Gemma models get the SentencePiece-shaped tokenizer (`▁`, byte fallback, `<bos>` added on
    encode) of tests/tiny_models.py; the others the byte-level BPE one with a ChatML template.
    """
    path = Path(path)
    gemma = name.startswith("gemma3")
    if gemma:
        tokenizer_dir = _spm_tokenizer(path.parent / f".{path.name}-tokenizer")
    else:
        tokenizer_dir = path.parent / f".{path.name}-tokenizer"
        build_tiny_tokenizer(tokenizer_dir)
    shutil.copytree(tokenizer_dir, path, dirs_exist_ok=True)
    shutil.rmtree(tokenizer_dir)
    vocab = _vocab_size(path)

    torch.manual_seed(seed)
    config = _CONFIGS[name](vocab)
    model_class = Gemma3ForConditionalGeneration if name == "gemma3" else AutoModelForCausalLM
    model = model_class.from_config(config) if name != "gemma3" else model_class(config)
    model = model.to(torch.float32).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "norm" in param_name or param_name.endswith(".bias"):
                param.normal_(0.0, 0.3)
    model.save_pretrained(path, safe_serialization=True)
    return path


def _vocab_size(path: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab_size(with_added_tokens=True)


def _spm_tokenizer(path: Path) -> Path:
    """tiny_models.spm_like_dir wants a model directory to borrow config.json from; any will do, as
    only the tokenizer files are kept."""
    donor = path.parent / f"{path.name}-donor"
    donor.mkdir(parents=True, exist_ok=True)
    (donor / "config.json").write_text("{}", encoding="utf-8")
    spm_like_dir(path, donor)
    shutil.rmtree(donor)
    (path / "config.json").unlink()
    return path
