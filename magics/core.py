"""The ``%llm`` / ``%%llm`` magic: split the line, find the subcommand, report errors."""

from __future__ import annotations

import difflib
import sys

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    needs_local_scope,
    no_var_expand,
)
from llmlab.magics.line import check_length, expand, split_line, split_options, takes_text
from llmlab.magics.registry import COMMANDS, Context, parse_options

from llmlab.errors import LabError, one_line
from llmlab.session import default_lab

OVERVIEW = """Work with large language models from a notebook.

  %llm SUBCOMMAND [options] [text]      line magic; {var} in the line is interpolated
                                        ({{ }} for literal braces); the text starts at its
                                        first word, so a later -h is text (-- starts it too);
                                        a "quoted prompt" ends at its quote: options may follow
  %%llm SUBCOMMAND [options]            cell magic; the cell body is taken literally
                                        (add --format-body to interpolate {var} in it)

Errors print one line and leave the session usable (%tb shows the traceback of an
unexpected one). `%llm help SUBCOMMAND` shows one subcommand; the engine is the same
from Python: `from llmlab import default_lab`.
"""


def full_help() -> str:
    """Every subcommand's usage, for ``%llm?``."""
    sections = [OVERVIEW, "Subcommands:"]
    sections += [f"  {c.name:<10} {c.summary}" for c in COMMANDS.values()]
    sections += ["", *(c.help() for c in COMMANDS.values())]
    return "\n".join(sections)


def _failed(name: str, err: BaseException) -> UsageError:
    """The one line for a failure outside the expected set; the original exception is kept
    on it, and :func:`keep_traceback` hands it to ``%tb``."""
    usage = UsageError(f"%llm {name} failed: {one_line(err)} (%tb shows the traceback)")
    usage.llmlab_error = err  # type: ignore[attr-defined]
    return usage


def keep_traceback(result) -> None:
    """IPython ``post_run_cell`` hook: after a ``%llm`` failure shown as one line, make the
    original exception the "last" one, so ``%tb`` prints its traceback (not the UsageError's)."""
    err = getattr(result.error_in_exec, "llmlab_error", None)
    if err is not None:
        sys.last_type, sys.last_value, sys.last_traceback = type(err), err, err.__traceback__
        if sys.version_info >= (3, 12):
            sys.last_exc = err


@magics_class
class LlmMagics(Magics):
    # {var} is interpolated here, not by IPython, so an undefined name can be named; the
    # namespace is IPython's: the notebook's, plus the caller's locals inside a function.
    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def llm(self, line: str, cell: str | None = None, local_ns: dict | None = None):
        name = "?"
        try:
            check_length(line, "line")
            line = expand(line, {**self.shell.user_ns, **(local_ns or {})})
            check_length(line, "line after {var} interpolation")
            words = split_line(line)
            name = words[0] if words else ""
            return self._dispatch(words, cell)
        except UsageError:
            raise
        except LabError as err:
            usage = UsageError(str(err))
            usage.llmlab_error = err  # type: ignore[attr-defined]
            raise usage from None
        except Exception as err:  # noqa: BLE001 - any failure reaches the user as one line
            raise _failed(name, err) from None

    def _dispatch(self, words: list[str], cell: str | None):
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
        parser = cmd.parser()
        # Everything after the first word of text is text: an unquoted "-h" there is a word.
        options, text = split_options(parser, rest)
        if "-h" in options or "--help" in options:
            print(cmd.help())
            return None
        args = parse_options(parser, options)
        if takes_text(parser):
            args.text = text
        ctx = Context(lab=default_lab(), shell=self.shell, body=cell)
        return cmd.run(ctx, args)
