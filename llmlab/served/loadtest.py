"""Load sweeps: concurrent streamed requests against a served model, level by level.

Metric definitions follow vLLM's ``bench serve`` (GuideLLM uses the same names):

- TTFT: from sending the request to the first streamed chunk that carries text;
- ITL: the gaps between consecutive text chunks of a request (all gaps of all requests);
- TPOT: per request, (E2E - TTFT) / (output tokens - 1): the decode phase per token;
- E2E: from sending the request to its last chunk;
- request throughput: completed requests / the level's wall time; output token throughput:
  output tokens (the server's usage report) / the level's wall time;
- goodput: completed requests per second that met every SLO given (vLLM's definition), with the
  SLO attainment as the fraction of requests that met them.

Each level sends exactly ``requests`` requests with at most ``concurrency`` in flight (a
semaphore, as vLLM's ``--max-concurrency``), so nothing loops unbounded: a request ends at its
``max_tokens``, at the server's end of stream, or at the client's timeout.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.generation.settings import GenerationSettings
from llmlab.measure.stats import Spread
from llmlab.results import Result
from llmlab.served.generate import request_body, stream_request

if TYPE_CHECKING:
    import pandas as pd

    from llmlab.served.model import ServedModel

#: SLO names a user may give, and the per-request figure each is judged on.
SLO_METRICS = {
    "ttft": "ttft_s",
    "itl": "mean_itl_s",  # the request's mean gap between chunks
    "tpot": "tpot_s",
    "e2e": "e2e_s",
}
MAX_CONCURRENCY = 256
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")


def parse_slo(text: str | dict[str, float] | None) -> dict[str, float]:
    """``"ttft=200ms,itl=50ms"`` -> ``{"ttft": 0.2, "itl": 0.05}`` (seconds; bare numbers: ms)."""
    if not text:
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = [part.partition("=")[::2] for part in text.split(",") if part.strip()]
    slo: dict[str, float] = {}
    for name, value in items:
        name = str(name).strip().lower()
        if name not in SLO_METRICS:
            raise LabError(f"unknown SLO {name!r}; use {', '.join(SLO_METRICS)}, e.g. ttft=200ms")
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = _DURATION.match(str(value))
            if not match:
                raise LabError(f"SLO {name}={value!r}: give a time such as 200ms or 1.5s")
            seconds = float(match[1]) / (1 if match[2] == "s" else 1000)
        if seconds <= 0:
            raise LabError(f"SLO {name} must be positive")
        slo[name] = seconds
    return slo


def parse_concurrency(text: str | Sequence[int]) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``, each between 1 and MAX_CONCURRENCY."""
    try:
        levels = [int(x) for x in text.split(",") if x.strip()] if isinstance(text, str) else text
        levels = [int(x) for x in levels]
    except ValueError:
        raise LabError(f"--concurrency takes integers, e.g. 1,2,4,8; got {text!r}") from None
    if not levels or any(not 1 <= c <= MAX_CONCURRENCY for c in levels):
        raise LabError(f"concurrency levels must be 1..{MAX_CONCURRENCY}, e.g. 1,2,4,8")
    return levels


@dataclass
class RequestRecord:
    """One request of a level, as measured on the client."""

    ok: bool
    error: str | None = None
    ttft_s: float | None = None
    e2e_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def mean_itl_s(self) -> float | None:
        return sum(self.itl_s) / len(self.itl_s) if self.itl_s else None

    def meets(self, slo: dict[str, float]) -> bool:
        if not self.ok:
            return False
        for name, limit in slo.items():
            value = getattr(self, SLO_METRICS[name])
            if value is not None and value > limit:
                return False
        return True


@dataclass
class LoadLevel:
    """All requests of one concurrency level."""

    concurrency: int
    records: list[RequestRecord]
    duration_s: float
    slo: dict[str, float] = field(default_factory=dict)

    @property
    def completed(self) -> list[RequestRecord]:
        return [r for r in self.records if r.ok]

    @property
    def failed(self) -> int:
        return len(self.records) - len(self.completed)

    def spread(self, what: str) -> Spread:
        if what == "itl_s":
            return Spread([g for r in self.completed for g in r.itl_s])
        return Spread.of(getattr(r, what) for r in self.completed)

    @property
    def request_throughput(self) -> float:
        return len(self.completed) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def output_throughput(self) -> float:
        tokens = sum(r.output_tokens for r in self.completed)
        return tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def slo_attainment(self) -> float | None:
        if not self.slo or not self.records:
            return None
        return sum(r.meets(self.slo) for r in self.records) / len(self.records)

    @property
    def goodput(self) -> float | None:
        if not self.slo or self.duration_s <= 0:
            return None
        return sum(r.meets(self.slo) for r in self.records) / self.duration_s

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "concurrency": self.concurrency,
            "requests": len(self.records),
            "failed": self.failed,
            "duration_s": self.duration_s,
            "request_throughput": self.request_throughput,
            "output_tok_s": self.output_throughput,
        }
        for name, what in (
            ("ttft", "ttft_s"),
            ("itl", "itl_s"),
            ("tpot", "tpot_s"),
            ("e2e", "e2e_s"),
        ):
            spread = self.spread(what)
            for q in (50, 90, 99):
                value = spread.quantile(q / 100)
                out[f"{name}_p{q}_ms"] = None if value is None else value * 1000
        out["goodput"] = self.goodput
        out["slo_attainment"] = self.slo_attainment
        errors = sorted({r.error for r in self.records if r.error})
        out["errors"] = "; ".join(errors) if errors else None
        return out


@dataclass(repr=False)
class LoadTest(Result):
    """A load sweep over concurrency levels; fills level by level (``status`` running, done,
    stopped or failed). ``to_pandas()``: one row per level; ``save_html()``: offline page."""

    target: str
    model_id: str
    server: str
    concurrency: list[int]
    requests: int
    max_tokens: int
    prompts: list[str]
    slo: dict[str, float] = field(default_factory=dict)
    levels: list[LoadLevel] = field(default_factory=list)
    status: str = "running"
    current: str = ""
    done_requests: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    _listeners: list[Callable[[LoadTest, str], None]] = field(default_factory=list, repr=False)

    def subscribe(self, listener: Callable[[LoadTest, str], None]) -> None:
        """``listener(test, event)`` on "progress" (a request ended), "level" and "end"."""
        self._listeners.append(listener)

    def _notify(self, event: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(self, event)
            except Exception:  # noqa: BLE001 - a broken view must not break the measurement
                import traceback

                traceback.print_exc()

    def level(self, concurrency: int) -> LoadLevel:
        for lv in self.levels:
            if lv.concurrency == concurrency:
                return lv
        raise KeyError(concurrency)

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame([lv.row() for lv in self.levels])
        return frame.set_index("concurrency") if len(frame) else frame

    def summary(self) -> str:
        return (
            f"LoadTest({self.target} at {self.server}: {len(self.levels)}/{len(self.concurrency)} "
            f"levels, {self.requests} requests each, {self.status})"
        )

    def to_text(self) -> str:
        from llmlab.served.render import loadtest_text

        return loadtest_text(self)

    def to_html(self, *, with_plotly_js: bool = True) -> str:
        """Self-contained HTML (plotly.js inlined unless another chart of the page has it)."""
        from llmlab.served.render import loadtest_html

        return loadtest_html(self, with_plotly_js=with_plotly_js)

    def save_html(self, path, title: str | None = None):  # type: ignore[override]
        return super().save_html(path, title or f"llmlab load test: {self.target}")


def run_load_test(
    sm: ServedModel,
    concurrency: str | Sequence[int] = (1, 2, 4, 8),
    *,
    requests: int = 16,
    prompts: Sequence[str] | None = None,
    max_tokens: int = 64,
    slo: str | dict[str, float] | None = None,
    warmup: bool = True,
    listeners: Sequence[Callable[[LoadTest, str], None]] = (),
) -> LoadTest:
    """Run the sweep in this thread; Ctrl-C stops it and keeps the finished levels."""
    if not getattr(sm, "served", False):
        raise LabError(
            f"{sm.name} is a local model; a load test needs a served one "
            "(%llm load openai:http://HOST:PORT/v1 --model NAME)"
        )
    levels = parse_concurrency(concurrency)
    slo_s = parse_slo(slo)
    if requests < 1 or requests > 100_000:
        raise LabError(f"--requests must be 1..100000, got {requests}")
    if prompts is None:
        from llmlab.tradeoff.runner import default_prompts

        prompts = default_prompts()
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise LabError("the prompt set is empty; give at least one prompt (one per line)")
    settings = GenerationSettings(max_new_tokens=max_tokens)
    test = LoadTest(
        target=sm.name,
        model_id=sm.model_id,
        server=sm.endpoint.host,
        concurrency=levels,
        requests=requests,
        max_tokens=max_tokens,
        prompts=list(prompts),
        slo=slo_s,
    )
    for listener in listeners:
        test.subscribe(listener)
    _LoadJob(test, sm, settings).run(warmup)
    return test


class _LoadJob:
    def __init__(self, test: LoadTest, sm: ServedModel, settings: GenerationSettings) -> None:
        self.test, self.sm, self.settings = test, sm, settings
        self.stop = threading.Event()
        self._count_lock = threading.Lock()

    def one(self, prompt: str) -> RequestRecord:
        path, body = request_body(self.sm.model_id, prompt, self.settings, chat=True)
        try:
            run = stream_request(self.sm.endpoint, path, body, stop=self.stop)
        except LabError as err:
            return RequestRecord(ok=False, error=str(err))
        finally:
            with self._count_lock:
                self.test.done_requests += 1
        times = run.chunk_times
        return RequestRecord(
            ok=not self.stop.is_set() and run.ttft_s is not None,
            error=None if run.ttft_s is not None else "no text streamed",
            ttft_s=run.ttft_s,
            e2e_s=times[-1] if times else run.e2e_s,
            itl_s=[b - a for a, b in zip(times, times[1:])],
            output_tokens=run.output_tokens,
            prompt_tokens=run.prompt_tokens,
        )

    def run(self, warmup: bool) -> None:
        test = self.test
        start = time.perf_counter()
        try:
            if warmup:
                test.current = "warm-up request"
                test._notify("progress")
                first = self.one(test.prompts[0])
                test.done_requests = 0
                if not first.ok:
                    raise LabError(f"the warm-up request failed: {first.error}")
            for c in test.concurrency:
                test.current = f"concurrency {c}"
                test._notify("progress")
                level = self.level(c)
                test.levels.append(level)
                test._notify("level")
                if not level.completed:
                    test.status = "failed"
                    test.warnings.append(
                        f"no request at concurrency {c} completed ({level.row()['errors']}); "
                        "the sweep stopped there"
                    )
                    return
            test.status = "done"
        except KeyboardInterrupt:
            test.status = "stopped"
            test.warnings.append(
                f"stopped by the user after {len(test.levels)} of {len(test.concurrency)} "
                "levels; the finished ones are kept"
            )
        except LabError as err:
            test.status = "failed"
            test.warnings.append(str(err))
        finally:
            test.current = ""
            test.seconds = time.perf_counter() - start
            test._notify("end")

    def level(self, concurrency: int) -> LoadLevel:
        test = self.test
        test.done_requests = 0
        prompts = [test.prompts[i % len(test.prompts)] for i in range(test.requests)]
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llmlab-load")
        start = time.perf_counter()
        try:
            futures = [pool.submit(self.one, p) for p in prompts]
            pending = set(futures)
            while pending:
                # A short wait so Ctrl-C reaches this thread between checks.
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                test._notify("progress")
            duration = time.perf_counter() - start
            records = [f.result() for f in futures]
        except KeyboardInterrupt:
            self.stop.set()  # open streams end at their next chunk...
            self.sm.endpoint.close()  # ...and queued ones now: their connections are closed
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return LoadLevel(concurrency, records, duration, test.slo)
