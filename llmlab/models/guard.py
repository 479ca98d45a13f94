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

from llmlab.errors import LabError

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel


class _Guard:
    """One model's lock and what holds it (outermost first), for the "waiting for" line; the
    long operations running on it (each with a way to stop it); whether it was unloaded."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.holders: list[str] = []
        self.running: dict[int, _Running] = {}
        self.retired = False


class _Running:
    """A long operation that takes the lock many times (a background sweep, one row at a
    time), registered so that unloading the model can stop it and wait for its end."""

    def __init__(self, what: str, stop: Callable[[], None]) -> None:
        self.what, self.stop = what, stop
        self.ended = threading.Event()


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
    if guard.retired:
        guard.lock.release()
        raise LabError(f"{lm.name} was unloaded; load it again to use it")
    guard.holders.append(what)
    try:
        yield lm
    finally:
        guard.holders.pop()
        guard.lock.release()


@contextmanager
def running(lm: LoadedModel, what: str, stop: Callable[[], None]) -> Iterator[None]:
    """Mark a long operation on ``lm`` for the block (a background tradeoff sweep, which takes
    :func:`exclusive` once per row): :func:`retire` calls ``stop()`` and waits for the block
    to end before it frees the model."""
    guard = _guard_of(lm)
    if guard.retired:
        raise LabError(f"{lm.name} was unloaded; load it again to use it")
    entry = _Running(what, stop)
    with _guards_lock:
        guard.running[id(entry)] = entry
    try:
        yield
    finally:
        with _guards_lock:
            guard.running.pop(id(entry), None)
        entry.ended.set()


def retire(lm: LoadedModel, *, on_wait: Callable[[str], None] | None = None) -> None:
    """Take ``lm`` from everything that may use it, before it is unloaded: long operations on
    it are asked to stop (their finished work is kept) and waited for, then the lock is taken
    once more (a running capture or generation ends first) and the model is marked unloaded,
    so whatever still holds it gets one line instead of running on freed weights. The wait
    says what it waits for in one line; Ctrl-C ends the wait and leaves the model loaded."""
    guard = _guard_of(lm)
    with _guards_lock:
        operations = list(guard.running.values())
    busy = [op.what for op in operations] or guard.holders[:1]
    if busy:
        (on_wait or _say)(f"unloading {lm.name}: stopping the running {busy[0]} first…")
    for op in operations:
        op.stop()
    for op in operations:
        while not op.ended.wait(0.2):  # a loop keeps the wait interruptible (Ctrl-C)
            pass
    while not guard.lock.acquire(timeout=0.2):
        pass
    try:
        guard.retired = True
    finally:
        guard.lock.release()


def is_retired(lm: LoadedModel) -> bool:
    return _guard_of(lm).retired


def _guard_of(lm: LoadedModel) -> _Guard:
    with _guards_lock:
        # A served model has no module (its ``model`` property says so): one guard per wrapper.
        capabilities = getattr(lm, "capabilities", None)
        module = None if getattr(capabilities, "remote", False) else lm.model
        try:
            guard = _guards.get(module)
            if guard is None:
                guard = _guards[module] = _Guard()
        except TypeError:  # no module to key on: one guard per wrapper
            guard = lm.__dict__.setdefault("_llmlab_guard", _Guard())
    return guard


def busy_with(lm: LoadedModel) -> str | None:
    """What is running on ``lm`` right now (the outermost operation), or None."""
    holders = _guard_of(lm).holders
    return (holders[:1] or [None])[0]
