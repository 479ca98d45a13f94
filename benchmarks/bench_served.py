"""Served-engine benchmark: the local default model (transformers, fp32) against llama.cpp's
server on the same GGUF, in one tradeoff sweep; then a load sweep of the server.

Run:  .venv/bin/python benchmarks/bench_served.py [--max-new-tokens 32] [--requests 16]
      [--concurrency 1,2,4,8] [--url http://HOST:PORT/v1 --model NAME]

Without --url it starts llama.cpp's server itself (needs `bash scripts/llama_server.sh`).
Prints the sweep's table (TTFT, TPOT, decode tok/s, $/1M tokens, top-1 agreement, greedy
identical, KL on the server's top-5 support) and the load sweep's percentiles per level.
On a shared machine the absolute figures are noisy; the side-by-side ratios are the point.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--load-max-tokens", type=int, default=64)
    parser.add_argument("--price", type=float, default=0.10, help="US$/hour, both targets")
    args = parser.parse_args()

    import pandas as pd

    from llmlab.served import run_load_test
    from llmlab.served.llama import DEFAULT_ALIAS, start_llama_server
    from llmlab.session import Lab
    from llmlab.tradeoff import run_sweep

    pd.set_option("display.width", 200)
    server = None
    url, model = args.url, args.model
    if url is None:
        start = time.perf_counter()
        server = start_llama_server()
        url, model = server.url, DEFAULT_ALIAS
        print(f"llama.cpp server up in {time.perf_counter() - start:.1f} s at {url}")
    try:
        lab = Lab()
        local = lab.load("default", name="local")
        lab.load(f"openai:{url}", model=model, name="served")
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        sweep = run_sweep(
            local,
            "baseline,served:served",
            max_new_tokens=args.max_new_tokens,
            repeats=args.repeats,
            prices={"cpu": args.price, "served": args.price},
            models=lab.models,
        )
        cols = ["ttft_ms", "tpot_ms", "decode_tps", "usd_per_mtok", "top1", "greedy_match", "kl"]
        print(sweep.to_pandas()[cols].round(4).to_string())
        print("served note:", sweep.point("served:served").quality_note)
        for w in sweep.warnings:
            print("warning:", w)
        test = run_load_test(
            lab.model("served"),
            args.concurrency,
            requests=args.requests,
            max_tokens=args.load_max_tokens,
            slo="ttft=500ms,itl=50ms",
        )
        print(test.to_text())
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
