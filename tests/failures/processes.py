"""Real `llmcli` processes for the rows that need signals, pipes, resource limits or two at once.

A cold `python -m llmcli` spends 6-12 s on this machine importing torch and transformers, and the
signal and pipe rows need dozens of processes. So a *zygote* imports them once and forks one child
per row. Each child is a real process: its own pid, its own stdin/stdout/stderr (pipes the test
holds), the signal dispositions a fresh interpreter has (SIGINT raises KeyboardInterrupt, SIGPIPE
and SIGXFSZ ignored), the row's environment, working directory and RLIMIT_FSIZE; it runs
`llmcli.cli.main()` with the row's argv. Signals are real signals sent to that pid.

    with zygote.spawn(["generate", "hi", "-m", path], pause=GENERATING) as proc:
        proc.wait_ready()            # the child reached the pause point (a deadline, not a sleep)
        proc.signal(signal.SIGINT)   # or proc.resume()
        result = proc.finish()       # Finished(code, stdout, stderr)

`pause` stops the child inside a function at a stage of the command (loading, converting,
computing, writing): it announces "ready" and waits for the test to resume it or signal it, so
"SIGINT while the model computes" is that, every time, with no sleeping-and-hoping.

Two things a forked child does not reproduce, so the rows that depend on them start a cold
interpreter instead (`cold_run`): the start-up itself, and the interpreter's own shutdown (a real
run of a command that never imports torch ends through `sys.exit` and the interpreter's final
flush; a child always ends through `os._exit`, as `llmcli.cli.main` does once torch is loaded).

The protocol, one Unix-socket connection per child: the test sends a JSON request line with the
three descriptors (SCM_RIGHTS); the zygote answers `pid N`; the child may say `ready`; the test
may say `go`; the zygote says `exit CODE` (-SIGNUM when a signal ended it) when it reaps the child.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

DEADLINE = 120.0  # seconds any one wait may take on a slow, shared CI machine
REPO = Path(__file__).resolve().parents[2]

# Pause points: (module, attribute path, which call, before or after it). Seams of the pipeline.
LOADING = ("llmcli.engine", "load", 1, "before")  # the engine is about to read the model directory
CONVERTING = ("transformers.modeling_utils", "safe_save_file", 1, "after")  # a conversion wrote the weights, not yet the rest
COMPUTING = ("llmcli.engine.model", "EngineModel.forward", 1, "before")  # the first forward pass
# The views (score, lens, attention) and the tokenizer-only commands load through transformers.
HF_LOADING = ("llmcli.models.load", "_load_hf", 1, "before")  # transformers is about to read the model directory
HF_COMPUTING = ("transformers.models.llama.modeling_llama", "LlamaModel.forward", 1, "before")
STREAMING = ("llmcli.render.generate", "LiveText.feed", 2, "before")  # generate: the first token is out, the second comes
PRINTING = ("llmcli.render", "print_block", 1, "before")  # a table is about to be printed
EMITTING = ("llmcli.render.views", "emit", 1, "before")  # an inspection view is about to be printed
JSON_OUT = ("llmcli.render", "print_json", 1, "before")  # a --json document is about to be printed


@dataclass
class Finished:
    code: int  # the exit status; -N when signal N ended the process
    stdout: bytes
    stderr: bytes

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class Child:
    """One forked llmcli process, seen from the test."""

    def __init__(self, conn: socket.socket, stdin_w: int | None, stdout_r: int, stderr_r: int):
        self.conn = conn
        self.stdin = stdin_w
        self.stdout_fd, self.stderr_fd = stdout_r, stderr_r
        self._buffer = b""
        self._conn_open = True
        self._out = bytearray()
        self._err = bytearray()
        self.pid = int(self._expect("pid"))
        self.code: int | None = None

    # ---------------------------------------------------------------- messages

    def _line(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            if not self._conn_open:
                raise ConnectionError("the zygote closed the connection before the child's exit was reported")
            self._pump(deadline)
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _pump(self, deadline: float) -> None:
        """Read whatever arrives on the control socket, stdout or stderr (the child must never
        block on a full pipe while the test waits for a message)."""
        import select

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"llmcli child {getattr(self, 'pid', '?')} said nothing in time; stderr so far:\n{self._err.decode(errors='replace')}")
        fds = ([self.conn] if self._conn_open else []) + [fd for fd in (self.stdout_fd, self.stderr_fd) if fd is not None]
        if not fds:
            raise ConnectionError("the zygote closed the connection before the child's exit was reported")
        ready, _, _ = select.select(fds, [], [], min(remaining, 1.0))
        for fd in ready:
            if fd is self.conn:
                data = self.conn.recv(4096)
                if not data:  # the zygote closes it after reporting the exit
                    self._conn_open = False
                self._buffer += data
            else:
                chunk = os.read(fd, 65536)
                if not chunk:  # EOF: stop watching it
                    if fd == self.stdout_fd:
                        os.close(fd)
                        self.stdout_fd = None
                    else:
                        os.close(fd)
                        self.stderr_fd = None
                elif fd == self.stdout_fd:
                    self._out += chunk
                else:
                    self._err += chunk

    def _expect(self, word: str, timeout: float = DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            kind, _, rest = line.partition(" ")
            if kind == "exit":
                self.code = int(rest)
                if word != "exit":
                    raise AssertionError(f"the child exited ({rest}) before it was {word}; stderr:\n{self._err.decode(errors='replace')}")
            if kind == word:
                return rest

    # ---------------------------------------------------------------- what a test does

    def wait_ready(self, timeout: float = DEADLINE) -> None:
        """Wait until the child has reached its pause point."""
        self._expect("ready", timeout)

    def resume(self) -> None:
        self.conn.sendall(b"go\n")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def read_stdout(self, at_least: int = 1, timeout: float = DEADLINE) -> bytes:
        """What the child has written to stdout so far, waiting until there are `at_least` bytes."""
        deadline = time.monotonic() + timeout
        while len(self._out) < at_least:
            self._pump(deadline)
        return bytes(self._out)

    def close_stdout(self) -> None:
        """The reader goes away (`| head -c1`): the child's next write to stdout fails."""
        if self.stdout_fd is not None:
            os.close(self.stdout_fd)
            self.stdout_fd = None

    def close_stdin(self) -> None:
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None

    def write_stdin(self, data: bytes) -> None:
        assert self.stdin is not None
        os.write(self.stdin, data)

    def finish(self, timeout: float = DEADLINE) -> Finished:
        """Wait for the exit; all of stdout and stderr."""
        self.close_stdin()
        deadline = time.monotonic() + timeout
        if self.code is None:
            self._expect("exit", timeout)
        while self.stdout_fd is not None or self.stderr_fd is not None:
            self._pump(deadline)
        self.conn.close()
        return Finished(self.code if self.code is not None else -1, bytes(self._out), bytes(self._err))

    def kill(self) -> None:
        """Make sure the child is gone (a failing test must not leave it paused forever)."""
        if self.code is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for fd in (self.stdout_fd, self.stderr_fd, self.stdin):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.stdout_fd = self.stderr_fd = self.stdin = None

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        try:
            self.conn.close()
        except OSError:
            pass


class Zygote:
    """The process the children are forked from (see the module docstring)."""

    def __init__(self, workdir: Path, env: dict[str, str], warm_up: Sequence[Sequence[str]] = ()):
        """`warm_up`: command lines the zygote runs once before it forks anything, so that what
        every command does the first time in a process (lazy imports, caches) is done."""
        self.socket_path = str(workdir / "zygote.sock")
        self.env = env
        (workdir / "warm-up.json").write_text(json.dumps([[str(a) for a in args] for args in warm_up]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.failures.processes", self.socket_path, str(workdir / "warm-up.json")],
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "zygote.log", "wb"),
        )
        deadline = time.monotonic() + DEADLINE
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the zygote did not start: {(workdir / 'zygote.log').read_text()}")
            time.sleep(0.05)  # polling for the socket file, with a deadline

    def spawn(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        stdin: bytes | None = None,
        keep_stdin_open: bool = False,
        pause: tuple[str, str, int, str] | None = None,
        fsize_limit: int | None = None,
    ) -> Child:
        """Fork a child running `llmcli ARGS`. `stdin`: bytes written to its stdin (then closed,
        unless keep_stdin_open); None gives it /dev/null. `env` is added to the zygote's."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.socket_path)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if stdin is None and not keep_stdin_open:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
        else:
            in_r, in_w = os.pipe()
        request = {
            "args": [str(a) for a in args],
            "env": {**self.env, **(env or {})},
            "cwd": str(cwd or os.getcwd()),
            "pause": list(pause) if pause else None,
            "fsize_limit": fsize_limit,
        }
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [in_r, out_w, err_w])
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        child = Child(conn, in_w, out_r, err_r)
        if stdin:
            child.write_stdin(stdin)
        if in_w is not None and not keep_stdin_open:
            child.close_stdin()
        return child

    def run(self, args: Sequence[str], **options) -> Finished:
        with self.spawn(args, **options) as child:
            return child.finish()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cold_run(args: Sequence[str], *, env: dict[str, str], cwd: str | os.PathLike, stdin: bytes = b"", timeout: float = DEADLINE) -> Finished:
    """`python -m llmcli ARGS` from a fresh interpreter (start-up and shutdown included)."""
    done = subprocess.run(
        [sys.executable, "-m", "llmcli", *map(str, args)],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


def cold_run_reader_gone(args: Sequence[str], *, env: dict[str, str], cwd: str | os.PathLike, timeout: float = DEADLINE) -> Finished:
    """`python -m llmcli ARGS` whose stdout reader has left before it writes (`| head -c0`):
    the read end of its stdout pipe is closed as soon as it starts."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llmcli", *map(str, args)],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return Finished(process.returncode, b"", stderr)


# ---------------------------------------------------------------------------- the zygote's side


def _serve(socket_path: str, warm_up_file: str) -> None:
    import selectors

    # What every command imports; a child imports the rest itself.
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import transformers.modeling_gguf_pytorch_utils  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

    import importlib

    import llmcli.cli  # noqa: F401  (and every command module)

    for name in (
        "typer._adapters",
        "rich.progress",
        "rich.markdown",
        "tokenizers",
        "safetensors.torch",
        "prompt_toolkit",
        "llmcli.api.model",
        "llmcli.api.pool",
        "llmcli.backends.local",
        "llmcli.models.load",
        "llmcli.generation",
        "llmcli.chat.loop",
        "llmcli.chat.commands",
        "llmcli.render.generate",
        "llmcli.render.progress",
        "llmcli.render.probs",
        "llmcli.render.score",
        "llmcli.render.lens",
        "llmcli.render.attention",
        "llmcli.render.neighbors",
        "llmcli.render.compare",
        "llmcli.render.compare_live",
        "llmcli.render.tokens",
        "llmcli.render.info",
        "llmcli.render.views",
    ):
        importlib.import_module(name)
    _warm_up(json.loads(Path(warm_up_file).read_text()), Path(socket_path).parent / "warm-up-cache")
    import gc

    gc.collect()
    gc.freeze()  # what is here now is never scanned again: children do not copy it page by page

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path + ".tmp")
    server.listen(64)
    os.rename(socket_path + ".tmp", socket_path)  # the test waits for this name: we are ready
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        for _ in selector.select(timeout=0.01):
            conn, _ = server.accept()
            message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
            request = json.loads(message.decode())
            pid = os.fork()
            if pid == 0:
                selector.close()
                server.close()
                for other in children.values():
                    other.close()
                _child(conn, fds, request)  # never returns
            for fd in fds:
                os.close(fd)
            conn.sendall(f"pid {pid}\n".encode())
            children[pid] = conn
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            try:
                conn.sendall(f"exit {code}\n".encode())
            except OSError:
                pass
            conn.close()


def _warm_up(commands: list[list[str]], cache: Path) -> None:
    """Run each command once here, output thrown away, in a cache of the zygote's own. torch
    computes on one thread from the start, so no thread pool exists to be lost in a fork; the
    check below fails loudly if warming up left a thread behind. (Importing torch starts one
    native thread of its own; forked children have always done without it.)"""
    import io

    import torch

    from llmcli.cli import app

    before = _threads()
    torch.set_num_threads(1)
    os.environ["LLMCLI_CACHE_DIR"] = str(cache)
    out, err, inp = sys.stdout, sys.stderr, sys.stdin
    try:
        for args in commands:
            sys.stdout, sys.stderr, sys.stdin = io.StringIO(), io.StringIO(), io.StringIO("hi\n")
            app(args, standalone_mode=False)
    finally:
        sys.stdout, sys.stderr, sys.stdin = out, err, inp
        del os.environ["LLMCLI_CACHE_DIR"]
    if _threads() != before:
        raise RuntimeError(f"warming up left {_threads() - before} thread(s) running; forking the zygote would not be safe")


def _threads() -> int:
    import threading

    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()


def _child(conn: socket.socket, fds: list[int], request: dict) -> None:
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        if request["fsize_limit"] is not None:
            import resource

            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize_limit"], hard))
        # Ctrl-C raises KeyboardInterrupt, as in a terminal, even when the suite itself was started
        # with SIGINT ignored (a background job of a shell without job control), which a Python
        # started that way would otherwise inherit.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import torch

        torch.set_num_threads(1)  # two cores shared by everyone; forked children must not fight
        if request["pause"]:
            _install_pause(conn, *request["pause"])
        sys.argv = ["llmcli", *request["args"]]
        from llmcli.cli import main

        main()  # ends the process itself (os._exit once torch is loaded)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a bug in the harness: show it on the child's stderr
        import traceback

        traceback.print_exc()
        code = 99
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)


def _install_pause(conn: socket.socket, module: str, path: str, nth: int, when: str) -> None:
    """Wrap MODULE.PATH so that its `nth` call says "ready" (before or after doing its work)
    and waits for "go"; a signal that arrives meanwhile is raised there, as it would be mid-call."""
    import functools
    import importlib

    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def paused(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == nth and when == "before":
            wait()
        result = original(*args, **kwargs)
        if calls == nth and when == "after":
            wait()
        return result

    def wait() -> None:
        conn.sendall(b"ready\n")
        while conn.recv(16) not in (b"go\n", b""):
            pass

    setattr(owner, name, paused)


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
