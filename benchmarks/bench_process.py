"""Whole-process wall time and peak memory of llmcli commands, with a cold and a warm cache.

    .venv/bin/python benchmarks/bench_process.py                # smollm2, 5 warm runs, 1 cold run
    .venv/bin/python benchmarks/bench_process.py --runs 9 --cold-runs 0

Each case is a fresh process, as a user runs it: `python -c "import typer, rich"` (the
floor for any Typer + Rich tool), `llmcli --help`, `tokenize --ids`, `probs`, `generate
--max-new-tokens 32` (greedy), and the same with `--quantize int4`. Warm: llmcli's cache
already holds the converted model. Cold: `LLMCLI_CACHE_DIR` is a new empty directory, so the
command converts the GGUF file first (tokenize only builds the tokenizer; int4 also quantizes
and caches the result). Warm runs alternate between the cases, the order rotated each run;
reported is the median wall time and the largest peak RSS (from `wait4`, the child's own
`ru_maxrss`). The load average goes beside every figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import base_results, header, load_average, table, write_results

PROMPT = "The capital of France is"


def cases(llmcli: str, model: str) -> dict[str, list[str]]:
    return {
        'python -c "import typer, rich"': [sys.executable, "-c", "import typer, rich"],
        "llmcli --help": [llmcli, "--help"],
        "llmcli tokenize --ids": [llmcli, "tokenize", "-m", model, "--ids", PROMPT],
        "llmcli probs": [llmcli, "probs", "-m", model, PROMPT],
        "llmcli generate -n 32": [llmcli, "generate", "-m", model, "-t", "0", "--max-new-tokens", "32", PROMPT],
        "llmcli generate -n 32 --quantize int4": [llmcli, "generate", "-m", model, "-t", "0", "--max-new-tokens", "32", "--quantize", "int4", PROMPT],
    }


def run(command: list[str], env: dict) -> dict:
    """Wall time and peak RSS of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{stderr}")
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"wall_s": wall, "peak_rss_bytes": rss, "load_average": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=5, help="warm runs of each case")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold runs of each model-using case (each converts)")
    args = parser.parse_args()

    llmcli = shutil.which("llmcli", path=str(Path(sys.executable).parent)) or shutil.which("llmcli")
    if not llmcli:
        raise SystemExit("llmcli is not installed in this environment (pip install -e .)")
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("LLMCLI_MODEL", None)
    all_cases = cases(llmcli, args.model)
    results = base_results("process", model=args.model, runs=args.runs, cold_runs=args.cold_runs, cases={})

    # Make sure the warm cache is warm, and the OS file cache too.
    for command in all_cases.values():
        run(command, env)
    warm: dict[str, list[dict]] = {name: [] for name in all_cases}
    names = list(all_cases)
    for i in range(args.runs):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            warm[name].append(run(all_cases[name], env))
            print(f"warm {i + 1}/{args.runs} {name}: {warm[name][-1]['wall_s']:.2f} s", file=sys.stderr)

    cold: dict[str, list[dict]] = {name: [] for name in names if name.startswith("llmcli ") and name != "llmcli --help"}
    for i in range(args.cold_runs):
        for name in cold:
            with tempfile.TemporaryDirectory(prefix="llmcli-cold-") as cache:
                cold[name].append(run(all_cases[name], {**env, "LLMCLI_CACHE_DIR": cache}))
            print(f"cold {i + 1}/{args.cold_runs} {name}: {cold[name][-1]['wall_s']:.2f} s", file=sys.stderr)

    for name in names:
        entry = {"command": all_cases[name][1:] if all_cases[name][0] == llmcli else all_cases[name]}
        for label, samples in (("warm", warm.get(name)), ("cold", cold.get(name))):
            if samples:
                entry[label] = {
                    "wall_s_median": statistics.median(s["wall_s"] for s in samples),
                    "wall_s_all": [round(s["wall_s"], 3) for s in samples],
                    "peak_rss_bytes_max": max(s["peak_rss_bytes"] for s in samples),
                    "load_averages": [s["load_average"] for s in samples],
                }
        results["cases"][name] = entry
    results["load_average_after"] = load_average()
    print_report(results)
    write_results("process", results)


def print_report(results: dict) -> None:
    print(header("whole-process benchmark", f"model {results['model']}"))
    print(f"median of {results['runs']} alternating warm runs; {results['cold_runs']} cold run(s) each with an empty LLMCLI_CACHE_DIR\n")
    rows = []
    for name, entry in results["cases"].items():
        warm, cold = entry.get("warm", {}), entry.get("cold", {})
        rows.append(
            {
                "case": name,
                "warm": warm.get("wall_s_median"),
                "warm_rss": warm.get("peak_rss_bytes_max", 0) / 2**20 or None,
                "cold": cold.get("wall_s_median"),
                "cold_rss": cold.get("peak_rss_bytes_max", 0) / 2**20 or None,
            }
        )
    print(
        table(
            rows,
            [
                ("case", "case", "s"),
                ("warm", "warm s", ".2f"),
                ("warm_rss", "warm peak MiB", ".0f"),
                ("cold", "cold s", ".2f"),
                ("cold_rss", "cold peak MiB", ".0f"),
            ],
        )
    )
    base = results["cases"]['python -c "import typer, rich"']["warm"]["wall_s_median"]
    helps = results["cases"]["llmcli --help"]["warm"]["wall_s_median"]
    print(f"\nllmcli --help / bare import typer, rich: {helps / base:.2f}x")
    print(f"load average after: {results['load_average_after']}")


if __name__ == "__main__":
    main()
