"""%llm load-test: concurrent streamed requests against a served model, level by level."""

from __future__ import annotations

from pathlib import Path

from IPython.display import display
from llmlab.magics.registry import Context, arg, command

from llmlab.errors import LabError


@command(
    "load-test",
    "load sweep of a served model: concurrent streamed requests per level, live latency vs "
    "throughput, TTFT/ITL/E2E percentiles and goodput; returns a LoadTest",
    arg("target", nargs="?", help="a loaded served model (default: the active model)"),
    arg("--concurrency", default="1,2,4,8", help="requests in flight per level, e.g. 1,2,4,8"),
    arg("--requests", type=int, default=16, help="requests per level"),
    arg("--max-tokens", type=int, default=64, help="output tokens per request at most"),
    arg("--slo", help="goodput SLOs, e.g. ttft=200ms,itl=50ms (also tpot=, e2e=)"),
    arg("--prompts", help="text file, one prompt per line (default: 4 short built-in prompts)"),
    arg("--no-warmup", action="store_true", help="skip the untimed first request"),
    body="the prompts, one per line (instead of --prompts)",
)
def load_test(ctx: Context, args):
    from llmlab.served.loadtest import run_load_test
    from llmlab.tradeoff.runner import read_prompts

    sm = ctx.lab.model(args.target)
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
    test = run_load_test(
        sm,
        args.concurrency,
        requests=args.requests,
        prompts=prompts,
        max_tokens=args.max_tokens,
        slo=args.slo,
        warmup=not args.no_warmup,
        listeners=listeners,
    )
    if not ctx.in_kernel:
        print(test.to_text())
    elif test.warnings:
        print("\n".join(f"warning: {w}" for w in test.warnings))
    test._shown_live = True
    return test


def _print_level(test, event: str) -> None:
    if event == "level":
        lv = test.levels[-1]
        r = lv.row()
        print(
            f"  concurrency {lv.concurrency}: {r['request_throughput']:.2f} req/s, "
            f"{r['output_tok_s']:.1f} tok/s, TTFT p50 {r['ttft_p50_ms'] or 0:.0f} ms",
            flush=True,
        )
