"""``python -m llmlab.coverage``: build the coverage matrix and write docs/families.md."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from llmlab.coverage import matrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmlab.coverage",
        description="Try every causal-LM model type transformers ships (tiny random models "
        "saved and loaded by path) with every llmlab feature; write the table users read.",
    )
    parser.add_argument("types", nargs="*", help="model types to check (default: all)")
    parser.add_argument("--workers", type=int, default=matrix.default_workers())
    parser.add_argument("--timeout", type=int, default=matrix.FAMILY_TIMEOUT,
                        help="seconds per family")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("docs/families.md"))
    parser.add_argument("--json", type=Path, default=Path("build/coverage.json"))
    args = parser.parse_args(argv)
    matrix.FAMILY_TIMEOUT = args.timeout

    def progress(report: matrix.FamilyReport, done: int, total: int) -> None:
        if report.skipped:
            line = f"skipped: {report.skipped}"
        else:
            line = " ".join(f"{f}={o.status}" for f, o in report.features.items())
        print(f"[{done}/{total}] {report.model_type} ({report.seconds:.1f} s) {line}", flush=True)

    start = time.perf_counter()
    reports = matrix.run(args.types or None, workers=args.workers, progress=progress)
    seconds = time.perf_counter() - start
    matrix.write(reports, args.out, args.json, seconds)
    built = [r for r in reports if not r.skipped]
    for name, counts in matrix.totals(built).items():
        print(f"{name:>20}: " + ", ".join(f"{counts[s]} {s}" for s in matrix.STATUSES))
    print(f"{len(built)} built, {len(reports) - len(built)} skipped, {seconds:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
