"""The sampler's cost per token: llmcli's against the one it replaced, on real vocabulary sizes.

    .venv/bin/python benchmarks/bench_sampling.py --runs 200

A sampled token costs the decode step plus the sampler. The baseline is the sampler as it was
until 2026-12-02: top-p by sorting the whole vocabulary, the draw by `torch.multinomial`
(which takes one exponential variate per token). llmcli's finds the nucleus among the best 64,
512, ... tokens and draws with one cumulative sum (`llmcli.sampling`). Logits: the real
model's after a prompt (smollm2: 49,152 tokens; gemma3-270m: 262,144), so the nucleus has
its real width. Settings: temperature 0.2 alone, and with top-p 0.9 (SmolLM2's recommended
sampling). The sides alternate in one process; reported: median ms per token.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from _common import DEFAULT_PROMPT, base_results, load_average, use_threads, write_results


def baseline(logits: torch.Tensor, temperature: float, top_p: float | None, generator: torch.Generator) -> int:
    """The sampler before 2026-12-02 (temperature, top-p, draw)."""
    logits = logits / temperature
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = torch.cumsum(probs, dim=-1) - probs >= top_p
        drop[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, drop), -math.inf)
    return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2 and gemma3-270m)")
    parser.add_argument("--runs", type=int, default=200, help="tokens drawn per side and setting")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import llmcli
    from llmcli.sampling import SamplingSettings, make_sampler

    record = base_results("sampling", threads=use_threads(args.threads), runs=args.runs, models=[])
    for name in args.model or ["smollm2", "gemma3-270m"]:
        model = llmcli.load(name)
        logits = model.backend.logits(model.tokenize(DEFAULT_PROMPT).ids)[-1]
        rows = {}
        for top_p in (None, 0.9):
            settings = SamplingSettings(temperature=0.2, top_p=top_p)
            ours = make_sampler(settings, torch.Generator().manual_seed(0))
            generator = torch.Generator().manual_seed(0)
            sides = {"before": lambda: baseline(logits, 0.2, top_p, generator), "llmcli": lambda: ours(logits)}
            times: dict[str, list[float]] = {side: [] for side in sides}
            for run in range(args.runs):
                for side in (list(sides) if run % 2 else list(sides)[::-1]):
                    start = time.perf_counter()
                    sides[side]()
                    times[side].append((time.perf_counter() - start) * 1000)
            label = "temperature 0.2" + (f", top-p {top_p}" if top_p else "")
            rows[label] = {side: statistics.median(t) for side, t in times.items()}
        record["models"].append({"model": model.backend.label, "vocabulary": logits.shape[-1], "ms_per_token": rows})

    print(f"sampler ms per token · {record['machine']['cpu']} · {record['threads']} threads · load average {record['load_average_before']}")
    for m in record["models"]:
        for label, r in m["ms_per_token"].items():
            print(f"{m['model']:<13} {m['vocabulary']:>8,} tokens  {label:<28} before {r['before']:6.2f}  llmcli {r['llmcli']:6.2f}  ({r['before'] / r['llmcli']:.1f}x)")
    record["load_average_after"] = load_average()
    write_results("sampling", record)


if __name__ == "__main__":
    main()
