"""How the engine multiplies one token by a matrix: three ways, on the same loaded model.

    .venv/bin/python benchmarks/bench_projection.py -m smollm2 -m gemma3-270m --runs 6

A decode step is one matrix-vector product per projection (and the head). The sides, each
swapped in for `llmcli.engine.model.project` in one process, on cached single-token steps:

- `split` (the engine's default): one `bmm` over one block of outputs per thread, views of
  the engine's [in, out] storage, so each core reads its own columns;
- `[in, out] view`: plain `F.linear` on that storage (the engine before 2026-12-02; what it
  still does on one thread);
- `split, [out, in]`: the same split over rows of an [out, in] copy (the checkpoint's layout;
  a copy of every matrix is made for this side).

Runs alternate between the sides with the order rotated, after one warm-up each. Reported:
median and best decode tokens/s per side. The numbers go to benchmarks/results/projection-*.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import base_results, load_average, use_threads, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2)")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=24, help="decode steps per run")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from torch import nn

    import llmcli.engine.model as engine_model
    from llmcli.backends.engine import prepared_path
    from llmcli.engine import load
    from llmcli.models import model_dir, resolve

    threads = use_threads(args.threads)
    results = base_results("projection", threads=threads, runs=args.runs, steps=args.steps, models={})
    split = engine_model.project
    for name in args.model or ["smollm2"]:
        path, _ = model_dir(resolve(name))
        model = load(path, prepared=prepared_path(path, "float32"))
        linears = [m for m in model.modules() if type(m) is nn.Linear]
        rows_first = {id(m): nn.Linear(m.in_features, m.out_features, bias=False) for m in linears}
        for m in linears:
            rows_first[id(m)].weight = nn.Parameter(m.weight.contiguous(), requires_grad=False)
            rows_first[id(m)].bias = m.bias
        sides = {
            "split": split,
            "[in, out] view": lambda layer, x: F.linear(x, layer.weight, layer.bias),
            "split, [out, in]": lambda layer, x: split(rows_first[id(layer)], x),
        }

        def speed() -> float:
            cache = model.new_cache(args.steps + 8)
            model(torch.tensor([[1, 2, 3, 4]]), cache)
            token = torch.tensor([[5]])
            start = time.perf_counter()
            for _ in range(args.steps):
                model(token, cache)
            return args.steps / (time.perf_counter() - start)

        samples: dict[str, list[float]] = {side: [] for side in sides}
        order = list(sides)
        try:
            for side in order:  # warm-up
                engine_model.project = sides[side]
                speed()
            for run in range(args.runs):
                for side in order[run % 3 :] + order[: run % 3]:
                    engine_model.project = sides[side]
                    samples[side].append(speed())
        finally:
            engine_model.project = split
        results["models"][name] = {side: {"median": statistics.median(v), "best": max(v), "all": v} for side, v in samples.items()}
        base = statistics.median(samples["[in, out] view"])
        for side, v in samples.items():
            print(f"{name:12s} {side:15s} {statistics.median(v):6.1f} tok/s median  {max(v):6.1f} best  {statistics.median(v) / base:5.2f}x")
    results["load_average_after"] = load_average()
    print(f"{threads} threads · load average before {results['load_average_before']}, after {results['load_average_after']}")
    write_results("projection", results)


if __name__ == "__main__":
    main()
