"""Acceleration benchmark: decode tok/s of every runnable configuration vs fp32 + dynamic cache.

Run:  .venv/bin/python benchmarks/bench_accel.py [--new-tokens 64] [--pairs 2] [--compile]

Default model, CPU, greedy, one process. The machine is shared and noisy, so every
configuration is measured in *pairs* with the baseline (baseline run, config run, alternating)
and the ratio is the median of the per-pair ratios: a load spike hits both sides of a pair.
Each configuration gets one untimed warm-up first (builds quantized copies, compiles).

Columns: decode tok/s (tokens after the first / time after the first), ratio to the paired
baseline, TTFT, whether the greedy tokens equal the baseline's, and the speculation figures.
Goal of issue 5: the fastest output-preserving configuration >= 2.5x the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from llmlab.accel import PrefixCache, generate_accelerated, parse_config
from llmlab.accel.registry import ACCELERATIONS, ALLOW_CPU_COMPILE_ENV
from llmlab.generation.engine import generate
from llmlab.generation.settings import GenerationSettings
from llmlab.models.registry import load_model

warnings.filterwarnings("ignore")

# A summarise-style prompt: the answer reuses the passage's phrases, which prompt lookup drafts.
PASSAGE = (
    "The Great Barrier Reef is the world's largest coral reef system. It is composed of over "
    "2,900 individual reefs and 900 islands stretching for over 2,300 kilometres over an area "
    "of approximately 344,400 square kilometres. The reef is located in the Coral Sea, off the "
    "coast of Queensland, Australia. The Great Barrier Reef can be seen from outer space and is "
    "the world's biggest single structure made by living organisms. This reef structure is "
    "composed of and built by billions of tiny organisms, known as coral polyps. It supports a "
    "wide diversity of life and was selected as a World Heritage Site in 1981."
)
PROMPTS = {
    "summary": f"{PASSAGE}\n\nSummarise the text above in three sentences.",
    "open": "Write a short story about a robot who learns to paint.",
}

CONFIGS = [
    "kv=off",
    "kv=static",
    "kv=fp8",
    "prefix=on",
    "attn=eager",
    "dtype=bf16",
    "quant=int8",
    "quant=int4",
    "spec=prompt-lookup",
    "spec=self-int8",
    "spec=prompt-lookup,quant=int8",
    "spec=prompt-lookup,quant=int4",
]


def runnable(lm, text: str) -> tuple[bool, str]:
    cfg = parse_config(text, device=lm.device)
    for name, value in cfg.parts:
        ok, why = ACCELERATIONS[name].value_available(lm, value)
        if not ok:
            return False, why
    return True, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=2, help="baseline/config pairs per config")
    parser.add_argument("--prompt", choices=[*PROMPTS, "both"], default="both")
    parser.add_argument("--compile", action="store_true", help="also time compile=on (slow)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); on a shared, loaded machine 1 thread is far "
        "steadier: 2 threads fighting other processes ran 10x slower here",
    )
    parser.add_argument("--only", help="configs separated by ';' (default: all)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model("default")
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    configs = args.only.split(";") if args.only else list(CONFIGS)
    if args.compile:
        os.environ[ALLOW_CPU_COMPILE_ENV] = "1"  # greyed on CPU by default: measure it anyway
        configs.append("compile=on")
    prompts = list(PROMPTS) if args.prompt == "both" else [args.prompt]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {lm.name} on {lm.device}")

    for prompt_name in prompts:
        prompt = PROMPTS[prompt_name]
        generate(lm, prompt, GenerationSettings(max_new_tokens=8))  # warm-up
        ref = generate(lm, prompt, settings)
        print(
            f"\n== prompt: {prompt_name} ({ref.stats.prompt_tokens} tokens), "
            f"{args.new_tokens} new tokens, greedy =="
        )
        header = (
            f"{'config':34} {'keeps':>5} {'tok/s':>7} {'base':>6} {'ratio':>6} "
            f"{'TTFT ms':>8} {'same':>5}  speculation / notes"
        )
        print(header)
        print("-" * len(header))
        print(
            f"{'baseline (fp32, dynamic cache)':34} {'yes':>5} "
            f"{ref.stats.decode_tokens_per_s:7.1f} {'':>6} {1.0:6.2f} "
            f"{ref.stats.ttft_s * 1000:8.0f} {'':>5}"
        )
        results = []
        for text in configs:
            ok, why = runnable(lm, text)
            cfg = parse_config(text, device=lm.device)
            if not ok:
                print(f"{cfg.label:34} {'':>5} greyed: {why}")
                continue
            prefix = PrefixCache()
            start = time.perf_counter()
            generate_accelerated(lm, prompt, GenerationSettings(max_new_tokens=8), cfg,
                                 prefix_cache=prefix)  # fmt: skip
            warm_s = time.perf_counter() - start
            ratios, speeds, bases = [], [], []
            for _ in range(args.pairs):
                base = generate(lm, prompt, settings)
                res = generate_accelerated(lm, prompt, settings, cfg, prefix_cache=prefix)
                b, s = base.stats.decode_tokens_per_s, res.stats.decode_tokens_per_s
                ratios.append(s / b)
                speeds.append(s)
                bases.append(b)
            ratio = statistics.median(ratios)
            extra = res.stats.extra
            notes = []
            if "acceptance_rate" in extra:
                notes.append(
                    f"accept {extra['acceptance_rate']:.2f}, "
                    f"{extra['tokens_per_target_pass']:.2f} tok/pass"
                )
            if "prefix_reused_tokens" in extra:
                notes.append(f"prefix reused {extra['prefix_reused_tokens']}")
            if "weight_mb" in extra:
                notes.append(
                    f"weights {extra['weight_mb_before']:.0f} -> {extra['weight_mb']:.0f} MB"
                )
            if warm_s > 5:
                notes.append(f"warm-up {warm_s:.0f} s")
            same = res.token_ids == ref.token_ids
            keeps = "yes" if cfg.output_preserving else "no"
            print(
                f"{cfg.label:34} {keeps:>5} {statistics.median(speeds):7.1f} "
                f"{statistics.median(bases):6.1f} {ratio:6.2f} {res.stats.ttft_s * 1000:8.0f} "
                f"{'yes' if same else 'NO':>5}  {'; '.join(notes)}",
                flush=True,
            )
            results.append((ratio, cfg, same))
        keep = [r for r in results if r[1].output_preserving and r[2]]
        if keep:
            best = max(keep, key=lambda r: r[0])
            print(
                f"fastest output-preserving (identical tokens): {best[1].label} "
                f"{best[0]:.2f}x baseline (goal 2.5x)"
            )
        if results:
            best = max(results, key=lambda r: r[0])
            print(f"fastest overall: {best[1].label} {best[0]:.2f}x baseline")


if __name__ == "__main__":
    main()
