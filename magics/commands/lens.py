"""%llm lens: every layer's reading of the next token (logit lens), and where a variant parts."""

from __future__ import annotations

from IPython.display import display
from llmlab.magics.registry import Context, command
from llmlab.magics.text import CAPTURE_ARGS, TEXT_ARGS, text_of


@command(
    "lens",
    "logit lens: each layer's residual stream read through the final norm and unembedding "
    "(layer × token grid, entropy and KL per layer; --compare shows where a variant parts)",
    *CAPTURE_ARGS,
    *TEXT_ARGS,
    body="the text",
)
def lens(ctx: Context, args):
    text = text_of(ctx, args, "text")
    chat = False if args.raw else (True if args.chat else None)
    result = ctx.lab.lens(
        text, model=args.model, compare=args.compare, generate=args.generate, chat=chat
    )
    display(result)
    result._shown_live = True
    return result
