"""What `llmcli attention` computes: which earlier tokens each token looks at, in one layer.

Pure: model, tokenizer and ids in, frozen dataclasses out; `to_dict()` is `--json`.

Decisions and gotchas (transformers 5.24):
- The weights are the model's own, from one forward pass over the whole text (not the
  per-step attentions of `generate()`). PyTorch's fused SDPA kernel never materialises them:
  asked for `output_attentions`, transformers' sdpa path logs "sdpa attention does not support
  output_attentions" and returns none. An already loaded model is switched to the eager path
  with `model.set_attn_implementation("eager")` (and back afterwards; the weights stay put), the
  documented alternative to loading with `attn_implementation="eager"`.
- In eager mode every attention module returns its weights, [batch, query heads, queries,
  keys], whether or not `output_attentions` is asked; a forward hook on the modules of the
  layers wanted keeps just those (on Gemma, 18 layers' full patterns of a long text would be
  most of the memory). They are the same tensors `output_attentions` collects.
- Heads are query heads, numbered from 0 in each layer. Under grouped-query attention query
  head h reads KV head h // (heads / kv_heads) (transformers' `repeat_kv`): SmolLM2's 9 query
  heads share 3 KV heads, Gemma 3 270M's 4 share 1.
- Layer types come from the config's `layer_types` (Gemma 3: five `sliding_attention` layers
  with a 512-token window, then one `full_attention`); a model without it is all full.
- `drop_first` hides the first key (BOS, or whatever token came first: the attention sink of
  StreamingLLM) and renormalises each row over the rest. The first query, which can only look
  at itself, is then left out.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from llmcli.errors import BadInput, LlmcliError
from llmcli.inspect import model_parts as parts
from llmcli.inspect.next_token import PromptToken, json_safe, prompt_tokens

FULL, SLIDING = "full_attention", "sliding_attention"


@dataclass(frozen=True)
class AttentionArch:
    num_layers: int
    num_heads: int  # query heads per layer
    num_kv_heads: int
    head_dim: int
    layer_types: tuple[str, ...]
    sliding_window: int | None  # the window of the sliding layers

    def kv_head(self, head: int) -> int:
        return head // (self.num_heads // self.num_kv_heads)

    @property
    def kv_groups(self) -> tuple[tuple[int, ...], ...]:
        """The query heads reading each KV head."""
        return tuple(tuple(h for h in range(self.num_heads) if self.kv_head(h) == kv) for kv in range(self.num_kv_heads))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kv_groups": [list(g) for g in self.kv_groups]}


def attention_arch(model: Any) -> AttentionArch:
    config = parts.text_config(model)
    n = config.num_hidden_layers
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if not types:
        types = [SLIDING if window and getattr(config, "use_sliding_window", True) else FULL] * n
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return AttentionArch(n, heads, kv, head_dim, tuple(types), window if SLIDING in types else None)


# ---------------------------------------------------------------------------- the forward pass


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Run the model with eager attention inside the block, and put back what it had after."""
    previous = model.config._attn_implementation
    if previous != "eager":
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)


def _attention_module(layer: Any) -> Any:
    for name in ("self_attn", "attn", "attention"):
        module = getattr(layer, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise LlmcliError(f"cannot find the attention module of {type(layer).__name__}", "llmcli knows Llama- and Gemma-style layers")


def capture_weights(
    model: Any, ids: Sequence[int], layers: Sequence[int], keep: Callable[[int, torch.Tensor], Any] | None = None
) -> dict[int, Any]:
    """One eager forward pass over `ids`; each asked layer's weights [heads, T, T] (float32, CPU),
    or what `keep(layer, weights)` makes of them."""
    captured: dict[int, Any] = {}
    handles = []
    decoder_layers = parts.decoder_layers(model)
    for layer in layers:

        def hook(module, args, output, layer=layer):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise LlmcliError("the model returned no attention weights", "its attention implementation may not support them")
            weights = weights[0].detach().float().cpu()
            captured[layer] = keep(layer, weights) if keep else weights

        handles.append(_attention_module(decoder_layers[layer]).register_forward_hook(hook))
    try:
        with eager_attention(model), torch.inference_mode():
            parts.decoder(model)(input_ids=parts.input_tensor(model, ids), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return captured


# ---------------------------------------------------------------------------- one layer's pattern


@dataclass(frozen=True)
class Attended:
    position: int
    text: str
    special: bool
    weight: float


@dataclass(frozen=True)
class AttentionPattern:
    model: str
    tokens: tuple[PromptToken, ...]  # the whole text
    arch: AttentionArch
    layer: int
    head: int | None  # None: the mean over the layer's query heads
    queries: tuple[int, ...]  # positions shown down the side
    keys: tuple[int, ...]  # positions shown across
    weights: tuple[tuple[float, ...], ...]  # [query][key] over `keys`
    hidden: tuple[float, ...]  # per query: the weight on keys that are not shown
    top: tuple[tuple[Attended, ...], ...]  # per query: the keys it attends to most, over all keys
    sink: tuple[float, ...]  # per query: the weight on the first token (before any dropping)
    drop_first: bool

    @property
    def layer_type(self) -> str:
        return self.arch.layer_types[self.layer]

    @property
    def kv_head(self) -> int | None:
        return None if self.head is None else self.arch.kv_head(self.head)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        data.update(layer_type=self.layer_type, kv_head=self.kv_head)
        return json_safe(data)


def check_index(flag: str, value: int, count: int, what: str) -> int:
    """A layer or head index (negative counts from the end) -> 0..count-1, or a one-line error with the range."""
    if not -count <= value < count:
        raise BadInput(
            f"{flag} {value} is out of range: this model has {count} {what}{'s' if count != 1 else ''}",
            f"{what}s are numbered from 0 to {count - 1} (-1 is the last)",
        )
    return value % count


def attention_pattern(
    model: Any,
    tokenizer: Any,
    ids: Sequence[int],
    *,
    layer: int | None = None,
    head: int | None = None,
    drop_first: bool = False,
    start: int = 0,
    end: int | None = None,
    top: int = 3,
    label: str = "",
) -> AttentionPattern:
    """Layer `layer`'s pattern for query head `head` (None: the mean over heads), shown for tokens start..end-1."""
    ids = list(ids)
    if not ids:
        raise BadInput("the text is empty: there is no attention to show", 'give some text, e.g. llmcli attention "The cat sat on the mat"')
    arch = attention_arch(model)
    layer = arch.num_layers // 2 if layer is None else check_index("layer", layer, arch.num_layers, "layer")
    head = None if head is None else check_index("head", head, arch.num_heads, "head")
    n = len(ids)
    end = n if end is None else end
    if not 0 <= start < end <= n:
        raise BadInput(f"positions {start} to {end} are not a range of this text's {n} tokens", f"positions run from 0 to {n - 1}; --to is exclusive")
    if drop_first and n < 2:
        raise BadInput("dropping the first token needs at least two tokens", "with one token there is nothing but the first to attend to")
    weights = capture_weights(model, ids, [layer])[layer].double()  # [heads, T, T]
    matrix = weights.mean(dim=0) if head is None else weights[head]
    sink = matrix[:, 0].clone()
    if drop_first:
        matrix = matrix.clone()
        matrix[:, 0] = 0
        matrix = matrix / matrix.sum(dim=-1, keepdim=True).clamp_min(1e-300)
        start = max(start, 1)
    queries = list(range(start, end))
    keys = list(range(start, end))
    shown = matrix[start:end, start:end]
    hidden = (matrix[start:end].sum(dim=-1) - shown.sum(dim=-1)).clamp_min(0)
    token_info = prompt_tokens(tokenizer, ids)
    tops = []
    for q in queries:
        values, order = torch.topk(matrix[q, : q + 1], min(top, q + 1))
        tops.append(tuple(Attended(int(k), token_info[k].text, token_info[k].special, float(v)) for v, k in zip(values, order) if v > 0))
    return AttentionPattern(
        model=label,
        tokens=token_info,
        arch=arch,
        layer=layer,
        head=head,
        queries=tuple(queries),
        keys=tuple(keys),
        weights=tuple(tuple(row) for row in shown.tolist()),
        hidden=tuple(hidden.tolist()),
        top=tuple(tops),
        sink=tuple(sink[start:end].tolist()),
        drop_first=drop_first,
    )


# ---------------------------------------------------------------------------- every head at once


@dataclass(frozen=True)
class HeadOverview:
    """For every layer and query head: how spread out its attention is, and how much goes to token 0.

    Both are means over the queries 1..T-1 (query 0 can only attend to itself)."""

    model: str
    tokens: tuple[PromptToken, ...]
    arch: AttentionArch
    entropy: tuple[tuple[float, ...], ...]  # [layer][head], bits
    sink: tuple[tuple[float, ...], ...]  # [layer][head], mean weight on the first token
    uniform_entropy: float  # bits: the same mean for a full-attention head spreading evenly over every key

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        return json_safe(data)


def head_overview(model: Any, tokenizer: Any, ids: Sequence[int], *, label: str = "") -> HeadOverview:
    ids = list(ids)
    if len(ids) < 2:
        raise BadInput("the head overview needs at least two tokens", "with one token every head attends to it alone")
    arch = attention_arch(model)

    def summarise(layer: int, weights: torch.Tensor) -> tuple[list[float], list[float]]:
        rows = weights[:, 1:].double()  # [heads, queries 1.., keys]
        entropy = torch.special.entr(rows).sum(dim=-1) / math.log(2)
        return entropy.mean(dim=-1).tolist(), rows[:, :, 0].mean(dim=-1).tolist()

    captured = capture_weights(model, ids, range(arch.num_layers), keep=summarise)
    return HeadOverview(
        model=label,
        tokens=prompt_tokens(tokenizer, ids),
        arch=arch,
        entropy=tuple(tuple(captured[layer][0]) for layer in range(arch.num_layers)),
        sink=tuple(tuple(captured[layer][1]) for layer in range(arch.num_layers)),
        uniform_entropy=sum(math.log2(q + 1) for q in range(1, len(ids))) / (len(ids) - 1),
    )
