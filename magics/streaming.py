"""Show a generation while it runs: a live display in Jupyter, plain text in a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable

from llmlab.magics.registry import Context

from llmlab.generation.result import GenerationResult
from llmlab.html import card, esc

#: Display updates are throttled: re-rendering per token would cost more than the token.
REFRESH_S = 0.1
#: An answer that hit the token limit while its last tokens repeat a short cycle this many
#: times is called a loop (small models do this; the note says what to try).
LOOP_REPEATS = 3
LOOP_MAX_PERIOD = 32
LOOP_MIN_TOKENS = 16  # a short answer that repeats a token is not a loop

Runner = Callable[[Callable[[list[int], float], None] | None], GenerationResult]


def stream(ctx: Context, run: Runner, decode: Callable[[list[int]], str]) -> GenerationResult:
    """Call ``run(on_token)`` and show the text as tokens arrive, then the final result."""
    show = _stream_to_display if ctx.in_kernel else _stream_to_terminal
    result = show(run, decode)
    note = loop_note(result)
    if note:
        print(note)
    return result


def repeating_period(ids: list[int]) -> int | None:
    """The shortest period p (<= LOOP_MAX_PERIOD) with which the answer's last
    max(LOOP_REPEATS * p, LOOP_MIN_TOKENS) tokens repeat, or None."""
    for p in range(1, LOOP_MAX_PERIOD + 1):
        span = max(LOOP_REPEATS * p, LOOP_MIN_TOKENS)
        if len(ids) < span:
            break
        tail = ids[-span:]
        if all(tail[i] == tail[i - p] for i in range(p, span)):
            return p
    return None


def loop_note(result: GenerationResult) -> str | None:
    """One line when the answer ran to the token limit repeating itself."""
    if result.stats.stopped != "length" or len(result.candidates) > 1:
        return None
    period = repeating_period(list(result.token_ids))
    if period is None:
        return None
    return (
        f"note: the answer ran to the token limit repeating a {period}-token phrase (small "
        "models loop); try sampling (--temperature 0.7), a shorter --max-new-tokens, or "
        "%llm chat --reset"
    )


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

    try:
        result = run(on_token)
    except BaseException:
        # A refused request or an error must not leave a "generating…" card behind.
        handle.update(HTML(""))
        raise
    # The card becomes the result's own view (its offline copy follows when built).
    result._show(handle)
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
