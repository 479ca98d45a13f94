"""The one exception type the engine raises for mistakes a user can fix."""


class LabError(Exception):
    """A user-facing error: its message is one line that says what to do.

    Front doors show it without a traceback (the magics raise IPython's ``UsageError``).
    """


def one_line(err: BaseException, limit: int = 300, *, with_type: bool = True) -> str:
    """``Type: message`` in one line, for failures outside the expected set. A first line that
    only introduces the next ("validation error for ...:") keeps the next line too."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text += " " + lines[1]
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(err).__name__}: {text}" if with_type else text
