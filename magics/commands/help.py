"""%llm help [SUBCOMMAND]."""

from __future__ import annotations

from IPython.core.error import UsageError
from llmlab.magics.registry import COMMANDS, Context, arg, command


@command("help", "show help for one subcommand, or the list of them", arg("subcommand", nargs="?"))
def help_(ctx: Context, args) -> None:
    from llmlab.magics.core import full_help

    if args.subcommand is None:
        print(full_help())
    elif args.subcommand in COMMANDS:
        print(COMMANDS[args.subcommand].help())
    else:
        raise UsageError(f"no subcommand {args.subcommand!r}; known: {', '.join(COMMANDS)}")
