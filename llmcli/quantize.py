"""Opt-in weight-only quantization of a model's Linear layers, for faster decoding on the CPU.

    quantize_model(model, "int8")     # every nn.Linear, the LM head included, in place

Decoding one token reads every weight once, so on a CPU its speed is set by memory
bandwidth: fewer bytes per weight, more tokens per second. Activations, norms, attention
and the KV cache stay in the model's dtype; only the Linear weights shrink:

- `int8`: one symmetric scale per output channel (`w ≈ q * scale`, q in [-127, 127]),
  multiplied by `torch.ops.aten._weight_int8pack_mm`, the kernel gpt-fast uses. A layer
  whose weights int4's groups (below) reproduce more closely than int8's rows gets int4
  instead: that is a layer the file stored at 4 bits, where one scale per row of 576+
  weights is a coarser grid than the file's own. So `int8` never loses more than 8-bit
  rows would, and on SmolLM2 (Q4_1 layers, Q8_0 head) it is int4 in the layers and int8
  in the head: top-1 12 of 12 instead of 10 of 12 with int8 rows everywhere.
- `int4`: groups of 32 input weights share a scale and a zero point
  (`w ≈ (q - 8) * scale + zero`, q in [0, 15]), packed with
  `_convert_weight_to_int4pack_for_cpu` and multiplied by `_weight_int4pack_mm_for_cpu`.
  This is the grid GGUF's Q4_1 and Q4_K store weights on: SmolLM2's layers (all Q4_1)
  come back almost exactly, which is why int4 is closer to float32 than int8's one
  scale per row on that model. The LM head stays int8, as GGUF files keep it at 6-8
  bits: a 4-bit head flipped 3 of 12 top-1 tokens on SmolLM2, the 8-bit one none.
  A model stored at more than 4 bits loses a lot: Gemma 3 270M (Q5_0/Q6_K/Q8_0 layers)
  keeps 9 of 12 top-1 tokens with max |Δp| 0.61 under int4, 10 of 12 and 0.04 under int8.

Decisions and gotchas:
- Both kernels ship with torch (no extra package), and both are fast only for bfloat16
  activations: their float32 paths are scalar loops, 10-30x slower than torch's float32
  matmul. So a quantized layer rounds its input to bfloat16, and its output back to the
  model's dtype; the residual stream stays float32.
- Scales are stored in bfloat16 (the kernels take them in the activations' dtype). The
  weights are quantized against the rounded scales, so a weight is off only by its own
  rounding to the grid.
- What moves the probabilities: the weights' rounding, and the bfloat16 rounding of each
  layer's output (the kernels return bfloat16); rounding the inputs alone barely does.
  benchmarks/bench_quantize.py measures top-1 agreement and max |Δp| against float32.
- A prompt of many tokens (prefill) goes through the same kernels: for 32-512 rows they
  are about 20% slower than float32's matmul, and dequantizing to call the dense matmul
  was slower still (measured on the 576x1536 layer of SmolLM2).
- The LM head is quantized too (SmolLM2's is a fifth of its weights, Gemma 3's more than
  half). With tied embeddings the embedding keeps its float weight for the lookup.
- torch's int8 kernel is slower per byte than its int4 one (about 6 vs 8 GB/s of weights
  on one thread here), so int4 also decodes faster.
- torchao 0.18 was measured too: its int8 weight-only tensors decoded SmolLM2 at under a
  third of this module's speed (8.5 against 29 tokens/s, one thread), and its wheel's C++
  extensions are built for another Python than ours; no dependency for that.
- The quantized weights are buffers, not parameters: `named_parameters()` lists only
  what stayed floating point. Each quantized layer says how many weights it holds
  (`quantized_parameters`, 0 for a head tied to the embedding) for `info` to count.
- The kernels are CPU kernels; other devices get a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llmcli.errors import LlmcliError

MODES = ("none", "int8", "int4")
INT4_GROUP_SIZE = 32
_ACT = torch.bfloat16  # the activations' dtype the packed kernels are fast for


@dataclass(frozen=True)
class QuantizeReport:
    mode: str
    layers: int  # Linear layers replaced
    skipped: tuple[str, ...]  # Linear layers left in float (shapes the int4 kernel cannot take)
    bytes_before: int  # bytes of the replaced layers' float weights
    bytes_after: int  # bytes of their quantized weights, scales and zero points


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, k] float -> (q int8 [n, k], scales bfloat16 [n]) with weight ≈ q * scales[:, None]."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-10).to(_ACT)
    q = w.div(scales.float()[:, None])
    q.round_().clamp_(-127, 127)  # in place: Gemma's head is 168M weights, and each copy costs
    return q.to(torch.int8), scales


def quantize_int4(weight: torch.Tensor, group_size: int = INT4_GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[n, k] float -> (q int32 in [0, 15] [n, k], scales, zeros bfloat16 [n, k / group_size])
    with weight ≈ (q - 8) * scale + zero in each group (min to max of the group in 15 steps)."""
    n, k = weight.shape
    w = weight.detach().float().reshape(n, k // group_size, group_size)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scales = ((high - low) / 15).clamp(min=1e-10).to(_ACT)
    zeros = (low + 8 * scales.float()).to(_ACT)
    q = torch.round((w - zeros.float()[..., None]) / scales.float()[..., None] + 8).clamp(0, 15)
    return q.to(torch.int32).reshape(n, k), scales, zeros


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return q.float() * scales.float()[:, None]


def dequantize_int4(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    n, k = q.shape
    groups = (q.float().reshape(n, scales.shape[1], -1) - 8) * scales.float()[..., None] + zeros.float()[..., None]
    return groups.reshape(n, k)


def fits_int4(linear: nn.Linear, group_size: int = INT4_GROUP_SIZE) -> bool:
    """The int4 kernel takes whole groups of inputs and outputs in multiples of 16."""
    return linear.in_features % group_size == 0 and linear.out_features % 16 == 0


def _rows(x: torch.Tensor, in_features: int) -> torch.Tensor:
    """x as the kernels take it: [rows, in] in bfloat16 (a decode step's input is one row already)."""
    return (x if x.dim() == 2 else x.reshape(-1, in_features)).to(_ACT)


def _shaped_like(out: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A kernel's [rows, out] back in x's leading shape and dtype, plus the bias."""
    if x.dim() != 2:
        out = out.reshape(*x.shape[:-1], out.shape[-1])
    out = out.to(x.dtype)
    return out if bias is None else out + bias


class QuantizedLinear(nn.Module):
    """A Linear layer whose weight is stored as `buffers` for a packed CPU kernel."""

    bits: int

    def __init__(self, linear: nn.Linear, buffers: dict[str, torch.Tensor], quantized_parameters: int):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.quantized_parameters = quantized_parameters  # weights it stands for (0: a head tied to the embedding)
        for name, tensor in buffers.items():
            self.register_buffer(name, tensor)
        self.bias = linear.bias


class Int8Linear(QuantizedLinear):
    """A Linear whose weight is int8 with one bfloat16 scale per output channel."""

    bits = 8

    @classmethod
    def quantize(cls, linear: nn.Linear, quantized: tuple[torch.Tensor, torch.Tensor] | None = None) -> Int8Linear:
        q, scales = quantized or quantize_int8(linear.weight)
        return cls(linear, {"weight": q.contiguous(), "scales": scales}, linear.weight.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.aten._weight_int8pack_mm(_rows(x, self.in_features), self.weight, self.scales)
        return _shaped_like(out, x, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int4Linear(QuantizedLinear):
    """A Linear whose weight is 4-bit, in groups of INT4_GROUP_SIZE inputs with a scale and a zero each."""

    bits = 4
    group_size = INT4_GROUP_SIZE

    @classmethod
    def quantize(cls, linear: nn.Linear, quantized: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> Int4Linear:
        q, scales, zeros = quantized or quantize_int4(linear.weight, cls.group_size)
        buffers = {
            "weight": torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1),
            # [k / group, n, 2]: (scale, zero) of each group of each output channel
            "scales_and_zeros": torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous(),
        }
        return cls(linear, buffers, linear.weight.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(_rows(x, self.in_features), self.weight, self.group_size, self.scales_and_zeros)
        return _shaped_like(out, x, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4, group_size={self.group_size}"


QUANTIZED_LINEARS = {cls.bits: cls for cls in (Int8Linear, Int4Linear)}


def _int8_or_closer(linear: nn.Linear) -> nn.Module:
    """Int8Linear, or Int4Linear where int4's groups reproduce the weights more closely."""
    int8 = quantize_int8(linear.weight)
    if not fits_int4(linear):
        return Int8Linear.quantize(linear, int8)
    int4 = quantize_int4(linear.weight)
    w = linear.weight.detach().float()
    closer = (dequantize_int4(*int4) - w).square().sum() < (dequantize_int8(*int8) - w).square().sum()
    return Int4Linear.quantize(linear, int4) if closer else Int8Linear.quantize(linear, int8)


def quantize_model(model: nn.Module, mode: str) -> QuantizeReport:
    """Replace the model's Linear layers by quantized ones, in place. `none` changes nothing."""
    if mode not in MODES:
        raise LlmcliError(f"unknown quantization '{mode}'", "use one of: " + ", ".join(MODES))
    if mode == "none":
        return QuantizeReport(mode, 0, (), 0, 0)
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise LlmcliError(f"--quantize {mode} runs on the CPU only (the model is on {device})", "add --device cpu")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    layers, skipped, before, after = 0, [], 0, 0
    for name, linear in linears:
        if linear is head:
            quantized: nn.Module = Int8Linear.quantize(linear)  # see the module's docstring: 4 bits are too few here
        elif mode == "int8":
            quantized = _int8_or_closer(linear)
        elif fits_int4(linear):
            quantized = Int4Linear.quantize(linear)
        else:
            skipped.append(name)
            continue
        if embedding is not None and linear.weight is getattr(embedding, "weight", None):
            quantized.quantized_parameters = 0  # the embedding's parameters, counted there
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, quantized)
        layers += 1
        before += linear.weight.numel() * linear.weight.element_size()
        after += sum(b.numel() * b.element_size() for b in quantized.buffers())
    return QuantizeReport(mode, layers, tuple(skipped), before, after)
