"""`llmcli chat` in a real terminal: tmux runs it, `send-keys` types, `capture-pane` reads the screen.

The one test here walks through what a person does on smollm2: ask, watch the answer stream
with its stats line, look at `/show prompt`, stop a long reply with Ctrl-C, ask again, leave
with `/exit` — and checks the screen stays readable (no traceback, nothing drawn twice).
Every wait polls the screen until the text appears or a deadline passes; no fixed sleeps.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make setup installs it)"),
]

WIDTH, HEIGHT = 100, 30
DEADLINE = 240  # seconds; generous because CI machines are slow and shared


class Terminal:
    """One tmux pane on a private server (its own socket), running one command."""

    def __init__(self, command: str, env: dict[str, str]):
        self.socket = f"llmcli-test-{uuid.uuid4().hex[:8]}"
        self.command = command
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, env=self.env
        ).stdout

    def start(self) -> None:
        # The pane outlives the command so its exit status can be read afterwards.
        shell = f"{self.command}; echo \"[exit status $?]\"; sleep 600"
        self.tmux("new-session", "-d", "-s", "chat", "-x", str(WIDTH), "-y", str(HEIGHT), shell)
        self.tmux("set-option", "-t", "chat", "history-limit", "10000")

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "chat", "-l", text)  # literally, not as key names

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "chat")

    def transcript(self) -> str:
        """Everything printed so far, scrollback included, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "chat")

    def wait_for(self, condition, what: str, deadline: float = DEADLINE) -> str:
        """Poll the transcript until `condition(text)` holds; fail with the screen if it never does."""
        end = time.monotonic() + deadline
        while True:
            text = self.transcript()
            if condition(text):
                return text
            if time.monotonic() > end:
                pytest.fail(f"gave up waiting for {what} after {deadline} s; the screen:\n{self.screen()}")
            time.sleep(0.25)


@pytest.fixture
def terminal(real_cache, tmp_path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    command = " ".join(
        shlex.quote(part)
        for part in [sys.executable, "-m", "llmcli", "chat", "-m", "smollm2", "--temperature", "0", "-n", "400"]
    )
    term = Terminal(f"cd {shlex.quote(str(Path.cwd()))} && {command}", env)
    term.start()
    yield term
    term.stop()


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def after(marker: str, text: str) -> str:
    return text[text.rfind(marker) + len(marker) :] if marker in text else ""


def test_a_person_chatting_in_a_real_terminal(terminal, tmp_path):
    # Start: the header and the prompt.
    screen = terminal.wait_for(lambda t: "Send a message" in t, "the prompt")
    assert "smollm2" in screen and "context window 8,192 tokens" in screen and "/help" in screen

    # Ask: the answer streams in, then the dim stats line.
    question = "What is the capital of France?"
    terminal.type(question)
    terminal.send("Enter")
    text = terminal.wait_for(lambda t: count(r"tok/s", t) >= 1, "the first stats line")
    answer = after(question, text)
    assert "Paris" in answer
    assert re.search(r"\d+ tokens · [\d.]+ tok/s · first token [\d.]+ s · re-read [\d,]+ prompt tokens · context [\d,]+ / 8,192", answer)
    paris_line = next(line for line in answer.splitlines() if "Paris" in line)

    # /show prompt: the exact text the model gets next, special tokens and all.
    terminal.type("/show prompt")
    terminal.send("Enter")
    text = terminal.wait_for(lambda t: "the prompt, as the model reads it" in t and "› " in after("/show prompt", t), "/show prompt")
    shown = after("/show prompt", text)
    assert "<|im_start|>user" in shown and question in shown and "<|im_start|>assistant" in shown

    # A long reply, stopped with Ctrl-C once it is well under way.
    story = "Write a very long story about a dragon, in at least ten paragraphs."
    terminal.type(story)
    terminal.send("Enter")
    terminal.wait_for(lambda t: len(after(story, t).split()) >= 25, "the story to start")
    terminal.send("C-c")
    text = terminal.wait_for(lambda t: "interrupted ·" in t and "Send a message" in after("interrupted ·", t), "the interrupted reply")
    assert len(after(story, text).split("interrupted ·")[0].split()) >= 25  # the partial reply stays on screen

    # The chat goes on: another question, another answer and stats line.
    terminal.type("And what is the capital of Italy?")
    terminal.send("Enter")
    terminal.wait_for(lambda t: count(r"tok/s", t) >= 3, "the third stats line")

    # /exit leaves cleanly.
    terminal.type("/exit")
    terminal.send("Enter")
    text = terminal.wait_for(lambda t: "[exit status" in t, "the exit")
    assert "[exit status 0]" in text

    # Readable: no traceback, nothing drawn twice, no escape sequences leaking as text.
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert [line.strip() for line in text.splitlines()].count(paris_line.strip()) == 1  # drawn once
    assert count(r"interrupted ·", text) == 1
    assert "\x1b" not in text and "^[" not in text
    assert all(len(line) <= WIDTH for line in terminal.screen().splitlines())
