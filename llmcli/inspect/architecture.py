"""What `llmcli info` shows: a model's architecture numbers and where its parameters are.

Parameter counts come from the loaded modules, not from the config, so they are the
numbers that actually sit in memory. Tied weights (an output head that reuses the
embedding matrix) are counted once, under embeddings, and the head shows 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llmcli.models import ALIASES, LoadedModel, cache_entry

BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "int8": 1.0, "int4": 0.5}
PARTS = ("embeddings", "attention", "mlp", "norms", "output_head", "other")


@dataclass(frozen=True)
class SpecialToken:
    role: str
    token: str
    id: int


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    architecture: str
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    mlp_size: int
    vocab_size: int
    context_length: int | None
    sliding_window: int | None
    tied_embeddings: bool
    parameters: int
    parameters_by_part: dict[str, int]
    memory_bytes: dict[str, int]  # all parameters at each width, for comparison
    resident_bytes: int  # what the loaded weights take now (quantized ones at their width)
    quantized_layers: dict[str, int]  # "int8"/"int4" -> Linear layers stored so (--quantize)
    dtype: str
    device: str
    chat_template: bool
    special_tokens: list[SpecialToken]
    loaded_from: dict[str, str | None] = field(default_factory=dict)
    engine: str = "transformers"  # what runs the forward pass: "transformers", or "llmcli" (llmcli.engine)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelSummary:
    """What a chat opens with: the model's size and where it runs. Cheap, unlike `model_info`,
    which on llmcli's engine walks transformers' copy of the model (loaded for it)."""

    parameters: int
    dtype: str
    device: str
    quantize: str  # "none", "int8" or "int4"
    alias: str | None
    source: str
    compiled: bool = False  # --compile: the decode step runs through torch.compile


def summary(model, ref, dtype: str, device: str, quantize: str, compiled: bool = False) -> ModelSummary:
    """`model`: any nn.Module whose quantized layers say how many weights they hold."""
    return ModelSummary(sum(count_parameters(model).values()), dtype, device, quantize, ref.alias, str(ref.path or ref.hub_id), compiled)


def part_of(name: str) -> str:
    """Which part of a decoder a parameter belongs to, from its module path."""
    if "embed_tokens" in name or "wte" in name or "word_embeddings" in name:
        return "embeddings"
    if name.startswith("lm_head") or name.endswith("output.weight"):
        return "output_head"
    if "norm" in name:  # before attention: q_norm/k_norm are norms
        return "norms"
    if "attn" in name or "attention" in name:
        return "attention"
    if "mlp" in name or "feed_forward" in name:
        return "mlp"
    return "other"


def count_parameters(model) -> dict[str, int]:
    """Parameters by part; `named_parameters` already yields a tied tensor only once.
    Quantized layers (`--quantize`) hold their weights as buffers and say how many."""
    counts = dict.fromkeys(PARTS, 0)
    for name, p in model.named_parameters():
        counts[part_of(name)] += p.numel()
    for name, module in model.named_modules():
        counts[part_of(f"{name}.weight")] += getattr(module, "quantized_parameters", 0)
    return counts


def quantized_layers(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for module in model.modules():
        if getattr(module, "bits", None):
            key = f"int{module.bits}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def resident_bytes(model) -> int:
    """Bytes of the weights as loaded: the parameters (a tied one once) and the quantized
    layers' buffers (their weights, scales and zero points)."""
    quantized = [b for m in model.modules() if getattr(m, "bits", None) for b in m.buffers(recurse=False)]
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *quantized])


def model_info(loaded: LoadedModel) -> ModelInfo:
    config = loaded.model.config
    text = config.get_text_config()
    heads = text.num_attention_heads
    hidden = text.hidden_size
    by_part = count_parameters(loaded.model)
    total = sum(by_part.values())
    tok = loaded.tokenizer
    specials = [
        SpecialToken(role, getattr(tok, f"{role}_token"), getattr(tok, f"{role}_token_id"))
        for role in ("bos", "eos", "pad", "unk")
        if getattr(tok, f"{role}_token", None) is not None
    ]
    ref = loaded.ref
    return ModelInfo(
        name=loaded.label,
        family=text.model_type,
        architecture=(config.architectures or [type(loaded.model).__name__])[0],
        layers=text.num_hidden_layers,
        attention_heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or hidden // heads,
        hidden_size=hidden,
        mlp_size=getattr(text, "intermediate_size", None) or 4 * hidden,
        vocab_size=text.vocab_size,
        context_length=loaded.context_length,
        sliding_window=getattr(text, "sliding_window", None),
        tied_embeddings=bool(getattr(text, "tie_word_embeddings", getattr(config, "tie_word_embeddings", False))),
        parameters=total,
        parameters_by_part=by_part,
        memory_bytes={dt: int(total * b) for dt, b in BYTES_PER_PARAM.items()},
        resident_bytes=resident_bytes(loaded.model),
        quantized_layers=quantized_layers(loaded.model),
        dtype=loaded.dtype,
        device=loaded.device,
        chat_template=bool(getattr(tok, "chat_template", None)),
        special_tokens=specials,
        loaded_from={
            "alias": ref.alias,
            "kind": ref.kind,
            "source": str(ref.path or ref.hub_id),
            "licence": ALIASES[ref.alias].licence if ref.alias else None,
            "weights": str(loaded.path),
            "cache_entry": str(cache_entry(ref.path)) if ref.kind in ("alias", "gguf") and ref.path else None,
        },
    )
