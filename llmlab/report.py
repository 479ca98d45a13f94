"""Reports: run a notebook headless and export it as one offline HTML file.

nbconvert's stock HTML pulls require.js, MathJax and the widget manager from CDNs, so widget
views go blank offline. ``export_html`` uses our template instead, which keeps the page
self-contained and shows each widget's text/html: for llmlab views an offline copy that runs
the view's own script on its inlined data (``llmlab.widgets.static``), with the reduced static
HTML inside for viewers that run no script.

Command line::

    python -m llmlab.report examples/quickstart.ipynb --execute -o build/
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from pathlib import Path
from typing import Any

from llmlab.cli import OneLineParser
from llmlab.errors import LabError, one_line
from llmlab.files import write_text

TEMPLATE = Path(__file__).parent / "data" / "offline_report.html.j2"


def execute(path: str | Path, timeout: float = 900, progress: bool = False):
    """Run every cell of a notebook (from its own folder) and return the executed notebook.

    ``timeout``: seconds one cell may run before it is stopped (nbclient's CellTimeoutError).
    ``progress``: a tqdm bar on stderr over the code cells, naming the one running.
    A failure (a cell raised, ran past the timeout, the kernel died) is raised with
    ``err.llmlab_cell`` (the failing cell's index) and ``err.llmlab_notebook`` (the notebook
    with the outputs so far) attached, so a caller can still save what ran.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = read_notebook(path)
    running: list[int] = []
    hooks, bar = _progress_hooks(path, nb, running, progress)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        **hooks,
    )
    from llmlab.widgets.base import OFFLINE_COPY_ENV

    try:
        # A live view's offline copy is built after the view is shown; here no one watches,
        # and nbclient keeps only what a cell sends before it ends: build copies at once.
        client.execute(env={**os.environ, OFFLINE_COPY_ENV: "now"})
    except Exception as err:
        err.llmlab_cell = running[-1] if running else None  # type: ignore[attr-defined]
        err.llmlab_notebook = nb  # type: ignore[attr-defined]
        raise
    finally:
        if bar is not None:
            bar.close()
    return nb


def _progress_hooks(path: Path, nb, running: list[int], progress: bool) -> tuple[dict, Any]:
    """nbclient hooks that record which cell runs (into ``running``) and, with ``progress``,
    drive one tqdm bar: which cell runs (its first line), how many are left."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        code = sum(c.cell_type == "code" for c in nb.cells)
        bar = tqdm(total=code, desc=path.name, unit="cell", file=sys.stderr)

    def started(cell, cell_index, **_):
        running.append(cell_index)
        if cell.cell_type != "code" or bar is None:
            return
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        bar.set_postfix_str(f"cell {cell_index + 1}: {first[:60]}")

    def executed(cell, cell_index, **_):
        if bar is not None:
            bar.update(1)

    return {"on_cell_start": started, "on_cell_executed": executed}, bar


def export_html(nb, out: str | Path, title: str | None = None) -> Path:
    """Write a notebook (a path or an executed notebook node) as a self-contained HTML file."""
    import nbformat
    from nbconvert import HTMLExporter

    if isinstance(nb, (str, Path)):
        title = title or Path(nb).stem
        nb = nbformat.read(nb, as_version=4)
    # Saved widget state only feeds the CDN widget manager, which an offline page never loads.
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    _one_plotly_js(nb)
    exporter = HTMLExporter(template_file=str(TEMPLATE), embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title or "report"}})
    return write_text(out, body)


def _one_plotly_js(nb) -> None:
    """Keep the first plotly.js of the page and drop the others (a notebook run in several
    kernel sessions carries one per session): every chart draws with the one kept."""
    from llmlab.html import PLOTLY_JS_MARK

    kept = False
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if not isinstance(html, str) or PLOTLY_JS_MARK not in html:
                continue
            parts, rest = [], html
            while (start := rest.find(f"<script {PLOTLY_JS_MARK}")) >= 0:
                end = rest.index("</script>", start) + len("</script>")
                parts.append(rest[:start] + ("" if kept else rest[start:end]))
                kept, rest = True, rest[end:]
            output["data"]["text/html"] = "".join(parts) + rest


class ReportError(LabError):
    """A notebook or an output folder the report cannot use; one line for the user."""


def read_notebook(path: Path):
    """The notebook at ``path``, or :class:`ReportError` naming what the file is instead."""
    import json

    import nbformat

    if not path.exists():
        raise ReportError(f"{path}: no such file")
    if path.is_dir():
        raise ReportError(f"{path} is a folder; give the .ipynb files in it")
    if not path.is_file():
        raise ReportError(f"{path} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"{path} is not a notebook (not UTF-8 text)") from None
    except OSError as err:
        raise ReportError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        data = json.loads(text)
    except ValueError:
        what = "empty" if not text.strip() else "not JSON"
        raise ReportError(f"{path} is not a notebook ({what})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ReportError(
            f"{path} is not a notebook (JSON {type(data).__name__} without a list of cells)"
        )
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as err:  # noqa: BLE001 - nbformat's validation errors are many kinds
        raise ReportError(f"{path} is not a notebook nbformat can read ({one_line(err)})") from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"takes a number of seconds > 0, got {text!r}")
    return value


def _plan(notebooks: list[Path], out: Path, execute: bool) -> list[tuple[Path, Path | None, Path]]:
    """(source, executed copy or None, report) per notebook, checked before anything runs:
    no output replaces a source notebook, no two notebooks write the same file."""
    sources = {p.resolve() for p in notebooks}
    plan, taken = [], {}
    for path in notebooks:
        executed = None
        if execute:
            executed = out / path.name
            if executed.resolve() in sources:  # -o is the notebook's own folder
                executed = out / f"{path.stem}.executed{path.suffix}"
        html = out / f"{path.stem}.html"
        for target in filter(None, (executed, html)):
            key = target.resolve()
            if key in sources:
                raise ReportError(f"writing {target} would replace the notebook {target}; use -o")
            if key in taken:
                raise ReportError(
                    f"{path} and {taken[key]} would both write {target}; report them into "
                    "separate -o folders"
                )
            taken[key] = path
        plan.append((path, executed, html))
    return plan


def _check_output_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ReportError(f"-o {out} is a file, not a folder") from None
    except OSError as err:
        raise ReportError(f"cannot create the output folder -o {out}: {err.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ReportError(f"cannot write into the output folder -o {out} (permission denied)")


def _run_failure(err: BaseException, path: Path, timeout: float) -> str:
    """What stopped a notebook's run, in one line."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    cell = getattr(err, "llmlab_cell", None)
    where = f"cell {cell + 1}" if cell is not None else "a cell"
    if isinstance(err, CellTimeoutError):
        return f"{where} ran past --timeout {timeout:g} s and was stopped"
    if isinstance(err, CellExecutionError):
        evalue = " ".join((err.evalue or "").split())
        evalue = evalue if len(evalue) <= 200 else evalue[:199] + "…"
        return f"{where} raised {err.ename}" + (f": {evalue}" if evalue else "")
    if isinstance(err, DeadKernelError):
        return f"the kernel died while running {where}"
    return f"running it failed at {where}: {one_line(err)}"


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0: every report written)."""
    parser = OneLineParser(prog="python -m llmlab.report", description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--execute", action="store_true", help="run the notebooks first")
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("build"))
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=900.0,
        help="with --execute: seconds one cell may run before it is stopped (default: 900)",
    )
    args = parser.parse_args(argv)
    try:
        return _report(args)
    except ReportError as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; reports written so far are kept", file=sys.stderr)
        return 130


def _report(args) -> int:
    import nbformat

    notebooks = [read_notebook(path) for path in args.notebooks]  # all checked first
    plan = _plan(args.notebooks, args.output_dir, args.execute)
    _check_output_dir(args.output_dir)
    failed = 0
    for (path, executed, html_path), nb in zip(plan, notebooks, strict=True):
        failure = None
        if args.execute:
            try:
                nb = execute(path, timeout=args.timeout, progress=True)
            except Exception as err:  # noqa: BLE001 - one line per notebook, the others go on
                failure = _run_failure(err, path, args.timeout)
                nb = getattr(err, "llmlab_notebook", None)
                if nb is None:
                    print(f"{path}: {failure}; no report written", file=sys.stderr)
                    failed += 1
                    continue
            # The executed notebook keeps every widget's saved state (megabytes), so it reopens
            # in Jupyter with its views; the HTML report needs none of it.
            write_text(executed, nbformat.writes(nb))
            state = "run up to the failure" if failure else "executed"
            print(f"wrote {executed} ({_size(executed)}, {state}, with saved widget state)")
        html = export_html(nb, html_path, title=path.stem)
        print(f"wrote {html} ({_size(html)}, offline report)")
        if failure:
            print(f"{path}: {failure} (its output is in {executed})", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


if __name__ == "__main__":
    raise SystemExit(main())
