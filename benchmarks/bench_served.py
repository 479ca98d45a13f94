"""Served-engine benchmarks.

Default: the local default model (transformers, fp32) against a served engine on the same weights
in one tradeoff sweep, then a load sweep of the server.

  .venv/bin/python benchmarks/bench_served.py [--engine llama.cpp|vllm] [--max-new-tokens 32]
      [--requests 16] [--concurrency 1,2,4,8] [--url http://HOST:PORT/v1 --model NAME]

--vs-vllm-bench: vLLM's own client (`vllm bench serve`) and llmlab's load test alternating on one
vLLM server, on the same prompts (synthetic, exactly --input-len tokens in the server's tokenizer,
written to a JSONL file vLLM's "custom" dataset reads), the same lengths (--output-len with
ignore_eos, greedy), /v1/completions for both, at concurrency 1 and 4 and one Poisson rate
(seed 0 for both: llmlab draws its arrival times as vLLM does, so both send on one schedule).
Prints every figure side by side with llmlab / vLLM, each client's CPU seconds, and how far
apart the two clients' send times were (vLLM's saved start_times against llmlab's records).

  .venv/bin/python benchmarks/bench_served.py --vs-vllm-bench [--num-prompts 16]
      [--input-len 128] [--output-len 32] [--rate 2] [--rounds 2] [--only-poisson]

--saturate: a saturation search on the server (the highest Poisson rate meeting --slo).

--engine-configs: engine configurations as tradeoff points beside the local fp32 baseline: each
starts its own vLLM server, is measured on the same prompts and stopped (prefix caching on/off,
n-gram speculation, fp8 KV cache; what the CPU build rejects is greyed with its reason).

  .venv/bin/python benchmarks/bench_served.py --engine-configs [--max-new-tokens 32]

Without --url the script starts the engine itself (llama.cpp: `bash scripts/llama_server.sh`;
vLLM: `bash scripts/vllm_server.sh`). On a shared machine the absolute figures are noise: the
load average is printed before and after; run it on an idle machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

#: (llmlab metric, vLLM bench's name) compared in --vs-vllm-bench.
METRICS = [("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2e", "e2el")]
PERCENTILES = (50, 90, 99)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="llama.cpp", choices=("llama.cpp", "vllm"))
    parser.add_argument("--url")
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--load-max-tokens", type=int, default=64)
    parser.add_argument("--price", type=float, default=0.10, help="US$/hour, both targets")
    parser.add_argument("--vs-vllm-bench", action="store_true")
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--rate", type=float, default=2.0, help="the Poisson level, req/s")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per scenario")
    parser.add_argument(
        "--only-poisson", action="store_true", help="--vs-vllm-bench: the Poisson level only"
    )
    parser.add_argument("--saturate", action="store_true")
    parser.add_argument("--slo", default="ttft=1s,itl=200ms")
    parser.add_argument("--engine-configs", action="store_true")
    parser.add_argument(
        "--configs",
        default="baseline,engine:vllm,engine:vllm+prefix-caching=on,"
        "engine:vllm+prefix-caching=off,engine:vllm+spec=ngram,engine:vllm+kv=fp8",
        help="with --engine-configs: the sweep's configurations",
    )
    args = parser.parse_args()

    from llmlab.served.launch import start_server

    if args.engine_configs:  # every point starts and stops its own server
        print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        engine_configs(args)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        return
    engine = "vllm" if args.vs_vllm_bench else args.engine
    server = None
    url, model = args.url, args.model
    if url is None:
        start = time.perf_counter()
        server = start_server(engine)
        url, model = server.url, server.model_id
        print(f"{engine} server up in {time.perf_counter() - start:.1f} s at {url}")
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    try:
        if args.vs_vllm_bench:
            vs_vllm_bench(url, model, args)
        elif args.saturate:
            saturate(url, model, args)
        else:
            local_vs_served(url, model, args)
    finally:
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        if server is not None:
            server.stop()


def local_vs_served(url: str, model: str | None, args) -> None:
    import pandas as pd

    from llmlab.served import run_load_test
    from llmlab.session import Lab
    from llmlab.tradeoff import run_sweep

    pd.set_option("display.width", 200)
    lab = Lab()
    local = lab.load("default", name="local")
    lab.load(f"openai:{url}", model=model, name="served")
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


def engine_configs(args) -> None:
    import pandas as pd

    from llmlab.session import Lab
    from llmlab.tradeoff import run_sweep

    pd.set_option("display.width", 220)
    lab = Lab()
    local = lab.load("default", name="local")

    def progress(sweep, event):
        if event == "point":
            p = sweep.points[-1]
            print(f"  {p.config}: {p.status}{' — ' + p.error if p.error else ''}", flush=True)

    sweep = run_sweep(
        local,
        args.configs,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        prices={"cpu": args.price, "served": args.price},
        models=lab.models,
        listeners=[progress],
    )
    cols = ["ttft_ms", "tpot_ms", "decode_tps", "usd_per_mtok", "top1", "greedy_match", "kl"]
    frame = sweep.to_pandas()
    print(frame[[c for c in cols if c in frame]].round(4).to_string())
    for p in sweep.points:
        if p.error:
            print(f"greyed: {p.config}: {p.error}")
        elif p.quality_note:
            print(f"note: {p.config}: {p.quality_note}")
    for w in sweep.warnings:
        print("warning:", w)


def saturate(url: str, model: str | None, args) -> None:
    from llmlab.served.loadtest import run_saturation_search
    from llmlab.session import Lab

    sm = Lab().load(f"openai:{url}", model=model, name="served")
    test = run_saturation_search(
        sm,
        args.slo,
        requests=args.num_prompts,
        input_len=args.input_len,
        output_len=args.output_len,
        ignore_eos=True,
        # llama.cpp's server has no /tokenize: the embedded model's tokenizer is the one it serves
        tokenizer="default" if args.engine == "llama.cpp" and not args.url else None,
    )
    print(test.to_text())


# -- llmlab against vLLM's own client ----------------------------------------------------------
def vs_vllm_bench(url: str, model: str | None, args) -> None:
    from llmlab.served.launch import vllm_python
    from llmlab.served.workload import ServerTokenizer, synthetic_prompt
    from llmlab.session import Lab

    python = vllm_python()
    if python is None:
        raise SystemExit("vLLM is not installed: bash scripts/vllm_server.sh")
    sm = Lab().load(f"openai:{url}", model=model, name="served")
    tok = ServerTokenizer(sm)
    import random

    rng = random.Random(0)
    prompts = [
        synthetic_prompt(tok, args.input_len - tok.special_tokens, rng)
        for _ in range(args.num_prompts)
    ]
    work = Path(tempfile.mkdtemp(prefix="llmlab-vs-vllm-"))
    dataset = work / "prompts.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    tokenizer = sm.endpoint.client().get(f"{url}/models").json()["data"][0].get("root") or model
    # What vLLM's client spends before its first request (importing vLLM, loading the tokenizer),
    # said apart: it is in every run's CPU seconds below and varies by seconds from run to run,
    # so subtracting one measurement of it from another run's total says nothing.
    one = argparse.Namespace(**{**vars(args), "num_prompts": 1, "output_len": 1})
    startup = run_vllm_bench(python, url, model, tokenizer, dataset, one, 1, None, work)
    print(
        f"vllm bench serve's start-up alone (1 prompt, 1 token): {startup['client CPU s']:.2f} "
        "CPU s, included in its client CPU s below"
    )
    scenarios = [("concurrency 1", 1, None), ("concurrency 4", 4, None)]
    scenarios.append((f"Poisson {args.rate:g} req/s", None, args.rate))
    if args.only_poisson:
        scenarios = scenarios[-1:]
    for title, concurrency, rate in scenarios:
        rows: dict[str, list[dict]] = {"llmlab": [], "vllm": []}
        for round_ in range(args.rounds):  # alternate, so drift on a busy machine hits both
            order = ("vllm", "llmlab") if round_ % 2 == 0 else ("llmlab", "vllm")
            for client in order:
                if client == "vllm":
                    rows[client].append(
                        run_vllm_bench(
                            python, url, model, tokenizer, dataset, args, concurrency, rate, work
                        )
                    )
                else:
                    rows[client].append(run_llmlab(sm, prompts, args, concurrency, rate))
        print_comparison(title, rows, args, rate)


def run_vllm_bench(python, url, model, tokenizer, dataset, args, concurrency, rate, work) -> dict:
    name = f"vllm-{time.time_ns()}.json"
    cmd = [
        python, "-m", "vllm.entrypoints.cli.main", "bench", "serve",
        "--backend", "openai", "--endpoint", "/v1/completions",
        "--base-url", url.removesuffix("/v1"), "--model", model, "--tokenizer", str(tokenizer),
        "--dataset-name", "custom", "--dataset-path", str(dataset), "--skip-chat-template",
        "--disable-shuffle", "--custom-output-len", str(args.output_len), "--ignore-eos",
        "--num-prompts", str(args.num_prompts), "--temperature", "0",
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", ",".join(map(str, PERCENTILES)),
        "--save-result", "--save-detailed", "--result-dir", str(work), "--result-filename", name,
        "--request-rate", str(rate) if rate else "inf", "--burstiness", "1", "--seed", "0",
    ]  # fmt: skip
    if concurrency:
        cmd += ["--max-concurrency", str(concurrency)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_TARGET_DEVICE": "cpu"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        tail = " | ".join(run.stderr.strip().splitlines()[-3:])
        raise SystemExit(f"vllm bench serve failed: {tail}")
    result = json.loads((work / name).read_text())
    row = {
        "req/s": result["request_throughput"],
        "output tok/s": result["output_throughput"],
        "completed": result["completed"],
    }
    for ours, theirs in METRICS:
        for q in PERCENTILES:
            row[f"{ours} p{q}"] = result.get(f"p{q}_{theirs}_ms")
    row["client CPU s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row["sent"] = offsets(result.get("start_times") or [])
    return row


def offsets(times: list[float]) -> list[float]:
    """Send times as seconds after the first request, in sending order."""
    times = sorted(times)
    return [t - times[0] for t in times] if times else []


def run_llmlab(sm, prompts, args, concurrency, rate) -> dict:
    from llmlab.served import run_load_test

    cpu = time.process_time()
    test = run_load_test(
        sm,
        [concurrency or 256],
        rates=[rate] if rate else None,
        requests=args.num_prompts,
        prompts=prompts,
        raw=True,
        output_len=args.output_len,
        ignore_eos=True,
        warmup=False,
        max_concurrency=concurrency or 256,
        seed=0,  # vllm bench serve's --seed 0: the same arrival times
    )
    cpu = time.process_time() - cpu
    level = test.levels[0]
    row = {
        "req/s": level.request_throughput,
        "output tok/s": level.output_throughput,
        "completed": len(level.completed),
    }
    fields = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_s", "e2e": "e2e_s"}
    for ours, _ in METRICS:
        # The raw quantile, for the side-by-side: vLLM prints a p99 of 16 requests too (the
        # load test's own table shows it as n/a: see llmlab.served.loadtest.min_samples).
        spread = level.spread(fields[ours])
        for q in PERCENTILES:
            value = spread.quantile(q / 100)
            row[f"{ours} p{q}"] = None if value is None else value * 1000
    row["client CPU s"] = cpu
    row["sent"] = offsets([r.sent_s for r in level.records])
    for w in test.warnings:
        print("llmlab warning:", w)
    return row


def print_comparison(
    title: str, rows: dict[str, list[dict]], args, rate: float | None = None
) -> None:
    def mean(client: str, key: str) -> float | None:
        values = [r[key] for r in rows[client] if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    keys = [k for k in rows["vllm"][0] if k not in ("completed", "sent")]
    print(
        f"\n{title}: {args.num_prompts} prompts of {args.input_len} tokens, {args.output_len} "
        f"output tokens (ignore_eos, greedy), mean of {args.rounds} alternating runs each"
    )
    print(f"{'':<16}{'llmlab':>12}{'vllm bench':>12}{'ratio':>8}")
    for key in keys:
        ours, theirs = mean("llmlab", key), mean("vllm", key)
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "–"
        fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{key:<16}{fmt(ours):>12}{fmt(theirs):>12}{ratio:>8}")
    n = args.num_prompts
    print(f"(per-request percentiles rest on {n} requests: p99 of {n} is their maximum)")
    if rate is not None:
        schedule_check(rows, args.num_prompts, rate)


def schedule_check(rows: dict[str, list[dict]], count: int, rate: float) -> None:
    """Did both clients send on the schedule both draw? Each client's send times (after its
    first request) against the drawn arrival times (after the first arrival)."""
    from llmlab.served.workload import arrival_times

    drawn = offsets(arrival_times(rate, count, "poisson", 0))
    for client, runs in rows.items():
        late = [b - a for run in runs for a, b in zip(drawn, run["sent"], strict=False)]
        if late:
            print(
                f"{client} sent after the drawn schedule by {1000 * statistics.fmean(late):+.1f} "
                f"ms on average (most {1000 * max(late, key=abs):+.1f} ms)"
            )


if __name__ == "__main__":
    main()
