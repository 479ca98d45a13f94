"""Tab completion for ``%llm`` / ``%%llm``: subcommands, flags, flag values, loaded model
names and acceleration configuration keys.

An IPython matcher (completer API v2) in ``IPCompleter.custom_matchers``: it runs before Jedi
and, when it has completions, suppresses the others, so ``%llm attention --co<Tab>`` offers
``--compare`` rather than Python's ``compile``/``complex``/``copyright``. IPython's older
``complete_command`` hook cannot do that (it never suppresses Jedi), hence a matcher.
"""

from __future__ import annotations

import re
from typing import Any

from IPython.core.completer import CompletionContext, SimpleCompletion, context_matcher
from IPython.core.error import UsageError
from llmlab.magics.line import split_line
from llmlab.magics.registry import COMMANDS

# `%llm ...`, `%%llm ...` (the first line of a cell) and `r = %llm ...`.
_MAGIC = re.compile(r"^\s*(?:[\w.]+\s*=\s*)?%{1,2}llm(?=\s)")
#: Values of these options are acceleration configurations ("spec=prompt-lookup,quant=int8").
CONFIG_OPTIONS = ("accel", "config", "compare", "configs")


def _words(text: str) -> tuple[list[str], str]:
    """The complete words before the cursor, and the word being typed (quotes ignored: a
    completion is offered only where no quoted text is open)."""
    words = text.split()
    if text and not text[-1].isspace() and words:
        return words[:-1], words[-1]
    return words, ""


def _loaded_models() -> list[str]:
    from llmlab.session import default_lab

    return list(default_lab().models)


def _config_keys(token: str) -> list[str]:
    """Completions of the last comma- or plus-separated part of an acceleration config."""
    from llmlab.accel.registry import ACCELERATIONS, DRAFT_PREFIX, PRESETS

    cut = max(token.rfind(","), token.rfind("+")) + 1
    head, part = token[:cut], token[cut:]
    if "=" in part:
        key = part.split("=", 1)[0]
        acc = ACCELERATIONS.get(key)
        if acc is None:
            return []
        values = [v for v in acc.values if not v.startswith(DRAFT_PREFIX)]
        if any(v.startswith(DRAFT_PREFIX) for v in acc.values):
            values += [DRAFT_PREFIX + name for name in _loaded_models()]
        options = [f"{key}={v}" for v in values]
    else:
        options = [f"{name}=" for name in ACCELERATIONS] + ["baseline", *PRESETS]
    return [head + o for o in options if o.startswith(part)]


def _values(action: Any, token: str) -> list[str]:
    """What may follow an option (or fill a positional)."""
    dest = action.dest
    if action.choices:
        return [str(c) for c in action.choices]
    if dest in CONFIG_OPTIONS:
        return _config_keys(token)
    if dest == "model" or (dest == "name" and not action.option_strings):
        return _loaded_models()
    if dest == "axes":
        from llmlab.tradeoff.render import X_AXES, Y_AXES

        if "," in token:
            x = token.split(",", 1)[0]
            return [f"{x},{y}" for y in Y_AXES]
        return [f"{x}," for x in X_AXES]
    if dest == "spec":  # %llm load
        from llmlab.models.tiny import TINY_CONFIGS

        return ["default", "moe-demo", *(f"tiny:{n}" for n in sorted(TINY_CONFIGS))]
    return []


def completions_for(line: str) -> list[str] | None:
    """Completions for the ``%llm`` line typed so far (``None``: not a ``%llm`` line, or a
    place where llmlab has nothing to offer, such as the prompt's text)."""
    magic = _MAGIC.match(line)
    if magic is None:
        return None
    rest = line[magic.end() :]
    try:
        split_line(rest)
    except UsageError:
        return None  # inside a quoted prompt: text, not options
    words, token = _words(rest)
    if not words:
        return [name for name in COMMANDS if name.startswith(token)]
    name = words[0]
    if name == "help" and len(words) == 1:
        return [n for n in COMMANDS if n.startswith(token)]
    command = COMMANDS.get(name)
    if command is None:
        return None
    parser = command.parser()
    flags = parser._option_string_actions
    before = words[-1] if len(words) > 1 else None
    action = flags.get(before) if before else None
    if action is not None and action.nargs != 0:
        return [v for v in _values(action, token) if v.startswith(token)]
    if token.startswith("-"):
        if "=" in token:
            flag, value = token.split("=", 1)
            if flag in flags:
                return [f"{flag}={v}" for v in _values(flags[flag], value) if v.startswith(value)]
            return []
        return sorted(f for f in flags if f.startswith(token) and f.startswith("--"))
    # A positional: the first one still unfilled (counting words that are not flags/values).
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "text"]
    filled, i = 0, 1
    while i < len(words):
        act = flags.get(words[i].split("=", 1)[0])
        if act is not None:
            i += 1 if ("=" in words[i] or act.nargs == 0) else 2
            continue
        filled, i = filled + 1, i + 1
    if filled < len(positionals):
        return [v for v in _values(positionals[filled], token) if v.startswith(token)]
    return None


@context_matcher()
def llm_matcher(context: CompletionContext) -> dict[str, Any]:
    """IPython matcher: llmlab's completions on a ``%llm`` line, suppressing the others."""
    line = context.text_until_cursor
    if context.cursor_line > 0 and context.full_text.lstrip().startswith("%%llm"):
        return {"completions": [], "suppress": False}  # a %%llm cell's body is text
    found = completions_for(line)
    if not found:
        return {"completions": [], "suppress": False}
    _, token = _words(line)
    return {
        "completions": [SimpleCompletion(text, type="llmlab") for text in found],
        "matched_fragment": token,
        "suppress": True,
        "ordered": True,
    }


def register(ipython: Any) -> None:
    """Add the matcher to ``ipython``'s completer once."""
    completer = getattr(ipython, "Completer", None)
    if completer is not None and llm_matcher not in completer.custom_matchers:
        completer.custom_matchers.insert(0, llm_matcher)
