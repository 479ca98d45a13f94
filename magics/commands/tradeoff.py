"""%llm tradeoff: sweep acceleration configurations, plotting quality against latency or cost."""

from __future__ import annotations

from pathlib import Path

from IPython.display import display
from llmlab.magics.registry import Context, arg, command
from llmlab.magics.text import read_text_file

from llmlab.errors import LabError
from llmlab.measure.stats import count

#: The last sweep of this session, so ``%llm tradeoff --axes ttft,top1`` can re-plot it.
_last: dict[str, object] = {}


def _read_file(path: str, what: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise LabError(f"{what} file {path!r} not found")
    return read_text_file(p, what)


def _prices(items: list[str] | None) -> dict[str, float]:
    prices = {}
    for item in items or []:
        device, _, value = item.partition("=")
        try:
            prices[device.strip()] = float(value)
            if not 0 <= prices[device.strip()] < float("inf"):  # nan and inf fail here too
                raise ValueError(value)
        except ValueError:
            raise LabError(
                f"--price takes DEVICE=US$_PER_HOUR, e.g. cpu=0.05; got {item!r}"
            ) from None
    return prices


@command(
    "tradeoff",
    "sweep acceleration configurations: live quality vs latency/cost plot; returns a Sweep",
    arg(
        "--configs",
        help="comma-separated configurations, parts of one joined with +, e.g. "
        "baseline,kv=off,quant=int8,spec=prompt-lookup,bf16,spec=prompt-lookup+quant=int8; "
        "served:NAME adds a loaded served model, engine:vllm+prefix-caching=on (also "
        "spec=ngram, kv=fp8) an engine started for its point (docs/served.md)",
    ),
    arg("--prompts", help="text file, one prompt per line (default: 4 short built-in prompts)"),
    arg(
        "--axes",
        help="x,y to plot: x tpot|ttft|e2e|tps|cost|memory|weights|roofline, "
        "y kl|top1|greedy|ppl|acceptance (default tpot,kl); alone, re-plots the last sweep",
    ),
    arg("--max-new-tokens", type=int, default=32, help="greedy tokens per answer"),
    arg("--repeats", type=int, default=3, help="timed passes over the prompts (>= 3)"),
    arg("--warmup", type=int, default=1, help="untimed warm-up generations per configuration"),
    arg("--text", help="text file for perplexity (default: the text that ships with llmlab)"),
    arg(
        "--price",
        action="append",
        metavar="DEVICE=USD",
        help="hourly price, e.g. cpu=0.05; for a served target its name, e.g. served=0.50",
    ),
    arg(
        "--wait",
        action="store_true",
        help="in Jupyter, block until done (by default the sweep runs in the background so "
        "Stop and clicks respond; sweep.wait() blocks)",
    ),
    arg("--model", help="use this loaded model instead of the active one"),
    body="the prompts, one per line (instead of --prompts)",
)
def tradeoff(ctx: Context, args):
    from llmlab.tradeoff import parse_axes, read_prompts, run_sweep

    axes = parse_axes(args.axes) if args.axes else None
    if not args.configs:
        if axes and "sweep" in _last:
            return _show(ctx, _last["sweep"], axes)
        raise LabError(
            "give --configs, e.g. --configs baseline,kv=off,quant=int8,spec=prompt-lookup,bf16"
            + ("" if "sweep" not in _last else " (or --axes alone to re-plot the last sweep)")
        )
    if args.prompts and ctx.body and ctx.body.strip():
        raise LabError("give the prompts either with --prompts or in the cell body, not both")
    prompts = None
    if args.prompts:
        prompts = read_prompts(_read_file(args.prompts, "prompts"))
    elif ctx.body is not None:
        prompts = read_prompts(ctx.body)
    text = _read_file(args.text, "perplexity text") if args.text else None
    lm = ctx.lab.model(args.model)
    # In Jupyter the sweep runs in the background so Stop and clicks respond; a headless run
    # (nbclient, papermill: no one can press Stop) waits, so the saved output is the result.
    background = ctx.in_kernel and not args.wait and not headless(ctx)
    listeners = [] if ctx.in_kernel else [_progress_printer()]
    sweep = run_sweep(
        lm,
        args.configs,
        prompts,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        warmup=args.warmup,
        text=text,
        prices=_prices(args.price),
        axes=axes or ("tpot", "kl"),
        background=background,
        listeners=listeners,
        start=False,
        models=ctx.lab.models,
    )
    _last["sweep"] = sweep
    if ctx.in_kernel:
        _show(ctx, sweep, axes)
    else:
        print(
            f"tradeoff: {len(sweep.configs)} configurations + the baseline again, "
            f"{count(len(sweep.prompts), 'prompt')} x {count(sweep.repeats, 'repeat')} "
            f"on {sweep.model}",
            flush=True,
        )
    sweep.start()
    if not ctx.in_kernel:
        print(sweep.to_text())
    sweep._shown_live = True
    return sweep


def headless(ctx: Context) -> bool:
    """True when the kernel runs for a headless executor (nbclient, nbconvert, papermill):
    they send execute requests with ``allow_stdin=False``; JupyterLab and VS Code allow it."""
    kernel = getattr(ctx.shell, "kernel", None)
    return kernel is not None and not getattr(kernel, "_allow_stdin", True)


def _show(ctx: Context, sweep, axes):
    if not ctx.in_kernel:
        print(sweep.to_text())
        return sweep
    from IPython.display import HTML

    from llmlab.html import card

    # The first view imports plotly and builds its figure (seconds on a busy CPU): say so.
    handle = display(
        HTML(card('<span class="llmlab-stats">tradeoff: preparing the live view…</span>')),
        display_id=True,
    )
    from llmlab.widgets.tradeoff import TradeoffView

    TradeoffView(sweep, axes).show(handle)
    sweep._shown_live = True
    return sweep


def _progress_printer():
    """A terminal listener: one line when a configuration starts and one when it ends."""
    announced = ""

    def listener(sweep, event: str) -> None:
        nonlocal announced
        total = len(sweep.configs) + 1
        if event == "progress" and sweep.current and sweep.current != announced:
            announced = sweep.current
            print(f"  [{len(sweep.points) + 1}/{total}] {sweep.current} …", flush=True)
        elif event == "point":
            p = sweep.points[-1]
            done = f"[{len(sweep.points)}/{total}] {p.name}: {p.status}"
            print(f"  {done} ({p.seconds:.0f} s)", flush=True)

    return listener
