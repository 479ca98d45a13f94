"""%llm moe: which experts each token goes to, in every MoE layer."""

from __future__ import annotations

from pathlib import Path

from IPython.core.error import UsageError
from IPython.display import display
from llmlab.magics.registry import Context, arg, command
from llmlab.magics.text import TEXT_ARGS, read_text_file, text_of

from llmlab.moe import capture_routing


@command(
    "moe",
    "show MoE routing: token × layer map, load, co-activation, runs, across inputs",
    arg("--generate", type=int, default=0, metavar="N", help="also route N generated tokens"),
    arg("--texts", nargs="+", metavar="FILE", help="route each file's text and compare them"),
    arg("--layer", type=int, help="the MoE layer the views open on (true layer index)"),
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
    result = capture_routing(lm, texts, generate=args.generate, layer=args.layer)
    display(result)
    result._shown_live = True
    return result
