"""Run a tradeoff sweep: every configuration over the same prompts, measured the same way.

Order of work per configuration: load the variant, warm up, time ``repeats`` passes over the
prompts (peak memory sampled throughout), then teacher-forced quality against the reference
(the baseline's greedy continuations) and perplexity on a text. The baseline runs first and
again last, so drift of the machine during the sweep is visible.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.measure.bandwidth import memory_bandwidth
from llmlab.measure.cost import (
    PeakMemory,
    bytes_per_value,
    kv_cache_bytes,
    price_per_hour,
)
from llmlab.measure.latency import check_repeats, summarize_generations, warmup_settings
from llmlab.measure.prompts import default_prompts, read_prompts  # noqa: F401 (tradeoff API)
from llmlab.measure.quality import (
    compare_logprobs,
    continuation_logprobs,
    greedy_match,
    perplexity,
)
from llmlab.measure.stats import Spread
from llmlab.tradeoff.axes import check_axes
from llmlab.tradeoff.configs import Configuration, resolve_configs
from llmlab.tradeoff.result import Sweep, SweepPoint

if TYPE_CHECKING:
    from llmlab.generation.settings import GenerationSettings
    from llmlab.models.loaded import LoadedModel

#: The baseline's two measurements may differ by this much before the sweep warns.
DRIFT_WARNING = 0.10


class _Stopped(Exception):
    """The user stopped the sweep (Stop button, ``sweep.stop()`` or Ctrl-C)."""


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def run_sweep(
    lm: LoadedModel,
    configs: str | Sequence[str | Configuration],
    prompts: Sequence[str] | None = None,
    *,
    max_new_tokens: int = 32,
    repeats: int = 3,
    warmup: int = 1,
    text: str | None = None,
    text_tokens: int = 256,
    prices: dict[str, float] | None = None,
    axes: tuple[str, str] = ("tpot", "kl"),
    background: bool = False,
    listeners: Sequence[Callable[[Sweep, str], None]] = (),
    start: bool = True,
    models: dict[str, Any] | None = None,
) -> Sweep:
    """Measure every configuration in ``configs`` on ``lm`` over ``prompts`` (greedy).

    ``text``: the perplexity text (default: the one that ships), cut to ``text_tokens``.
    Everything a user can get wrong (unknown configuration, empty prompt set, too few
    repetitions) fails here before anything runs. A configuration that fails while running is
    recorded on its row and the sweep goes on. With ``background=True`` the sweep runs in a
    thread and the returned :class:`Sweep` fills as points finish (``sweep.wait()``). With
    ``start=False`` nothing runs until ``sweep.start()`` (so a view can subscribe first).
    ``served:NAME`` in ``configs`` measures a served model (looked up in ``models``, default
    the session's) on the same prompts; ``prices[NAME]`` is its US$ per hour.
    """
    from llmlab.generation.settings import GenerationSettings

    check_repeats(repeats, warmup)
    check_axes(axes)
    if lm.capabilities.remote:
        raise LabError(
            f"{lm.name} is served: the sweep's reference must be a local model; "
            f"add the served one to the configurations as served:{lm.name}"
        )
    prompts = default_prompts() if prompts is None else [p for p in prompts if p.strip()]
    if not prompts:
        raise LabError("the prompt set is empty; give at least one prompt (one per line)")
    configurations = resolve_configs(configs, models=models, prices=prices, lm=lm)
    _guard_memory(lm, configurations, prompts, max_new_tokens, text_tokens)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    sweep = Sweep(
        model=lm.name,
        device=lm.device,
        dtype=lm.dtype,
        prompts=list(prompts),
        settings=settings.to_dict(),
        repeats=repeats,
        warmup=warmup,
        configs=[c.label for c in configurations],
        usd_per_hour=price_per_hour(lm.device, prices),
        axes=axes,
    )
    for listener in listeners:
        sweep.subscribe(listener)
    sweep._job = _SweepJob(sweep, lm, configurations, settings, text, text_tokens).run
    sweep._background = background
    return sweep.start() if start else sweep


def _guard_memory(lm, configurations, prompts, max_new_tokens: int, text_tokens: int) -> None:
    """Refuse, before anything runs, a sweep whose weight copies and KV cache would not fit
    the memory budget (llmlab.memory)."""
    from llmlab import memory

    loads = [c.load_label for c in configurations if c.load_label]
    longest = max(len(lm.tokenizer(p).input_ids) for p in prompts) + max_new_tokens
    estimate = memory.sweep(lm.weight_bytes, lm.config, loads, max(longest, text_tokens))
    memory.guard(estimate, lm.device)


class _SweepJob:
    def __init__(
        self,
        sweep: Sweep,
        lm: LoadedModel,
        configurations: list[Configuration],
        settings: GenerationSettings,
        text: str | None,
        text_tokens: int,
    ) -> None:
        self.sweep, self.lm, self.settings, self.text = sweep, lm, settings, text
        self.text_tokens = text_tokens
        # The baseline again at the end: the honesty check on drift.
        self.plan = [*configurations, configurations[0]]
        self.reference: list[tuple[list[int], int, Any] | None] | None = None
        self.reference_error: str | None = None
        self.ref_tokens: list[list[int]] = []

    # -- the whole sweep ------------------------------------------------------------------
    def run(self) -> None:
        from llmlab.models.guard import running

        sweep = self.sweep
        start = time.perf_counter()
        per_config = sweep.warmup + sweep.repeats * len(sweep.prompts)
        sweep.total_units = per_config * len(self.plan)
        try:
            try:
                sweep.bandwidth_bytes_s = memory_bandwidth(self.lm.device)
            except Exception as err:  # noqa: BLE001 - the roofline is optional, say why it is gone
                sweep.warnings.append(f"memory bandwidth not measured ({one_line(err)})")
            sweep.perplexity_text = (self.text or "")[:200]
            # Registered on the model: `%llm unload` stops the sweep and waits for it.
            with running(self.lm, "tradeoff sweep", stop=sweep.stop):
                for index, config in enumerate(self.plan):
                    if sweep.stopping:
                        raise _Stopped
                    again = index == len(self.plan) - 1
                    sweep.current = f"{config.label}{' (again)' if again else ''}"
                    sweep._notify("progress")
                    point = self.measure(config, again)
                    sweep.points.append(point)
                    sweep.done_units = per_config * (index + 1)
                    sweep._notify("point")
            sweep.status = "done"
        except (_Stopped, KeyboardInterrupt):
            sweep.status = "stopped"
            sweep.warnings.append(
                f"stopped by the user after {len(sweep.points)} of {len(self.plan)} "
                "configurations; the finished ones are kept"
            )
        except Exception as err:  # noqa: BLE001 - keep the finished points, say what broke
            sweep.status = "failed"
            sweep.warnings.append(f"the sweep itself failed: {one_line(err)}")
        finally:
            self.check_drift()
            sweep.current = ""
            sweep.seconds = time.perf_counter() - start
            sweep._done.set()
            sweep._notify("end")

    def check_drift(self) -> None:
        first = self.sweep.baseline
        again = next((p for p in self.sweep.points if p.repeat_of_baseline), None)
        if not (first and again and first.latency and again.latency):
            return
        for name, what in (("tpot_s", "time per output token"), ("ttft_s", "time to first token")):
            a, b = getattr(first.latency, name).value, getattr(again.latency, name).value
            if a and b and abs(b - a) / a > DRIFT_WARNING:
                self.sweep.warnings.append(
                    f"the baseline's {what} moved {100 * (b - a) / a:+.0f}% between the first "
                    f"and the last measurement ({a * 1e3:.1f} -> {b * 1e3:.1f} ms): the machine "
                    "was not steady, so differences of that size are noise"
                )

    # -- one configuration ----------------------------------------------------------------
    def measure(self, config: Configuration, again: bool) -> SweepPoint:
        point = SweepPoint(
            config=config.label,
            claimed_output_preserving=config.claimed_output_preserving,
            is_baseline=config.is_baseline,
            repeat_of_baseline=again,
        )
        start = time.perf_counter()
        try:
            # Each row has the model to itself: a capture started meanwhile waits for the row
            # (and a row waits for a running capture) instead of hooking the model it times.
            with (
                self.lm.exclusive(f"tradeoff sweep ({config.label})", on_wait=self.waiting),
                config.open(self.lm) as vlm,
            ):
                runs = self.time_runs(config, vlm, point)
                if vlm.capabilities.remote:
                    self.served(config, vlm, point)
                else:
                    self.cost(config, vlm, point, runs)
                    self.quality(config, vlm, point, again)
        except (_Stopped, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - record the failure on its row, go on
            point.status, point.error = "failed", one_line(err)
            if config.is_baseline and not again and self.reference is None:
                self.reference_error = point.error
        point.seconds = time.perf_counter() - start
        return point

    def waiting(self, message: str) -> None:
        self.sweep.current = message
        self.sweep._notify("progress")

    def generate(self, config, vlm, prompt, settings):
        sweep = self.sweep

        def on_token(ids: list[int], elapsed: float) -> None:
            if sweep.stopping:
                raise KeyboardInterrupt  # the engine ends generate() early on it

        result = config.run(self.lm, vlm, prompt, settings, on_token)
        if sweep.stopping or result.stats.stopped == "interrupted":
            raise _Stopped
        return result

    def time_runs(self, config: Configuration, vlm: LoadedModel, point: SweepPoint) -> list:
        sweep = self.sweep
        short = warmup_settings(self.settings)
        with PeakMemory(vlm.device) as memory:
            for _ in range(sweep.warmup):
                self.generate(config, vlm, sweep.prompts[0], short)
                self.tick()
            per_prompt: list[list[Any]] = [[] for _ in sweep.prompts]
            for _ in range(sweep.repeats):
                for j, prompt in enumerate(sweep.prompts):
                    per_prompt[j].append(self.generate(config, vlm, prompt, self.settings))
                    self.tick()
        reading = memory.reading
        point.peak_memory_bytes = reading.peak_bytes
        point.peak_memory_kind = reading.kind
        point.reserved_memory_bytes = reading.reserved_bytes
        runs = [r for rs in per_prompt for r in rs]
        point.latency = summarize_generations(runs)
        point.texts = [rs[0].text for rs in per_prompt]
        point.token_ids = [list(rs[0].token_ids) for rs in per_prompt]
        point.nondeterministic = any(
            r.token_ids != rs[0].token_ids for rs in per_prompt for r in rs
        )
        rates = [r.stats.extra.get("acceptance_rate") for r in runs]
        if any(r is not None for r in rates):
            point.acceptance_rate = Spread.of(rates, headline="mean")
        return runs

    def served(self, config: Configuration, sm: Any, point: SweepPoint) -> None:
        """A served target: cost at its own price, quality judged by the local reference."""
        from llmlab.tradeoff.served import served_figures

        ok = self.reference is not None
        served_figures(
            self.lm,
            sm,
            point,
            prompts=self.sweep.prompts,
            reference_texts=self.sweep.reference_texts if ok else [],
            reference_ids=self.ref_tokens if ok else [],
            max_new_tokens=self.settings.max_new_tokens,
            usd_per_hour=config.usd_per_hour,
        )

    def tick(self) -> None:
        self.sweep.done_units += 1
        self.sweep._notify("progress")

    def cost(self, config: Configuration, vlm: LoadedModel, point: SweepPoint, runs) -> None:
        sweep = self.sweep
        point.weight_bytes = vlm.weight_bytes  # a pruned target counts what it keeps
        lengths = [r.stats.prompt_tokens + r.stats.new_tokens for r in runs]
        kv_value_bytes = bytes_per_value(vlm.dtype)
        if config.kv_cache:
            point.kv_bytes = kv_cache_bytes(
                vlm.config, int(statistics.median(lengths)), kv_value_bytes
            )
        else:
            point.kv_bytes = 0
        point.usd_per_mtok = point.latency.s_per_token.scaled(sweep.usd_per_hour / 3600 * 1e6)
        if sweep.bandwidth_bytes_s:
            # Per decode step the weights are read once, plus the KV cache of the context so
            # far (on average half-way through the answer).
            fractions = []
            for r in runs:
                times = r.stats.token_times_s
                if len(times) < 2 or times[-1] <= times[0]:
                    continue
                tpot = (times[-1] - times[0]) / (len(times) - 1)
                mid = r.stats.prompt_tokens + r.stats.new_tokens // 2
                kv = kv_cache_bytes(vlm.config, mid, kv_value_bytes) if config.kv_cache else 0
                fractions.append((point.weight_bytes + kv) / sweep.bandwidth_bytes_s / tpot)
            point.roofline = Spread(fractions)

    def quality(self, config: Configuration, vlm: LoadedModel, point: SweepPoint, again) -> None:
        from llmlab.generation.engine import encode_prompt

        sweep = self.sweep
        if config.is_baseline and not again and self.reference is None:
            # The reference: the baseline's own greedy continuations, teacher-forced.
            self.reference = []
            self.ref_tokens = point.token_ids
            sweep.reference_texts = list(point.texts)
            for prompt, tokens in zip(sweep.prompts, point.token_ids):
                prompt_ids = encode_prompt(vlm, prompt)[0].cpu()
                if not tokens:
                    self.reference.append(None)
                    continue
                import torch

                ids = torch.cat([prompt_ids, torch.tensor(tokens, dtype=prompt_ids.dtype)])
                start = prompt_ids.shape[0]
                self.reference.append((ids, start, continuation_logprobs(vlm.model, ids, start)))
        if self.reference is None:
            why = self.reference_error or "it did not run"
            point.quality_note = f"no quality figures: the reference (baseline) failed: {why}"
        else:
            kl: list[float] = []
            top1: list[float] = []
            matches, firsts = [], []
            for ref, ref_tokens, tokens in zip(self.reference, self.ref_tokens, point.token_ids):
                same, first = greedy_match(ref_tokens, tokens)
                matches.append(same)
                firsts.append(first)
                if ref is None:
                    continue
                ids, start, ref_logprobs = ref
                agreement = compare_logprobs(
                    ref_logprobs, continuation_logprobs(vlm.model, ids, start)
                )
                kl.extend(agreement.kl)
                top1.append(agreement.top1_agreement)
            point.kl = Spread(kl, headline="mean")
            point.top1 = Spread(top1, headline="mean")
            point.greedy_matches, point.first_divergence = matches, firsts
        result = perplexity(vlm, self.text, max_tokens=self.text_tokens)
        point.perplexity, point.perplexity_tokens = result.value, result.tokens
