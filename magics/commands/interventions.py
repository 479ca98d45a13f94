"""%llm heads / patch / steer: test a hypothesis about a model (llmlab.interventions)."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.display import display
from llmlab.magics.registry import Context, arg, command
from llmlab.magics.text import TEXT_ARGS, text_of

from llmlab.attention import parse_layers


@command(
    "heads",
    "head importance: ablate every head in turn; layer × head heatmap of the change in the "
    "answer's log-probability (or next-token KL), sortable table, a click shows the head",
    arg("--answer", help="the answer token (e.g. ' tiger'); without it: next-token KL"),
    arg(
        "--metric",
        choices=["logprob", "kl"],
        help="what to measure (default: logprob with --answer, else kl)",
    ),  # fmt: skip
    arg(
        "--mode",
        choices=["zero", "mean"],
        default="zero",
        help="replace a head's output by zero or by its mean over the text's tokens",
    ),  # fmt: skip
    arg("--layers", metavar="A-B", help="scan only these layers (10-20, or 3,5,8)"),
    arg("--model", help="use this loaded model instead of the active one"),
    *TEXT_ARGS,
    body="the text",
)
def heads(ctx: Context, args):
    text = text_of(ctx, args, "text")
    result = ctx.lab.head_importance(
        text,
        answer=args.answer,
        metric=args.metric,
        mode=args.mode,
        layers=parse_layers(args.layers),
        model=args.model,
    )
    display(result)
    result._shown_live = True
    return result


@command(
    "patch",
    "activation patching: put the clean run's residual stream, head outputs and MoE outputs "
    "into the corrupted run, one piece at a time; heatmaps of the restored logit difference",
    arg("--clean", required=True, help="the clean prompt"),
    arg("--corrupted", required=True, help="the corrupted prompt (same number of tokens)"),
    arg("--answer", required=True, help="the clean answer token (e.g. ' Paris')"),
    arg("--wrong", required=True, help="the corrupted answer token (e.g. ' Rome')"),
    arg("--kinds", default="resid,heads,moe", help="what to patch: resid, heads, moe"),
    arg("--model", help="use this loaded model instead of the active one"),
)
def patch(ctx: Context, args):
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    result = ctx.lab.patching(
        args.clean, args.corrupted, args.answer, args.wrong, kinds=kinds, model=args.model
    )
    display(result)
    result._shown_live = True
    return result


@command(
    "steer",
    "make a steering vector: mean residual stream of one prompt minus another's at a layer; "
    "use it as --intervene steer=NAME*SCALE",
    arg("--positive", required=True, help="the prompt to steer towards"),
    arg("--negative", required=True, help="the prompt to steer away from"),
    arg("--layer", type=int, required=True, help="the layer whose output gets the vector"),
    arg("--name", help="the vector's name in specs (default v1, v2, ...)"),
    arg("--model", help="use this loaded model instead of the active one"),
)
def steer(ctx: Context, args):
    if not args.positive.strip() or not args.negative.strip():
        raise UsageError("%llm steer: --positive and --negative must be non-empty prompts")
    vector = ctx.lab.steering_vector(
        args.positive, args.negative, layer=args.layer, name=args.name, model=args.model
    )
    print(f"{vector!r}; use it as --intervene steer={vector.name}*4")
    return vector
