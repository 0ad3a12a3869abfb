"""Loading: a resolved model's weights and tokenizer, placed and typed as asked.

`load_model(name, options, progress)` resolves the name, converts a GGUF file on first
use, and reads the Hugging Face directory with transformers; `load_tokenizer(name)`
reads only the tokenizer. Options are plain values (`LoadOptions`), progress a callback
(`cache.Progress`): nothing here knows about a terminal.

Decisions:
- `trust_remote_code` is off unless asked for: a model's own code never runs by default.
  Weights are read from safetensors only; a directory with nothing but pickle checkpoints
  (`.bin`, `.pt`: unpickling can run code) is refused with one line, and loads only with
  `trust_remote_code`, the one switch that says "I trust what this model ships".
- On the CPU, `dtype="auto"` is float32: exact, and (measured) faster than bfloat16 here.
- `--compile` compiles the one-token decode step only, while loading, on a throwaway
  decode (about a minute on a small CPU): a prompt's single pass stays eager. This is the
  transformers path's; the engine compiles its own step (`EngineModel.compile_decode`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from llmcli.errors import LlmcliError
from llmcli.models import cache
from llmcli.models.registry import ALIASES
from llmcli.models.resolve import ModelRef, model_dir, resolve, tokenizer_dir

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda", "mps")
QUANTIZE = ("none", "int8", "int4")
ENGINES = ("auto", "llmcli", "transformers")


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: plain values, the same from the CLI and from Python."""

    dtype: str = "auto"  # one of DTYPES
    device: str = "auto"  # one of DEVICES
    trust_remote_code: bool = False
    quantize: str = "none"  # one of QUANTIZE: int8/int4 weight-only Linear layers (llmcli.quantize)
    compile: bool = False  # torch.compile the decode step
    engine: str = "auto"  # one of ENGINES: llmcli's own forward pass where it runs the model exactly, else transformers
    max_memory: str | None = None  # e.g. "2GiB": the most weights kept in RAM; accelerate offloads the rest to disk


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any
    ref: ModelRef
    path: Path  # the Hugging Face directory the weights were read from
    converted: bool  # True when this load had to convert a GGUF file first
    load_seconds: float
    dtype: str
    device: str
    quantize: str = "none"
    compiled: bool = False

    @property
    def label(self) -> str:
        return self.ref.label

    @property
    def context_length(self) -> int | None:
        return context_length(self.model.config)


def context_length(config: Any) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None)


def load_tokenizer(name: str | None):
    """Only the tokenizer (no weights), and the ref. For a GGUF file with no cache entry
    yet, the tokenizer is built from the GGUF once (34 s for Gemma's 262k vocabulary) and
    saved in a tokenizer-only cache entry, so later runs read it in a fraction of a second."""
    from transformers import AutoTokenizer

    ref = resolve(name)
    if ref.is_gguf:
        assert ref.path is not None
        found = tokenizer_dir(ref)
        if found is not None:
            return AutoTokenizer.from_pretrained(found), ref
        cache.check_gguf(ref.path)
        tokenizer = cache.gguf_tokenizer(ref.path)
        cache.save_tokenizer_entry(ref.path, tokenizer)
        return tokenizer, ref
    path, _ = model_dir(ref)
    return _load_hf(AutoTokenizer.from_pretrained, path, ref, trust_remote_code=False), ref


def load_model(name: str | None, options: LoadOptions = LoadOptions(), progress: cache.Progress = cache.no_progress) -> LoadedModel:
    """Load a model and its tokenizer. The default is the exact model; `options.quantize`
    and `options.compile` are the opt-in speed-ups."""
    _check(options)
    start = time.perf_counter()
    ref = resolve(name)
    path, converted = model_dir(ref, progress)
    torch_device, device_map = _pick_device(options.device)
    torch_dtype = _pick_dtype(options.dtype, torch_device)
    placement = _placement(options, ref, path, torch_dtype, device_map)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not options.trust_remote_code:
        _refuse_pickle(path, ref)
    with _no_transformers_bars():
        tokenizer = _load_hf(AutoTokenizer.from_pretrained, path, ref, trust_remote_code=options.trust_remote_code)
        model = _load_hf(
            AutoModelForCausalLM.from_pretrained,
            path,
            ref,
            dtype=torch_dtype,
            trust_remote_code=options.trust_remote_code,
            use_safetensors=None if options.trust_remote_code else True,
            **placement,
        )
    model.eval()
    if options.quantize != "none":
        from llmcli.quantize import quantize_model

        quantize_model(model, options.quantize)
    if options.compile:
        _compile(model, progress)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        ref=ref,
        path=path,
        converted=converted,
        load_seconds=time.perf_counter() - start,
        dtype=str(torch_dtype).removeprefix("torch."),
        device=str(model.device),
        quantize=options.quantize,
        compiled=options.compile,
    )


@contextlib.contextmanager
def _no_transformers_bars() -> Iterator[None]:
    """transformers draws a "Loading weights" tqdm bar for a read that takes a fraction of
    a second; llmcli reports its slow steps through `progress` instead."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _placement(options: LoadOptions, ref: ModelRef, path: Path, dtype: Any, device_map: str | None) -> dict[str, Any]:
    """Where the layers go. With `max_memory`, at most that much of the weights stays in RAM:
    the embeddings, the final norm and the head always, then the decoder layers in order
    while they fit; the rest go to an offload folder on disk, and accelerate reads each back
    at every forward pass. A model bigger than memory runs, slowly."""
    if options.max_memory is None:
        return {"device_map": device_map}
    import hashlib

    folder = cache.cache_dir() / "offload" / hashlib.sha256(str(ref.path or ref.name).encode()).hexdigest()[:16]
    return {"device_map": _offload_map(path, dtype, _bytes(options.max_memory)), "offload_folder": str(folder)}


def _offload_map(path: Path, dtype: Any, budget: int) -> dict[str, str]:
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
    count = empty.config.get_text_config().num_hidden_layers
    stack, layers = next(
        (name, module) for name, module in empty.named_modules() if isinstance(module, torch.nn.ModuleList) and len(module) == count
    )
    size = lambda module: sum(t.numel() * t.element_size() for t in module.parameters())  # noqa: E731
    used = size(empty) - sum(size(layer) for layer in layers)  # embeddings, norms, head: kept in memory
    parent, _, name = stack.rpartition(".")
    outer = empty.get_submodule(parent) if parent else empty
    placement = {f"{parent}.{child}" if parent else child: "cpu" for child, _ in outer.named_children() if child != name}
    if parent:  # the head and anything else beside the decoder stack
        placement |= {child: "cpu" for child, _ in empty.named_children() if child != parent.split(".")[0]}
    for i, layer in enumerate(layers):
        used += size(layer)
        placement[f"{stack}.{i}"] = "cpu" if used <= budget else "disk"
    return placement


def _bytes(size: str) -> int:
    import re

    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]+)", size.strip()).groups()  # checked by _check
    scale = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}[unit.lower()]
    return int(float(number) * scale)


def _check(options: LoadOptions) -> None:
    for name, valid in (("dtype", DTYPES), ("device", DEVICES), ("quantize", QUANTIZE), ("engine", ENGINES)):
        if getattr(options, name) not in valid:
            raise LlmcliError(f"{name} must be one of {', '.join(valid)}; got {getattr(options, name)!r}")
    if options.max_memory is not None:
        import re

        if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)", options.max_memory.strip(), re.I):
            raise LlmcliError(f"--max-memory {options.max_memory!r} is not a size", "e.g. --max-memory 2GiB or 500MB")
        if options.quantize != "none" or options.compile:
            raise LlmcliError("--max-memory offloads float weights to disk; it does not combine with --quantize or --compile", "drop one")


_SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


def recommended_sampling(loaded: LoadedModel) -> dict[str, float]:
    """The sampling values a model's makers recommend: a built-in alias's (from its model
    card), else those its generation config (generation_config.json, as transformers read
    it; unset values are None) sets when it asks for sampling (`do_sample`). Commands use
    them for the sampling flags the user leaves out."""
    if loaded.ref.alias:
        return dict(ALIASES[loaded.ref.alias].sampling)
    config = loaded.model.generation_config
    if config.do_sample is not True:
        return {}
    return {k: getattr(config, k) for k in _SAMPLING_KEYS if getattr(config, k, None) is not None}


def _compile(model, progress: cache.Progress) -> None:
    """Compile the forward pass of decode steps (one new token); a prompt's single pass
    stays eager (compiling it too meant a second graph for one pass per reply)."""
    import functools

    import torch

    eager = model.forward
    compiled = torch.compile(eager, dynamic=True)

    @functools.wraps(eager)
    def forward(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        return compiled(*args, **kwargs) if ids is not None and ids.shape[-1] == 1 else eager(*args, **kwargs)

    model.forward = forward

    def warm_up() -> None:
        with torch.inference_mode():
            _warm_up(model)

    compiling(warm_up, progress)


def compiling(compile_and_warm_up, progress: cache.Progress) -> None:
    """Run a `--compile` warm-up (both backends' compile their decode step on a throwaway
    decode) between the progress stages, its failures turned into one line and a hint."""
    progress("compiling", 0, None)
    _check_cpp_compiler()  # inductor would find out only after tracing the step (~20 s)
    try:
        compile_and_warm_up()
    except Exception as error:  # inductor's failures (a broken compiler, a full /tmp) are many and deep
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise LlmcliError(f"--compile failed: {first}", "run without --compile") from error
    progress("compiled", 1, 1)


def _check_cpp_compiler() -> None:
    """torch.compile on the CPU writes C++ and builds it with $CXX, else g++: is there one?"""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.exc import InvalidCxxCompiler
    except ImportError:  # another torch: inductor itself says so, later
        return
    try:
        get_cpp_compiler()
    except InvalidCxxCompiler:
        raise LlmcliError(
            "--compile needs a C++ compiler and found none (it runs $CXX, else g++)",
            "install one (Debian/Ubuntu: apt install g++), or run without --compile",
        ) from None


def _warm_up(model) -> None:
    """Two decode steps the way the engine calls the model (generation.Generation), so its
    guards match and the real decode reuses the graph."""
    import torch

    from llmcli import forward

    cache_ = forward.new_cache(model)
    for length in (4, 1, 1):  # a prompt of 4 (1 is a size dynamo specialises), then two steps
        # A new tensor each time, as the engine makes: a slice would have other strides and
        # fail the graph's guards, so the first real step would compile again.
        ids = torch.zeros((1, length), dtype=torch.long, device=model.device)
        forward.call(model, ids, cache=cache_, keep=1)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _refuse_pickle(path: Path, ref: ModelRef) -> None:
    """A model directory whose only weights are pickle checkpoints is refused (unpickling can
    run code); with safetensors beside them the safetensors are read and the pickles ignored."""
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise LlmcliError(
            f"'{ref.name}' has only pickle checkpoints ({', '.join(pickles[:3])}), which can run code as they load",
            "llmcli reads safetensors; pass --trust-remote-code to load these anyway if you trust where they come from",
        )


def _load_hf(loader, path: Path, ref: ModelRef, **kwargs):
    """Call a transformers loader, turning its failures on a user's model into one line."""
    from safetensors import SafetensorError

    try:
        return loader(path, **kwargs)
    except SafetensorError as e:  # a weights file cut short or damaged
        raise LlmcliError(f"cannot load '{ref.name}': {str(e).splitlines()[0]}", "the weights file is damaged or cut short; download or convert it again") from e
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "check that it is a causal language model in Hugging Face format"
        if "trust_remote_code" in str(e):
            hint = "this model ships its own code; pass --trust-remote-code if you trust it"
        raise LlmcliError(f"cannot load '{ref.name}': {first}", hint) from e


def _pick_device(device: str) -> tuple[str, str | None]:
    """(device for the weights, device_map for accelerate)."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if device == "auto":
        if cuda:
            return "cuda", "auto"  # accelerate spreads the layers when there are several GPUs
        return ("mps", "mps") if mps else ("cpu", None)
    if (device == "cuda" and not cuda) or (device == "mps" and not mps):
        raise LlmcliError(f"--device {device}: no such device on this machine", "use --device cpu or auto")
    return device, (None if device == "cpu" else device)


def _pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # On the CPU float32 is both exact and (measured) faster than bfloat16 for decoding.
        if device == "cpu":
            return torch.float32
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, dtype)
