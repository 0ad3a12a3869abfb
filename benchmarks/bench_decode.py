"""Decode speed: llmcli's engine against plain `model.generate()` on the same model and ids.

    .venv/bin/python benchmarks/bench_decode.py                       # smollm2, 128 new tokens
    .venv/bin/python benchmarks/bench_decode.py -m smollm2 -m gemma3-270m --runs 7 --threads 1

Both sides get the same prompt ids and greedy settings, so they produce the same tokens
(checked, and recorded as `identical`). A third side, a bare loop of cached forward
passes and argmax, is the floor: the model's own cost with nothing around it. Runs alternate between the two, in one process,
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
import sys
import time

from _common import PROMPTS, base_results, load_average, write_results

DEFAULT_PROMPT = PROMPTS[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    results = base_results(
        "decode",
        torch=torch.__version__,
        transformers=transformers.__version__,
        threads=torch.get_num_threads(),
        prompt=args.prompt,
        new_tokens=args.new_tokens,
        runs=args.runs,
        settings="greedy (temperature 0), no stop strings, KV cache on both sides",
        models=[],
    )
    for name in args.model or ["smollm2"]:
        results["models"].append(bench_model(name, args.prompt, args.new_tokens, args.runs))
    results["load_average_after"] = load_average()
    print_table(results)
    write_results("decode", results)


def bench_model(name: str, prompt: str, new_tokens: int, runs: int) -> dict:
    from llmcli.generation import SamplingSettings, generate
    from llmcli.models import load_model
    from llmcli.prompting import build_raw_prompt

    loaded = load_model(name)
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = build_raw_prompt(tokenizer, prompt).ids
    settings = SamplingSettings(temperature=0, max_new_tokens=new_tokens)

    def engine() -> dict:
        run = generate(model, tokenizer, ids, settings).run()
        s = run.stats
        return {
            "tokens": run.token_ids,
            "ttft": s.time_to_first_token,
            "decode_tps": s.decode_tokens_per_second,
            "total": s.total_seconds,
        }

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
            "decode_tps": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
            "total": total,
        }

    def floor() -> dict:
        """Only the model: prefill, then argmax and one cached forward per token. No sampler, no text."""
        import torch
        from transformers import DynamicCache

        cache, tokens, times = DynamicCache(config=model.config), [], []
        start = time.perf_counter()
        with torch.inference_mode():
            next_ids = torch.tensor([ids])
            for _ in range(new_tokens):
                logits = model(input_ids=next_ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
                token = int(logits[0, -1].argmax())
                times.append(time.perf_counter())
                tokens.append(token)
                if token in eos:
                    break
                next_ids = torch.tensor([[token]])
        return {
            "tokens": tokens,
            "ttft": times[0] - start,
            "decode_tps": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
            "total": times[-1] - start,
        }

    eos = set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list) else [model.generation_config.eos_token_id])
    sides = {"llmcli engine": engine, "model.generate()": plain, "bare forward loop": floor}
    for run in sides.values():  # warm-up: first calls pay for lazy initialisation
        run()
    samples: dict[str, list[dict]] = {side: [] for side in sides}
    for i in range(runs):
        order = list(sides)[i % len(sides) :] + list(sides)[: i % len(sides)]  # rotate who goes first
        for side in order:
            samples[side].append(sides[side]())
            print(f"{loaded.label} run {i + 1}/{runs} {side}: {samples[side][-1]['decode_tps']:.1f} tok/s", file=sys.stderr)

    tokens = {side: s[0]["tokens"] for side, s in samples.items() if side != "bare forward loop"}
    summary = {}
    for side, s in samples.items():
        n = len(s[0]["tokens"])
        summary[side] = {
            "generated_tokens": n,
            "time_to_first_token_s": statistics.median(x["ttft"] for x in s),
            "decode_tokens_per_second": statistics.median(x["decode_tps"] for x in s),
            "decode_tokens_per_second_best": max(x["decode_tps"] for x in s),
            "end_to_end_tokens_per_second": statistics.median(n / x["total"] for x in s),
            "decode_tokens_per_second_all": [round(x["decode_tps"], 2) for x in s],
        }
    return {
        "model": loaded.label,
        "prompt_tokens": len(ids),
        "identical": len({tuple(t) for t in tokens.values()}) == 1,
        "results": summary,
    }


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


def print_table(results: dict) -> None:
    print(f"decode benchmark · {results['machine']['cpu']} · {results['threads']} threads · torch {results['torch']}")
    load = results["load_average_before"]
    print(f"{results['new_tokens']} new tokens, greedy, median of {results['runs']} alternating runs; load average before: {load}\n")
    header = f"{'model':<14}{'side':<18}{'first token':>12}{'decode tok/s':>14}{'best run':>10}{'end-to-end tok/s':>18}"
    print(header)
    print("-" * len(header))
    for m in results["models"]:
        for side, r in m["results"].items():
            print(
                f"{m['model']:<14}{side:<18}{r['time_to_first_token_s']:>10.3f} s"
                f"{r['decode_tokens_per_second']:>14.1f}{r['decode_tokens_per_second_best']:>10.1f}"
                f"{r['end_to_end_tokens_per_second']:>18.1f}"
            )
        engine, plain = (m["results"][k]["decode_tokens_per_second"] for k in ("llmcli engine", "model.generate()"))
        same = "same tokens" if m["identical"] else "DIFFERENT TOKENS"
        print(f"{'':<14}{'engine / generate':<18}{'':>12}{engine / plain:>13.2f}x   ({same}, {m['prompt_tokens']} prompt tokens)")


if __name__ == "__main__":
    main()
