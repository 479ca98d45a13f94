"""Where a subcommand's text comes from: the line's words, or the cell body."""

from __future__ import annotations

import string
from typing import Any

from IPython.core.error import UsageError
from llmlab.magics.registry import Context, arg

TEXT_ARGS = [
    arg("text", nargs="*", help="the text (quote it); or put it in the %%llm cell body"),
    arg("--format-body", action="store_true", help="interpolate {var} in the cell body too"),
]


def text_of(ctx: Context, args: Any, what: str = "prompt") -> str:
    """The line's words joined, or the cell body (taken literally unless --format-body)."""
    line_text = " ".join(args.text)
    body = ctx.body
    if body is not None and body.strip():
        if line_text:
            raise UsageError(f"give the {what} either on the line or in the cell body, not both")
        if args.format_body:
            try:
                body = string.Formatter().vformat(body, (), _Namespace(ctx.shell.user_ns))
            except (KeyError, IndexError, ValueError, AttributeError) as err:
                raise UsageError(f"--format-body could not fill {err} in the cell body") from None
        return body.strip("\n")
    if not line_text.strip():
        raise UsageError(f"the {what} is empty")
    return line_text


class _Namespace(dict):
    """The user's namespace for str.format, so {name} reads a notebook variable."""

    def __init__(self, ns: dict[str, Any]):
        super().__init__(ns)

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)
