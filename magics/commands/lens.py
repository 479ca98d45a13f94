"""%llm lens: every layer's reading of the next token (logit lens), and where a variant parts."""

from __future__ import annotations

from IPython.display import display
from llmlab.magics.registry import Context, arg, command
from llmlab.magics.text import TEXT_ARGS, text_of


@command(
    "lens",
    "logit lens: each layer's residual stream read through the final norm and unembedding "
    "(layer × token grid, entropy and KL per layer; --compare shows where a variant parts)",
    arg(
        "--compare",
        metavar="VARIANT",
        help="also read a variant and show where it diverges layer by layer: another loaded "
        "model with the same tokenizer, or an acceleration config (int8, bf16, quant=int8, ...)",
    ),
    arg("--generate", type=int, default=0, metavar="N", help="generate N tokens and include them"),
    arg(
        "--chat",
        action="store_true",
        help="wrap the text in the chat template (default with --generate)",
    ),
    arg("--raw", action="store_true", help="never use the chat template, even with --generate"),
    arg("--model", help="use this loaded model instead of the active one"),
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
