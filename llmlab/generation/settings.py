"""Generation settings: one validated record, shared by the engine, the magics and the results."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from llmlab.errors import LabError

#: torch.manual_seed takes 64-bit seeds; a larger one overflowed inside generate().
SEED_LIMIT = 2**64


#: Candidates one generation may sample at once (OpenAI's API allows 128 choices).
MAX_CANDIDATES = 256


@dataclass(frozen=True)
class GenerationSettings:
    """How to pick each next token.

    Greedy unless a temperature is given (``temperature=0`` is greedy too). ``top_k`` / ``top_p``
    alone sample at temperature 1. ``best_of=N`` samples N candidates and keeps the one with the
    highest mean log-probability under the model; ``num_return_sequences`` returns them all.
    """

    max_new_tokens: int = 64
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_return_sequences: int = 1
    best_of: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise LabError(f"max new tokens must be a positive integer, got {self.max_new_tokens}")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            # nan would silently mean greedy and inf uniform noise: refuse both.
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
            ):
                raise LabError(f"{name.replace('_', '-')} must be a finite number, got {value!r}")
        for name in ("top_k", "seed", "num_return_sequences", "best_of"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Integral)
            ):
                raise LabError(f"{name.replace('_', '-')} must be a whole number, got {value!r}")
        if self.seed is not None and not 0 <= self.seed < SEED_LIMIT:
            raise LabError(f"the seed must be between 0 and 2**64 - 1, got {self.seed}")
        if self.temperature is not None and self.temperature < 0:
            raise LabError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise LabError(f"top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LabError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.num_return_sequences < 1 or self.best_of < 1:
            raise LabError("--num-return-sequences and --best-of must be >= 1")
        if max(self.num_return_sequences, self.best_of) > MAX_CANDIDATES:
            # Each candidate is a sequence decoded at once: 10^5 of them ran for minutes on a
            # model of 0.2 M parameters. The memory estimate (llmlab.memory.generation) bounds
            # the rest before anything is allocated.
            raise LabError(
                f"--num-return-sequences and --best-of take at most {MAX_CANDIDATES} candidates, "
                f"got {max(self.num_return_sequences, self.best_of):,}"
            )
        if self.num_return_sequences > 1 and self.best_of > 1:
            raise LabError("use either --best-of or --num-return-sequences, not both")
        if self.n_candidates > 1 and not self.do_sample:
            raise LabError(
                "several candidates need sampling (greedy gives the same text each time); "
                "add --temperature, e.g. --temperature 0.8"
            )

    @property
    def do_sample(self) -> bool:
        if self.temperature is not None:
            return self.temperature > 0
        return self.top_k is not None or self.top_p is not None

    @property
    def n_candidates(self) -> int:
        return max(self.num_return_sequences, self.best_of)

    def describe(self) -> str:
        if not self.do_sample:
            how = "greedy"
        else:
            parts = [f"T={self.temperature if self.temperature is not None else 1.0:g}"]
            if self.top_k is not None:
                parts.append(f"top-k={self.top_k}")
            if self.top_p is not None:
                parts.append(f"top-p={self.top_p:g}")
            if self.seed is not None:
                parts.append(f"seed={self.seed}")
            how = "sampling " + " ".join(parts)
        if self.best_of > 1:
            how += f", best of {self.best_of}"
        elif self.num_return_sequences > 1:
            how += f", {self.num_return_sequences} sequences"
        return how

    def generate_kwargs(self) -> dict[str, Any]:
        """Arguments for ``model.generate`` that switch off every default we did not ask for
        (a model's generation_config may carry its own top-k/top-p/temperature)."""
        kwargs: dict[str, Any] = dict(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            num_return_sequences=self.n_candidates,
            top_k=None,
            top_p=None,
            temperature=None,
        )
        if self.do_sample:
            kwargs.update(
                temperature=self.temperature if self.temperature is not None else 1.0,
                top_k=self.top_k if self.top_k is not None else 0,
                top_p=self.top_p if self.top_p is not None else 1.0,
            )
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, settings: GenerationSettings | None = None, **changes: Any) -> GenerationSettings:
        """``settings`` (default: the defaults) with ``changes`` applied; an unknown name is a
        one-line error rather than a keyword silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise LabError(
                f"unknown generation setting {unknown[0]!r}; settings: {', '.join(sorted(known))}"
            )
        if settings is not None and not isinstance(settings, cls):
            raise LabError(
                f"settings must be a GenerationSettings, got {type(settings).__name__}; "
                "or pass the fields as keywords (max_new_tokens=..., temperature=...)"
            )
        return replace(settings, **changes) if settings is not None else cls(**changes)
