"""Device and dtype choices, and honest memory readings."""

from __future__ import annotations

import resource
import sys
from typing import TYPE_CHECKING

from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str = "auto") -> str:
    """Turn ``auto`` into the best device present; refuse CUDA where there is none."""
    import torch

    if device not in DEVICES:
        raise LabError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise LabError(
            "--device cuda was asked for but this machine has no CUDA GPU; use --device cpu"
        )
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """Map a dtype name to torch; ``auto`` is float32 on CPU and bfloat16 on CUDA."""
    import torch

    if dtype not in DTYPES:
        raise LabError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if dtype == "float16" and device == "cpu":
        # Many CPU kernels lack float16 (or run it very slowly); bfloat16 is the CPU half type.
        raise LabError("float16 is not supported on CPU here; use --dtype bfloat16 or float32")
    return getattr(torch, dtype)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes(device: str) -> int:
    """Peak memory: allocated bytes on CUDA since the last reset, else the process peak RSS.

    On CPU the OS only reports the peak over the process lifetime (``ru_maxrss``), so the
    figure is labelled as the process peak, not as this generation's own.
    """
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
