"""The engine's quantized weights, kept in llmcli's cache as its float weights are.

    model = load_quantized(model_dir, "int4", torch.float32, prepared=float_file, path=int4_file)

`--quantize` rounds each Linear layer's weights to int8 rows or int4 groups and packs them for
torch's CPU kernels (llmcli.quantize). Done at every load, that reads every float weight (which
then stays in the process's memory: `generate --quantize int4` peaked at 1,242 MiB on smollm2,
more than float32 itself) and costs seconds (Gemma 3 270M's head alone is 168M weights). So the
first load writes the packed tensors, with the float parameters that stay (norms, biases, the
embedding a tied head was made from), to `path`; later loads map that file, and only the packed
weights and the embedding rows a prompt uses are read.

torch packs int4 weights in a layout of its own, chosen by its CPU kernel, so the caller names
the file after torch's version and the CPU's vector extension too (backends/engine.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from llmcli.engine.config import read_config
from llmcli.engine.model import EngineModel, load

log = logging.getLogger(__name__)


def load_quantized(model_dir: Path, mode: str, dtype: torch.dtype, *, prepared: Path, path: Path) -> EngineModel:
    """The engine's model with its Linear layers quantized (`mode` as llmcli.quantize takes it),
    mapped from `path`; built from the float weights (`prepared`) and written there when missing.
    A file that no longer reads is rebuilt; a cache that cannot be written only costs the speed-up."""
    from safetensors import SafetensorError

    from llmcli.errors import LlmcliError
    from llmcli.quantize import quantize_model

    if path.is_file():
        try:
            return _mapped(model_dir, dtype, path)
        except Exception as error:  # cut short or damaged since it was written: rebuilt, never trusted
            log.debug("rebuilding %s: %s", path, error)
            path.unlink(missing_ok=True)
    model = load(model_dir, dtype, prepared=prepared)
    quantize_model(model, mode)
    try:
        _write(model, path)
    except (OSError, SafetensorError, LlmcliError) as error:
        log.debug("not caching the quantized weights at %s: %s", path, error)
        return model
    del model  # and with it the pages of float weights quantizing read
    return _mapped(model_dir, dtype, path)


def _write(model: EngineModel, path: Path) -> None:
    from llmcli.models.cache import atomic_path
    from llmcli.quantize import QuantizedLinear

    layers = {name: [m.bits, m.quantized_parameters] for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    # Contiguous: the float embedding was an [out, in] view of [in, out] storage (weights.py); as
    # rows, a prompt's lookups read a few pages of it.
    tensors = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as tmp:  # a half-written file is never read; an abandoned one is swept
        write_aligned(tensors, tmp, {"layers": json.dumps(layers)})


ALIGN = 64  # bytes
_PAD = "__pad"
_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int8: "I8", torch.uint8: "U8", torch.int32: "I32"}


def write_aligned(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """A safetensors file in which every tensor starts on a 64-byte boundary of the file (and so
    of its mapping). torch's int8 kernel crashed on a weight mapped at an offset of 8 bytes when
    given 4 rows or more; safetensors' own writer packs tensors back to back. The gaps are
    explicit `__pad` tensors, as the format allows no holes, and the header is padded with spaces."""
    import struct

    header: dict = {"__metadata__": metadata}
    parts: list = []
    offset = 0
    for name, tensor in tensors.items():
        if gap := -offset % ALIGN:
            header[f"{_PAD}{len(parts)}"] = {"dtype": "U8", "shape": [gap], "data_offsets": [offset, offset + gap]}
            parts.append(bytes(gap))
            offset += gap
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        parts.append(tensor.contiguous().view(-1).view(torch.uint8).numpy())
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % ALIGN)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for part in parts:
            f.write(part)


def _mapped(model_dir: Path, dtype: torch.dtype, path: Path) -> EngineModel:
    from safetensors import safe_open

    from llmcli.quantize import QUANTIZED_LINEARS

    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = {name: f.get_tensor(name) for name in f.keys() if not name.startswith(_PAD)}
        layers = json.loads((f.metadata() or {})["layers"])
    if any(t.data_ptr() % ALIGN for t in state.values()):
        raise ValueError("a tensor is not aligned (a file from another writer)")
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        by_module.setdefault(module, {})[leaf] = tensor
    model = EngineModel(read_config(Path(model_dir)), dtype)
    for name, (bits, quantized_parameters) in layers.items():
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        buffers = {leaf: t for leaf, t in by_module[name].items() if leaf != "bias"}  # the bias stays a parameter
        setattr(owner, child, QUANTIZED_LINEARS[bits](getattr(owner, child), buffers, quantized_parameters))
    model.load_state_dict(state, strict=True, assign=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
