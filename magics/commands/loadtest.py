"""%llm load-test: streamed requests against a served model, level by level (concurrency or
request rate), or a saturation search."""

from __future__ import annotations

from pathlib import Path

from IPython.display import display
from llmlab.magics.registry import Context, arg, command

from llmlab.errors import LabError


@command(
    "load-test",
    "load test of a served model: concurrency levels, or request rates with Poisson/constant "
    "arrivals, or a saturation search for the highest rate meeting the SLOs; live latency vs "
    "throughput, TTFT/ITL/TPOT/E2E percentiles with their counts, goodput; returns a LoadTest",
    arg(
        "target",
        nargs="?",
        help="a loaded served model, NAME or served:NAME (default: the active model)",
    ),
    arg("--concurrency", default="1,2,4,8", help="requests in flight per level, e.g. 1,2,4,8"),
    arg("--rates", help="request-rate levels in req/s instead, e.g. 0.5,1,2 (open loop)"),
    arg(
        "--arrivals",
        default="poisson",
        choices=("poisson", "constant"),
        help="with --rates or --saturate: exponential gaps (seeded) or equal gaps",
    ),
    arg("--seed", type=int, default=0, help="seeds arrivals and synthetic prompts"),
    arg(
        "--max-concurrency",
        type=int,
        default=256,
        help="with --rates or --saturate: requests in flight at most",
    ),
    arg(
        "--saturate",
        action="store_true",
        help="search the highest rate whose requests meet --slo (rates double from "
        "--start-rate, then bisect); Ctrl-C keeps the levels measured",
    ),
    arg("--start-rate", type=float, default=0.5, help="with --saturate: the first rate, req/s"),
    arg("--max-rate", type=float, default=64.0, help="with --saturate: the highest rate tried"),
    arg(
        "--attainment",
        type=float,
        default=0.9,
        help="with --saturate: share of requests that must meet every SLO",
    ),
    arg("--requests", type=int, default=16, help="requests per level"),
    arg("--max-tokens", type=int, default=64, help="output tokens per request at most"),
    arg(
        "--input-len",
        type=int,
        help="synthetic prompts of exactly this many tokens in the served model's tokenizer "
        "(the server's count, special tokens included; sent to /v1/completions)",
    ),
    arg("--output-len", type=int, help="output tokens per request (sets --max-tokens)"),
    arg(
        "--ignore-eos",
        action="store_true",
        help="ask the engine to generate all --output-len tokens (vLLM, SGLang); a server "
        "that ignores it is named in a warning",
    ),
    arg(
        "--turns",
        type=int,
        default=1,
        help="multi-turn conversations: each sends N turns, each with the earlier turns and "
        "answers (what prefix caching reuses); --requests counts turns",
    ),
    arg(
        "--prefix-len",
        type=int,
        default=0,
        help="a synthetic prefix of this many tokens shared by every prompt / conversation",
    ),
    arg(
        "--tokenizer",
        help="the served model's tokenizer folder for --input-len, when the server has no "
        "/tokenize endpoint ('default': the embedded model's)",
    ),
    arg(
        "--raw",
        action="store_true",
        help="send the prompts to /v1/completions as they are (no chat template)",
    ),
    arg("--slo", help="goodput SLOs, e.g. ttft=200ms,itl=50ms (also tpot=, e2e=)"),
    arg("--prompts", help="text file, one prompt per line (default: 4 short built-in prompts)"),
    arg("--no-warmup", action="store_true", help="skip the untimed first request"),
    body="the prompts, one per line (instead of --prompts)",
)
def load_test(ctx: Context, args):
    from llmlab.measure.prompts import read_prompts
    from llmlab.served.loadtest import run_load_test, run_saturation_search

    sm = _served_target(ctx, args.target)
    if args.prompts and ctx.body and ctx.body.strip():
        raise LabError("give the prompts either with --prompts or in the cell body, not both")
    prompts = None
    if args.prompts:
        path = Path(args.prompts).expanduser()
        if not path.is_file():
            raise LabError(f"prompts file {args.prompts!r} not found")
        prompts = read_prompts(path.read_text(encoding="utf-8"))
    elif ctx.body is not None:
        prompts = read_prompts(ctx.body)
    if args.saturate and args.rates:
        raise LabError("--saturate chooses its own rates; drop --rates (or drop --saturate)")
    listeners = []
    if ctx.in_kernel:
        from llmlab.widgets.loadtest import LoadTestView

        def show(test, event):
            if event == "progress" and not listeners_shown:
                listeners_shown.append(True)
                display(LoadTestView(test))

        listeners_shown: list[bool] = []
        listeners.append(show)
    else:
        listeners.append(_print_level)
    workload = dict(
        input_len=args.input_len,
        output_len=args.output_len,
        ignore_eos=args.ignore_eos,
        turns=args.turns,
        prefix_len=args.prefix_len,
        tokenizer=args.tokenizer,
        raw=args.raw,
    )
    common = dict(
        requests=args.requests,
        prompts=prompts,
        max_tokens=args.max_tokens,
        arrivals=args.arrivals,
        seed=args.seed,
        warmup=not args.no_warmup,
        listeners=listeners,
        max_concurrency=args.max_concurrency,
    )
    if args.saturate:
        test = run_saturation_search(
            sm,
            args.slo,
            start_rate=args.start_rate,
            max_rate=args.max_rate,
            attainment=args.attainment,
            **common,
            **workload,
        )
    else:
        test = run_load_test(
            sm, args.concurrency, rates=args.rates, slo=args.slo, **common, **workload
        )
    if not ctx.in_kernel:
        print(test.to_text())
    else:
        if test.saturation_note:
            print(f"saturation: {test.saturation_note}")
        if test.warnings:
            print("\n".join(f"warning: {w}" for w in test.warnings))
    test._shown_live = True
    return test


def _print_level(test, event: str) -> None:
    if event == "level":
        lv = test.levels[-1]
        r = lv.row()
        ttft = "n/a" if r["ttft_p50_ms"] is None else f"{r['ttft_p50_ms']:.0f} ms"
        print(
            f"  {lv.label}: {r['request_throughput']:.2f} req/s, {r['output_tok_s']:.1f} tok/s, "
            f"TTFT p50 {ttft} (n={r['ttft_n']})",
            flush=True,
        )


def _served_target(ctx: Context, spec: str | None):
    """The model a load test sends to: ``served:NAME`` resolved as every target is
    (:mod:`llmlab.targets`), a plain name (or none: the active model) as ``%llm use`` reads it."""
    from llmlab.targets import SERVED, SERVED_PREFIX, resolve

    if spec and spec.startswith(SERVED_PREFIX):
        return resolve(spec, models=ctx.lab.models, kinds=(SERVED,)).other
    return ctx.lab.model(spec)
