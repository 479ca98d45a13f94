"""Subcommands of ``%llm``: each is a function plus an argparse parser built from ``arg()`` specs.

Each feature lives in its own module under ``magics/commands/`` and registers itself with
:func:`command`, so adding a subcommand never touches the dispatcher.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError


@dataclass
class Context:
    """What a subcommand gets besides its parsed arguments."""

    lab: Any  # llmlab.Lab
    shell: Any  # IPython InteractiveShell
    body: str | None  # the cell body for %%llm, taken literally (see --format-body)

    @property
    def in_kernel(self) -> bool:
        """True in Jupyter (display updates work); False in a terminal IPython."""
        return getattr(self.shell, "kernel", None) is not None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, [], argparse.SUPPRESS)
        if shown and "%(default)" not in text and (action.option_strings or action.nargs == "?"):
            value = str(default)
            value = value if len(value) <= 40 else value[:37] + "…"
            text += f" (default: {value})".replace("%", "%%")  # argparse %-formats help
        return text


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one-line UsageErrors instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"%llm {self.prog}: {message} (see %llm help {self.prog})")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or f"%llm {self.prog}: stopped")


@dataclass
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    """One argparse argument, declared next to the command that takes it."""
    return Arg(flags, options)


@dataclass
class Command:
    name: str
    summary: str
    run: Callable[[Context, argparse.Namespace], Any]
    args: list[Arg] = field(default_factory=list)
    body: str = "none"  # what a %%llm cell body means: "none", or e.g. "the prompt"

    def parser(self) -> argparse.ArgumentParser:
        parser = _Parser(
            prog=self.name,
            description=self.summary,
            add_help=False,
            allow_abbrev=False,
            formatter_class=_HelpFormatter,
            epilog=(
                f"As a cell magic (%%llm {self.name}), the cell body is {self.body}."
                if self.body != "none"
                else None
            ),
        )
        for a in self.args:
            parser.add_argument(*a.flags, **a.options)
        return parser

    def help(self) -> str:
        return self.parser().format_help().replace("usage: ", "usage: %llm ", 1)


def parse_options(parser: argparse.ArgumentParser, options: list[str]) -> argparse.Namespace:
    """``parser.parse_args`` that names the closest known flag for a mistyped one (argparse
    in Python < 3.14 only says "unrecognized arguments")."""
    args, unknown = parser.parse_known_args(options)
    if not unknown:
        return args
    flag = next((w.split("=", 1)[0] for w in unknown if w.startswith("-")), None)
    known = [f for f in parser._option_string_actions if f.startswith("--")]
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6) if flag else []
    hint = f"; did you mean {close[0]}?" if close else ""
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, *args: Arg, body: str = "none") -> Callable:
    """Register ``%llm NAME``; ``summary`` is its one-line help."""

    def register(run: Callable[[Context, argparse.Namespace], Any]) -> Callable:
        COMMANDS[name] = Command(name, summary, run, list(args), body)
        return run

    return register
