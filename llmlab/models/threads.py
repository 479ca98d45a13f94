"""How many CPU threads torch runs on, and a one-line warning when the machine is too busy for
that many.

torch's intra-op threads wait for each other at every operation: when other processes already
keep the cores busy, two threads ran 10-20x slower than one on a shared 2-core machine
(0.4 / 6.1 / 1.9 / 8.3 tok/s alternating 2, 1, 2, 1 threads). The setting is torch's and so
process-wide: it applies to every local model of the session.
"""

from __future__ import annotations

import os

from llmlab.errors import LabError


def cpu_count() -> int:
    """CPUs this process may run on (its affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def set_threads(threads: int) -> int:
    """Run torch on ``threads`` CPU threads (process-wide); returns the number set."""
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise LabError(f"--threads takes a whole number of threads >= 1, got {threads!r}")
    if threads > 4 * cpu_count():
        raise LabError(
            f"--threads {threads} is far more than this machine's {cpu_count()} CPUs; "
            f"use at most {cpu_count()}"
        )
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every OS
        return None


def busy_note(device: str = "cpu") -> str | None:
    """One line when the machine is oversubscribed for CPU work (the 1-minute load average is
    above the threads torch would use, and torch uses more than one), with what to do; else
    None. Not for GPU work, where the CPU threads only feed the device."""
    if not device.startswith("cpu"):
        return None
    load, threads = load_average(), torch_threads()
    if load is None or threads <= 1 or load <= threads:
        return None
    return (
        f"this machine is busy (load average {load:.1f} on {cpu_count()} CPUs) and torch runs "
        f"on {threads} threads, which then wait on each other (up to 10x slower); "
        "`%llm load --threads 1` (Lab.load(threads=1)) is usually much faster here"
    )


def threads_text(device: str) -> str:
    """``"2 threads"`` for figures measured on the CPU (what they were taken under); ``""``
    elsewhere (on a GPU the CPU threads do not set the pace)."""
    if not device.startswith("cpu"):
        return ""
    n = torch_threads()
    return f"{n} thread{'s' if n != 1 else ''}"
