"""llmcli's cache: GGUF files converted once into Hugging Face directories with safetensors.

Dequantizing a GGUF file takes 15-45 s on every load; reading the converted copy takes
about a second. So the first load converts (`ensure_converted`) and later loads read the
entry.

Decisions and gotchas:
- An entry's name includes a hash of the source's path, size and mtime, so a changed
  file is never served stale.
- Entries are built in a hidden temporary directory and renamed into place
  (`atomic_path`): an interrupted conversion leaves nothing a later run trusts, and two
  processes converting at once both end with one good entry. A temporary directory whose
  process was killed (SIGKILL, power loss) is removed by the next run that builds the same
  entry: its name carries the host and pid that made it.
- An entry is trusted only while it is whole (`intact`): its metadata file, written last,
  records every file's size, and a file deleted or truncated since makes the next load
  rebuild the entry instead of failing on it. (Entries made before the sizes were recorded
  are checked for their metadata file only.)
- transformers refuses to `save_pretrained` a model loaded from GGUF ("quantized with
  gguf"); the weights are already dequantized, so removing the quantization config first
  is safe (the reloaded copy gives identical logits; a test checks it).
- Progress goes to a callback, `progress(stage, done, total)`, never to a screen: stages
  "dequantizing" (tensors; the total is known from the file's header before transformers
  starts), "writing", then "converted". The CLI draws a bar from it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
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
        _remove_abandoned(target)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}-{os.getpid()}-{socket.gethostname()}"
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


def _remove_abandoned(target: Path) -> None:
    """Remove the temporary paths of earlier attempts at `target` whose process is gone on
    this host (one still running, or on another host sharing the cache, is left alone)."""
    host = socket.gethostname()
    for stale in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        _, pid, owner = (stale.name.rsplit(".tmp-", 1)[1].split("-", 2) + ["", ""])[:3]
        if owner != host or not pid.isdigit() or _alive(int(pid)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _cache_error(e: OSError) -> LlmcliError:
    if e.errno in _NO_ROOM:
        hint = "free some disk space, or set LLMCLI_CACHE_DIR to a directory on a disk with room"
    else:
        hint = "set LLMCLI_CACHE_DIR to a writable directory"
    return LlmcliError(f"cannot write to llmcli's cache at {cache_dir()}: {e.strerror or e}", hint)


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
        meta = _read_meta(d)
        if not d.name.startswith(".") and meta is not None:
            entries.append((d, meta))
    return entries


def finished(entry: Path) -> bool:
    """True when `entry` is there and whole: a later run may trust it."""
    return intact(entry)


def intact(entry: Path) -> bool:
    """The entry's metadata is readable and every file it records has its recorded size."""
    meta = _read_meta(entry)
    if meta is None:
        return False
    for name, size in meta.get("files", {}).items():
        try:
            if (entry / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def discard_broken(entry: Path) -> None:
    """Remove an entry that is there but not whole (a file deleted or truncated since), so it
    is rebuilt rather than trusted or left in the way of the rebuilt one."""
    if entry.exists() and not intact(entry):
        shutil.rmtree(entry, ignore_errors=True)


def _read_meta(entry: Path) -> dict | None:
    try:
        meta = json.loads((entry / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _write_meta(entry: Path, meta: dict) -> None:
    """The metadata file, written last: it records the size of every other file."""
    files = {str(p.relative_to(entry)): p.stat().st_size for p in sorted(entry.rglob("*")) if p.is_file()}
    (entry / META).write_text(json.dumps({**meta, "files": files}, indent=2))


# ---------------------------------------------------------------- converting


def ensure_converted(ref: ModelRef, progress: Progress = no_progress) -> tuple[Path, bool]:
    """The HF directory for a GGUF-backed ref, converting it first if needed. Returns (dir, converted)."""
    assert ref.path is not None
    entry = cache_entry(ref.path)
    if finished(entry):
        return entry, False
    discard_broken(entry)
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
    with _tensor_progress(progress), _unreadable_gguf(gguf):
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    progress("writing", tensors or 0, tensors)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    with _write_errors_as_oserror():
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
    _write_meta(out, meta)


@contextlib.contextmanager
def _write_errors_as_oserror() -> Iterator[None]:
    """safetensors and tokenizers (both Rust) report a failed write, a full disk say, as
    exceptions of their own ("... (os error 28)"); as OSErrors `atomic_path` words them."""
    try:
        yield
    except OSError:
        raise
    except Exception as e:  # SafetensorError, or tokenizers' bare Exception
        found = re.search(r"\(os error (\d+)\)", str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code)) from e


def gguf_tokenizer(gguf: Path):
    """The tokenizer transformers builds from a GGUF file (no weights read)."""
    from transformers import AutoTokenizer

    with _unreadable_gguf(gguf):
        return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@contextlib.contextmanager
def _unreadable_gguf(gguf: Path) -> Iterator[None]:
    """A GGUF file transformers cannot read (an architecture it does not know...) as one line."""
    try:
        yield
    except (ValueError, KeyError, NotImplementedError, OSError) as e:
        raise LlmcliError(
            f"transformers cannot load {gguf.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            "llmcli reads the GGUF architectures transformers supports (llama, gemma3, qwen2, mistral, ...)",
        ) from e


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
    discard_broken(tokenizer_entry(gguf))
    with atomic_path(tokenizer_entry(gguf)) as tmp, _write_errors_as_oserror():
        tokenizer.save_pretrained(tmp)
        _write_meta(tmp, {"format": ENTRY_FORMAT, "source": str(gguf.resolve())})
