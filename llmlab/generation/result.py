"""What a generation returns: text, token ids, honest timing and memory, and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmlab.devices import format_bytes
from llmlab.generation.labels import stat_items
from llmlab.generation.settings import GenerationSettings
from llmlab.html import card, esc
from llmlab.results import Result


@dataclass
class GenerationStats:
    """Timings are wall-clock seconds measured around the model's own ``generate`` loop.

    ``ttft_s``: from the call to the first new token (prefill + first step).
    ``decode_tokens_per_s``: tokens after the first, over the time after the first.
    ``token_times_s``: arrival time of each new token, from the call's start.
    """

    prompt_tokens: int
    new_tokens: int
    ttft_s: float | None
    total_s: float
    token_times_s: list[float]
    peak_memory_bytes: int
    peak_memory_kind: str  # "process peak RSS" or "CUDA peak allocated"
    device: str
    dtype: str
    stopped: str  # "eos", "length" or "interrupted"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. acceptance rate when drafting
    threads: int | None = None  # torch CPU threads it ran on (None off the CPU, or served)

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: the span of arrivals over its gaps."""
        t = self.token_times_s
        return (t[-1] - t[0]) / (len(t) - 1) if len(t) >= 2 else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        tpot = self.tpot_s
        return 1 / tpot if tpot else None

    @property
    def inter_token_s(self) -> list[float]:
        t = self.token_times_s
        return [b - a for a, b in zip(t, t[1:])]

    def footer(self) -> str:
        # 0 only where a server did not report it (a local prompt has at least one token).
        parts = [f"{self.prompt_tokens} prompt tokens"] if self.prompt_tokens else []
        parts.append(f"{self.new_tokens} new")
        if self.ttft_s is not None:
            parts.append(f"TTFT {self.ttft_s * 1000:.0f} ms")
        if (tps := self.decode_tokens_per_s) is not None:
            parts.append(f"decode {tps:.1f} tok/s")
        if self.peak_memory_kind:  # empty for a served model: the server's memory is unseen
            parts.append(f"{self.peak_memory_kind} {format_bytes(self.peak_memory_bytes)}")
        if self.dtype:
            parts.append(f"{self.device}/{self.dtype}")
        if self.threads:
            parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        parts.extend(f"{label} {value}" for label, value in stat_items(self.extra))
        if self.stopped == "interrupted":
            parts.append("interrupted")
        return " · ".join(parts)


@dataclass
class Candidate:
    text: str
    token_ids: list[int]
    mean_logprob: float | None  # under the model's own (unwarped) distribution


@dataclass(repr=False)
class GenerationResult(Result):
    """The answer. ``text``/``token_ids`` are the chosen candidate (the only one by default)."""

    model: str
    prompt: str
    text: str
    token_ids: list[int]
    stats: GenerationStats
    settings: GenerationSettings
    candidates: list[Candidate] = field(default_factory=list)
    chosen: int = 0
    #: With speculative decoding: every verification step (a ``llmlab.accel.DraftTrace``).
    drafts: Any = None

    def __str__(self) -> str:
        return self.text

    def summary(self) -> str:
        short = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"GenerationResult({self.model}: {short!r}, {self.stats.new_tokens} tokens)"

    def to_text(self) -> str:
        return f"{self.text}\n[{self.model} · {self.settings.describe()} · {self.stats.footer()}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "text": self.text,
            "token_ids": self.token_ids,
            "settings": self.settings.to_dict(),
            "stats": {
                "prompt_tokens": self.stats.prompt_tokens,
                "new_tokens": self.stats.new_tokens,
                "ttft_s": self.stats.ttft_s,
                "decode_tokens_per_s": self.stats.decode_tokens_per_s,
                "total_s": self.stats.total_s,
                "peak_memory_bytes": self.stats.peak_memory_bytes,
                "device": self.stats.device,
                "dtype": self.stats.dtype,
                "stopped": self.stats.stopped,
                "threads": self.stats.threads,
                **self.stats.extra,
            },
            "candidates": [c.__dict__ for c in self.candidates],
        }

    def to_html(self) -> str:
        body = f'<div class="llmlab-text">{esc(self.text)}</div>'
        if len(self.candidates) > 1:
            body = self._candidates_table()
        footer = f"{esc(self.model)} · {esc(self.settings.describe())} · {esc(self.stats.footer())}"
        return card(f'{body}<div class="llmlab-stats">{footer}</div>')

    def _candidates_table(self) -> str:
        rows = []
        for i, c in enumerate(self.candidates):
            best = self.settings.best_of > 1 and i == self.chosen
            score = "" if c.mean_logprob is None else f"{c.mean_logprob:.3f}"
            rows.append(
                f'<tr class="{"llmlab-best" if best else ""}"><td>{i + 1}{" ★" if best else ""}'
                f'</td><td>{score}</td><td class="llmlab-text">{esc(c.text)}</td></tr>'
            )
        head = "<tr><th>#</th><th>mean log-prob</th><th>text</th></tr>"
        return f"<table>{head}{''.join(rows)}</table>"
