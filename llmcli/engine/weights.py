"""Read a Hugging Face checkpoint's safetensors into the engine's own parameter names.

    state = read_weights(model_dir, config, torch.float32)    # {"layers.0.attn.qkv.weight": ..., ...}

- Files: `model.safetensors`, or the shards `model.safetensors.index.json` lists. Tensors come
  from `safe_open`, which maps the file; a tensor already in the wanted dtype is used as read.
- Fused projections are built here, once: `qkv` = [q; k; v] rows (and biases), `gate_up` =
  [gate; up] rows, so a layer runs two matrix multiplies fewer per token.
- Names: text models keep their layers under `model.`; Gemma 3's multimodal wrapper under
  `model.language_model.` (transformers 5) or `language_model.model.` (older checkpoints), whose
  vision tower we ignore.
- Tied heads follow transformers 5's `tie_weights`: with `tie_word_embeddings`, a missing
  `lm_head.weight` is the embedding (and a missing embedding the head); both present and
  different, each keeps its own. Without tying, a missing head is an error, not random weights.
- Gemma's norms compute `x̂ * (1 + w)` in float32: we store `1 + w.float()` (from `w` in the
  model's dtype, as transformers holds it), so the forward pass adds nothing.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path

import torch

from llmcli.engine.config import EngineConfig, UnsupportedModel

log = logging.getLogger(__name__)

_PREFIXES = ("model.", "model.language_model.", "language_model.model.")
_HEADS = ("lm_head.weight", "language_model.lm_head.weight")


def weight_files(model_dir: Path) -> list[Path]:
    model_dir = Path(model_dir)
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [model_dir / shard for shard in shards]
    raise UnsupportedModel(f"no safetensors weights in {model_dir} (the engine does not read .bin files)")


def read_weights(model_dir: Path, config: EngineConfig, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with ExitStack() as stack:
        files = [stack.enter_context(safe_open(str(f), framework="pt", device="cpu")) for f in weight_files(model_dir)]
        where = {name: f for f in files for name in f.keys()}
        layer0 = "layers.0.input_layernorm.weight"
        prefix = next((p for p in _PREFIXES if p + layer0 in where), None)
        if prefix is None:
            raise UnsupportedModel("the checkpoint has no decoder layers under model. or language_model.")

        def has(name: str) -> bool:
            return prefix + name in where

        def get(name: str, full: bool = False) -> torch.Tensor:
            key = name if full else prefix + name
            if key not in where:
                raise UnsupportedModel(f"the checkpoint has no tensor {key}")
            return where[key].get_tensor(key).to(dtype)

        def norm(name: str) -> torch.Tensor:
            weight = get(name)
            return 1.0 + weight.float() if config.gemma_norms else weight

        state = {"norm.weight": norm("norm.weight")}
        head_key = next((h for h in _HEADS if h in where), None)
        embed = get("embed_tokens.weight") if has("embed_tokens.weight") else None
        head = get(head_key, full=True) if head_key else None
        missing = embed is None or head is None
        if (embed is None and head is None) or (missing and not config.tie_word_embeddings):
            raise UnsupportedModel("the checkpoint lacks the embedding or the LM head, and they are not tied")
        state["embed.weight"] = embed if embed is not None else head
        state["lm_head.weight"] = head if head is not None else embed
        for i in range(config.num_layers):
            state.update(_layer(i, config, get, norm))
    return state


def prepared_weights(model_dir: Path, config: EngineConfig, dtype: torch.dtype, path: Path) -> dict[str, torch.Tensor]:
    """The engine's weights mapped from `path`, written there first if it does not exist.

    Building the fused projections copies them, and the checkpoint's own mapping stays alive
    beside the copies (about twice the weights in memory); a file of the engine's own layout
    maps in milliseconds and pages in only what is used. The file is written beside `path`
    under a temporary name and renamed into place, so a half-written file is never read.
    A tied head is stored once and tied again here. A file that no longer reads is rebuilt;
    a cache that cannot be written only costs the speed-up (the weights stay in memory).
    """
    if path.is_file():
        try:
            return _mapped(path)
        except Exception as error:  # a file cut short or damaged since it was written: rebuilt, never trusted
            log.debug("rebuilding %s: %s", path, error)
            path.unlink(missing_ok=True)
    from safetensors import SafetensorError

    from llmcli.errors import LlmcliError

    state = read_weights(model_dir, config, dtype)
    try:
        _write(state, path)
    except (OSError, SafetensorError, LlmcliError) as error:  # an unwritable or full cache only costs the speed-up: run from the copies in memory
        log.debug("not caching the engine's weights at %s: %s", path, error)
        return state
    return _mapped(path)


def _write(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    from llmcli.models.cache import atomic_path

    tied = state["lm_head.weight"] is state["embed.weight"]
    tensors = {k: (v.t() if _is_matrix(k) else v).contiguous() for k, v in state.items() if not (tied and k == "lm_head.weight")}
    with atomic_path(path) as tmp:  # a half-written file is never read; an abandoned one is swept
        save_file(tensors, str(tmp), metadata={"tied": str(tied)})


def _mapped(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = {name: f.get_tensor(name) for name in f.keys()}
        tied = (f.metadata() or {}).get("tied") == "True"
    state = {k: v.t() if _is_matrix(k) else v for k, v in state.items()}  # back to [out, in], as views
    if tied:
        state["lm_head.weight"] = state["embed.weight"]
    return state


# The matrices a decode step multiplies by are stored transposed, [in, out], and used as
# [out, in] views of that storage. nn.Linear's F.linear(x, W) then multiplies x by a
# contiguous [in, out] matrix, which torch's CPU kernel (MKL's AVX2 path here) reads about
# twice as fast as the [out, in] layout checkpoints use: the 49152 x 576 head of smollm2 in
# 9.5 ms instead of 17.2 ms (benchmarks/README.md). The embedding lookup reads its rows from
# the same storage, strided, a few hundred bytes per token.
_MATRICES = ("attn.qkv.weight", "attn.o.weight", "mlp.gate_up.weight", "mlp.down.weight", "embed.weight", "lm_head.weight")


def _is_matrix(name: str) -> bool:
    return name.endswith(_MATRICES)


def _layer(i: int, config: EngineConfig, get, norm) -> dict[str, torch.Tensor]:
    src = dst = f"layers.{i}."
    attn, mlp = src + "self_attn.", src + "mlp."
    out = {
        dst + "attn.qkv.weight": torch.cat([get(attn + f"{p}_proj.weight") for p in "qkv"]),
        dst + "attn.o.weight": get(attn + "o_proj.weight"),
        dst + "mlp.gate_up.weight": torch.cat([get(mlp + "gate_proj.weight"), get(mlp + "up_proj.weight")]),
        dst + "mlp.down.weight": get(mlp + "down_proj.weight"),
        dst + "attn_norm.weight": norm(src + "input_layernorm.weight"),
    }
    if config.qkv_bias:
        out[dst + "attn.qkv.bias"] = torch.cat([get(attn + f"{p}_proj.bias") for p in "qkv"])
    if config.o_bias:
        out[dst + "attn.o.bias"] = get(attn + "o_proj.bias")
    if config.mlp_bias:
        out[dst + "mlp.gate_up.bias"] = torch.cat([get(mlp + "gate_proj.bias"), get(mlp + "up_proj.bias")])
        out[dst + "mlp.down.bias"] = get(mlp + "down_proj.bias")
    if config.qk_norm:
        out[dst + "attn.q_norm.weight"] = norm(attn + "q_norm.weight")
        out[dst + "attn.k_norm.weight"] = norm(attn + "k_norm.weight")
    if config.gemma_norms:
        # Gemma: post_attention_layernorm normalises the attention's output; the MLP has a norm on each side.
        out[dst + "post_attn_norm.weight"] = norm(src + "post_attention_layernorm.weight")
        out[dst + "mlp_norm.weight"] = norm(src + "pre_feedforward_layernorm.weight")
        out[dst + "post_mlp_norm.weight"] = norm(src + "post_feedforward_layernorm.weight")
    else:
        out[dst + "mlp_norm.weight"] = norm(src + "post_attention_layernorm.weight")
    return out
