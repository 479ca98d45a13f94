"""Sizes of a saved notebook and its offline report when a sweep is shown twice (issue 21:
every display inlined plotly.js, 4.8 MB; one sweep shown twice made a 12.4 MB notebook).

Runs a small notebook headless (``python -m llmlab.report --execute``: the executed notebook is
what Jupyter saves, with its widget state) and prints the sizes and plotly.js copies::

    python benchmarks/notebook_sizes.py                 # tiny random model, seconds
    python benchmarks/notebook_sizes.py --model default # the embedded default model
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nbformat

CELLS = [
    "%load_ext llmlab\n%llm load {model}",
    "sweep = %llm tradeoff --configs baseline,kv=off --axes cost,top1 --max-new-tokens 4 "
    "--repeats 3 --warmup 0 --wait",
    "sweep",  # the same sweep shown again
    '%llm next "The cat sat on the"',
]


def measure(model: str, out: Path) -> dict[str, float]:
    from llmlab.report import main

    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c.format(model=model)) for c in CELLS]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = out / "sizes.ipynb"
    nbformat.write(nb, path)
    main([str(path), "--execute", "-o", str(out / "out")])
    executed, report = out / "out" / "sizes.ipynb", out / "out" / "sizes.html"
    # What JupyterLab saves by default ("save widget state" off): the outputs, no widget state.
    saved = nbformat.read(executed, as_version=4)
    saved.metadata.pop("widgets", None)
    plain = out / "saved.ipynb"
    nbformat.write(saved, plain)
    plotly = "plotly.js v"
    return {
        "saved_mb": plain.stat().st_size / 1e6,
        "notebook_mb": executed.stat().st_size / 1e6,
        "report_mb": report.stat().st_size / 1e6,
        "plotly_js_in_notebook": executed.read_text().count(plotly),
        "plotly_js_in_report": report.read_text().count(plotly),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny:llama")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = measure(args.model, Path(tmp))
    print(
        f"notebook as saved {sizes['saved_mb']:.2f} MB, with widget state "
        f"{sizes['notebook_mb']:.2f} MB ({sizes['plotly_js_in_notebook']} plotly.js in outputs), "
        f"report {sizes['report_mb']:.2f} MB ({sizes['plotly_js_in_report']} plotly.js)"
    )


if __name__ == "__main__":
    main()
