"""Run the model once and read every layer's residual stream through its own head.

transformers gives the residual streams (``output_hidden_states``: the embeddings, then the
output of each layer). Its last entry is usually already normed, so the last row is taken from
the input of the final norm instead (a forward hook, removed on exit): that row read through the
norm and the unembedding must give the model's own logits, which :func:`residuals` checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError
from llmlab.lens.adapters import LensReader, lens_reader

if TYPE_CHECKING:
    import torch

    from llmlab.models.loaded import LoadedModel

#: Positions read through the unembedding at once (bounds memory: chunk × vocab floats).
CHUNK = 256
#: How far the last layer's reading may sit from the model's logits, relative to their scale:
#: float32 reads the same ops in the same order; 16-bit weights round differently per call.
TOLERANCE = {"float32": 1e-4, "float64": 1e-6}
TOLERANCE_16BIT = 3e-2


@dataclass
class Residuals:
    """Every layer's residual stream over one token sequence and how to read it."""

    hidden: list[torch.Tensor]  # rows: (n, d) each; 0 = embeddings, last = into the final norm
    logits: torch.Tensor  # (n, vocab) the model's own, float32
    reader: LensReader
    n_layers: int  # decoder layers between the first and the last row
    max_error: float = 0.0  # the last row read through the lens vs the logits, relative

    def log_probs(self, row: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """log-softmax of row ``row``'s lens logits at positions start:stop, float32. The last
        row is the model's own logits (which the lens reproduces, see :func:`residuals`)."""
        import torch

        with torch.inference_mode():
            if row == len(self.hidden) - 1:
                logits = self.logits[start:stop]
            else:
                logits = self.reader(self.hidden[row][start:stop]).float()
            return torch.log_softmax(logits, dim=-1)

    def row_labels(self) -> list[str]:
        rows = len(self.hidden)
        labels = ["embeddings", *(f"layer {i}" for i in range(1, rows - 1))]
        return [*labels, f"layer {rows - 1} (output)"]


@contextmanager
def _norm_input(reader: LensReader) -> Iterator[dict[str, Any]]:
    """Record what goes into the final norm (its last call) for the block."""
    seen: dict[str, Any] = {}
    if reader.norm is None:
        yield seen
        return

    def record(_module: Any, args: tuple, kwargs: dict) -> None:
        seen["hidden"] = args[0] if args else next(iter(kwargs.values()))

    handle = reader.norm.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def residuals(lm: LoadedModel, ids: torch.Tensor) -> Residuals:
    """One forward pass over ``ids`` (1, n): the residual streams, checked against the logits."""
    import torch

    from llmlab import memory

    reader = lens_reader(lm.model)
    family = lm.family
    estimate = memory.lens_capture(
        lm.config, int(ids.shape[1]), hidden_bytes=lm.model.dtype.itemsize
    )
    memory.guard(estimate, lm.device)  # refuse before the forward pass, not halfway
    with lm.exclusive("logit lens"), torch.inference_mode(), _norm_input(reader) as seen:
        out = lm.model(input_ids=ids, output_hidden_states=True, use_cache=False)
    states = getattr(out, "hidden_states", None)
    if not states:
        raise LabError(f"{family} does not return its hidden states (output_hidden_states)")
    if reader.norm is not None:
        if "hidden" not in seen:
            raise LabError(
                f"the logit lens found {family}'s final norm at {reader.norm_path}, but the "
                "model did not run it; the lens adapter table needs an entry for this family"
            )
        last = seen["hidden"]
    else:
        last = states[-1]
    if any(h.dim() != 3 for h in states) or last.dim() != 3:
        shape = next(tuple(h.shape) for h in states if h.dim() != 3) if states else ()
        raise LabError(
            f"{family} keeps several parallel residual streams (hidden states of shape {shape}, "
            "hyper-connections); the logit lens reads one stream per layer"
        )
    logits = getattr(out, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise LabError(f"{family} does not return its logits as one tensor; no lens to check")
    hidden = [h[0] for h in states[:-1]] + [last[0]]
    result = Residuals(hidden, logits[0].float(), reader, n_layers=len(hidden) - 1)
    _check_reads_logits(result, lm)
    return result


def _check_reads_logits(res: Residuals, lm: LoadedModel) -> None:
    """The last row read through the lens must be the model's own logits, at every position
    (chunked as the other rows are read, so activation-dependent kernels such as dynamic int8
    see the same inputs)."""
    import torch

    n = res.hidden[-1].shape[0]
    worst = 0.0
    with torch.inference_mode():
        for start in range(0, n, CHUNK):
            mine = res.reader(res.hidden[-1][start : start + CHUNK]).float()
            real = res.logits[start : start + CHUNK]
            if mine.shape != real.shape:
                raise LabError(
                    f"the logit lens reads {mine.shape[-1]} logits from {lm.family} but the "
                    f"model gives {real.shape[-1]}; the lens adapter table needs an entry for it"
                )
            scale = max(1.0, float(real.abs().max()))
            worst = max(worst, float((mine - real).abs().max()) / scale)
    if worst > TOLERANCE.get(lm.dtype, TOLERANCE_16BIT):
        raise LabError(
            f"the logit lens cannot reproduce {lm.family}'s logits from its last layer (reading "
            f"{res.reader.describe()}: relative error {worst:.1e}); the family transforms its "
            "output in a way llmlab/lens/adapters.py does not know yet"
        )
    res.max_error = worst
