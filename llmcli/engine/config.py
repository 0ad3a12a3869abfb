"""config.json -> EngineConfig: the handful of numbers and switches the forward pass needs.

transformers fills a missing config key from its config class's defaults and then runs the
class's `__post_init__` (Qwen2 drops `sliding_window` unless `use_sliding_window`; Gemma 3 builds
`layer_types` from a pattern of 6; Mistral's window defaults to 4096). We read config.json as
plain JSON, so those defaults and rules are written out here per family, copied from
transformers 5's `configuration_{llama,mistral,qwen2,qwen3,gemma3}.py` and
`modeling_rope_utils.py`. Anything we do not implement raises `UnsupportedModel`, never a guess:
the caller then loads the model with transformers instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UnsupportedModel(Exception):
    """The engine cannot run this model exactly as transformers would; fall back to transformers."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Rope:
    """One rotary embedding: `theta`, and a frequency scaling that transformers would apply."""

    theta: float
    kind: str = "default"  # "default" | "linear" | "llama3"
    factor: float = 1.0
    low_freq_factor: float = 1.0  # llama3 only
    high_freq_factor: float = 4.0  # llama3 only
    original_max_positions: int = 8192  # llama3 only


@dataclass(frozen=True)
class EngineConfig:
    family: str  # "llama" | "mistral" | "qwen2" | "qwen3" | "gemma3"
    model_type: str  # as config.json says: "gemma3" is the multimodal wrapper, "gemma3_text" the text model
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    activation: str  # "silu" | "gelu_tanh"
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool  # Qwen3 and Gemma 3 normalise each query and key head before RoPE
    gemma_norms: bool  # Gemma: norms scale by (1 + w) in float32; norms after attention and MLP too
    attn_scale: float  # multiplies q·k
    embed_scale: float | None  # Gemma multiplies the embeddings by sqrt(hidden_size)
    final_logit_softcapping: float | None
    windows: tuple[int | None, ...]  # per layer: sliding window (keys within the last W positions), None = global
    ropes: tuple[Rope, ...]  # per layer
    tie_word_embeddings: bool
    max_position_embeddings: int


# Class defaults of the keys we read, per family (transformers 5.24's config classes).
_COMMON = {
    "rms_norm_eps": 1e-6,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "head_dim": None,
    "num_key_value_heads": None,
    "hidden_act": "silu",
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {**_COMMON, "max_position_embeddings": 2048},
    "mistral": {**_COMMON, "num_key_value_heads": 8, "sliding_window": 4096, "max_position_embeddings": 131072},
    "qwen2": {
        **_COMMON,
        "num_key_value_heads": 32,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 28,
        "max_position_embeddings": 32768,
    },
    "qwen3": {
        **_COMMON,
        "num_key_value_heads": 32,
        "head_dim": 128,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 28,
        "max_position_embeddings": 32768,
    },
    "gemma3": {
        **_COMMON,
        "vocab_size": 262_208,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 131_072,
        "tie_word_embeddings": True,
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "final_logit_softcapping": None,
        "use_bidirectional_attention": False,
    },
}
_FAMILY = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3"}
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh"}
SUPPORTED_MODEL_TYPES = (*_FAMILY, "gemma3")


def read_config(model_dir: Path) -> EngineConfig:
    path = Path(model_dir) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UnsupportedModel(f"cannot read {path}: {e}") from e
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> EngineConfig:
    model_type = raw.get("model_type")
    top = raw
    if model_type == "gemma3":
        # The multimodal wrapper: the language model's config is nested; the head tying is the wrapper's.
        raw = {"model_type": "gemma3_text", **(raw.get("text_config") or {})}
        raw["tie_word_embeddings"] = top.get("tie_word_embeddings", True)
    family = _FAMILY.get(raw.get("model_type", ""))
    if family is None:
        raise UnsupportedModel(
            f"model_type {model_type!r} is not one the engine implements ({', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    c = {**_DEFAULTS[family], **raw}
    if c.get("quantization_config"):
        raise UnsupportedModel("the checkpoint is quantized (quantization_config); the engine reads float weights")
    if c.get("pretraining_tp", 1) not in (None, 1):
        raise UnsupportedModel("pretraining_tp > 1")

    heads = c["num_attention_heads"]
    kv_heads = c["num_key_value_heads"] or heads
    head_dim = c["head_dim"] or c["hidden_size"] // heads
    act_name = c["hidden_activation"] if family == "gemma3" else c["hidden_act"]
    activation = _ACTIVATIONS.get(act_name)
    if activation is None:
        raise UnsupportedModel(f"activation {act_name!r}")
    if c.get("partial_rotary_factor") not in (None, 1, 1.0):
        raise UnsupportedModel("partial rotary embeddings (partial_rotary_factor)")
    layers = c["num_hidden_layers"]

    if family == "gemma3":
        if c["use_bidirectional_attention"]:
            raise UnsupportedModel("bidirectional attention (an embedding model, not a decoder)")
        types = c.get("layer_types") or _gemma_layer_types(layers, c.get("sliding_window_pattern", 6))
        ropes_by_type = _gemma_ropes(c)
        ropes = tuple(ropes_by_type[t] for t in types)
        windows = tuple(c["sliding_window"] if t == "sliding_attention" else None for t in types)
        attn_scale = c["query_pre_attn_scalar"] ** -0.5
        # Gemma's attention q/k/v/o all take `attention_bias`.
        qkv_bias = o_bias = bool(c["attention_bias"])
    else:
        rope = _flat_rope(c)
        ropes = (rope,) * layers
        windows = _windows(family, c, layers)
        attn_scale = head_dim**-0.5
        # Qwen2 hard-codes biases on q/k/v and none on o, Mistral none at all (whatever the config
        # says); Llama and Qwen3 follow `attention_bias` for all four.
        qkv_bias = {"qwen2": True, "mistral": False}.get(family, bool(c["attention_bias"]))
        o_bias = False if family in ("qwen2", "mistral") else bool(c["attention_bias"])

    # Not read, on purpose: `attn_logit_softcapping`. Gemma 3's attention in transformers does not pass
    # it to the attention function (qk-norm took its place), so a config that sets it changes nothing.
    return EngineConfig(
        family=family,
        model_type=model_type,
        vocab_size=c["vocab_size"],
        hidden_size=c["hidden_size"],
        intermediate_size=c["intermediate_size"],
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=float(c["rms_norm_eps"]),
        activation=activation,
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=bool(c["mlp_bias"]) if family == "llama" else False,
        qk_norm=family in ("qwen3", "gemma3"),
        gemma_norms=family == "gemma3",
        attn_scale=attn_scale,
        embed_scale=c["hidden_size"] ** 0.5 if family == "gemma3" else None,
        # Only Gemma3ForCausalLM applies it; transformers' multimodal wrapper does not, so neither do we.
        final_logit_softcapping=c.get("final_logit_softcapping") if model_type == "gemma3_text" else None,
        windows=windows,
        ropes=ropes,
        tie_word_embeddings=bool(c["tie_word_embeddings"]),
        max_position_embeddings=c["max_position_embeddings"],
    )


def _windows(family: str, c: dict, layers: int) -> tuple[int | None, ...]:
    if family == "llama":
        return (None,) * layers
    if family == "mistral":  # one window for every layer, when set
        return (c["sliding_window"],) * layers
    # Qwen2/3: the window only exists with use_sliding_window, and only on layers >= max_window_layers.
    window = c["sliding_window"] if c["use_sliding_window"] else None
    types = c.get("layer_types") or [
        "sliding_attention" if window is not None and i >= c["max_window_layers"] else "full_attention"
        for i in range(layers)
    ]
    if "sliding_attention" in types and window is None:
        raise UnsupportedModel("sliding_attention layers without a sliding_window")
    return tuple(window if t == "sliding_attention" else None for t in types)


def _gemma_layer_types(layers: int, pattern: int) -> list[str]:
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)]


def _flat_rope(c: dict) -> Rope:
    """Gemma aside: one rope for all layers. `rope_scaling` (older configs) wins over `rope_parameters`."""
    params = dict(c.get("rope_scaling") or c.get("rope_parameters") or {})
    params.setdefault("rope_theta", c.get("rope_theta", 10_000.0))
    return _rope(params, c)


def _gemma_ropes(c: dict) -> dict[str, Rope]:
    """Gemma 3: global layers and sliding (local) layers have their own rope; old configs say
    `rope_theta` / `rope_local_base_freq` / `rope_scaling` (the scaling is the global layers')."""
    params = {k: dict(v) if v else None for k, v in (c.get("rope_parameters") or {}).items()}
    full = params.get("full_attention") or {"rope_type": "default"}
    if c.get("rope_scaling"):
        full.update(c["rope_scaling"])
    full.setdefault("rope_theta", c.get("rope_theta", 1_000_000.0))
    local = params.get("sliding_attention") or {"rope_type": "default"}
    local.setdefault("rope_theta", c.get("rope_local_base_freq", 10_000.0))
    return {"full_attention": _rope(full, c), "sliding_attention": _rope(local, c)}


def _rope(params: dict, c: dict) -> Rope:
    kind = params.get("rope_type", params.get("type", "default"))
    theta = float(params["rope_theta"])
    if kind == "default":
        return Rope(theta)
    if kind == "linear":
        return Rope(theta, "linear", factor=float(params["factor"]))
    if kind == "llama3":
        original = c.get("original_max_position_embeddings") or params.get(
            "original_max_position_embeddings", c["max_position_embeddings"]
        )
        return Rope(
            theta,
            "llama3",
            factor=float(params["factor"]),
            low_freq_factor=float(params["low_freq_factor"]),
            high_freq_factor=float(params["high_freq_factor"]),
            original_max_positions=int(original),
        )
    raise UnsupportedModel(f"rope type {kind!r} (the engine implements default, linear and llama3)")
