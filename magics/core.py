"""The ``%llm`` / ``%%llm`` magic: split the line, find the subcommand, report errors."""

from __future__ import annotations

import difflib
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from llmlab.magics.registry import COMMANDS, Context

from llmlab.errors import LabError
from llmlab.session import default_lab

OVERVIEW = """Work with large language models from a notebook.

  %llm SUBCOMMAND [options] [text]      line magic; {var} in the line is interpolated
  %%llm SUBCOMMAND [options]            cell magic; the cell body is taken literally
                                        (add --format-body to interpolate {var} in it)

Errors print one line and leave the session usable. `%llm help SUBCOMMAND` shows one
subcommand; the engine is the same from Python: `from llmlab import default_lab`.
"""


def full_help() -> str:
    """Every subcommand's usage, for ``%llm?``."""
    sections = [OVERVIEW, "Subcommands:"]
    sections += [f"  {c.name:<10} {c.summary}" for c in COMMANDS.values()]
    sections += ["", *(c.help() for c in COMMANDS.values())]
    return "\n".join(sections)


def split_line(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as err:
        raise UsageError(
            f"could not read the line ({err}); quote the text with double quotes, "
            "or use %%llm with the text in the cell body"
        ) from None


@magics_class
class LlmMagics(Magics):
    @line_cell_magic
    def llm(self, line: str, cell: str | None = None):
        words = split_line(line)
        if not words:
            print(OVERVIEW + "\nSubcommands: " + ", ".join(COMMANDS))
            return None
        name, rest = words[0], words[1:]
        if name in ("-h", "--help"):
            name, rest = "help", []
        if name not in COMMANDS:
            close = difflib.get_close_matches(name, COMMANDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"unknown subcommand {name!r}; {hint}known: {', '.join(COMMANDS)}")
        cmd = COMMANDS[name]
        if cell is not None and cmd.body == "none":
            raise UsageError(f"%%llm {name} takes no cell body; use the line magic %llm {name}")
        if "-h" in rest or "--help" in rest:
            print(cmd.help())
            return None
        args = cmd.parser().parse_args(rest)
        ctx = Context(lab=default_lab(), shell=self.shell, body=cell)
        try:
            return cmd.run(ctx, args)
        except LabError as err:
            raise UsageError(str(err)) from None
