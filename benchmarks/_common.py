"""What the benchmark scripts share: the machine, its load, the prompts, writing results.

On a shared machine every figure needs the load average beside it: the scripts record
it before and after, alternate the things they compare inside one process (so drift in
the load hits all sides alike) and report medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

# Held-out prompts for the quantization checks: nothing was tuned on them.
PROMPTS = [
    "Once upon a time, in a small village by the sea, there lived",
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Water boils at a temperature of",
    "The best way to learn a new language is",
    "In 1969, the first humans to walk on the Moon were",
    "import numpy as np\nx = np.",
    "Photosynthesis is the process by which plants",
    "My favourite food is pizza because",
    "The three primary colours are red,",
    "To make a cup of tea, first",
    "The quick brown fox jumps over the",
]


DEFAULT_PROMPT = PROMPTS[0]  # the decode benchmarks' prompt


def add_decode_arguments(parser, threads_help: str = "torch threads (default: torch's choice)") -> None:
    """The options every decode-speed script takes (besides -m)."""
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help=threads_help)


def use_threads(threads: int | None) -> int:
    """Set torch's thread count when one is given; return the count in use."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def eos_ids(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def tokens_per_second(times: list[float]) -> float:
    """Decode speed from the arrival times of the new tokens (the first one is the prompt's)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


class TimingStreamer:
    """A `generate()` streamer that only notes when each new token arrives."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call hands over the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def warm_up(sides: dict, label: str) -> dict[str, float]:
    """Run each side once (first calls pay for lazy initialisation, or compiling); their seconds."""
    seconds = {}
    for side, run in sides.items():
        start = time.perf_counter()
        run()
        seconds[side] = time.perf_counter() - start
        print(f"{label} warm-up {side}: {seconds[side]:.1f} s", file=sys.stderr)
    return seconds


def alternate(sides: dict, runs: int, label: str) -> dict[str, list[dict]]:
    """`runs` rounds of every side, the order rotated each round, so drift in the
    machine's load hits every side alike. Each side returns a dict with `decode_tps`."""
    samples: dict[str, list[dict]] = {side: [] for side in sides}
    names = list(sides)
    for i in range(runs):
        for side in names[i % len(names) :] + names[: i % len(names)]:
            samples[side].append(sides[side]())
            print(f"{label} run {i + 1}/{runs} {side}: {samples[side][-1]['decode_tps']:.1f} tok/s", file=sys.stderr)
    return samples


def decode_speed(samples: list[dict]) -> dict:
    """Median, best and every decode speed of one side's runs."""
    return {
        "decode_tokens_per_second": statistics.median(x["decode_tps"] for x in samples),
        "decode_tokens_per_second_best": max(x["decode_tps"] for x in samples),
        "decode_tokens_per_second_all": [round(x["decode_tps"], 2) for x in samples],
    }


def print_decode_header(results: dict, title: str, extra: str) -> None:
    print(header(title, f"{results['threads']} threads · {extra}"))
    print(f"{results['new_tokens']} new tokens, greedy, median of {results['runs']} alternating runs\n")


def speed_table(model: str, by_side: dict[str, dict], columns: list[tuple[str, str, str]]) -> str:
    """One row per side: its decode speed (`decode_speed`), then `columns`."""
    rows = [{"side": side, **r} for side, r in by_side.items()]
    speed = [("decode_tokens_per_second", "decode tok/s", ".1f"), ("decode_tokens_per_second_best", "best run", ".1f")]
    return table(rows, [("side", model, "s"), *speed, *columns])


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(), "python": platform.python_version()}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def header(title: str, extra: str = "") -> str:
    m = machine()
    return f"{title} · {m['cpu']} · {m['cores']} cores · load average {load_average()}" + (f" · {extra}" if extra else "")


def write_results(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return out


def base_results(benchmark: str, **settings) -> dict:
    return {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_before": load_average(),
        **settings,
    }


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain text table: columns are (key, heading, format spec)."""
    cells = [[format(row[k], f) if row.get(k) is not None else "-" for k, _, f in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (_, h, _) in enumerate(columns)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, ((_, h, _), w) in enumerate(zip(columns, widths)))]
    lines.append("-" * len(lines[0]))
    for c in cells:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths))))
    return "\n".join(lines)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two generations share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
