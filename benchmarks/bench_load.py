"""Load time: from the GGUF file (converting it into llmcli's cache) against from the cache,
on transformers and on llmcli's own engine.

    .venv/bin/python benchmarks/bench_load.py                     # smollm2 and gemma3-270m
    .venv/bin/python benchmarks/bench_load.py -m smollm2 --runs 5 --cold-runs 0

Each measurement is a fresh Python process, as a user's command is, and times in it:
importing torch and transformers (what any model-loading command pays first), then
`load_model()` until the model and tokenizer are ready ("model ready"). Of model ready,
the modules transformers imports only when a model class is first used (its model's
code, and with it torch._dynamo and torch.distributed) are timed apart, first, with the
cache's config; the rest is llmcli reading the weights and the tokenizer. GGUF: an empty
`LLMCLI_CACHE_DIR`, so `load_model()` converts the file (for Gemma, joins its chunks
first). Cache: the converted entry exists. Warm runs alternate between the models;
reported are medians and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _common import base_results, header, load_average, table, write_results

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM
imported = time.perf_counter()
from llmcli.models import cache_entry, load_model, resolve
lazy_s = 0.0
ref = resolve(sys.argv[1])
if ref.path is not None and (cache_entry(ref.path) / "config.json").exists():
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
    MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(cache_entry(ref.path)))]
    lazy_s = time.perf_counter() - imported
loaded = load_model(sys.argv[1])
ready = time.perf_counter()
print(json.dumps({
    "import_s": imported - start,
    "lazy_import_s": lazy_s,
    "model_ready_s": ready - imported,
    "converted": loaded.converted,
    "load_seconds": loaded.load_seconds,
}))
"""


# llmcli's own engine: only torch is imported; the weights are mapped from the engine's own
# layout in the cache (written by the first load) and the tokenizer read by `tokenizers`.
ENGINE_CHILD = r"""
import json, sys, time
start = time.perf_counter()
import torch
imported = time.perf_counter()
import llmcli
model = llmcli.load(sys.argv[1], engine="llmcli")
ready = time.perf_counter()
assert "transformers" not in sys.modules
print(json.dumps({"import_s": imported - start, "lazy_import_s": 0.0, "model_ready_s": ready - imported,
                  "converted": model.backend.converted, "load_seconds": model.load_seconds}))
"""


def measure(model: str, env: dict, child: str = CHILD) -> dict:
    proc = subprocess.run([sys.executable, "-c", child, model], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"loading {model} failed:\n{proc.stderr}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_average": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2 and gemma3-270m)")
    parser.add_argument("--runs", type=int, default=5, help="loads from the cache, per model")
    parser.add_argument("--cold-runs", type=int, default=1, help="loads from the GGUF file, per model (each converts)")
    args = parser.parse_args()
    models = args.model or ["smollm2", "gemma3-270m"]
    env = {**os.environ}
    env.pop("LLMCLI_MODEL", None)
    results = base_results("load", runs=args.runs, cold_runs=args.cold_runs, models={})

    for model in models:  # the cache entry exists and the files are in the OS cache
        measure(model, env)
        measure(model, env, ENGINE_CHILD)
    warm: dict[str, list[dict]] = {m: [] for m in models}
    engine: dict[str, list[dict]] = {m: [] for m in models}
    for i in range(args.runs):
        for model in models[i % len(models) :] + models[: i % len(models)]:
            warm[model].append(measure(model, env))
            engine[model].append(measure(model, env, ENGINE_CHILD))
            print(f"cache {i + 1}/{args.runs} {model}: transformers {warm[model][-1]['model_ready_s']:.2f} s, "
                  f"engine {engine[model][-1]['model_ready_s']:.2f} s", file=sys.stderr)
    cold: dict[str, list[dict]] = {m: [] for m in models}
    for i in range(args.cold_runs):
        for model in models:
            with tempfile.TemporaryDirectory(prefix="llmcli-cold-") as cache:
                cold[model].append(measure(model, {**env, "LLMCLI_CACHE_DIR": cache}))
            print(f"gguf {i + 1}/{args.cold_runs} {model}: {cold[model][-1]['model_ready_s']:.2f} s", file=sys.stderr)

    for model in models:
        entry = {}
        for label, samples in (("cache", warm[model]), ("engine", engine[model]), ("gguf", cold[model])):
            if samples:
                entry[label] = {
                    "import_s_median": statistics.median(s["import_s"] for s in samples),
                    "model_ready_s_median": statistics.median(s["model_ready_s"] for s in samples),
                    "lazy_import_s_median": statistics.median(s["lazy_import_s"] for s in samples),
                    "model_ready_s_all": [round(s["model_ready_s"], 3) for s in samples],
                    "converted": [s["converted"] for s in samples],
                    "load_averages": [s["load_average"] for s in samples],
                }
        results["models"][model] = entry
    results["load_average_after"] = load_average()
    print_report(results)
    write_results("load", results)


def print_report(results: dict) -> None:
    print(header("load benchmark"))
    print(f"fresh process each; median of {results['runs']} alternating loads from the cache, {results['cold_runs']} from GGUF\n")
    rows = []
    for model, entry in results["models"].items():
        cache, gguf, own = entry.get("cache", {}), entry.get("gguf", {}), entry.get("engine", {})
        rows.append(
            {
                "model": model,
                "import": cache.get("import_s_median"),
                "cache": cache.get("model_ready_s_median"),
                "lazy": cache.get("lazy_import_s_median"),
                "engine_import": own.get("import_s_median"),
                "engine": own.get("model_ready_s_median"),
                "gguf": gguf.get("model_ready_s_median"),
            }
        )
    print(
        table(
            rows,
            [
                ("model", "model", "s"),
                ("import", "import torch+transformers s", ".2f"),
                ("cache", "ready from cache s", ".2f"),
                ("lazy", "of which lazy imports s", ".2f"),
                ("engine_import", "engine: import torch s", ".2f"),
                ("engine", "engine: ready s", ".2f"),
                ("gguf", "ready from GGUF s", ".2f"),
            ],
        )
    )
    print(f"\nload average after: {results['load_average_after']}")


if __name__ == "__main__":
    main()
