"""A real `llmcli serve` in a subprocess, for tests: started on a free port, stopped after.

    with ServerProcess(["-m", str(model_dir)]) as server:
        httpx.get(server.url + "/models")
        server.log_lines()          # what it wrote on stderr, one line per request

Readiness is polled with a deadline, never slept for: the server prints its address once
the socket is bound (`--port 0` lets the OS pick a free port, so two test runs never
race for one), then /health must answer 200. Stopping sends SIGINT, as Ctrl-C does, and
waits for the process with a deadline; a server that does not stop is killed and the test
that stopped it fails.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE = 180.0  # loading torch and a model on a busy 2-core machine
STOP_DEADLINE = 30.0
_ADDRESS = re.compile(r" on (http://\S+)/v1 ")


class ServerProcess:
    def __init__(self, args: list[str], env: dict[str, str | None] | None = None):
        self.args = args
        merged = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}  # None: leave that variable out
        self.proc: subprocess.Popen | None = None
        self.root = ""
        self._lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL: http://127.0.0.1:PORT/v1."""
        return self.root + "/v1"

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        command = [sys.executable, "-m", "llmcli", "serve", "--port", "0", *self.args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + START_DEADLINE
        while not self.root:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:  # the process ended, or the deadline passed
                self.stop()
                raise RuntimeError(f"llmcli serve did not start: {''.join(self._lines)[-2000:]}")
            if match := _ADDRESS.search(line):
                self.root = match.group(1)
        wait_until_healthy(self.root + "/health", deadline)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def log_lines(self) -> list[str]:
        return [line.rstrip("\n") for line in self._lines]

    def wait_for_log(self, pattern: str, deadline: float = 30.0) -> str:
        """The first log line matching `pattern`, waiting for it to be written (lines are
        written when a response has been sent, which can be after the client has read it)."""
        end = time.monotonic() + deadline
        regex = re.compile(pattern)
        while time.monotonic() < end:
            for line in self.log_lines():
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matches {pattern!r}: {self.log_lines()[-10:]}")

    def stop(self) -> int | None:
        """SIGINT (Ctrl-C), then wait; returns the exit code."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("llmcli serve did not stop on SIGINT within the deadline")
        self.returncode = self.proc.returncode
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.returncode


def wait_until_healthy(url: str, deadline: float) -> None:
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered 200")
        time.sleep(0.05)
