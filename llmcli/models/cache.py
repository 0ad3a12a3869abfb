"""llmcli's cache: GGUF files converted once into Hugging Face directories with safetensors.

Dequantizing a GGUF file takes 15-45 s on every load; reading the converted copy takes
about a second. So the first load converts (`ensure_converted`) and later loads read the
entry.

Decisions and gotchas:
- An entry's name includes a hash of the source's path, size and mtime, so a changed
  file is never served stale.
- Entries are built in a hidden temporary directory and renamed into place
  (`atomic_path`): an interrupted conversion leaves nothing a later run trusts, and two
  processes converting at once both end with one good entry.
- transformers refuses to `save_pretrained` a model loaded from GGUF ("quantized with
  gguf"); the weights are already dequantized, so removing the quantization config first
  is safe (the reloaded copy gives identical logits; a test checks it).
- Progress goes to a callback, `progress(stage, done, total)`, never to a screen: stages
  "dequantizing" (tensors; the total is known from the file's header before transformers
  starts), "writing", then "converted". The CLI draws a bar from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from llmcli.errors import LlmcliError

if TYPE_CHECKING:
    from llmcli.models.resolve import ModelRef

ENTRY_FORMAT = 1  # bump to invalidate every cache entry when the conversion changes
META = "llmcli.json"

Progress = Callable[[str, int, Optional[int]], None]  # (stage, done, total)


def no_progress(stage: str, done: int, total: int | None) -> None:
    pass


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("LLMCLI_CACHE_DIR") or user_cache_dir("llmcli")).expanduser()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
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


# ---------------------------------------------------------------- entries


def cache_entry(gguf: Path) -> Path:
    """Where the converted copy of `gguf` lives; the name changes when the file does."""
    gguf = gguf.resolve()
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{st.st_size}|{st.st_mtime_ns}|{ENTRY_FORMAT}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def tokenizer_entry(gguf: Path) -> Path:
    """The tokenizer-only entry `tokenize` makes for a GGUF file that has no model entry yet."""
    return cache_dir() / "tokenizers" / cache_entry(gguf).name


def cache_entries() -> list[tuple[Path, dict]]:
    """Finished cache entries and their metadata (hidden temporary dirs are not entries)."""
    root = cache_dir() / "models"
    if not root.is_dir():
        return []
    entries = []
    for d in sorted(root.iterdir()):
        meta = d / META
        if not d.name.startswith(".") and meta.exists():
            entries.append((d, json.loads(meta.read_text())))
    return entries


def finished(entry: Path) -> bool:
    return (entry / META).exists()


# ---------------------------------------------------------------- converting


def ensure_converted(ref: ModelRef, progress: Progress = no_progress) -> tuple[Path, bool]:
    """The HF directory for a GGUF-backed ref, converting it first if needed. Returns (dir, converted)."""
    assert ref.path is not None
    entry = cache_entry(ref.path)
    if finished(entry):
        return entry, False
    tensors = check_gguf(ref.path)
    with atomic_path(entry) as tmp:
        convert(ref, tmp, progress, tensors)
    progress("converted", tensors, tensors)
    return entry, True


def check_gguf(path: Path) -> int:
    """The number of tensors of a readable GGUF file; one clear line for a truncated or corrupt one."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        reader.fields["general.architecture"]
        return len(reader.tensors)
    except Exception as e:  # the reader raises ValueError, KeyError, struct errors...
        raise LlmcliError(
            f"{path} is not a readable GGUF model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'corrupt'})",
            "the file may be truncated or corrupt; download it again",
        ) from e


def convert(ref: ModelRef, out: Path, progress: Progress = no_progress, tensors: int | None = None) -> None:
    """Dequantize `ref`'s GGUF file with transformers and save model and tokenizer into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = ref.path
    assert gguf is not None
    progress("dequantizing", 0, tensors)
    with _tensor_progress(progress):
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (ValueError, KeyError, NotImplementedError, OSError) as e:
            raise LlmcliError(
                f"transformers cannot load {gguf.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                "llmcli reads the GGUF architectures transformers supports (llama, gemma3, qwen2, mistral, ...)",
            ) from e
    progress("writing", tensors or 0, tensors)
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
    (out / META).write_text(json.dumps(meta, indent=2))


@contextlib.contextmanager
def _tensor_progress(progress: Progress) -> Iterator[None]:
    """Report each tensor transformers dequantizes.

    transformers wraps its GGUF tensor loop in its own tqdm bar
    (`modeling_gguf_pytorch_utils.tqdm`); that name is swapped for a wrapper that counts.
    Should a release rename the loop, the wrapper is simply not called and the UI shows
    only the stages.
    """
    if progress is no_progress:
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm

    def counted(iterable, *args, **kwargs):
        items = list(iterable)
        for i, item in enumerate(items):
            yield item
            progress("dequantizing", i + 1, len(items))

    gguf_utils.tqdm = counted
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def save_tokenizer_entry(gguf: Path, tokenizer) -> None:
    """Save a tokenizer built from a GGUF file as a tokenizer-only entry."""
    with atomic_path(tokenizer_entry(gguf)) as tmp:
        tokenizer.save_pretrained(tmp)
        (tmp / META).write_text(json.dumps({"format": ENTRY_FORMAT, "source": str(gguf.resolve())}))
