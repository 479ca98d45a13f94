"""Load-time accelerations (quantization, dtype, attention kernel, compile) as a context manager.

Weight changes (quant, dtype) go to a private deep copy, so the loaded model is never touched;
the attention kernel is switched and switched back. The last copies per model are kept (weakly,
keyed on the original module) so that re-running the same variant does not re-quantize.
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from llmlab.accel.registry import AccelConfig, check, parse_config

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel

ATTN_KERNELS = {"sdpa": "sdpa", "eager": "eager", "flash": "flash_attention_2"}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: How many changed copies to keep per model (e.g. a quantized target and its int8 self-draft).
KEEP_COPIES = 2

_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Each changed copy's build: (seconds it took, perf_counter when it finished), until a run
# reports it (see take_build_seconds).
_build_s: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_label(cfg: AccelConfig) -> str:
    return ",".join(f"{k}={v}" for k, v in cfg.parts if k in ("quant", "dtype"))


def changed_copy(lm: LoadedModel, cfg: AccelConfig) -> LoadedModel:
    """A LoadedModel over a deep copy of ``lm.model`` with cfg's quant/dtype applied (cached)."""
    import time

    import torch

    from llmlab.accel.quant import quantize
    from llmlab.models.facts import weight_bytes

    label = _weights_label(cfg)
    kept: dict[str, LoadedModel] = _copies.setdefault(lm.model, {})
    if label in kept:
        kept[label] = kept.pop(label)  # most recently used last
        return kept[label]
    start = time.perf_counter()
    model = copy.deepcopy(lm.model)
    if (dtype := cfg.get("dtype")) in DTYPES:
        model.to(getattr(torch, DTYPES[dtype]))
    if (quant := cfg.get("quant")) != "none":
        before = weight_bytes(model)
        quantize(model, quant, lm.device)
        note = f"{quant}: weights {before / 2**20:.1f} MB -> {weight_bytes(model) / 2**20:.1f} MB"
    else:
        note = f"dtype {cfg.get('dtype')}"
    model.eval()
    done = time.perf_counter()
    _build_s[model] = (done - start, done)
    copied = dataclasses.replace(lm, model=model, notes=[*lm.notes, note])
    kept[label] = copied
    while len(kept) > KEEP_COPIES:
        kept.pop(next(iter(kept)))
    return copied


def take_build_seconds(lm: LoadedModel, since: float | None = None) -> float | None:
    """Seconds ``lm`` (a changed copy) took to build, the first time it is asked; else None.
    The build happens before generation, so it is never part of a run's latency: runs report
    it apart. ``since`` (a ``time.perf_counter()`` reading): only a build that finished after
    it counts; a copy built earlier for something else (a lens comparison, a sweep) was not
    built by this run, and its seconds must not be subtracted from this run's warm-up."""
    seconds, finished = _build_s.pop(lm.model, (None, 0.0))
    return None if since is not None and finished < since else seconds


def forget_copies(lm: LoadedModel) -> None:
    """Drop the cached changed copies of ``lm`` (frees their memory)."""
    _copies.pop(lm.model, None)


@contextmanager
def variant(lm: LoadedModel, cfg: AccelConfig | str) -> Iterator[LoadedModel]:
    """``lm`` with cfg's load-time changes; ``lm`` is exactly as before after the block."""
    cfg = parse_config(cfg, device=lm.device)
    check(cfg, lm)
    # The kernel switch and the copy happen only while nothing else runs this model.
    with lm.exclusive(f"accelerated run ({cfg.label})"):
        vlm = changed_copy(lm, cfg) if _weights_label(cfg) else lm
        model = vlm.model
        undo = []
        kernel = ATTN_KERNELS.get(cfg.get("attn"))
        if kernel and kernel != vlm.attn_implementation:
            before = vlm.attn_implementation
            model.set_attn_implementation(kernel)
            undo.append(lambda: model.set_attn_implementation(before))
        # transformers leaves attributes on the module after some runs (the compiled forward, the
        # last static-cache length); drop whatever the block added so nothing carries over.
        attrs_before = set(model.__dict__)

        def drop_added_attrs() -> None:
            for attr in set(model.__dict__) - attrs_before:
                del model.__dict__[attr]

        undo.append(drop_added_attrs)
        try:
            yield vlm
        finally:
            for step in reversed(undo):
                step()
