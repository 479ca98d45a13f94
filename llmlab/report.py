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
import os
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).parent / "data" / "offline_report.html.j2"


def execute(path: str | Path, timeout: int = 900, progress: bool = False):
    """Run every cell of a notebook (from its own folder) and return the executed notebook.

    ``progress``: a tqdm bar on stderr over the code cells, naming the one running.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    hooks, bar = _progress_hooks(path, nb) if progress else ({}, None)
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
    finally:
        if bar is not None:
            bar.close()
    return nb


def _progress_hooks(path: Path, nb) -> tuple[dict, Any]:
    """nbclient hooks driving one tqdm bar: which cell runs (its first line), how many are left."""
    import sys

    from tqdm.auto import tqdm

    code = sum(c.cell_type == "code" for c in nb.cells)
    bar = tqdm(total=code, desc=path.name, unit="cell", file=sys.stderr)

    def started(cell, cell_index, **_):
        if cell.cell_type != "code":
            return
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        bar.set_postfix_str(f"cell {cell_index + 1}: {first[:60]}")

    def executed(cell, cell_index, **_):
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
    out = Path(out)
    out.write_text(body, encoding="utf-8")
    return out


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmlab.report", description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--execute", action="store_true", help="run the notebooks first")
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("build"))
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    import nbformat

    for path in args.notebooks:
        nb = execute(path, progress=True) if args.execute else nbformat.read(path, as_version=4)
        if args.execute:
            # The executed notebook keeps every widget's saved state (megabytes), so it reopens
            # in Jupyter with its views; the HTML report needs none of it.
            executed = args.output_dir / path.name
            nbformat.write(nb, executed)
            print(f"wrote {executed} ({_size(executed)}, executed, with saved widget state)")
        html = export_html(nb, args.output_dir / f"{path.stem}.html", title=path.stem)
        print(f"wrote {html} ({_size(html)}, offline report)")


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


if __name__ == "__main__":
    main()
