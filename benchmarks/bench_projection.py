"""How to multiply one token by a matrix: four ways, on the same loaded engine model.

    .venv/bin/python benchmarks/bench_projection.py -m smollm2 -m gemma3-270m --runs 6

A decode step is one matrix-vector product per projection (and the head). The sides, each
swapped in as the forward of every Linear layer of the model, in one process, on cached
single-token steps:

- `[in, out] view` (what the engine does): plain `F.linear` on the engine's storage, a
  contiguous [in, out] matrix seen as an [out, in] weight;
- `[out, in]`: plain `F.linear` on an [out, in] copy (the checkpoint's layout);
- `split` and `split, [out, in]`: one `bmm` over one block of outputs per thread (views of
  the same storage, columns or rows), so each core reads its own part of the matrix.

The split was the engine's default for a day: on the AMD EPYC host of 2026-12-02 morning,
where MKL ran each matrix-vector product on one core, it gave 1.10x (smollm2) and 1.19x
(gemma3-270m) under a load of 1.1-1.7, but 0.90x with one core kept busy; on the Intel Xeon
host of that afternoon, quiet, 0.88-0.92x and 0.95x. So the engine calls `F.linear`, and this
script keeps the experiment for the next CPU.

Runs alternate between the sides with the order rotated, after one warm-up each. Reported:
median and best decode tokens/s per side. The numbers go to benchmarks/results/projection-*.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch
import torch.nn.functional as F
from torch import nn

from _common import base_results, load_average, use_threads, write_results


def split_product(layer, x):
    """x [1, in] times the layer's weight, one block of outputs per thread in one `bmm`
    (falls back to `F.linear` where the outputs do not divide evenly)."""
    weight, threads = layer.weight, torch.get_num_threads()
    rows, columns = weight.shape
    if x.numel() != columns or threads < 2 or rows % threads:
        return F.linear(x, weight, layer.bias)
    if weight.t().is_contiguous():  # [in, out] storage: a block is a range of its columns
        blocks = weight.t().view(columns, threads, rows // threads).permute(1, 0, 2)
    else:
        blocks = weight.contiguous().view(threads, rows // threads, columns).transpose(1, 2)
    y = torch.bmm(x.reshape(1, 1, -1).expand(threads, 1, -1), blocks).view(*x.shape[:-1], -1)
    return y if layer.bias is None else y + layer.bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2)")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=24, help="decode steps per run")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from llmcli.backends.engine import prepared_path
    from llmcli.engine import load
    from llmcli.models import model_dir, resolve

    threads = use_threads(args.threads)
    results = base_results("projection", threads=threads, runs=args.runs, steps=args.steps, models={})
    for name in args.model or ["smollm2"]:
        path, _ = model_dir(resolve(name))
        model = load(path, prepared=prepared_path(path, "float32"))
        linears = [m for m in model.modules() if type(m) is nn.Linear]
        rows_first = {id(m): m.weight.contiguous() for m in linears}  # a copy of every matrix
        sides = {
            "[in, out] view": lambda layer, x: F.linear(x, layer.weight, layer.bias),
            "[out, in]": lambda layer, x: F.linear(x, rows_first[id(layer)], layer.bias),
            "split": split_product,
            "split, [out, in]": lambda layer, x: split_product(types.SimpleNamespace(weight=rows_first[id(layer)], bias=layer.bias), x),
        }

        def use(side: str) -> None:
            for layer in linears:
                layer.forward = types.MethodType(sides[side], layer)

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
        for side in order:  # warm-up
            use(side)
            speed()
        for run in range(args.runs):
            for side in order[run % len(order) :] + order[: run % len(order)]:
                use(side)
                samples[side].append(speed())
        results["models"][name] = {side: {"median": statistics.median(v), "best": max(v), "all": v} for side, v in samples.items()}
        base = statistics.median(samples["[in, out] view"])
        for side, v in samples.items():
            print(f"{name:12s} {side:17s} {statistics.median(v):6.1f} tok/s median  {max(v):6.1f} best  {statistics.median(v) / base:5.2f}x")
    results["load_average_after"] = load_average()
    print(f"{threads} threads · load average before {results['load_average_before']}, after {results['load_average_after']}")
    write_results("projection", results)


if __name__ == "__main__":
    main()
