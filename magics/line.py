"""Reading a ``%llm`` line: interpolate ``{var}``, split into words, find where the text starts.

Hand-written rather than ``shlex.split``: shlex grows each word one character at a time
(``token = token + char``), which is quadratic, so a 1 MB prompt interpolated into a line took
33 s and 10 MB ran for minutes. This splitter follows the same POSIX rules in linear time.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from IPython.core.error import UsageError

#: The longest text a line or a cell body may carry (4 Mi characters, about a million tokens:
#: more than any model here can read). Checked before any parsing so a huge paste fails at once.
MAX_TEXT_CHARS = 4 * 2**20

_WORD_PART = re.compile(
    r"""
      (?P<space>[ \t\r\n]+)
    | "(?P<dq>(?:[^"\\]+|\\.)*)"
    | '(?P<sq>[^']*)'
    | \\(?P<esc>.)
    | (?P<plain>[^ \t\r\n"'\\]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_DQ_ESCAPE = re.compile(r"\\([\\\"])")
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def check_length(text: str, what: str) -> None:
    """One line, before any parsing, when ``text`` is longer than any model could read."""
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(
            f"the {what} is {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} llmlab "
            "accepts (about a million tokens, beyond any model's context); shorten it"
        )


class Quoted(str):
    """A word written wholly inside one pair of quotes (``"What is x?"``): a prompt typed in
    quotes ends at its closing quote, so what follows it is read as options."""


def split_line(line: str) -> list[str]:
    """Split like ``shlex.split`` (POSIX: quotes group, backslash escapes), in linear time.
    Words written wholly inside one pair of quotes come back as :class:`Quoted`."""
    words: list[str] = []
    parts: list[str] | None = None  # the pieces of the word being read; None between words
    quoted = False  # the word being read is one quoted piece so far
    pos, end = 0, len(line)
    while pos < end:
        match = _WORD_PART.match(line, pos)
        if match is None:
            quote = line[pos]
            what = "closing quotation" if quote in "\"'" else "escaped character"
            raise UsageError(
                f"could not read the line (no {what}); quote the text with double quotes, "
                "or use %%llm with the text in the cell body"
            )
        pos = match.end()
        kind = match.lastgroup
        if kind == "space":
            if parts is not None:
                words.append(_word(parts, quoted))
                parts = None
            continue
        piece = match.group(kind)
        if kind == "dq":
            piece = _DQ_ESCAPE.sub(r"\1", piece)
        quoted = parts is None and kind in ("dq", "sq")
        parts = [] if parts is None else parts
        parts.append(piece)
    if parts is not None:
        words.append(_word(parts, quoted))
    return words


def _word(parts: list[str], quoted: bool) -> str:
    text = "".join(parts)
    return Quoted(text) if quoted and len(parts) == 1 else text


def takes_text(parser: argparse.ArgumentParser) -> bool:
    """Whether the command ends with free text (the ``text`` words of ``TEXT_ARGS``)."""
    return any(a.dest == "text" and not a.option_strings for a in parser._actions)


def split_options(parser: argparse.ArgumentParser, words: list[str]) -> tuple[list[str], list[str]]:
    """``(options, text)``: the text starts at the first word that is not an option or an
    option's value (or after ``--``), and everything from there on is text, so a prompt may
    say ``-h`` or ``--temperature`` without quotes.

    A prompt written in quotes ends at its closing quote: the words after it are options
    (``"What is x?" --max-new-tokens 4``), and a plain word there is refused in one line
    rather than sent to the model as part of the prompt."""
    if not takes_text(parser):
        return words, []
    options, text, after_dashes = _leading_options(parser, words)
    if after_dashes or not text or not isinstance(text[0], Quoted) or len(text) == 1:
        return options, text
    prompt, after = text[0], text[1:]
    if after[0] == "--" or not after[0].startswith("-") or _NEGATIVE_NUMBER.match(after[0]):
        raise UsageError(
            f"%llm {parser.prog}: {after[0]!r} follows the quoted prompt; put the whole prompt "
            "inside the quotes (options go before or after it)"
        )
    more, stray, _ = _leading_options(parser, after)
    actions = parser._option_string_actions
    if any(
        w.startswith("-") and not _NEGATIVE_NUMBER.match(w) and w.split("=", 1)[0] not in actions
        for w in more
    ):
        return options + after, [prompt]  # a mistyped flag: argparse names it (did you mean)
    if stray:
        raise UsageError(
            f"%llm {parser.prog}: {stray[0]!r} follows the options after the quoted prompt; "
            "put the whole prompt inside the quotes"
        )
    return options + more, [prompt]


def _leading_options(
    parser: argparse.ArgumentParser, words: list[str]
) -> tuple[list[str], list[str], bool]:
    """The options before the first text word, the rest, and whether ``--`` started the rest."""
    actions = parser._option_string_actions
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return words[:i], words[i + 1 :], True
        if isinstance(word, Quoted) or not word.startswith("-") or _NEGATIVE_NUMBER.match(word):
            return words[:i], words[i:], False
        flag, has_value = word.split("=", 1)[0], "=" in word
        i += 1 + (0 if has_value else _values_taken(actions.get(flag), words[i + 1 :]))
    return words, [], False


def _values_taken(action: Any, following: list[str]) -> int:
    """How many of the ``following`` words an option consumes (unknown ones: none, so that
    argparse names the unknown option)."""
    if action is None:
        return 0
    nargs = action.nargs
    if nargs == 0:
        return 0
    if nargs is None:
        return min(1, len(following))
    if isinstance(nargs, int):
        return min(nargs, len(following))
    count = 0
    for word in following:
        if word.startswith("-") and not _NEGATIVE_NUMBER.match(word):
            break
        count += 1
        if nargs == "?":
            break
    return count


def expand(line: str, namespace: dict[str, Any]) -> str:
    """Interpolate ``{expr}`` and ``$name`` from the notebook as IPython does, but say which
    name is undefined when a ``{name}`` field names nothing (IPython would silently send the
    braces to the model). Other text that does not format stays literal, as in IPython."""
    if "{" not in line and "$" not in line:
        return line
    from IPython.utils.text import DollarFormatter

    try:
        return DollarFormatter().vformat(line, args=[], kwargs=dict(namespace))
    except NameError as err:
        name = getattr(err, "name", None)
        if name and re.search(r"\{\s*" + re.escape(name) + r"\b", line):
            raise UsageError(
                f"{{{name}}} in the line names no notebook variable; define {name} first, "
                f"write {{{{{name}}}}} for literal braces, or put the text in a %%llm cell body "
                "(taken literally)"
            ) from None
        return line
    except Exception:  # noqa: BLE001 - as IPython: text that does not format is kept as typed
        return line
