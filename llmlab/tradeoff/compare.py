"""Two sweeps side by side (e.g. the same configurations on CPU and on GPU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.html import card, esc
from llmlab.measure.stats import format_number
from llmlab.results import Result

if TYPE_CHECKING:
    import pandas as pd

    from llmlab.tradeoff.result import Sweep

#: Figures compared, and which direction is better.
COMPARED = [
    ("tpot_ms", "TPOT ms", "low"),
    ("ttft_ms", "TTFT ms", "low"),
    ("decode_tps", "decode tok/s", "high"),
    ("usd_per_mtok", "$ / 1M tok", "low"),
    ("peak_mem_mb", "peak mem MB", "low"),
    ("kl", "KL mean", "low"),
    ("top1", "top-1", "high"),
    ("greedy_match", "greedy same", "high"),
    ("perplexity", "perplexity", "low"),
]


@dataclass(repr=False)
class SweepComparison(Result):
    """Per configuration in both sweeps: each figure in A and B and the ratio B / A.

    A ratio is only shown when both figures carry spreads that do not overlap (IQR), or
    when the figure is deterministic; otherwise it is marked as within noise."""

    a: Sweep
    b: Sweep
    names: tuple[str, str]

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        fa, fb = self.a.to_pandas(), self.b.to_pandas()
        common = [c for c in fa.index if c in fb.index]
        rows = []
        for config in common:
            ra, rb = fa.loc[config], fb.loc[config]
            row: dict[str, Any] = {"config": config}
            for column, _, _ in COMPARED:
                va, vb = ra.get(column), rb.get(column)
                row[f"{column}_{self.names[0]}"] = va
                row[f"{column}_{self.names[1]}"] = vb
                row[f"{column}_ratio"] = vb / va if _num(va) and _num(vb) else None
                row[f"{column}_overlap"] = _overlap(ra, rb, column)
            rows.append(row)
        frame = pd.DataFrame(rows)
        return frame.set_index("config") if len(frame) else frame

    def summary(self) -> str:
        return (
            f"SweepComparison({self.names[0]}: {self.a.model}/{self.a.device} vs "
            f"{self.names[1]}: {self.b.model}/{self.b.device}, {len(self.to_pandas())} configs)"
        )

    def to_html(self) -> str:
        frame = self.to_pandas()
        a, b = (esc(n) for n in self.names)
        head = "<tr><th>configuration</th>" + "".join(
            f"<th>{esc(title)}<br><small>{a} → {b}</small></th>" for _, title, _ in COMPARED
        )
        rows = []
        for config, r in frame.iterrows():
            cells = []
            for column, _, better in COMPARED:
                va, vb, ratio = (r[f"{column}_{n}"] for n in (*self.names, "ratio"))
                if not (_num(va) and _num(vb)):
                    cells.append("<td>–</td>")
                    continue
                note = "within noise" if r[f"{column}_overlap"] else f"×{ratio:.2f}"
                good = (ratio < 1) == (better == "low") and not r[f"{column}_overlap"]
                style = ' style="color:#1a7f37"' if good else ""
                cells.append(
                    f"<td>{format_number(va)} → {format_number(vb)}<br>"
                    f"<small{style}>{esc(note)}</small></td>"
                )
            rows.append(f"<tr><td><b>{esc(config)}</b></td>{''.join(cells)}</tr>")
        title = (
            f"<b>Sweep comparison</b> · {a}: {esc(self.a.summary())}<br>"
            f"{b}: {esc(self.b.summary())}"
        )
        return card(f"<div>{title}</div><table>{head}</tr>{''.join(rows)}</table>")


def _num(v: Any) -> bool:
    try:
        return v is not None and v == v and float(v) != 0.0  # not None, not NaN, not zero
    except (TypeError, ValueError):
        return False


def _overlap(ra: Any, rb: Any, column: str) -> bool:
    """Do the two IQRs overlap? (False where a figure has no spread: deterministic.)"""
    q = [
        ra.get(column + "_q1"),
        ra.get(column + "_q3"),
        rb.get(column + "_q1"),
        rb.get(column + "_q3"),
    ]
    if any(v is None or v != v for v in q):
        return False
    return not (q[1] < q[2] or q[3] < q[0])


def compare_sweeps(a: Sweep, b: Sweep, *, names: tuple[str, str] | None = None) -> SweepComparison:
    if names is None:
        names = (a.device, b.device) if a.device != b.device else ("A", "B")
    return SweepComparison(a, b, names)
