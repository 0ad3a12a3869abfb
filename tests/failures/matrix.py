"""What every row of the failure matrix checks, in one place.

A row is data: an id, the command line (with `{placeholders}` for the paths fixtures make), and
the expected outcome. Each area's file (test_models.py, test_input.py, ...) lists its rows and
runs them through `check`, so adding a row is adding one line, and a new area (the server's, once
`llmcli serve` lands) is a new file with rows of its own.

The outcome of a failure is always the same shape: a non-zero exit code, nothing on stdout, and
on stderr exactly one `error: ...` line and one `hint: ...` line, with no traceback. Then the
files: `tree()` fingerprints every file under a directory, so a row can say the input files and
the cache are exactly as before; `assert_cache_clean` says the cache holds no temporary file and
no entry a later run would trust that is not whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pytest


@dataclass(frozen=True)
class Row:
    """One row: `llmcli ARGS` under a fault, and what must come out."""

    id: str
    args: tuple[str, ...]
    error: str | None = None  # a fragment of the `error:` line; None when the command must succeed
    hint: str | None = None  # a fragment of the `hint:` line
    code: int | None = None  # the exit code; default 1 for an error (2 for a usage error), 0 for success
    stdin: bytes | None = None

    def argv(self, **places: object) -> list[str]:
        return [str(a).format(**{k: str(v) for k, v in places.items()}) for a in self.args]

    @property
    def expected_code(self) -> int:
        if self.code is not None:
            return self.code
        return 0 if self.error is None else 1


def parametrize(rows: Iterable[Row]):
    rows = list(rows)
    ids = [r.id for r in rows]
    assert len(set(ids)) == len(ids), f"row ids must be unique: {sorted({i for i in ids if ids.count(i) > 1})}"
    return pytest.mark.parametrize("row", rows, ids=ids)


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and 'File "' not in stderr, stderr


def assert_error(code: int, stdout: str, stderr: str, error: str, hint: str | None = None, expected_code: int = 1) -> None:
    """A failure as the user meets it: the exit code, an empty stdout, one error line and one hint."""
    assert_no_traceback(stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 2, f"expected one error line and one hint line, got:\n{stderr}"
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), stderr
    assert error in lines[0], f"{error!r} not in {lines[0]!r}"
    if hint is not None:
        assert hint in lines[1], f"{hint!r} not in {lines[1]!r}"
    assert code == expected_code, f"exit code {code}, expected {expected_code}; stderr:\n{stderr}"
    assert stdout == "", f"a failure printed on stdout: {stdout!r}"


def check(result, row: Row) -> None:
    """`result` (the `cli` fixture's, or a process's) against the row's expected outcome."""
    stdout = result.stdout if isinstance(result.stdout, str) else result.out
    stderr = result.stderr if isinstance(result.stderr, str) else result.err
    code = getattr(result, "exit_code", getattr(result, "code", None))
    if row.error is None:
        assert_no_traceback(stderr)
        assert code == row.expected_code, f"exit code {code}; stderr:\n{stderr}"
        assert "error:" not in stderr, stderr
    else:
        assert_error(code, stdout, stderr, row.error, row.hint, row.expected_code)


# ---------------------------------------------------------------------------- files


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256), and every directory (-> "dir")."""
    root = Path(root)
    if not root.exists():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def temporary_files(root: Path) -> list[str]:
    """Paths under `root` that a write in progress leaves: hidden temporaries (`.name.tmp-...`)."""
    return [str(p.relative_to(root)) for p in Path(root).rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


def assert_cache_clean(cache: Path, *, entries: int | None = None) -> None:
    """No temporary file anywhere in the cache; every model or tokenizer entry whole
    (`cache.intact`); `entries` model entries if given."""
    from llmcli.models import cache as cache_module

    cache = Path(cache)
    assert temporary_files(cache) == [], f"left in the cache: {temporary_files(cache)}"
    found = []
    for kind in ("models", "tokenizers"):
        folder = cache / kind
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            assert cache_module.intact(entry), f"a cache entry that is not whole: {entry} {sorted(p.name for p in entry.iterdir())}"
            if kind == "models":
                found.append(entry.name)
    if entries is not None:
        assert len(found) == entries, f"expected {entries} model entries, found {found}"
