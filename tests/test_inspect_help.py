"""The four inspection commands are registered, document themselves, and import no torch for --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ("score", "lens", "attention", "neighbors")


def test_help_imports_no_torch():
    code = "import sys; from llmcli.cli import app; " + "; ".join(f"import llmcli.commands.{c}" for c in COMMANDS) + "; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "--json" in result.stdout and "--svg" in result.stdout and "--html" in result.stdout
