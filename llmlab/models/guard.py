"""One model, one experiment at a time: the lock every operation on a model's weights takes.

A tradeoff sweep runs in a background thread in Jupyter. Without this, an attention or MoE
capture started meanwhile would hook and switch the attention kernel of the very model the sweep
is timing: the sweep's rows fail and the model can stay on the wrong kernel.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel


class _Guard:
    """One model's lock and what holds it (outermost first), for the "waiting for" line."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.holders: list[str] = []


# Keyed on the torch module, not the LoadedModel: wrappers over the same weights (a variant
# that changes only the kernel yields the same module) must share one lock.
_guards: weakref.WeakKeyDictionary[Any, _Guard] = weakref.WeakKeyDictionary()
_guards_lock = threading.Lock()


def _say(message: str) -> None:
    print(f"llmlab: {message}", flush=True)


@contextmanager
def exclusive(
    lm: LoadedModel, what: str, *, on_wait: Callable[[str], None] | None = None
) -> Iterator[LoadedModel]:
    """Run the block with ``lm`` to itself: THE helper every operation that runs, times, hooks
    or switches a model takes (generation, attention/MoE capture, acceleration variants, each
    row of a tradeoff sweep; new captures such as a logit lens should take it too).

    A tradeoff sweep runs in a background thread in Jupyter; without this, a capture started
    meanwhile would hook and switch the attention kernel of the very model the sweep is
    timing. Work on one model is serialised; the lock is re-entrant, so nested operations of
    one thread (a sweep row that generates) do not wait on themselves. When the model is
    busy, ``on_wait`` (default: print) gets one line saying what we wait for, e.g. "waiting
    for the running tradeoff sweep (quant=int8) on smollm2…". Ctrl-C interrupts the wait.
    """
    guard = _guard_of(lm)
    if not guard.lock.acquire(blocking=False):
        holder = (guard.holders[:1] or ["work"])[0]
        (on_wait or _say)(f"{what} is waiting for the running {holder} on {lm.name}…")
        # A short timeout in a loop keeps the wait interruptible (Ctrl-C) on every platform.
        while not guard.lock.acquire(timeout=0.2):
            pass
    guard.holders.append(what)
    try:
        yield lm
    finally:
        guard.holders.pop()
        guard.lock.release()


def _guard_of(lm: LoadedModel) -> _Guard:
    with _guards_lock:
        try:
            guard = _guards.get(lm.model)
            if guard is None:
                guard = _guards[lm.model] = _Guard()
        except TypeError:  # no module to key on (e.g. a served model): one guard per wrapper
            guard = lm.__dict__.setdefault("_llmlab_guard", _Guard())
    return guard


def busy_with(lm: LoadedModel) -> str | None:
    """What is running on ``lm`` right now (the outermost operation), or None."""
    holders = _guard_of(lm).holders
    return (holders[:1] or [None])[0]
