"""Two more tiny models for the inspection tests, next to the tied Llama of `tests/tiny_models.py`.

- an **untied** Llama (its own `lm_head`, 3 layers), so the logit lens is checked on a head
  that is not the embedding matrix;
- a **Gemma 3** text model on the Gemma-shaped tokenizer (`spm_dir`: `▁`, byte fallback, BOS
  on encode): RMSNorm that scales by 1 + weight, the √hidden embedding scale, one KV head under
  four query heads, sliding-window layers (window 8) and a global one, and a final-logit
  softcap (the real gemma3-270m sets none; the tiny one does, so the cap is exercised).

Norm weights are randomised: at their initial values (ones for Llama, zeros for Gemma's
1 + weight) a lens that skipped the norm, or applied the wrong one, could not be told apart.
The fixtures are session-scoped; a test module imports them by name.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

GEMMA_SLIDING_WINDOW = 8
GEMMA_LAYER_TYPES = ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]
GEMMA_SOFTCAP = 5.0  # small, so the tanh bends the tiny model's logits noticeably
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def _copy_tokenizer(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)


def _randomise_norms(model: torch.nn.Module, seed: int, around: float) -> None:
    """Every norm weight drawn from N(around, 0.5²): 1 for Llama's `x * w`, 0 for Gemma's `x * (1 + w)`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5 + around)


def build_untied_llama(path: Path, tokenizer_dir: Path, seed: int = 1) -> Path:
    """A 3-layer random Llama whose output head is a separate matrix."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    _copy_tokenizer(tokenizer_dir, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    _randomise_norms(model, seed, around=1.0)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_gemma3(path: Path, tokenizer_dir: Path, seed: int = 2, softcap: float | None = GEMMA_SOFTCAP) -> Path:
    """A 4-layer random Gemma 3 text model on the BOS-adding SentencePiece-like tokenizer."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    _copy_tokenizer(tokenizer_dir, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=len(GEMMA_LAYER_TYPES),
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=GEMMA_SLIDING_WINDOW,
        layer_types=list(GEMMA_LAYER_TYPES),
        max_position_embeddings=128,
        initializer_range=0.2,
        final_logit_softcapping=softcap,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).to(torch.float32).eval()
    _randomise_norms(model, seed, around=0.0)
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def untied_llama_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return build_untied_llama(tmp_path_factory.mktemp("tiny-untied"), tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory, spm_dir) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"), spm_dir)
