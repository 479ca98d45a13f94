"""What a long command is doing, in the cell (Jupyter) or on stderr (a terminal).

Jupyter: one HTML line updated in place through a display handle, not a tqdm widget. A
widget's saved output is a snapshot taken when it appeared (a report would show "0%" for
ever); a display update rewrites the saved output too, so a report shows the finished line.
A terminal gets a tqdm bar over the steps.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from llmlab.html import card, esc


class Steps:
    """``steps = Steps(ctx, "attention --compare int8", total=4)``; ``steps("loading …")``
    starts the next step; ``steps.close()`` leaves one finished line (with the time taken)."""

    def __init__(self, in_kernel: bool, what: str, total: int) -> None:
        self.what, self.total, self.done = what, max(total, 1), 0
        self.start = time.perf_counter()
        self._handle: Any = None
        self._bar: Any = None
        if in_kernel:
            from IPython.display import HTML, display

            self._handle = display(HTML(self._line("starting")), display_id=True)
        else:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=what, file=sys.stderr, leave=False)

    def _line(self, step: str, finished: bool = False) -> str:
        seconds = time.perf_counter() - self.start
        if finished:
            body = f"{esc(self.what)}: done in {seconds:.1f} s"
        else:
            body = (
                f'<progress max="{self.total}" value="{self.done}" style="width:120px;'
                f'vertical-align:middle"></progress> {esc(self.what)}: {esc(step)}… '
                f"(step {min(self.done + 1, self.total)} of {self.total}, {seconds:.0f} s)"
            )
        return card(f'<span class="llmlab-stats" style="border:0;margin:0;padding:0">{body}</span>')

    def __call__(self, step: str) -> None:
        if self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(self._line(step)))
        elif self._bar is not None:
            self._bar.update(1 if self.done else 0)
            # Refresh now: tqdm redraws only after `mininterval`, so quick steps would never
            # name themselves on the terminal.
            self._bar.set_postfix_str(step, refresh=True)
        self.done += 1

    def close(self, ok: bool = True) -> None:
        """The finished line (or, after an error, nothing: the error says what happened)."""
        if self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(self._line("", finished=True) if ok else ""))
        elif self._bar is not None:
            self._bar.update(self.total - self._bar.n)
            self._bar.close()

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, kind: Any, *_exc: Any) -> None:
        self.close(ok=kind is None)
