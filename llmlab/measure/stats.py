"""A figure with its spread: every number the tradeoff tool shows carries one."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def _quantile(sorted_values: list[float], q: float) -> float:
    # Linear interpolation between closest ranks (numpy's default), written out so a Spread
    # does not need numpy and stays exact for the small samples a sweep collects.
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


#: Student's t at 97.5% for 1..30 degrees of freedom (a two-sided 95% interval). Written out so
#: a Spread needs no scipy; from 31 on the normal 1.96 is within 3%.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 prompt"``, ``"2 prompts"``."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def format_number(x: float, digits: int = 3) -> str:
    """Readable significant digits: ``1,234``, ``12.3``, ``0.0123``, ``1.2e-05``."""
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


@dataclass
class Spread:
    """Samples of one quantity and their summary: median, quartiles, p10/p90, mean.

    ``headline`` says which summary is *the* figure: latencies use the median (robust to a
    noisy neighbour), averaged quantities such as mean KL use the mean.
    """

    values: list[float] = field(default_factory=list)
    headline: str = "median"

    @classmethod
    def of(cls, values: Iterable[float | None], headline: str = "median") -> Spread:
        return cls([float(v) for v in values if v is not None], headline)

    @property
    def n(self) -> int:
        return len(self.values)

    def quantile(self, q: float) -> float | None:
        return _quantile(sorted(self.values), q) if self.values else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def q1(self) -> float | None:
        return self.quantile(0.25)

    @property
    def q3(self) -> float | None:
        return self.quantile(0.75)

    @property
    def p10(self) -> float | None:
        return self.quantile(0.10)

    @property
    def p90(self) -> float | None:
        return self.quantile(0.90)

    @property
    def iqr(self) -> float | None:
        return None if not self.values else self.q3 - self.q1

    @property
    def value(self) -> float | None:
        """The headline figure."""
        return self.mean if self.headline == "mean" else self.median

    @property
    def interval_name(self) -> str:
        """What :attr:`interval` is, in words."""
        return "95% CI" if self.headline == "mean" else "IQR"

    @property
    def interval(self) -> tuple[float, float] | None:
        """The bar that belongs to the headline, from the same statistic: the quartiles around
        a median, the 95% confidence interval of a mean (Student's t over the samples, kept
        within the samples' range). A mean drawn with its quartiles can sit outside its own
        bar (a KL mean of 0.00141 with IQR 5.8e-05-0.00123: a few large positions pull the
        mean above the third quartile); its interval always holds it. None below 2 samples."""
        if self.n < 2:
            return None
        if self.headline != "mean":
            return self.q1, self.q3
        half = _t975(self.n - 1) * statistics.stdev(self.values) / self.n**0.5
        mean = self.mean
        return max(mean - half, min(self.values)), min(mean + half, max(self.values))

    def scaled(self, factor: float) -> Spread:
        return Spread([v * factor for v in self.values], self.headline)

    def relative_spread(self) -> float | None:
        """IQR over the headline: how noisy this figure is, as a fraction."""
        v = self.value
        return None if not v or self.iqr is None else self.iqr / abs(v)

    def format(self, unit: str = "", scale: float = 1.0, digits: int = 3, of: str = "") -> str:
        """``"12.3 ms (IQR 11.9–12.8, p90 13.1, n=84)"`` for a median; a mean says so and
        gives its confidence interval: ``"0.0014 (mean, 95% CI 0.0009–0.0019, n=120)"``.
        ``of`` names what the samples are (``"positions"``: ``n=120 positions``)."""
        if not self.values:
            return "n/a"

        def f(x: float) -> str:
            return format_number(x * scale, digits)

        sep = " " if unit else ""
        n = f"n={self.n}" + (f" {of}" if of else "")
        bar = self.interval
        if self.headline == "mean":
            ci = f"95% CI {f(bar[0])}–{f(bar[1])}, " if bar else ""
            return f"{f(self.value)}{sep}{unit} (mean, {ci}{n})"
        return f"{f(self.value)}{sep}{unit} (IQR {f(self.q1)}–{f(self.q3)}, p90 {f(self.p90)}, {n})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "median": self.median,
            "mean": self.mean,
            "q1": self.q1,
            "q3": self.q3,
            "p10": self.p10,
            "p90": self.p90,
            "n": self.n,
            "interval": list(self.interval) if self.interval else None,
            "interval_name": self.interval_name,
        }
