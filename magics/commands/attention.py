"""%llm attention: head view, layer × head grid, per-head table, diff between two variants."""

from __future__ import annotations

from contextlib import nullcontext

from IPython.core.error import UsageError
from IPython.display import display
from llmlab.magics.progress import Steps
from llmlab.magics.registry import Context, arg, command
from llmlab.magics.text import CAPTURE_ARGS, TEXT_ARGS, text_of

from llmlab.attention import attention as capture_attention
from llmlab.attention import compare


@command(
    "attention",
    "show every layer's and head's attention (head view, grid, head table, diff with --compare)",
    arg("--layer", type=int, help="the layer the head view opens on"),
    arg("--head", type=int, help="the head the head view opens on (default: all heads)"),
    arg(
        "--layers",
        metavar="A-B",
        help="capture only these layers (10-20, or 3,5,8); big models keep only what is asked for",
    ),
    arg(
        "--precision",
        choices=["auto", "float16", "float32"],
        default="auto",
        help="what the result keeps: auto (queries/keys at the model's precision, weights "
        "recomputed exactly in float32), float16 (half the memory), float32 (also for "
        "Falcon/Bloom/MPT, whose full weights are otherwise kept in float16)",
    ),
    arg(
        "--link",
        metavar="Q,K",
        help="open the Link tab on query token Q and key token K (positions or token texts, "
        "e.g. it,tiger): which heads link these two tokens",
    ),
    *CAPTURE_ARGS,
    *TEXT_ARGS,
    body="the text",
)
def attention(ctx: Context, args):
    text = text_of(ctx, args, "text")
    lm = ctx.lab.model(args.model)
    chat = False if args.raw else (True if args.chat else None)
    options = dict(
        layer=args.layer,
        head=args.head,
        layers=args.layers,
        precision=args.precision,
        generate=args.generate,
        chat=chat,
    )
    # Comparing or generating takes seconds to minutes on a CPU: say what runs, how far.
    long = bool(args.compare or args.generate)
    total = (4 if args.compare else 1) + (1 if args.generate else 0)
    what = "attention" + (f" --compare {args.compare}" if args.compare else "")
    with Steps(ctx.in_kernel, what, total) if long else nullcontext() as steps:
        if args.compare:
            result = compare(lm, args.compare, text, lab=ctx.lab, progress=steps, **options)
        else:
            result = capture_attention(lm, text, progress=steps, **options)
    if args.link:
        query, sep, key = args.link.partition(",")
        if not sep or not query.strip() or not key.strip():
            raise UsageError("%llm attention --link takes Q,K: two token positions or texts")
        (result.a if args.compare else result).set_link(query.strip(), key.strip())
    display(result)
    result._shown_live = True
    return result
