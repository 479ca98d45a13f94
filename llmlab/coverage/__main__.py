"""``python -m llmlab.coverage``: build the coverage matrix and write docs/families.md.

A run over some types only (``python -m llmlab.coverage gpt2 llama``) writes its partial table
to build/ instead: docs/families.md is the table of every family, and a partial run never
replaces it (nor any other page that lists families the run did not check).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from llmlab.cli import OneLineParser, positive_int
from llmlab.coverage import matrix

FULL_PAGE = Path("docs/families.md")
FULL_JSON = Path("build/coverage.json")
PARTIAL_PAGE = Path("build/families-partial.md")
PARTIAL_JSON = Path("build/coverage-partial.json")


class _Refused(Exception):
    """A request the tool refuses before it runs anything; its message is the one line."""


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m llmlab.coverage",
        description="Try every causal-LM model type transformers ships (tiny random models "
        "saved and loaded by path) with every llmlab feature; write the table users read.",
    )
    parser.add_argument(
        "types", nargs="*", help="model types to check (default: all; a subset writes to build/)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=matrix.default_workers(), help="processes"
    )
    parser.add_argument(
        "--timeout", type=positive_int, default=matrix.FAMILY_TIMEOUT, help="seconds per family"
    )
    parser.add_argument(
        "--out", type=Path, help=f"the page (default: {FULL_PAGE}; {PARTIAL_PAGE} for a subset)"
    )
    parser.add_argument(
        "--json", type=Path, help=f"the raw results (default: {FULL_JSON}; {PARTIAL_JSON})"
    )
    args = parser.parse_args(argv)
    try:
        out, out_json = _outputs(args)
    except _Refused as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2

    def progress(report: matrix.FamilyReport, done: int, total: int) -> None:
        if report.skipped:
            line = f"skipped: {report.skipped}"
        else:
            line = " ".join(f"{f}={o.status}" for f, o in report.features.items())
        print(f"[{done}/{total}] {report.model_type} ({report.seconds:.1f} s) {line}", flush=True)

    start = time.perf_counter()
    try:
        reports = matrix.run(
            args.types or None, workers=args.workers, progress=progress, timeout=args.timeout
        )
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; {out} is unchanged", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    matrix.write(reports, out, out_json, seconds)
    built = [r for r in reports if not r.skipped]
    for name, counts in matrix.totals(built).items():
        print(f"{name:>20}: " + ", ".join(f"{counts[s]} {s}" for s in matrix.STATUSES))
    print(f"{len(built)} built, {len(reports) - len(built)} skipped, {seconds:.0f} s -> {out}")
    return 0


def _outputs(args) -> tuple[Path, Path]:
    """Where this run writes, checked before an hour of work: known types, writable folders,
    and no page of more families replaced by a partial table."""
    known = matrix.causal_lm_types()
    unknown = [t for t in args.types if t not in known]
    if unknown:
        raise _Refused(
            f"unknown model type {unknown[0]!r}: not one of the {len(known)} causal-LM types "
            "transformers ships here (e.g. llama, gpt2, qwen3_moe)"
        )
    if len(set(args.types)) != len(args.types):
        raise _Refused("a model type is named twice")
    partial = bool(args.types) and set(args.types) != set(known)
    out = args.out or (PARTIAL_PAGE if partial else FULL_PAGE)
    out_json = args.json or (PARTIAL_JSON if partial else FULL_JSON)
    if out.resolve() == out_json.resolve():
        raise _Refused(
            f"--out and --json name the same file ({out}); the JSON would replace the page"
        )
    if partial and out.is_file():
        try:
            listed = matrix.families_in(out.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            listed = set()
        dropped = listed - set(args.types)
        if dropped:
            raise _Refused(
                f"{out} lists {len(listed)} families and this run checks {len(args.types)}: "
                f"writing it would drop {len(dropped)} of them; give --out another file"
            )
    # The default places (build/) are made on demand; a folder the user names must exist.
    _check_writable(out, "--out", create=args.out is None)
    _check_writable(out_json, "--json", create=True)
    return out, out_json


def _check_writable(path: Path, flag: str, *, create: bool) -> None:
    if path.is_dir():
        raise _Refused(f"{flag} {path} is a folder; give a file name")
    folder = path.parent
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _Refused(f"cannot create {folder} for {flag}: {err.strerror or err}") from None
    if not folder.is_dir():
        raise _Refused(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _Refused(f"{flag} {path}: cannot write into {folder} (permission denied)")


if __name__ == "__main__":
    raise SystemExit(main())
