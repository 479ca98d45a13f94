"""%llm accel: the acceleration panel, and ``%llm accel list`` (the registry as a table)."""

from __future__ import annotations

from IPython.display import display
from llmlab.magics.registry import Context, arg, command

from llmlab.accel import table
from llmlab.accel.panel import DEFAULT_PROMPT, AccelPanelState


@command(
    "accel",
    "toggles for inference accelerations of the active model, with a Run button; "
    "'list' prints every acceleration, what it changes and what it needs",
    arg("action", nargs="?", choices=["panel", "list"], default="panel", help="panel or list"),
    arg("--config", default="baseline", help="preselect toggles, e.g. spec=prompt-lookup"),
    arg("--prompt", default=DEFAULT_PROMPT, help="the prompt the Run button uses"),
    arg("--max-new-tokens", type=int, default=64, help="tokens per run (greedy)"),
    arg("--model", help="use this loaded model instead of the active one"),
)
def accel(ctx: Context, args):
    if args.action == "list":
        from llmlab.accel.listing import AccelTable

        lm = ctx.lab.model(args.model) if (args.model or ctx.lab.active) else None
        return AccelTable(table(lm), lm.name if lm else None)
    lm = ctx.lab.model(args.model)
    if not lm.capabilities.internals:
        _ = lm.model  # raises the one-line "served model: its weights stay on the server"
    from llmlab.accel import PrefixCache, parse_config

    config = parse_config(args.config, device=lm.device).label  # a bad config fails here
    state = AccelPanelState(
        lm=lm,
        models=ctx.lab.models,
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        config=config,
        prefix_cache=ctx.lab.prefix_caches.setdefault(lm.name, PrefixCache()),
    )
    display(state)
    state._shown_live = True
    return state
