"""The one exception type the engine raises for mistakes a user can fix."""


class LabError(Exception):
    """A user-facing error: its message is one line that says what to do.

    Front doors show it without a traceback (the magics raise IPython's ``UsageError``).
    """
