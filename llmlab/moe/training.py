"""Watch a router learn: the demo MoE's training as a result that fills while it runs.

``train_moe_demo()`` trains the demo recipe (``llmlab.moe.demo``) from its seed and, every
``snapshot_every`` steps, routes a fixed probe text (code, prose, numbers) and keeps which
expert each token went to in each layer, the expert load and the specialisation figures.
In Jupyter it runs in a background thread so the view's Stop button answers; a stopped run
keeps the steps it finished (``run.model``, ``run.loaded()``).
"""

from __future__ import annotations

import base64
import contextlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmlab.errors import LabError
from llmlab.models.guard import running
from llmlab.models.moe_demo import PROBE_TEXT, DemoRecipe, Trained, TrainStep
from llmlab.moe import stats
from llmlab.results import Result


@dataclass
class Snapshot:
    """The probe's routing at one step: first choices ``(moe layers, tokens)``."""

    step: int
    loss: float
    first: np.ndarray
    load: np.ndarray  # (moe layers, E) top-k counts
    mi_class: np.ndarray  # (moe layers,) bits, on the held-out sample (else the probe)


@dataclass(repr=False)
class MoeTrainingRun(Result):
    """A training run of the demo MoE; fills while it runs (``subscribe`` to follow it)."""

    recipe: DemoRecipe
    tokens: list[str] = field(default_factory=list)  # the probe, one entry per token
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    snapshots: list[Snapshot] = field(default_factory=list)
    status: str = "running"  # running | done | stopped | failed
    error: str = ""
    seconds: float = 0.0
    trained: Trained | None = None
    measured_on: str = ""  # the tokens MI is measured on, in words
    _held_classes: np.ndarray | None = None
    _tokenizer: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _listeners: list[Any] = field(default_factory=list)

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """End the run after the current step; finished steps are kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> MoeTrainingRun:
        """Block until the run ends. Ctrl-C here stops it and keeps the finished steps."""
        try:
            self._done.wait(timeout)
        except KeyboardInterrupt:
            self.stop()
            self._done.wait()
        return self

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def subscribe(self, listener: Any) -> None:
        """``listener(run)`` is called after every snapshot and at the end."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # noqa: BLE001 - a broken view must not stop the training
                import traceback

                traceback.print_exc()

    @property
    def model(self) -> Any:
        if self.trained is None:
            raise LabError("the training has not finished a step yet")
        return self.trained.model

    def loaded(self, name: str = "moe-train") -> Any:
        """The trained model (the steps finished so far) as a model the lab can use."""
        from llmlab.models.loaded import LoadedModel

        if self.trained is None:
            raise LabError("the training has not finished a step yet")
        steps = self.trained.steps_done
        return LoadedModel(
            name=name,
            spec=TRAINED_SPEC,
            model=self.trained.model,
            tokenizer=self.trained.tokenizer,
            device="cpu",
            source=f"demonstration MoE trained in this session ({steps} steps, not saved)",
            load_seconds=0.0,
        )

    # -- the record ---------------------------------------------------------------------------
    def _on_step(self, step: TrainStep) -> None:
        n_experts = self.recipe.experts
        first = np.asarray(step.experts[..., 0])
        load = stats.load_counts(np.asarray(step.experts), n_experts)[1]
        labels, measured = self.classes, first
        if step.held_first is not None:
            if self._held_classes is None:
                from llmlab.tokens import token_texts

                ids = np.asarray(step.held_ids).tolist()
                self._held_classes = stats.token_classes(token_texts(self._tokenizer, ids))
                self.measured_on = f"{len(ids):,} held-out standard-library tokens"
            labels, measured = self._held_classes, np.asarray(step.held_first)
        elif not self.measured_on:
            self.measured_on = f"the {len(self.tokens)}-token probe"
        mi = np.array([stats.mutual_information(labels, f) for f in measured])
        self.snapshots.append(Snapshot(step.step, step.loss, first, load, mi))
        self.seconds = step.seconds
        self._notify()

    # -- display ------------------------------------------------------------------------------
    def summary(self) -> str:
        last = self.snapshots[-1] if self.snapshots else None
        where = f"step {last.step}/{self.recipe.steps}" if last else "starting"
        loss = f", loss {last.loss:.2f}" if last and last.step else ""
        return f"MoE demo training · {self.status} · {where}{loss} · {self.seconds:.0f} s"

    def to_text(self) -> str:
        lines = [self.summary()]
        if self.snapshots:
            first, last = self.snapshots[0], self.snapshots[-1]
            lines.append(
                f"MI(class; first expert) per layer on {self.measured_on}, bits: step 0 "
                + " ".join(f"{x:.2f}" for x in first.mi_class)
                + f" → step {last.step} "
                + " ".join(f"{x:.2f}" for x in last.mi_class)
            )
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        from llmlab.moe.render import expert_palette

        losses = list(self.trained.losses) if self.trained is not None else []
        return {
            "status": self.status,
            "error": self.error,
            "steps": self.recipe.steps,
            "seconds": round(self.seconds, 1),
            "n_experts": self.recipe.experts,
            "top_k": self.recipe.top_k,
            "layers": list(range(self.recipe.layers)),
            "palette": expert_palette(self.recipe.experts),
            "tokens": self.tokens,
            "classes": self.classes.tolist(),
            "class_names": list(stats.TOKEN_CLASSES),
            "measured_on": self.measured_on,
            "losses": [round(x, 4) for x in losses],
            "snapshots": [
                {
                    "step": s.step,
                    "loss": round(s.loss, 4),
                    # (layers, tokens) first choices, one byte each
                    "first_b64": base64.b64encode(s.first.astype(np.uint8).tobytes()).decode(),
                    "load": s.load.tolist(),
                    "mi_class": [round(float(x), 4) for x in s.mi_class],
                }
                for s in self.snapshots
            ],
        }

    def to_html(self) -> str:
        from llmlab.moe.render import training_html

        return training_html(self)


#: The spec of a model trained in the session: a new run under the same name replaces it.
TRAINED_SPEC = "moe-train"

#: Steps a run may ask for: about 8 hours at the demo's pace on 2 cores (the recipe's 300 take
#: under a minute), far past where the demo's loss stops moving.
MAX_STEPS = 100_000


def check_steps(steps: object) -> None:
    """One line for a step count that is not a whole number in 1..MAX_STEPS."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise LabError(
            f"--steps takes a whole number from 1 to {MAX_STEPS:,} (the demo recipe trains "
            f"300), got {steps!r}"[:300]
        )


@dataclass
class _Weights:
    """The model under training as :mod:`llmlab.models.guard` sees a model (weights, name)."""

    model: Any
    name: str = "the MoE being trained"


@contextlib.contextmanager
def _ctrl_c_stops(run: MoeTrainingRun):
    """In the main thread, the first Ctrl-C asks the run to stop after the current step (the
    finished steps are kept; no traceback); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)

    def first(signum, frame) -> None:
        print("\nllmlab: stopping the training after this step (Ctrl-C again stops it now)")
        run.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def train_moe_demo(
    recipe: DemoRecipe | None = None,
    *,
    background: bool = False,
    progress: bool = True,
    before_start: Callable[[MoeTrainingRun], None] | None = None,
) -> MoeTrainingRun:
    """Train the demo MoE from its seed, recording the probe's routing as it goes.

    ``background=True`` returns at once with a run that fills in a thread (what the live view
    needs for its Stop button); otherwise it returns when training ends. ``before_start(run)``
    is called before the first step (to show the live view of a run that blocks).
    """
    from llmlab.models.moe_demo import default_tokenizer
    from llmlab.tokens import token_texts

    recipe = recipe or DemoRecipe()
    check_steps(recipe.steps)
    tokenizer = default_tokenizer()
    ids = tokenizer(PROBE_TEXT, add_special_tokens=False).input_ids
    tokens = token_texts(tokenizer, ids)
    run = MoeTrainingRun(recipe, tokens=tokens, classes=stats.token_classes(tokens))
    run._tokenizer = tokenizer

    def job() -> None:
        from llmlab.models.moe_demo import train

        start = time.perf_counter()
        with contextlib.ExitStack() as held, _ctrl_c_stops(run):

            def on_model(trained: Trained) -> None:
                run.trained = trained
                # The model under training, as the guard knows models: `%llm unload` of a
                # session model on these weights stops the run first (llmlab.models.guard).
                held.enter_context(running(_Weights(trained.model), "MoE training", run.stop))

            try:
                run.trained = train(
                    recipe,
                    tokenizer,
                    on_step=run._on_step,
                    should_stop=run._stop.is_set,
                    progress=progress and not background,
                    on_model=on_model,
                )
                run.status = "stopped" if run.trained.stopped else "done"
            except KeyboardInterrupt:  # a second Ctrl-C: stop now, keep the finished steps
                run.status = "stopped"
            except Exception as err:  # noqa: BLE001 - reported in the view and by wait()
                run.status, run.error = "failed", f"{type(err).__name__}: {err}"
        run.seconds = time.perf_counter() - start
        run._done.set()
        run._notify()

    if before_start is not None:
        before_start(run)
    if background:
        threading.Thread(target=job, name="llmlab-moe-train", daemon=True).start()
    else:
        job()
        if run.status == "failed":
            raise LabError(f"training the demo MoE failed: {run.error}")
    return run
