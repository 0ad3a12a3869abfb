"""Decode speed: llmcli's own engine, llmcli on transformers, and plain `model.generate()`.

    .venv/bin/python benchmarks/bench_decode.py                       # smollm2, 128 new tokens
    .venv/bin/python benchmarks/bench_decode.py -m smollm2 -m gemma3-270m --runs 7 --threads 1

Every side gets the same prompt ids and greedy settings, so they produce the same tokens
(checked, and recorded as `identical`): llmcli's decode loop on its own forward pass
(`--engine llmcli`, the default for these models), the same loop on transformers' model
(`--engine transformers`), and `model.generate()`. A fourth side, a bare loop of
transformers' cached forward passes and argmax, is transformers' floor: the model's own
cost with nothing around it. With `--compile`, a fifth: the engine with its decode step
compiled (`--compile`). Runs alternate between the sides, in one process,
with the order rotated every run, after one warm-up each: drift in the machine's load hits
both alike. Reported: the median over runs of time to first token, decode tokens/s
(tokens after the first / time after the first), the best run's decode tokens/s (on a
shared machine the least disturbed run is the most telling), and end-to-end tokens/s. For
`generate()` the per-token times come from a streamer, which it calls once per token.

The table goes to stdout; the numbers, the machine and the settings to
benchmarks/results/decode-<time>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import (
    TimingStreamer,
    add_decode_arguments,
    alternate,
    base_results,
    decode_speed,
    eos_ids,
    load_average,
    tokens_per_second,
    use_threads,
    warm_up,
    write_results,
)


COMPILED = "own engine --compile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2)")
    add_decode_arguments(parser)
    parser.add_argument("--compile", action="store_true", help="add a side: the engine with --compile (compiles at load: tens of seconds)")
    args = parser.parse_args()

    import torch
    import transformers

    results = base_results(
        "decode",
        torch=torch.__version__,
        transformers=transformers.__version__,
        threads=use_threads(args.threads),
        prompt=args.prompt,
        new_tokens=args.new_tokens,
        runs=args.runs,
        settings="greedy (temperature 0), no stop strings, KV cache on both sides",
        models=[],
    )
    for name in args.model or ["smollm2"]:
        results["models"].append(bench_model(name, args.prompt, args.new_tokens, args.runs, args.compile))
    results["load_average_after"] = load_average()
    print_table(results)
    write_results("decode", results)


def bench_model(name: str, prompt: str, new_tokens: int, runs: int, compile: bool = False) -> dict:
    import llmcli
    from llmcli.sampling import SamplingSettings

    own = llmcli.load(name, engine="llmcli")
    hf = llmcli.load(name, engine="transformers")
    model = hf.backend.model
    built = own.prompt(prompt, mode="raw")
    ids = list(built.ids)
    settings = SamplingSettings(temperature=0, max_new_tokens=new_tokens)

    def llmcli_side(loaded):
        def run() -> dict:
            reply = loaded.generate(built, settings=settings)
            s = reply.stats
            return {"tokens": reply.token_ids, "ttft": s.time_to_first_token, "decode_tps": s.decode_tokens_per_second, "total": s.total_seconds}

        return run

    def plain() -> dict:
        import torch

        streamer = TimingStreamer()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=new_tokens, streamer=streamer)
        total = time.perf_counter() - start
        times = streamer.times
        return {
            "tokens": out[0, len(ids) :].tolist(),
            "ttft": times[0] - start,
            "decode_tps": tokens_per_second(times),
            "total": total,
        }

    def floor() -> dict:
        """Only the model: prefill, then argmax and one cached forward per token. No sampler, no text."""
        import torch

        from llmcli import forward

        cache, tokens, times = forward.new_cache(model), [], []
        start = time.perf_counter()
        with torch.inference_mode():
            next_ids = torch.tensor([ids])
            for _ in range(new_tokens):
                logits = forward.call(model, next_ids, cache=cache, keep=1).logits
                token = int(logits[0, -1].argmax())
                times.append(time.perf_counter())
                tokens.append(token)
                if token in eos:
                    break
                next_ids = torch.tensor([[token]])
        return {
            "tokens": tokens,
            "ttft": times[0] - start,
            "decode_tps": tokens_per_second(times),
            "total": times[-1] - start,
        }

    eos = eos_ids(model)  # transformers' model: the bare loop's end tokens
    sides = {"llmcli, own engine": llmcli_side(own), "llmcli, transformers": llmcli_side(hf), "model.generate()": plain, "bare forward loop": floor}
    if compile:
        sides[COMPILED] = llmcli_side(llmcli.load(name, engine="llmcli", compile=True))
    warm_up(sides, own.label)
    samples = alternate(sides, runs, own.label)

    tokens = {side: s[0]["tokens"] for side, s in samples.items() if side != "bare forward loop"}
    summary = {}
    for side, s in samples.items():
        n = len(s[0]["tokens"])
        summary[side] = {
            "generated_tokens": n,
            "time_to_first_token_s": statistics.median(x["ttft"] for x in s),
            **decode_speed(s),
            "end_to_end_tokens_per_second": statistics.median(n / x["total"] for x in s),
        }
    return {
        "model": own.label,
        "prompt_tokens": len(ids),
        "identical": len({tuple(t) for t in tokens.values()}) == 1,
        "results": summary,
    }


def print_table(results: dict) -> None:
    print(f"decode benchmark · {results['machine']['cpu']} · {results['threads']} threads · torch {results['torch']}")
    load = results["load_average_before"]
    print(f"{results['new_tokens']} new tokens, greedy, median of {results['runs']} alternating runs; load average before: {load}\n")
    header = f"{'model':<14}{'side':<22}{'first token':>12}{'decode tok/s':>14}{'best run':>10}{'end-to-end tok/s':>18}"
    print(header)
    print("-" * len(header))
    for m in results["models"]:
        for side, r in m["results"].items():
            print(
                f"{m['model']:<14}{side:<22}{r['time_to_first_token_s']:>10.3f} s"
                f"{r['decode_tokens_per_second']:>14.1f}{r['decode_tokens_per_second_best']:>10.1f}"
                f"{r['end_to_end_tokens_per_second']:>18.1f}"
            )
        own, plain = (m["results"][k]["decode_tokens_per_second"] for k in ("llmcli, own engine", "model.generate()"))
        same = "same tokens" if m["identical"] else "DIFFERENT TOKENS"
        print(f"{'':<14}{'own engine / generate':<22}{'':>12}{own / plain:>13.2f}x   ({same}, {m['prompt_tokens']} prompt tokens)")
        if COMPILED in m["results"]:
            compiled = m["results"][COMPILED]["decode_tokens_per_second"]
            print(f"{'':<14}{'--compile / generate':<22}{'':>12}{compiled / plain:>13.2f}x")


if __name__ == "__main__":
    main()
