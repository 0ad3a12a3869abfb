"""What the benchmark scripts share: the machine, its load, the prompts, writing results.

On a shared machine every figure needs the load average beside it: the scripts record
it before and after, alternate the things they compare inside one process (so drift in
the load hits all sides alike) and report medians.
"""

from __future__ import annotations

import json
import os
import platform
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
