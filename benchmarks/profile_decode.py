"""Where a decode step's time goes: the torch profiler over cached single-token steps.

For each side (llmcli's engine, transformers' model) it runs a prompt, then profiles
`--steps` decode steps and prints, per step: the number of torch ops, the time in matrix
products (aten::addmm / mm / linear's kernels), in attention, and everything else (norms,
RoPE, activations, cache updates, Python between ops). The per-step budget in
benchmarks/README.md comes from this script.

    .venv/bin/python benchmarks/profile_decode.py -m smollm2 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import DEFAULT_PROMPT, base_results, load_average, machine, use_threads, write_results  # noqa: E402

MATMUL = {"aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear"}
ATTENTION = {"aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2)")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = use_threads(args.threads)
    record = base_results("profile", threads=threads, steps=args.steps)
    results = {}
    for name in args.model or ["smollm2"]:
        results[name] = {side: profile(name, side, args.steps) for side in ("llmcli", "transformers")}
    print(f"decode step profile · {machine()['cpu']} · {threads} threads · load average {load_average()}")
    print(f"{'model':<13} {'side':<13} {'ops/step':>9} {'step ms':>8} {'matmul ms':>10} {'attention ms':>13} {'other ms':>9}")
    for name, sides in results.items():
        for side, r in sides.items():
            print(f"{name:<13} {side:<13} {r['ops']:>9.0f} {r['step_ms']:>8.1f} {r['matmul_ms']:>10.1f} {r['attention_ms']:>13.2f} {r['other_ms']:>9.1f}")
            print("    " + " · ".join(f"{op} {v['calls_per_step']:.0f}× {v['ms_per_step']:.1f} ms" for op, v in r["top_other_ops"].items()))
    write_results("profile", {**record, "results": results, "load_average_after": load_average()})


def profile(name: str, engine: str, steps: int) -> dict:
    import time

    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    import llmcli

    model = llmcli.load(name, engine=engine)
    backend = model.backend
    ids = model.tokenize(DEFAULT_PROMPT).ids
    step = _stepper(backend, ids)
    for _ in range(4):  # warm: the first steps allocate
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    totals: dict[str, float] = defaultdict(float)
    others: dict[str, list] = defaultdict(lambda: [0, 0.0])
    ops = 0
    for event in prof.events():
        if event.cpu_parent is not None:  # count each top-level op once; its children are inside it
            continue
        ops += 1
        kind = "matmul" if event.name in MATMUL else "attention" if event.name in ATTENTION else "other_ops"
        totals[kind] += event.cpu_time_total / 1e3
        if kind == "other_ops":
            others[event.name][0] += 1
            others[event.name][1] += event.cpu_time_total / 1e3
    matmul, attention = totals["matmul"] / steps, totals["attention"] / steps
    top = sorted(others.items(), key=lambda kv: -kv[1][1])[:8]
    return {
        "ops": ops / steps,
        "step_ms": wall * 1e3,
        "matmul_ms": matmul,
        "attention_ms": attention,
        "other_ms": wall * 1e3 - matmul - attention,
        "top_other_ops": {name: {"calls_per_step": n / steps, "ms_per_step": ms / steps} for name, (n, ms) in top},
    }


def _stepper(backend, ids: list[int]):
    """One cached single-token forward pass per call, as decoding does (greedy, fed back)."""
    import torch

    if backend.engine == "llmcli":
        model = backend.engine_model
        cache = model.new_cache(len(ids) + 256)
        with torch.no_grad():
            logits = model(torch.tensor([ids]), cache, logits_to_keep=1).logits
        token = [int(logits[0, -1].argmax())]

        def step():
            with torch.no_grad():
                out = model(torch.tensor([token]), cache, logits_to_keep=1).logits
            token[0] = int(out[0, -1].argmax())

        return step
    from transformers import DynamicCache

    model = backend.loaded.model
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True)
    token = [int(out.logits[0, -1].argmax())]

    def step():
        with torch.no_grad():
            result = model(input_ids=torch.tensor([token]), past_key_values=cache, use_cache=True)
        token[0] = int(result.logits[0, -1].argmax())

    return step


if __name__ == "__main__":
    main()
