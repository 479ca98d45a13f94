"""Show a generation while it runs: a live display in Jupyter, plain text in a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable

from llmlab.magics.registry import Context

from llmlab.generation.result import GenerationResult
from llmlab.html import card, esc

#: Display updates are throttled: re-rendering per token would cost more than the token.
REFRESH_S = 0.1

Runner = Callable[[Callable[[list[int], float], None] | None], GenerationResult]


def stream(ctx: Context, run: Runner, decode: Callable[[list[int]], str]) -> GenerationResult:
    """Call ``run(on_token)`` and show the text as tokens arrive, then the final result."""
    if ctx.in_kernel:
        return _stream_to_display(run, decode)
    return _stream_to_terminal(run, decode)


def _stream_to_display(run: Runner, decode: Callable[[list[int]], str]) -> GenerationResult:
    from IPython.display import HTML, display

    handle = display(HTML(card('<span class="llmlab-stats">generating…</span>')), display_id=True)
    last = 0.0

    def on_token(ids: list[int], elapsed: float) -> None:
        nonlocal last
        if elapsed - last >= REFRESH_S:
            last = elapsed
            footer = f"generating… {len(ids)} tokens, {elapsed:.1f} s"
            handle.update(
                HTML(
                    card(
                        f'<div class="llmlab-text">{esc(decode(ids))}▌</div>'
                        f'<div class="llmlab-stats">{footer}</div>'
                    )
                )
            )

    result = run(on_token)
    handle.update(result)
    result._shown_live = True
    return result


def _stream_to_terminal(run: Runner, decode: Callable[[list[int]], str]) -> GenerationResult:
    printed = ""

    def on_token(ids: list[int], elapsed: float) -> None:
        nonlocal printed
        text = decode(ids)
        # A token may complete a multi-byte character only later; print only settled text.
        if text.startswith(printed) and not text.endswith("\ufffd"):
            sys.stdout.write(text[len(printed) :])
            sys.stdout.flush()
            printed = text

    result = run(on_token)
    if len(result.candidates) > 1:
        for i, c in enumerate(result.candidates):
            mark = " *" if result.settings.best_of > 1 and i == result.chosen else ""
            print(f"[{i + 1}{mark}] ({c.mean_logprob:.3f}) {c.text}")
    elif result.text.startswith(printed):
        print(result.text[len(printed) :])
    else:
        print()
    print(f"[{result.model} · {result.settings.describe()} · {result.stats.footer()}]")
    result._shown_live = True
    return result
