"""Where a subcommand's text comes from: the line's words, or the cell body."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from llmlab.magics.line import check_length
from llmlab.magics.registry import Context, arg

from llmlab.errors import LabError

TEXT_ARGS = [
    arg("text", nargs="*", help="the text (quote it); or put it in the %%%%llm cell body"),
    arg("--format-body", action="store_true", help="interpolate {var} in the cell body too"),
]

# The views that read a model's internals over a text (attention, lens) take the same
# variant, continuation and template flags; one list so their help and behaviour agree.
CAPTURE_ARGS = [
    arg(
        "--compare",
        metavar="VARIANT",
        help="also run a variant and show where it differs: another loaded model with the same "
        "tokenizer, or an acceleration config (int8, bf16, quant=int8, attn=eager, ...)",
    ),
    arg("--generate", type=int, default=0, metavar="N", help="generate N tokens and include them"),
    arg(
        "--chat",
        action="store_true",
        help="wrap the text in the chat template (default with --generate)",
    ),
    arg("--raw", action="store_true", help="never use the chat template, even with --generate"),
    arg("--model", help="use this loaded model instead of the active one"),
]


def text_of(ctx: Context, args: Any, what: str = "prompt") -> str:
    """The line's words joined, or the cell body (taken literally unless --format-body)."""
    line_text = " ".join(args.text)
    body = ctx.body
    if body is not None:
        check_length(body, "cell body")
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


def read_text_file(path: str | Path, what: str) -> str:
    """A text file the user named (``--texts``, ``--prompts``), or one line saying why not."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LabError(f"{what} file {str(path)!r} not found")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise LabError(
            f"{what} file {str(path)!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} "
            f"at offset {err.start}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise LabError(f"cannot read {what} file {str(path)!r}: {err.strerror or err}") from None
