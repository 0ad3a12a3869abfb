"""The layers keep their roles: read from the source, every import of every module.

- The computing layers (the library, the engine, inspect, models, prompting, generation)
  never import Rich, Typer or `llmcli.render`: they return data, the commands render it.
- No import circle anywhere in llmcli/ (imports under `if TYPE_CHECKING:` are for type
  checkers only and do not count).
- Files stay small enough to read in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "llmcli"
COMPUTING = ("api", "backends", "engine", "inspect", "models", "prompting", "generation", "sampling", "tokens", "forward", "quantize", "errors")
UI = ("rich", "typer", "click", "prompt_toolkit", "llmcli.render", "llmcli.commands", "llmcli.chat", "llmcli.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it but under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from llmcli import render`
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def llmcli_imports(name: str) -> set[str]:
    return {m for m in imports(MODULES[name]) if m in MODULES and m != name}


@pytest.mark.parametrize("name", [m for m in MODULES if m.split(".")[1:2] and m.split(".")[1] in COMPUTING])
def test_computing_layers_import_no_ui(name):
    ui = sorted(m for m in imports(MODULES[name]) if any(m == u or m.startswith(u + ".") for u in UI))
    assert ui == [], f"{name} imports {ui}"


def test_no_import_circles():
    graph = {name: llmcli_imports(name) for name in MODULES}
    # A package imports its own submodules (re-exports); a submodule importing a sibling
    # through the package is an edge to that sibling, not to the package's other children.
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if MODULES[nxt].name == "__init__.py" and node.startswith(nxt + "."):
                continue  # a submodule importing its package's namespace
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [name])
    assert circles == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    limit = 150 if path.parent.name == "commands" and not path.name.startswith("_") else 400
    assert lines <= limit * 1.1, f"{path.name}: {lines} lines (about {limit} at most)"
