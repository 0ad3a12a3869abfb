"""Decode speed: llmcli against llama.cpp (through llama-cpp-python) on the same GGUF file.

    .venv/bin/python benchmarks/bench_llamacpp.py                      # smollm2; float32, int8, int4
    .venv/bin/python benchmarks/bench_llamacpp.py -m gemma3-270m --threads 1
    .venv/bin/python benchmarks/bench_llamacpp.py --compile           # and each mode with --compile

llama.cpp reads the GGUF file llmcli converted its cache entry from, and both get the same
prompt ids (from llmcli's tokenizer, which gives llama.cpp's ids on these files) and greedy
decoding, with the same number of threads (for llama.cpp both `n_threads` and
`n_threads_batch`: left at its default, a prompt on a busy machine took seconds). Runs
alternate in one process, the order rotated each run, after one warm-up each. Reported:
median decode tokens/s, time to first token, llmcli's ratio to llama.cpp, how many greedy
tokens agree with llama.cpp's (its Q8 activations round differently), and llama.cpp's
load time.

llama-cpp-python is an optional, bench-only dependency; without it this script says how
to install it and exits 0 (skipped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import (
    add_decode_arguments,
    alternate,
    base_results,
    common_prefix,
    decode_speed,
    print_decode_header,
    speed_table,
    load_average,
    tokens_per_second,
    use_threads,
    warm_up,
    write_results,
)

INSTALL = """llama-cpp-python is not installed: skipping the llama.cpp comparison.
Install it into this venv (it compiles llama.cpp, about 5 minutes on 2 cores):
  CMAKE_ARGS="-DGGML_NATIVE=ON" \\
  CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \\
  .venv/bin/pip install -e '.[bench]'
(The AMX flags: a native build crashed in llama.cpp's AMX path on a CPU without AMX.)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="built-in alias or .gguf path (repeatable; default smollm2)")
    parser.add_argument("--modes", default="none,int8,int4", help="llmcli's --quantize values to compare (default none,int8,int4)")
    parser.add_argument("--compile", action="store_true", help="also each mode with --compile (compiles at load: tens of seconds each)")
    add_decode_arguments(parser, threads_help="threads for both (default: torch's choice)")
    args = parser.parse_args()
    try:
        import llama_cpp
    except ImportError:
        print(INSTALL, file=sys.stderr)
        return

    import torch

    results = base_results(
        "llamacpp",
        torch=torch.__version__,
        llama_cpp_python=llama_cpp.__version__,
        threads=use_threads(args.threads),
        prompt=args.prompt,
        new_tokens=args.new_tokens,
        runs=args.runs,
        models=[],
    )
    for name in args.model or ["smollm2"]:
        results["models"].append(bench_model(name, args.modes.split(","), args))
    results["load_average_after"] = load_average()
    print_report(results)
    write_results("llamacpp", results)


def bench_model(name: str, modes: list[str], args) -> dict:
    import torch
    from llama_cpp import Llama

    import llmcli
    from llmcli.models import resolve
    from llmcli.sampling import SamplingSettings

    ref = resolve(name)
    if ref.kind not in ("alias", "gguf"):
        raise SystemExit(f"{name}: llama.cpp needs a GGUF file (a built-in alias or a .gguf path)")
    compiles = (False, True) if args.compile else (False,)
    # llmcli's own engine for these models
    variants = {(mode, compile): llmcli.load(name, quantize=mode, compile=compile) for compile in compiles for mode in modes}
    first = next(iter(variants.values()))
    built = first.prompt(args.prompt, mode="raw")
    ids = list(built.ids)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    llm = Llama(
        model_path=str(ref.path),
        n_ctx=len(ids) + args.new_tokens + 16,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    llama_load = time.perf_counter() - start
    from llmcli.generation import end_of_turn_ids

    eos = {llm.token_eos()} | set(end_of_turn_ids(None, first.tokenizer))
    settings = SamplingSettings(temperature=0, max_new_tokens=args.new_tokens)

    def llama() -> dict:
        llm.reset()
        start, times, tokens = time.perf_counter(), [], []
        for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            times.append(time.perf_counter())
            tokens.append(token)
            if token in eos or len(tokens) >= args.new_tokens:
                break
        return {"tokens": tokens, "ttft": times[0] - start, "decode_tps": tokens_per_second(times)}

    def engine(loaded):
        def run() -> dict:
            reply = loaded.generate(built, settings=settings)
            return {"tokens": reply.token_ids, "ttft": reply.stats.time_to_first_token, "decode_tps": reply.stats.decode_tokens_per_second}

        return run

    sides = {"llama.cpp": llama, **{_label(*variant): engine(loaded) for variant, loaded in variants.items()}}
    warm_up(sides, first.label)
    samples = alternate(sides, args.runs, first.label)

    llama_tps = statistics.median(x["decode_tps"] for x in samples["llama.cpp"])
    reference = samples["llama.cpp"][0]["tokens"]
    summary = {}
    for side, s in samples.items():
        speed = decode_speed(s)
        summary[side] = {
            **speed,
            "time_to_first_token_s": statistics.median(x["ttft"] for x in s),
            "ratio_to_llama_cpp": speed["decode_tokens_per_second"] / llama_tps,
            "same_greedy_tokens_as_llama_cpp": common_prefix(s[0]["tokens"], reference),
            "generated_tokens": len(s[0]["tokens"]),
        }
    return {
        "model": first.label,
        "gguf": str(ref.path),
        "prompt_tokens": len(ids),
        "llama_cpp_load_seconds": llama_load,
        "results": summary,
    }


def _label(mode: str, compile: bool) -> str:
    return " ".join(["llmcli"] + ([f"--quantize {mode}"] if mode != "none" else []) + (["--compile"] if compile else []))


def print_report(results: dict) -> None:
    print_decode_header(results, "llama.cpp benchmark", f"llama-cpp-python {results['llama_cpp_python']}")
    for m in results["models"]:
        print(
            speed_table(
                m["model"],
                m["results"],
                [
                    ("time_to_first_token_s", "first token s", ".3f"),
                    ("ratio_to_llama_cpp", "÷ llama.cpp", ".2f"),
                    ("same_greedy_tokens_as_llama_cpp", "same tokens", "d"),
                ],
            )
        )
        print(f"llama.cpp loads {m['gguf'].rsplit('/', 1)[-1]} in {m['llama_cpp_load_seconds']:.2f} s; {m['prompt_tokens']} prompt tokens\n")
    print(f"load average after: {results['load_average_after']}")


if __name__ == "__main__":
    main()
