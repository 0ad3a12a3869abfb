"""`--quantize` and `--compile`: decode speed against plain `model.generate()`, and what
quantization does to the next-token probabilities.

    .venv/bin/python benchmarks/bench_quantize.py                     # smollm2: none, int8, int4
    .venv/bin/python benchmarks/bench_quantize.py -m gemma3-270m --threads 1 --compile

Speed: the same prompt ids and greedy settings through plain float32 `model.generate()`
and through llmcli's engine on the float32 model and on each quantized copy, all loaded
in this one process; runs alternate, the order rotated each run, after one warm-up each.
With `--compile` a compiled copy of each joins (its compile time, paid on the warm-up, is
reported apart). Reported: the median decode tokens/s, the best run's, and the ratio to
`generate()`.

Quality, against float32 on the held-out prompts in `_common.PROMPTS`: the top-1 next token
after each prompt (the figure `probs` shows), top-1 agreement over every position of every
prompt (stricter: small models have many near-ties), max |Δp| over the whole vocabulary
at every position, and how many greedy tokens of the speed prompt stay identical.
"""

from __future__ import annotations

import argparse
import statistics

from _common import (
    PROMPTS,
    TimingStreamer,
    add_decode_arguments,
    alternate,
    base_results,
    common_prefix,
    decode_speed,
    print_decode_header,
    speed_table,
    load_average,
    table,
    tokens_per_second,
    use_threads,
    warm_up,
    write_results,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", help="alias or path (repeatable; default smollm2)")
    parser.add_argument("--modes", default="int8,int4", help="quantizations to compare (default int8,int4)")
    parser.add_argument("--compile", action="store_true", help="also a compiled copy of each (about a minute of compiling each)")
    add_decode_arguments(parser)
    args = parser.parse_args()

    import torch

    threads = use_threads(args.threads)
    modes = [m for m in args.modes.split(",") if m and m != "none"]
    results = base_results(
        "quantize",
        torch=torch.__version__,
        threads=threads,
        prompt=args.prompt,
        new_tokens=args.new_tokens,
        runs=args.runs,
        models=[],
    )
    for name in args.model or ["smollm2"]:
        results["models"].append(bench_model(name, modes, args))
    results["load_average_after"] = load_average()
    print_report(results)
    write_results("quantize", results)


def bench_model(name: str, modes: list[str], args) -> dict:
    import torch

    import llmcli
    from llmcli.sampling import SamplingSettings

    # llmcli's own engine for every llmcli side (the default for these models); --compile
    # compiles transformers' forward pass, so those sides run on transformers.
    variants = {"float32": llmcli.load(name)}
    for mode in modes:
        variants[mode] = llmcli.load(name, quantize=mode)
    if args.compile:
        for mode in ["none", *modes]:
            variants[f"{'float32' if mode == 'none' else mode} + compile"] = llmcli.load(name, quantize=mode, compile=True)
    base = variants["float32"]
    reference_model = llmcli.load(name, engine="transformers").backend.model
    label = base.label
    built = base.prompt(args.prompt, mode="raw")
    ids = list(built.ids)
    settings = SamplingSettings(temperature=0, max_new_tokens=args.new_tokens)

    def engine(loaded):
        def run() -> dict:
            reply = loaded.generate(built, settings=settings)
            return {"tokens": reply.token_ids, "decode_tps": reply.stats.decode_tokens_per_second}

        return run

    def plain() -> dict:
        streamer = TimingStreamer()
        with torch.inference_mode():
            out = reference_model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=args.new_tokens, streamer=streamer)
        return {"tokens": out[0, len(ids) :].tolist(), "decode_tps": tokens_per_second(streamer.times)}

    sides = {"model.generate()": plain, **{f"llmcli {v}": engine(loaded) for v, loaded in variants.items()}}
    loads = {f"llmcli {v}": loaded.load_seconds for v, loaded in variants.items()}  # --compile compiles while loading
    warmup = warm_up(sides, label)  # a compiled copy compiles here
    samples = alternate(sides, args.runs, label)

    reference = samples["model.generate()"][0]["tokens"]
    plain_tps = statistics.median(x["decode_tps"] for x in samples["model.generate()"])
    speed = {}
    for side, s in samples.items():
        d = decode_speed(s)
        speed[side] = {
            **d,
            "ratio_to_generate": d["decode_tokens_per_second"] / plain_tps,
            "same_greedy_tokens_as_float32": common_prefix(s[0]["tokens"], reference),
            "generated_tokens": len(s[0]["tokens"]),
            "warmup_seconds": warmup[side],
            "load_seconds": loads.get(side),
        }
    # A compiled copy computes what its eager twin does (prompts even run eager): not repeated.
    quality = {v: compare_probs(base, loaded) for v, loaded in variants.items() if v != "float32" and "compile" not in v}
    return {"model": label, "prompt_tokens": len(ids), "speed": speed, "quality": quality}


def compare_probs(base, other) -> dict:
    """Next-token probabilities of `other` against `base` on the held-out prompts."""
    import torch

    last_same, all_same, positions, max_dp, max_dp_last = 0, 0, 0, 0.0, 0.0
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = base.tokenizer(prompt)["input_ids"]
            p = base.logits(ids, keep=len(ids)).float().softmax(-1)
            q = other.logits(ids, keep=len(ids)).float().softmax(-1)
            last_same += int(p[-1].argmax() == q[-1].argmax())
            all_same += int((p.argmax(-1) == q.argmax(-1)).sum())
            positions += p.shape[0]
            max_dp = max(max_dp, float((p - q).abs().max()))
            max_dp_last = max(max_dp_last, float((p[-1] - q[-1]).abs().max()))
    return {
        "prompts": len(PROMPTS),
        "top1_same_after_prompt": last_same,
        "top1_agreement_all_positions": all_same / positions,
        "positions": positions,
        "max_abs_dp_after_prompt": max_dp_last,
        "max_abs_dp_all_positions": max_dp,
    }


def print_report(results: dict) -> None:
    print_decode_header(results, "quantize benchmark", f"torch {results['torch']}")
    for m in results["models"]:
        print(
            speed_table(
                m["model"],
                m["speed"],
                [
                    ("ratio_to_generate", "÷ generate()", ".2f"),
                    ("same_greedy_tokens_as_float32", "same tokens", "d"),
                    ("load_seconds", "load s", ".1f"),
                    ("warmup_seconds", "warm-up s", ".1f"),
                ],
            )
        )
        print()
        rows = [{"variant": v, **q} for v, q in m["quality"].items()]
        n = len(PROMPTS)
        print(
            table(
                rows,
                [
                    ("variant", "vs float32", "s"),
                    ("top1_same_after_prompt", f"top-1 same (of {n})", "d"),
                    ("max_abs_dp_after_prompt", "max |Δp| there", ".4f"),
                    ("top1_agreement_all_positions", "top-1 all positions", ".1%"),
                    ("max_abs_dp_all_positions", "max |Δp| all", ".4f"),
                ],
            )
        )
        print()
    print(f"load average after: {results['load_average_after']}")


if __name__ == "__main__":
    main()
