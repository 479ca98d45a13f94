"""Load tests: streamed requests against a served model, level by level.

A level is either a **concurrency** (closed loop: ``requests`` requests, at most ``c`` in flight,
as vLLM's ``--max-concurrency``) or a **request rate** (open loop: requests sent at seeded Poisson
or constant arrival times, as vLLM's ``--request-rate`` and GuideLLM's ``--rate-type``).
:func:`run_saturation_search` raises the rate until the SLOs fail, then bisects: the highest rate
that still meets them. Workloads (:mod:`llmlab.served.workload`): given prompts, synthetic prompts
of an exact token length with ``ignore_eos``, or multi-turn conversations sharing a prefix.

Metric definitions follow vLLM's ``bench serve`` (GuideLLM uses the same names):

- TTFT: from sending the request to the first streamed chunk that carries text;
- ITL, two definitions in use, both reported and named:
  * ``itl`` -- vLLM's ITL: every gap between consecutive text chunks of every request, pooled;
  * ``itl_req`` -- the per-request mean gap (what AIPerf calls ITL and GuideLLM's
    inter-token latency; with one token per chunk it equals vLLM's TPOT);
- TPOT: per request, (E2E - TTFT) / (output tokens - 1): the decode phase per token;
- E2E: from sending the request to its last chunk;
- request throughput: completed requests / the level's wall time; output token throughput:
  output tokens (the server's usage report) / the level's wall time;
- goodput: completed requests per second that met every SLO given (vLLM's definition), with the
  SLO attainment as the fraction of requests that met them.

Every percentile comes with the number of samples behind it (``ttft_n`` …). A percentile the
sample cannot resolve is not given as a figure (None, shown "n/a"): p50 needs 2 samples, p90 10,
p99 100 (below 1/(1 - q) samples the "p99" is just the maximum); figures from fewer than
:data:`FEW_SAMPLES` samples are flagged.

Nothing loops unbounded: each level sends exactly ``requests`` requests, each ends at its
``max_tokens``, at the server's end of stream, or at the client's timeout.
"""

from __future__ import annotations

import gc
import math
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
from llmlab.served.workload import (
    Conversation,
    Workload,
    arrival_times,
    build_workload,
    parse_rates,
)

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
#: Distinct server faults kept as warnings (each request may word its own).
MAX_NOTES = 8
#: How early an open-loop arrival is handed to its thread, which then waits for the moment.
HANDOVER_LEAD_S = 0.05
#: Percentiles reported, and the metrics they are reported for: (row prefix, record field).
PERCENTILES = (50, 90, 99)
METRICS = (
    ("ttft", "ttft_s"),
    ("itl", "itl_s"),  # vLLM's ITL: all gaps pooled
    ("itl_req", "mean_itl_s"),  # AIPerf's ITL / GuideLLM's: the per-request mean gap
    ("tpot", "tpot_s"),
    ("e2e", "e2e_s"),
)
#: A figure from fewer samples than this is flagged as resting on few requests.
FEW_SAMPLES = 20
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")


def min_samples(q: int) -> int:
    """Samples needed before the q-th percentile is a figure: 1/(1 - q), so at least one sample
    lies above it (p50: 2, p90: 10, p99: 100); below that it is only the sample's maximum."""
    return max(2, math.ceil(1 / (1 - q / 100) - 1e-9))


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
    turn: int = 0  # 0 for single requests; the turn's index in a conversation
    sent_s: float = 0.0  # when it was sent, seconds from the level's start

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
    """All requests of one level: a concurrency, or a request rate (``rate`` req/s, with
    ``concurrency`` as the cap on requests in flight)."""

    concurrency: int
    records: list[RequestRecord]
    duration_s: float
    slo: dict[str, float] = field(default_factory=dict)
    rate: float | None = None
    arrivals: str | None = None

    @property
    def label(self) -> str:
        return f"c={self.concurrency}" if self.rate is None else f"{self.rate:g} req/s"

    @property
    def key(self) -> float:
        return self.concurrency if self.rate is None else self.rate

    @property
    def completed(self) -> list[RequestRecord]:
        return [r for r in self.records if r.ok]

    @property
    def failed(self) -> int:
        return len(self.records) - len(self.completed)

    def spread(self, what: str, records: Sequence[RequestRecord] | None = None) -> Spread:
        records = self.completed if records is None else records
        if what == "itl_s":
            return Spread([g for r in records for g in r.itl_s])
        return Spread.of(getattr(r, what) for r in records)

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
            "rate": self.rate,
            "requests": len(self.records),
            "failed": self.failed,
            "duration_s": self.duration_s,
            "request_throughput": self.request_throughput,
            "output_tok_s": self.output_throughput,
        }
        for name, what in METRICS:
            spread = self.spread(what)
            out[f"{name}_n"] = spread.n
            for q in PERCENTILES:
                value = spread.quantile(q / 100) if spread.n >= min_samples(q) else None
                out[f"{name}_p{q}_ms"] = None if value is None else value * 1000
        turns = {r.turn for r in self.completed}
        if len(turns) > 1:  # conversations: the first turn against the later ones (cache hits)
            first = self.spread("ttft_s", [r for r in self.completed if r.turn == 0])
            later = self.spread("ttft_s", [r for r in self.completed if r.turn > 0])
            out["ttft_turn1_p50_ms"] = None if first.n < 2 else first.quantile(0.5) * 1000
            out["ttft_later_p50_ms"] = None if later.n < 2 else later.quantile(0.5) * 1000
        prompt_tokens = sorted({r.prompt_tokens for r in self.completed if r.prompt_tokens})
        out["input_tokens"] = (
            None
            if not prompt_tokens
            else str(prompt_tokens[0])
            if len(prompt_tokens) == 1
            else f"{prompt_tokens[0]}–{prompt_tokens[-1]}"
        )
        outs = sorted({r.output_tokens for r in self.completed})
        out["output_tokens"] = (
            None if not outs else str(outs[0]) if len(outs) == 1 else f"{outs[0]}–{outs[-1]}"
        )
        out["goodput"] = self.goodput
        out["slo_attainment"] = self.slo_attainment
        errors = sorted({r.error for r in self.records if r.error})
        out["errors"] = "; ".join(errors) if errors else None
        return out


@dataclass(repr=False)
class LoadTest(Result):
    """A load test over concurrency or rate levels; fills level by level (``status`` running,
    done, stopped or failed). ``to_pandas()``: one row per level; ``save_html()``: offline page.
    A saturation search sets ``saturation`` (the highest rate meeting the SLOs, or None)."""

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
    rates: list[float] = field(default_factory=list)
    arrivals: str = "poisson"
    seed: int = 0
    workload: str = ""
    search: bool = False
    saturation: float | None = None
    saturation_note: str = ""
    _listeners: list[Callable[[LoadTest, str], None]] = field(default_factory=list, repr=False)

    @property
    def mode(self) -> str:
        return "rate" if self.rates or self.search else "concurrency"

    @property
    def planned(self) -> int:
        """Levels planned (a search plans as it goes: its finished levels plus one)."""
        if self.search:
            return len(self.levels) + (1 if self.status == "running" else 0)
        return len(self.rates) if self.rates else len(self.concurrency)

    def subscribe(self, listener: Callable[[LoadTest, str], None]) -> None:
        """``listener(test, event)`` on "progress" (a request ended), "level" and "end"."""
        self._listeners.append(listener)

    def _notify(self, event: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(self, event)
            except KeyboardInterrupt:
                raise
            except Exception:  # noqa: BLE001 - a broken view must not break the measurement
                import traceback

                traceback.print_exc()

    def level(self, key: float) -> LoadLevel:
        """The level of concurrency ``key`` (or of rate ``key`` in a rate test)."""
        for lv in self.levels:
            if lv.key == key:
                return lv
        raise KeyError(key)

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame([lv.row() for lv in self.levels])
        if not len(frame):
            return frame
        if self.mode == "rate":
            return frame.set_index("rate")
        return frame.drop(columns="rate").set_index("concurrency")

    def summary(self) -> str:
        what = "rates" if self.mode == "rate" else "levels"
        return (
            f"LoadTest({self.target} at {self.server}: {len(self.levels)}/{self.planned} "
            f"{what}, {self.requests} requests each, {self.status})"
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


def _check_target(sm: ServedModel) -> None:
    if not sm.capabilities.remote:
        raise LabError(
            f"{sm.name} is a local model; a load test needs a served one "
            "(%llm load openai:http://HOST:PORT/v1 --model NAME, or %llm serve vllm)"
        )


def _new_test(
    sm: ServedModel,
    *,
    concurrency: Sequence[int],
    rates: Sequence[float],
    requests: int,
    prompts: Sequence[str] | None,
    max_tokens: int,
    slo: str | dict[str, float] | None,
    arrivals: str,
    seed: int,
    listeners: Sequence[Callable[[LoadTest, str], None]],
    workload_options: dict[str, Any],
) -> tuple[LoadTest, Workload]:
    _check_target(sm)
    slo_s = parse_slo(slo)
    if not 1 <= requests <= 100_000:
        raise LabError(f"--requests must be 1..100000, got {requests}")
    if not 1 <= max_tokens <= 100_000:
        raise LabError(f"--max-tokens must be 1..100,000 tokens, got {max_tokens:,}")
    arrival_times(1.0, 1, arrivals)  # checks the arrival kind
    workload = build_workload(sm, prompts, requests=requests, seed=seed, **workload_options)
    test = LoadTest(
        target=sm.name,
        model_id=sm.model_id,
        server=sm.endpoint.host,
        concurrency=list(concurrency),
        requests=requests,
        max_tokens=max_tokens,
        prompts=workload.prompts,
        slo=slo_s,
        rates=list(rates),
        arrivals=arrivals,
        seed=seed,
        workload=workload.describe(),
    )
    for listener in listeners:
        test.subscribe(listener)
    return test, workload


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
    rates: str | Sequence[float] | None = None,
    arrivals: str = "poisson",
    seed: int = 0,
    input_len: int | None = None,
    output_len: int | None = None,
    ignore_eos: bool = False,
    turns: int = 1,
    prefix_len: int = 0,
    tokenizer: str | None = None,
    max_concurrency: int = MAX_CONCURRENCY,
    raw: bool = False,
) -> LoadTest:
    """Run the levels in this thread; Ctrl-C stops and keeps the finished levels.

    With ``rates`` (req/s) each level is a request rate with ``arrivals`` "poisson" (seeded by
    ``seed``) or "constant", with at most ``max_concurrency`` requests in flight.
    ``output_len`` sets ``max_tokens``;
    ``input_len``/``prefix_len``/``turns``/``ignore_eos``/``tokenizer``/``raw``: see
    :func:`llmlab.served.workload.build_workload`.
    """
    levels = parse_concurrency(concurrency)
    rate_levels = parse_rates(rates) if rates is not None else []
    max_tokens = output_len or max_tokens
    test, workload = _new_test(
        sm,
        concurrency=[max_concurrency] if rate_levels else levels,
        rates=rate_levels,
        requests=requests,
        prompts=prompts,
        max_tokens=max_tokens,
        slo=slo,
        arrivals=arrivals,
        seed=seed,
        listeners=listeners,
        workload_options=dict(
            input_len=input_len,
            output_len=output_len,
            ignore_eos=ignore_eos,
            turns=turns,
            prefix_len=prefix_len,
            tokenizer=tokenizer,
            raw=raw,
        ),
    )
    job = _LoadJob(test, sm, workload)
    if not 1 <= max_concurrency <= MAX_CONCURRENCY:
        raise LabError(f"--max-concurrency must be 1..{MAX_CONCURRENCY}, got {max_concurrency}")
    if rate_levels:
        plan = [(max_concurrency, r) for r in rate_levels]
    else:
        plan = [(c, None) for c in levels]
    job.run(warmup, lambda: iter(plan))
    return test


def run_saturation_search(
    sm: ServedModel,
    slo: str | dict[str, float],
    *,
    start_rate: float = 0.5,
    max_rate: float = 64.0,
    refine: int = 2,
    attainment: float = 0.9,
    requests: int = 16,
    max_concurrency: int = MAX_CONCURRENCY,
    prompts: Sequence[str] | None = None,
    max_tokens: int = 64,
    arrivals: str = "poisson",
    seed: int = 0,
    warmup: bool = True,
    listeners: Sequence[Callable[[LoadTest, str], None]] = (),
    **workload_options: Any,
) -> LoadTest:
    """The highest request rate at which at least ``attainment`` of the requests meet every SLO
    (GuideLLM's sweep, vLLM's goodput): rates double from ``start_rate`` until one fails (or
    ``max_rate`` passes), then ``refine`` bisection steps between the last pass and the first
    fail. ``test.saturation`` is that rate (None if even ``start_rate`` fails); Ctrl-C keeps the
    levels measured so far and the best rate found among them."""
    slo_s = parse_slo(slo)
    if not slo_s:
        raise LabError("a saturation search needs SLOs to meet, e.g. --slo ttft=1s,itl=200ms")
    parse_rates([start_rate, max_rate])
    if start_rate > max_rate:
        raise LabError(f"the start rate {start_rate:g} is above the highest {max_rate:g} req/s")
    if not 0 < attainment <= 1:
        raise LabError(f"--attainment is a fraction of requests, 0 < a <= 1; got {attainment}")
    if not 0 <= refine <= 10:
        raise LabError(f"--refine must be 0..10 bisection steps, got {refine}")
    test, workload = _new_test(
        sm,
        concurrency=[max_concurrency],
        rates=[],
        requests=requests,
        prompts=prompts,
        max_tokens=workload_options.get("output_len") or max_tokens,
        slo=slo_s,
        arrivals=arrivals,
        seed=seed,
        listeners=listeners,
        workload_options=workload_options,
    )
    test.search = True

    def passes(level: LoadLevel) -> bool:
        return (level.slo_attainment or 0.0) >= attainment

    def plan():
        good, bad, rate = None, None, start_rate
        while rate <= max_rate:
            yield max_concurrency, rate
            level = test.levels[-1]
            if not passes(level):
                bad = rate
                break
            good = test.saturation = rate
            rate *= 2
        if good is None or bad is None:
            return
        for _ in range(refine):
            mid = (good + bad) / 2
            yield max_concurrency, mid
            if passes(test.levels[-1]):
                good = test.saturation = mid
            else:
                bad = mid

    _LoadJob(test, sm, workload).run(warmup, plan)
    slo_text = ", ".join(f"{k} ≤ {v * 1000:g} ms" for k, v in slo_s.items())
    tried = len(test.levels)
    if test.saturation is None:
        test.saturation_note = (
            f"no rate tried met {slo_text} for {attainment:.0%} of requests "
            f"(lowest tried {start_rate:g} req/s)"
        )
    else:
        capped = (
            " (the highest rate allowed: raise --max-rate)"
            if (test.saturation * 2 > max_rate and all(passes(lv) for lv in test.levels))
            else ""
        )
        test.saturation_note = (
            f"highest rate meeting {slo_text} for {attainment:.0%} of requests: "
            f"{test.saturation:.3g} req/s{capped} ({tried} levels, {test.requests} requests "
            f"each, {arrivals} arrivals)"
        )
    if test.status == "stopped":
        test.saturation_note += "; the search was stopped early"
    return test


class _LoadJob:
    def __init__(self, test: LoadTest, sm: ServedModel, workload: Workload) -> None:
        self.test, self.sm, self.workload = test, sm, workload
        self.settings = GenerationSettings(max_new_tokens=test.max_tokens)
        self.stop = threading.Event()
        self._count_lock = threading.Lock()

    def send(
        self, prompt: str | list[dict[str, str]], level_start: float
    ) -> tuple[RequestRecord, str]:
        """One streamed request; its record and the text answered."""
        wl = self.workload
        chat = wl.chat or isinstance(prompt, list)
        path, body = request_body(self.sm.model_id, prompt, self.settings, chat=chat)
        if wl.ignore_eos:
            body["ignore_eos"] = True  # vLLM, SGLang: generate exactly max_tokens
        sent = time.perf_counter() - level_start
        try:
            run = stream_request(self.sm.endpoint, path, body, stop=self.stop)
        except LabError as err:
            return RequestRecord(ok=False, error=str(err), sent_s=sent), ""
        finally:
            with self._count_lock:
                self.test.done_requests += 1
        for note in run.notes:  # a server past its limits: said once per kind, not per request
            with self._count_lock:
                if note not in self.test.warnings and len(self.test.warnings) < MAX_NOTES:
                    self.test.warnings.append(note)
        times = run.chunk_times
        record = RequestRecord(
            ok=not self.stop.is_set() and run.ttft_s is not None,
            error=None if run.ttft_s is not None else "no text streamed",
            ttft_s=run.ttft_s,
            e2e_s=times[-1] if times else run.e2e_s,
            itl_s=[b - a for a, b in zip(times, times[1:])],
            output_tokens=run.output_tokens,
            prompt_tokens=run.prompt_tokens,
            sent_s=sent,
        )
        return record, run.text

    def unit(self, index: int, level_start: float, due: float = 0.0) -> list[RequestRecord]:
        """What one arrival sends, at ``due`` seconds after the level's start: a prompt, or a
        whole conversation turn after turn."""
        while (delay := due - (time.perf_counter() - level_start)) > 0 and not self.stop.is_set():
            time.sleep(min(delay, 0.1))  # short steps: a stopped test does not wait it out
        wl = self.workload
        if wl.turns == 1:
            return [self.send(wl.prompts[index % len(wl.prompts)], level_start)[0]]
        base = (index * wl.turns) % len(wl.prompts)
        turns = [wl.prompts[(base + t) % len(wl.prompts)] for t in range(wl.turns)]
        talk = Conversation(wl.prefix, turns)
        records = []
        for turn in range(wl.turns):
            if self.stop.is_set():
                break
            record, answer = self.send(talk.messages(turn), level_start)
            record.turn = turn
            records.append(record)
            if not record.ok:
                break
            talk.answers.append(answer)
        return records

    def run(self, warmup: bool, plan: Callable[[], Any]) -> None:
        test = self.test
        start = time.perf_counter()
        try:
            if warmup:
                test.current = "warm-up request"
                test._notify("progress")
                first = self.unit(0, time.perf_counter())[0]
                test.done_requests = 0
                if not first.ok:
                    raise LabError(f"the warm-up request failed: {first.error}")
            for cap, rate in plan():
                test.current = f"concurrency {cap}" if rate is None else f"{rate:g} req/s"
                test._notify("progress")
                level = self.level(cap, rate)
                test.levels.append(level)
                test._notify("level")
                if not level.completed:
                    test.status = "failed"
                    test.warnings.append(
                        f"no request at {level.label} completed ({level.row()['errors']}); "
                        "the test stopped there"
                    )
                    return
            test.status = "done"
            self._check_lengths()
        except KeyboardInterrupt:
            test.status = "stopped"
            test.warnings.append(
                f"stopped by the user after {len(test.levels)} level"
                f"{'s' * (len(test.levels) != 1)}; the finished ones are kept"
            )
        except LabError as err:
            test.status = "failed"
            test.warnings.append(str(err))
        finally:
            test.current = ""
            test.seconds = time.perf_counter() - start
            test._notify("end")

    def _check_lengths(self) -> None:
        """Say so when the server's counts differ from the lengths asked for."""
        wl, test = self.workload, self.test
        records = [r for lv in test.levels for r in lv.completed]
        if wl.input_len is not None and wl.turns == 1:
            got = {r.prompt_tokens for r in records if r.prompt_tokens is not None}
            if got and got != {wl.input_len}:
                test.warnings.append(
                    f"the server counted {sorted(got)} prompt tokens where --input-len asked "
                    f"{wl.input_len} ({wl.tokenizer_source} is not the served tokenizer?)"
                )
        if wl.ignore_eos:
            short = sum(r.output_tokens < test.max_tokens for r in records)
            if short:
                test.warnings.append(
                    f"{short} of {len(records)} answers ended before {test.max_tokens} tokens: "
                    f"the server at {test.server} ignores ignore_eos"
                )

    def level(self, cap: int, rate: float | None) -> LoadLevel:
        test = self.test
        test.done_requests = 0
        units = (
            test.requests
            if self.workload.turns == 1
            else max(1, test.requests // self.workload.turns)
        )
        if rate is not None:  # a new seed per level, the same schedule on a rerun
            schedule = arrival_times(rate, units, test.arrivals, test.seed + len(test.levels))
        else:
            schedule = [0.0] * units
        pool = ThreadPoolExecutor(max_workers=min(cap, units), thread_name_prefix="llmlab-load")
        # The objects that exist now (torch, transformers, the notebook's) leave the garbage
        # collector's scans for the level: a full collection over them (~350k objects once
        # torch and transformers are imported) stops every thread for ~160 ms, which delayed
        # sends and chunk timestamps (llmlab sent up to 137 ms late where vllm bench serve, a
        # small process, was within 2 ms).
        gc.freeze()
        start = time.perf_counter()
        futures = []
        try:
            pending: set = set()
            for i, at in enumerate(schedule):
                # Open loop: each request leaves at its arrival time, whatever is in flight
                # (up to the cap); waiting in short steps so Ctrl-C gets through. It is handed
                # to its thread a little early and that thread waits for the moment itself:
                # handing it over on time added a second wake-up, which a server busy on
                # every core delayed by 14 ms on average and up to 158 ms (measured against
                # vllm bench serve's send times, benchmarks/bench_served.py --vs-vllm-bench).
                while (delay := at - HANDOVER_LEAD_S - (time.perf_counter() - start)) > 0:
                    time.sleep(min(delay, 0.1))
                    if pending:
                        _, pending = wait(pending, timeout=0, return_when=FIRST_COMPLETED)
                future = pool.submit(self.unit, i, start, at)
                futures.append(future)
                pending.add(future)
            while pending:
                # A short wait so Ctrl-C reaches this thread between checks.
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                test._notify("progress")
            duration = time.perf_counter() - start
            records = [r for f in futures for r in f.result()]
        except KeyboardInterrupt:
            self.stop.set()  # open streams end within 0.2 s (their socket reads watch it)...
            self.sm.endpoint.close()  # ...and queued ones now: their connections are closed
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            gc.unfreeze()
        pool.shutdown(wait=True)
        return LoadLevel(
            cap, records, duration, test.slo, rate, test.arrivals if rate is not None else None
        )
