"""The coverage matrix: every causal-LM model type transformers ships, tried as a user would.

For each type: a tiny random model (:mod:`llmlab.coverage.configs`) is saved to disk and loaded
by path with :class:`llmlab.Lab`; then generate, attention, MoE routing, logit lens,
``kv=static`` and ``spec=prompt-lookup`` run through llmlab's public engine API. Each feature
ends as one of:

- ``works``;
- ``refused``: llmlab said no in one line (a :class:`~llmlab.errors.LabError`), the reason kept;
- ``crash``: anything else (an exception that is not a LabError, or the family's time ran out);
- ``n/a``: the feature does not apply (MoE routing on a dense model) or did not run (the load
  failed first); ``skipped`` for a type whose config cannot be built small.

Run it with ``python -m llmlab.coverage`` (see ``--help``); it writes ``docs/families.md`` and a
JSON copy of every outcome. Families run in a pool of worker processes, each with a time limit.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from llmlab.files import write_text

FEATURES = ("load", "generate", "attention", "moe", "lens", "kv=static", "spec=prompt-lookup")
STATUSES = ("works", "refused", "crash", "n/a")
TEXT = "The quick brown fox jumps over the lazy dog. The quick brown fox"
#: Seconds one family may take for all its features (a busy 2-core CI machine included).
FAMILY_TIMEOUT = 90
#: Fields of a config that count experts: a type with more than one is a MoE family.
EXPERT_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


@dataclass
class Outcome:
    status: str  # works | refused | crash | n/a
    note: str = ""  # the one-line reason (refused, crash, n/a)


@dataclass
class FamilyReport:
    model_type: str
    model_class: str = ""
    skipped: str = ""  # why no tiny model could be built ("" when it was)
    seconds: float = 0.0
    features: dict[str, Outcome] = field(default_factory=dict)


class _OutOfTime(BaseException):
    """The family's time is up. A BaseException, like KeyboardInterrupt, so that the broad
    ``except Exception`` of the code it interrupts (a config builder) cannot swallow it."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else ""
    return line[:200] if isinstance(err, _lab_error()) else f"{type(err).__name__}: {line[:180]}"


def _lab_error() -> type:
    from llmlab.errors import LabError

    return LabError


def _attempt(run: Callable[[], Any]) -> Outcome:
    try:
        run()
    except _OutOfTime:
        raise
    except _lab_error() as err:
        return Outcome("refused", _first_line(err))
    except Exception as err:  # noqa: BLE001 - a crash is what the matrix records
        return Outcome("crash", _first_line(err))
    return Outcome("works")


def is_moe(config: Any) -> bool:
    configs = [config, *(getattr(config, k, None) for k in ("text_config", "decoder"))]
    for c in configs:
        for name in EXPERT_FIELDS:
            value = getattr(c, name, None)
            if isinstance(value, int) and value > 1:
                return True
    return False


def check_family(model_type: str, workdir: str | Path) -> FamilyReport:
    """Every feature on a tiny ``model_type`` saved under ``workdir`` and loaded by path."""
    from llmlab.coverage.configs import Unbuildable, build

    report = FamilyReport(model_type)
    start = time.perf_counter()
    try:
        model, tokenizer = build(model_type)
    except Unbuildable as err:
        report.skipped = str(err)
        return report
    report.model_class = type(model).__name__
    failure = _fails_in_transformers(model, tokenizer)
    if failure:
        report.skipped = f"the tiny model fails in transformers itself ({failure})"
        return report
    moe = is_moe(model.config)
    folder = Path(workdir) / model_type
    outcomes = report.features
    try:
        outcomes["load"] = _attempt(partial(_save, model, tokenizer, folder))
        del model  # the features run on what was loaded back from disk
        if outcomes["load"].status == "works":
            outcomes["load"] = _run_features(folder, moe, outcomes)
    except _OutOfTime:
        for name in FEATURES:
            if name not in outcomes:
                outcomes[name] = Outcome("crash", f"out of time ({FAMILY_TIMEOUT} s per family)")
                break
    loaded = outcomes["load"].status == "works"
    for name in FEATURES:
        why = "out of time" if loaded else "the load failed"
        outcomes.setdefault(name, Outcome("n/a", f"not run: {why}"))
    report.seconds = time.perf_counter() - start
    return report


def _fails_in_transformers(model: Any, tokenizer: Any) -> str:
    """What plain transformers says when the tiny model cannot run a forward pass or generate
    two tokens (a config the shrinking got wrong, or a family that needs more than ids), so the
    matrix does not charge llmlab with it; "" when it runs."""
    import torch

    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    steps = {
        "forward": lambda: model(input_ids=ids),
        "generate": lambda: model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False
        ),
    }
    for name, step in steps.items():
        try:
            with torch.inference_mode():
                step()
        except Exception as err:  # noqa: BLE001 - any failure is the reason
            return f"{name}: {_first_line(err)}"
    return ""


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # Lab.load turns the bars back on after each load
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _run_features(folder: Path, moe: bool, outcomes: dict[str, Outcome]) -> Outcome:
    """Load ``folder`` with a Lab and run the other features; returns the load's outcome."""
    from llmlab import Lab

    lab = Lab()
    loaded = _attempt(lambda: lab.load(str(folder), name="tiny"))
    if loaded.status != "works":
        return loaded
    outcomes["load"] = loaded
    lm = lab.model()
    outcomes["generate"] = _attempt(lambda: lab.generate(TEXT, max_new_tokens=4, raw=True))

    def attention() -> None:
        from llmlab.attention import attention as capture

        capture(lm, TEXT)

    outcomes["attention"] = _attempt(attention)
    if moe:

        def routing() -> None:
            from llmlab.moe import capture_routing

            capture_routing(lm, TEXT, untrained=False)

        outcomes["moe"] = _attempt(routing)
    else:
        outcomes["moe"] = Outcome("n/a", "dense model")
    outcomes["lens"] = _attempt(lambda: lab.lens(TEXT))
    for accel in ("kv=static", "spec=prompt-lookup"):
        outcomes[accel] = _attempt(
            lambda accel=accel: lab.generate(TEXT, max_new_tokens=6, raw=True, accel=accel)
        )
    return loaded


def _alarm(_signum: int, _frame: Any) -> None:
    raise _OutOfTime


def _worker_init(timeout: int = FAMILY_TIMEOUT) -> None:
    global FAMILY_TIMEOUT
    # A spawned worker imports this module afresh: the parent's --timeout comes as an argument.
    FAMILY_TIMEOUT = timeout
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)  # one core per worker: the pool is the parallelism
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # the "Writing model shards" bar of save_pretrained
    signal.signal(signal.SIGALRM, _alarm)


def _check_in_worker(model_type: str) -> dict[str, Any]:
    signal.alarm(FAMILY_TIMEOUT)
    try:
        with tempfile.TemporaryDirectory(prefix="llmlab-coverage-") as workdir:
            report = check_family(model_type, workdir)
    except _OutOfTime:
        report = FamilyReport(model_type, skipped=f"out of time ({FAMILY_TIMEOUT} s) building it")
    finally:
        signal.alarm(0)
    return asdict(report)


def causal_lm_types() -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def run(
    model_types: Iterable[str] | None = None,
    *,
    workers: int = 2,
    progress: Callable[[FamilyReport, int, int], None] | None = None,
    timeout: int | None = None,
) -> list[FamilyReport]:
    """Check every type (default: all causal-LM types) in ``workers`` processes, each family
    within ``timeout`` seconds (default :data:`FAMILY_TIMEOUT`)."""
    import multiprocessing

    types = list(model_types) if model_types is not None else causal_lm_types()
    reports: list[FamilyReport] = []
    # spawn: a forked child would inherit the parent's torch thread pool in an unknown state.
    context = multiprocessing.get_context("spawn")
    timeout = FAMILY_TIMEOUT if timeout is None else timeout
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(timeout,)
    ) as pool:
        futures = {pool.submit(_check_in_worker, t): t for t in types}
        for future in as_completed(futures):
            try:
                report = _from_dict(future.result())
            except Exception as err:  # noqa: BLE001 - a worker that died is a crash
                report = FamilyReport(futures[future])
                report.features = {f: Outcome("crash", _first_line(err)) for f in FEATURES}
            reports.append(report)
            if progress is not None:
                progress(report, len(reports), len(types))
    return sorted(reports, key=lambda r: r.model_type)


def _from_dict(data: dict[str, Any]) -> FamilyReport:
    features = {k: Outcome(**v) for k, v in data.pop("features").items()}
    return FamilyReport(**data, features=features)


def totals(reports: list[FamilyReport]) -> dict[str, Counter]:
    """Per feature: how many families work, are refused, crash, or n/a (built ones only)."""
    out: dict[str, Counter] = {f: Counter() for f in FEATURES}
    for report in reports:
        for name, outcome in report.features.items():
            out[name][outcome.status] += 1
    return out


# -- the page users read --------------------------------------------------------------------
_MARK = {"works": "✓", "refused": "refused", "crash": "**crash**", "n/a": "–"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(reports: list[FamilyReport], *, seconds: float, versions: dict[str, str]) -> str:
    built = [r for r in reports if not r.skipped]
    skipped = [r for r in reports if r.skipped]
    count = totals(built)
    lines = [
        "# Model families: what works",
        "",
        "Generated by `python -m llmlab.coverage` (do not edit by hand): every causal-LM model "
        f"type that transformers {versions['transformers']} ships ({len(reports)}), each built "
        "as a tiny random model (4 layers, hidden size 64, the byte-level test tokenizer), "
        "saved to disk and loaded by path with `Lab.load`, then run through llmlab's engine "
        "API as a user would. ✓ works; *refused*: llmlab says no in one line (reason in the "
        "notes); **crash**: an error that is not llmlab's one-line refusal; – does not apply "
        f"(MoE routing on a dense model) or did not run. {len(skipped)} types whose config "
        "cannot be built small are listed at the end with the reason.",
        "",
        "Random weights say nothing about quality: this page says whether each feature *runs* "
        "on a family's architecture, and the logit lens only counts as working when its last "
        "layer reproduces the model's own logits.",
        "",
        "## Totals",
        "",
        "| feature | works | refused | crash | n/a |",
        "|---|---|---|---|---|",
    ]
    for name in FEATURES:
        c = count[name]
        lines.append(f"| {name} | {c['works']} | {c['refused']} | {c['crash']} | {c['n/a']} |")
    lines += [
        "",
        f"{len(built)} types built; run took {seconds:.0f} s "
        f"(torch {versions['torch']}, transformers {versions['transformers']}).",
        "",
        "## Per family",
        "",
        "| model type | class | " + " | ".join(FEATURES) + " | notes |",
        "|---|---|" + "---|" * len(FEATURES) + "---|",
    ]
    for r in built:
        marks = [_MARK[r.features[f].status] for f in FEATURES]
        notes = "; ".join(
            f"{f}: {r.features[f].note}"
            for f in FEATURES
            if r.features[f].status in ("refused", "crash")
        )
        lines.append(
            f"| {r.model_type} | {r.model_class} | " + " | ".join(marks) + f" | {_cell(notes)} |"
        )
    lines += ["", "## Not built small", "", "| model type | why |", "|---|---|"]
    lines += [f"| {r.model_type} | {_cell(r.skipped)} |" for r in skipped]
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def families_in(page: str) -> set[str]:
    """The model types a written coverage page has a row for."""
    return {t for t in causal_lm_types() if f"\n| {t} |" in page}


def write(reports: list[FamilyReport], out_md: Path, out_json: Path | None, seconds: float):
    """Write the page and the JSON (each atomically: llmlab.files)."""
    write_text(out_md, markdown(reports, seconds=seconds, versions=versions()))
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        data = [asdict(r) for r in reports]
        write_text(out_json, json.dumps(data, indent=1, ensure_ascii=False))


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
