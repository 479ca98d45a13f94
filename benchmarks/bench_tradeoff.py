"""Benchmark: a 6-configuration tradeoff sweep on the default model, CPU, 4 short prompts.

Goal: the whole sweep (baseline measured first and last, warm-up, 3 repetitions, quality
against the reference, perplexity, memory bandwidth from the cache) in <= 90 s.

    python benchmarks/bench_tradeoff.py [--max-new-tokens 16] [--html /tmp/tradeoffs.html]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = "baseline,kv=off,quant=int8,spec=prompt-lookup,bf16,attn=eager"
GOAL_S = 90.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default=CONFIGS)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--html", help="also write the sweep's offline HTML here")
    args = parser.parse_args()

    import torch

    from llmlab.measure.bandwidth import memory_bandwidth
    from llmlab.models.registry import load_model
    from llmlab.tradeoff import run_sweep

    load_before = os.getloadavg()[0]
    lm = load_model("default")
    # Measured once per machine and cached; the first ever run pays ~1 s more.
    bandwidth = memory_bandwidth(lm.device)
    start = time.perf_counter()

    def progress(sweep, event):
        if event == "point":
            p = sweep.points[-1]
            print(f"  {p.name:<24} {p.status:<6} {p.seconds:6.1f} s", flush=True)

    sweep = run_sweep(
        lm,
        args.configs,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        listeners=[progress],
    )
    elapsed = time.perf_counter() - start

    print(sweep.to_text())
    print()
    print(f"torch threads {torch.get_num_threads()}, read bandwidth {bandwidth / 1e9:.1f} GB/s")
    # The machine is shared: say how busy it was, so the figure can be read against it.
    print(f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")
    base = sweep.baseline
    if base and base.latency:
        print(
            f"baseline decode {base.latency.decode_tps.format('tok/s')} "
            "(26 tok/s on an idle 2-core machine, design notes)"
        )
    verdict = "meets" if elapsed <= GOAL_S else "misses"
    print(
        f"sweep of {len(sweep.configs)} configurations (+ baseline again), "
        f"{len(sweep.prompts)} prompts x {sweep.repeats} repeats, "
        f"{args.max_new_tokens} new tokens: {elapsed:.1f} s ({verdict} the {GOAL_S:.0f} s goal)"
    )
    disagree = [p.name for p in sweep.points if p.label_disagrees]
    print("measured labels disagreeing with the registry:", ", ".join(disagree) or "none")
    if args.html:
        sweep.save_html(args.html)
        print("wrote", args.html)


if __name__ == "__main__":
    main()
