"""Whole-process wall time of `llmcli probs` on a remote model (a running `llmcli serve`)
against the same `llmcli probs` on the local model.

    .venv/bin/python benchmarks/bench_remote.py                 # smollm2, 5 alternating runs
    .venv/bin/python benchmarks/bench_remote.py --runs 9 --prompt "Once upon a time"

The script starts `llmcli serve -m MODEL --port 0` itself (on 127.0.0.1, a port the OS
picks; readiness is polled on /health), warms it with one request, then runs each case as
a fresh process, as a user runs it, alternating between the cases with the order rotated
each round so drift in the machine's load hits every case alike:

- `python -c "import typer, rich, openai"`: the floor of any client built on those;
- `llmcli probs -m MODEL`: load the model (from llmcli's cache) and one forward pass;
- `llmcli probs -m openai:MODEL --base-url URL`: the server's top 20, raw prompt;
- the same with `--chat` (the server renders the chat template).

Reported: the median wall time and the client's peak RSS per case (the server's memory is
not the client's), with the load average before and after. Every process runs this
checkout's code (`python -m llmcli` with the repository on PYTHONPATH). The server is
stopped with SIGINT at the end, as Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import base_results, header, load_average, table, write_results

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "The capital of France is"


def llmcli(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmcli", *args]


def cases(model: str, url: str, prompt: str) -> dict[str, list[str]]:
    remote = ["-m", f"openai:{Path(model).name if '/' in model else model}", "--base-url", url]
    return {
        'python -c "import typer, rich, openai"': [sys.executable, "-c", "import typer, rich, openai"],
        "llmcli probs (local)": llmcli("probs", "-m", model, prompt),
        "llmcli probs -m openai:… (remote)": llmcli("probs", *remote, prompt),
        "llmcli probs --chat -m openai:… (remote)": llmcli("probs", "--chat", *remote, prompt),
    }


def run(command: list[str], env: dict) -> dict:
    """Wall time and peak RSS of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"wall_s": wall, "peak_rss_bytes": rss, "load_average": load_average()}


class Server:
    """`llmcli serve` in a subprocess; `url` once it answers /health."""

    def __init__(self, model: str, env: dict):
        self.proc = subprocess.Popen(llmcli("serve", "-m", model, "--port", "0"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = ""
        deadline = time.monotonic() + 300
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # the address line comes once the socket is bound
            if match := re.search(r" on (http://\S+/v1) ", line):
                self.url = match.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.stop()
            raise SystemExit("llmcli serve did not start")
        import httpx

        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url.removesuffix("/v1") + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit("llmcli serve never answered /health")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="smollm2")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of each case")
    args = parser.parse_args()

    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("LLMCLI_MODEL", None)
    results = base_results("remote", model=args.model, prompt=args.prompt, runs=args.runs, cases={})
    server = Server(args.model, env)
    try:
        all_cases = cases(args.model, server.url, args.prompt)
        for command in all_cases.values():  # warm the server, the caches, the OS file cache
            run(command, env)
        samples: dict[str, list[dict]] = {name: [] for name in all_cases}
        names = list(all_cases)
        for i in range(args.runs):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                samples[name].append(run(all_cases[name], env))
                print(f"run {i + 1}/{args.runs} {name}: {samples[name][-1]['wall_s']:.2f} s", file=sys.stderr)
    finally:
        server.stop()
    for name, runs in samples.items():
        results["cases"][name] = {
            "command": all_cases[name][3:] if all_cases[name][1:3] == ["-m", "llmcli"] else all_cases[name][1:],
            "wall_s_median": statistics.median(s["wall_s"] for s in runs),
            "wall_s_all": [round(s["wall_s"], 3) for s in runs],
            "peak_rss_bytes_max": max(s["peak_rss_bytes"] for s in runs),
            "load_averages": [s["load_average"] for s in runs],
        }
    results["load_average_after"] = load_average()
    print_report(results)
    write_results("remote", results)


def print_report(results: dict) -> None:
    print(header("remote probs benchmark", f"model {results['model']}"))
    print(f"whole processes, median of {results['runs']} alternating runs; a running llmcli serve on 127.0.0.1\n")
    rows = [{"case": name, "wall": c["wall_s_median"], "rss": c["peak_rss_bytes_max"] / 2**20} for name, c in results["cases"].items()]
    print(table(rows, [("case", "case", "s"), ("wall", "wall s", ".2f"), ("rss", "client peak MiB", ".0f")]))
    local = results["cases"]["llmcli probs (local)"]["wall_s_median"]
    remote = results["cases"]["llmcli probs -m openai:… (remote)"]["wall_s_median"]
    print(f"\nremote / local: {remote / local:.2f}x · load average after: {results['load_average_after']}")


if __name__ == "__main__":
    main()
