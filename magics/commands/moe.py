"""%llm moe: which experts each token goes to, in every MoE layer."""

from __future__ import annotations

from pathlib import Path

from IPython.core.error import UsageError
from IPython.display import display
from llmlab.magics.registry import Context, arg, command
from llmlab.magics.text import TEXT_ARGS, read_text_file, text_of

from llmlab.moe import capture_routing, compare_routing


@command(
    "moe",
    "show MoE routing: token × layer map, load, co-activation, runs, across inputs",
    arg("--generate", type=int, default=0, metavar="N", help="also route N generated tokens"),
    arg("--texts", nargs="+", metavar="FILE", help="route each file's text and compare them"),
    arg("--layer", type=int, help="the MoE layer the views open on (true layer index)"),
    arg(
        "--compare",
        metavar="VARIANT",
        help="also route through a variant (experts=-3 removes expert 3; quant=int8; another "
        "loaded model) and show both",
    ),
    arg("--model", help="use this loaded model instead of the active one"),
    *TEXT_ARGS,
    body="the text to route",
)
def moe(ctx: Context, args):
    texts: dict[str, str] = {}
    for name in args.texts or []:
        path = Path(name).expanduser()
        if not path.is_file():
            raise UsageError(f"%llm moe: no such file {name}")
        texts[path.stem if path.stem not in texts else str(path)] = read_text_file(path, "--texts")
    if args.text or (ctx.body or "").strip() or not texts:
        texts = {"text": text_of(ctx, args, "text"), **texts}
    lm = ctx.lab.model(args.model)
    if lm.capabilities.remote:  # asks the server once, then one line (llmlab.served.routing)
        from llmlab.served.routing import served_routing_error

        raise served_routing_error(lm, next(iter(texts.values()))[:200])
    if args.compare:
        result = compare_routing(
            lm, args.compare, texts, models=ctx.lab.models, generate=args.generate, layer=args.layer
        )
    else:
        result = capture_routing(lm, texts, generate=args.generate, layer=args.layer)
    display(result)
    result._shown_live = True
    return result


@command(
    "moe-train",
    "train the demo MoE live: loss curve and a probe text's routing redrawn as experts specialise",
    arg("--steps", type=int, metavar="N", help="training steps (default: the demo recipe's)"),
    arg("--name", default="moe-train", help="name of the trained model in this session"),
    arg(
        "--replace",
        action="store_true",
        help="replace another model loaded under --name (else that is refused)",
    ),
    arg("--wait", action="store_true", help="in Jupyter, block until done (default: background)"),
)
def moe_train(ctx: Context, args):
    from dataclasses import replace

    from llmlab.magics.commands.tradeoff import headless

    from llmlab.models.moe_demo import DemoRecipe
    from llmlab.moe.training import TRAINED_SPEC, check_steps, train_moe_demo
    from llmlab.session import check_name

    recipe = DemoRecipe()
    if args.steps is not None:
        check_steps(args.steps)
        recipe = replace(recipe, steps=args.steps, warmup=min(recipe.warmup, args.steps))
    check_name(args.name)
    # Refused now, not after the training: the name must not hold another model.
    ctx.lab.check_free(args.name, TRAINED_SPEC, args.replace)
    # In Jupyter it trains in the background so the Stop button answers; a headless run
    # (nbclient: nobody can press Stop) waits, so the saved output shows the finished run.
    live = ctx.in_kernel and not headless(ctx)
    background = live and not args.wait

    def keep(run) -> None:
        # Finished steps are kept: the model joins the session once the run ends.
        if run.done and run.trained is not None and run.trained.steps_done:
            try:
                ctx.lab.add(run.loaded(args.name), replace=args.replace)
            except Exception as err:  # noqa: BLE001 - from the run's thread: one line
                print(f"llmlab: the trained model stays in run.loaded() only: {err}")

    def show(run) -> None:
        run.subscribe(keep)
        if live:  # the view first, so a run with --wait is watched as it trains too
            display(run)
            run._shown_live = True

    run = train_moe_demo(
        recipe, background=background, progress=not ctx.in_kernel, before_start=show
    )
    if ctx.in_kernel and not live:  # headless: the saved output is the finished run
        display(run)
        run._shown_live = True
    elif not ctx.in_kernel:
        print(run.to_text())
    if run.status == "stopped" and run.trained is not None:
        print(
            f"stopped after step {run.trained.steps_done} of {recipe.steps}; the finished "
            f"steps are kept as {args.name}"
        )
    return run
