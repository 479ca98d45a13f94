"""A sweep's results: one :class:`SweepPoint` per configuration, collected in a :class:`Sweep`.

Every figure keeps its samples (a :class:`~llmlab.measure.stats.Spread`), so tables show the
median with its IQR and p90, and plots draw error bars, never a bare number.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.measure.latency import LatencySummary
from llmlab.measure.stats import Spread, count
from llmlab.results import Result

if TYPE_CHECKING:
    import pandas as pd

#: The measured label needs both: next-token distributions this close, and the same greedy text.
KL_PRESERVING = 1e-4
PRESERVING = "output-preserving"
APPROXIMATING = "approximating"


@dataclass
class SweepPoint:
    """The measurements of one configuration (``status`` "ok", "failed" or "interrupted")."""

    config: str
    claimed_output_preserving: bool | None
    status: str = "ok"
    error: str | None = None
    is_baseline: bool = False
    repeat_of_baseline: bool = False  # the baseline measured again at the end of the sweep
    latency: LatencySummary | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str = ""
    reserved_memory_bytes: int | None = None
    weight_bytes: int | None = None
    kv_bytes: int | None = None  # KV cache at the median final length
    usd_per_mtok: Spread | None = None
    roofline: Spread | None = None  # fraction of the memory-bandwidth roofline, per run
    kl: Spread | None = None  # per position, nats; headline: mean
    top1: Spread | None = None  # per prompt; headline: mean
    greedy_matches: list[bool] | None = None  # per prompt
    first_divergence: list[int] | None = None  # per prompt: index of the first differing token
    perplexity: float | None = None
    perplexity_tokens: int | None = None
    acceptance_rate: Spread | None = None
    texts: list[str] = field(default_factory=list)  # first timed run per prompt
    token_ids: list[list[int]] = field(default_factory=list)
    nondeterministic: bool = False  # repeated greedy runs gave different tokens
    quality_note: str | None = None  # why quality figures are missing
    seconds: float = 0.0  # wall time spent on this point

    @property
    def name(self) -> str:
        return f"{self.config} (again)" if self.repeat_of_baseline else self.config

    @property
    def greedy_match_rate(self) -> float | None:
        m = self.greedy_matches
        return sum(m) / len(m) if m else None

    @property
    def measured_label(self) -> str | None:
        if self.kl is None or not self.kl.n or self.greedy_matches is None:
            return None
        same = all(self.greedy_matches)
        return PRESERVING if self.kl.mean < KL_PRESERVING and same else APPROXIMATING

    @property
    def claimed_label(self) -> str | None:
        if self.claimed_output_preserving is None:
            return None
        return PRESERVING if self.claimed_output_preserving else APPROXIMATING

    @property
    def label_disagrees(self) -> bool:
        measured, claimed = self.measured_label, self.claimed_label
        return measured is not None and claimed is not None and measured != claimed

    def speedup_over(self, baseline: SweepPoint | None) -> dict[str, float] | None:
        """How many times faster than ``baseline`` (medians; > 1 is faster): ``e2e`` (the
        headline: what a user waits for; per output token where the answers' lengths differ),
        ``decode`` and ``ttft`` beside it. None without both latencies."""
        a, b = self.latency, baseline.latency if baseline is not None else None
        if a is None or b is None or self is baseline:
            return None

        def ratio(base: Spread, this: Spread) -> float | None:
            return base.median / this.median if base.median and this.median else None

        same_length = a.new_tokens.median == b.new_tokens.median
        out = {
            "e2e": ratio(b.e2e_s, a.e2e_s) if same_length else ratio(b.s_per_token, a.s_per_token),
            "decode": ratio(b.tpot_s, a.tpot_s),
            "ttft": ratio(b.ttft_s, a.ttft_s),
        }
        return None if out["e2e"] is None else {**out, "per_token": not same_length}

    def row(self) -> dict[str, Any]:
        """Flat figures: ``x`` is the headline, ``x_q1``/``x_q3``/``x_p90``/``x_n`` its spread,
        ``x_lo``/``x_hi`` the bar drawn with it (the headline's own interval: IQR around a
        median, 95% confidence interval around a mean) and ``x_bar`` which of the two."""
        out: dict[str, Any] = {
            "config": self.name,
            "status": self.status,
            "claimed": self.claimed_label,
            "measured": self.measured_label,
            "disagrees": self.label_disagrees,
        }
        lat = self.latency

        def put(name: str, spread: Spread | None, scale: float = 1.0) -> None:
            ok = spread is not None and spread.n
            for suffix, attr in (("", "value"), ("_q1", "q1"), ("_q3", "q3"), ("_p90", "p90")):
                out[name + suffix] = getattr(spread, attr) * scale if ok else None
            out[name + "_n"] = spread.n if spread is not None else 0
            bar = spread.interval if ok else None
            out[name + "_lo"], out[name + "_hi"] = (
                (bar[0] * scale, bar[1] * scale) if bar else (None, None)
            )
            out[name + "_bar"] = spread.interval_name if ok else None

        put("ttft_ms", lat and lat.ttft_s, 1e3)
        put("tpot_ms", lat and lat.tpot_s, 1e3)
        put("decode_tps", lat and lat.decode_tps)
        put("e2e_s", lat and lat.e2e_s)
        put("usd_per_mtok", self.usd_per_mtok)
        put("roofline_pct", self.roofline, 100.0)
        put("kl", self.kl)
        put("top1", self.top1)
        put("acceptance", self.acceptance_rate)
        out.update(
            greedy_match=self.greedy_match_rate,
            perplexity=self.perplexity,
            peak_mem_mb=_mb(self.peak_memory_bytes),
            weight_mb=_mb(self.weight_bytes),
            kv_mb=_mb(self.kv_bytes),
            new_tokens=lat.new_tokens.median if lat else None,
            nondeterministic=self.nondeterministic,
            error=self.error or self.quality_note,
            seconds=self.seconds,
        )
        return out


def _machine() -> tuple[int | None, float | None]:
    from llmlab.models.threads import load_average, torch_threads

    return torch_threads(), load_average()


def _mb(n: int | None) -> float | None:
    return None if n is None else n / 2**20


@dataclass(repr=False)
class Sweep(Result):
    """A tradeoff sweep: each configuration run over the same prompts, against the baseline.

    It fills while it runs (``status`` "running"); ``wait()`` blocks until it is done and
    ``stop()`` ends it after the configuration in flight, keeping the finished points.
    """

    model: str
    device: str
    dtype: str
    prompts: list[str]
    settings: dict[str, Any]
    repeats: int
    warmup: int
    configs: list[str]
    points: list[SweepPoint] = field(default_factory=list)
    reference_texts: list[str] = field(default_factory=list)
    bandwidth_bytes_s: float | None = None
    usd_per_hour: float | None = None
    perplexity_text: str = ""
    warnings: list[str] = field(default_factory=list)
    status: str = "running"  # running | done | stopped | failed
    total_units: int = 0  # progress: generations planned
    done_units: int = 0
    current: str = ""  # what is running now, in words
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0
    axes: tuple[str, str] = ("tpot", "kl")
    # Under what the figures were taken (CPU): torch's threads and the machine's load at start.
    threads: int | None = field(default_factory=lambda: _machine()[0])
    load_average: float | None = field(default_factory=lambda: _machine()[1])
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _listeners: list[Any] = field(default_factory=list, repr=False)
    _job: Any = field(default=None, repr=False)  # the runner's work, until started
    _background: bool = field(default=False, repr=False)

    # -- control ------------------------------------------------------------------------
    def start(self) -> Sweep:
        """Run the sweep (in a thread if it was made with ``background=True``)."""
        job, self._job = self._job, None
        if job is None:
            return self  # already started
        if self._background:
            # Views redraw from the sweep's thread, and plotly peeks at sys.modules["pandas"]
            # without importing it: a pandas import half-done in the notebook's thread (a
            # capture started meanwhile) then raised inside the view. Import it fully first.
            import pandas  # noqa: F401

            threading.Thread(target=job, name="llmlab-sweep", daemon=True).start()
        else:
            job()
        return self

    def stop(self) -> None:
        """Ask the sweep to stop; finished points are kept."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Sweep:
        """Block until the sweep ends. Ctrl-C here stops it and keeps the finished points."""
        try:
            while not self._done.wait(0.2 if timeout is None else timeout):
                if timeout is not None:
                    break
        except KeyboardInterrupt:
            self.stop()
            self._done.wait()
        return self

    def subscribe(self, listener: Any) -> None:
        """``listener(sweep, event)`` is called on "progress", "point" and "end"."""
        self._listeners.append(listener)

    def _notify(self, event: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(self, event)
            except Exception as err:  # noqa: BLE001 - a broken view must not break the measurement
                from llmlab.errors import one_line

                # One line: from the sweep's thread it lands in whatever cell runs now.
                print(f"llmlab: a view of the sweep failed to update: {one_line(err)}")

    # -- views --------------------------------------------------------------------------
    @property
    def baseline(self) -> SweepPoint | None:
        return next((p for p in self.points if p.is_baseline and not p.repeat_of_baseline), None)

    def point(self, config: str) -> SweepPoint:
        for p in self.points:
            if p.name == config or p.config == config:
                return p
        raise KeyError(config)

    def to_pandas(self) -> pd.DataFrame:
        """One row per configuration; ``x_q1``/``x_q3``/``x_p90`` columns carry each spread."""
        import pandas as pd

        frame = pd.DataFrame([p.row() for p in self.points])
        return frame.set_index("config") if len(frame) else frame

    def summary(self) -> str:
        ok = sum(p.status == "ok" for p in self.points)
        return (
            f"Sweep({self.model} on {self.device}: {ok}/{len(self.points)} configurations ok, "
            f"{count(len(self.prompts), 'prompt')} x {count(self.repeats, 'repeat')}, "
            f"{self.status})"
        )

    def to_text(self) -> str:
        from llmlab.tradeoff.render import text_table

        return text_table(self)

    def to_html(self, axes: tuple[str, str] | None = None, *, with_plotly_js: bool = True) -> str:
        """Self-contained HTML: an interactive plotly chart (plotly.js inlined, no network;
        ``with_plotly_js=False`` where another chart of the page carries it), the table of
        figures with spreads, and the texts of the point you click."""
        from llmlab.tradeoff.render import sweep_html

        return sweep_html(self, axes or self.axes, with_plotly_js=with_plotly_js)

    def payload(self) -> dict[str, Any]:
        from llmlab.tradeoff.render import sweep_payload

        return sweep_payload(self)

    def save_html(self, path, title: str | None = None):  # type: ignore[override]
        return super().save_html(path, title or f"llmlab tradeoff sweep: {self.model}")

    def compare(self, other: Sweep, *, names: tuple[str, str] | None = None):
        """Side by side with another sweep (e.g. the same configurations on CPU and GPU)."""
        from llmlab.tradeoff.compare import compare_sweeps

        return compare_sweeps(self, other, names=names)
