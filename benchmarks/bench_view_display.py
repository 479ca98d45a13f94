"""Display latency of a live view in a kernel: when the widget appears vs. its offline copy.

Run:  .venv/bin/python benchmarks/bench_view_display.py [--tokens 100 1000] [--repeats 2]

Goal: displaying a view never waits for its offline copy (the widget's display message leaves
the kernel before the copy is built). In a real ipykernel, on the default model's attention
view, it times -- from the display cell's start (its ``execute_input``) -- the arrival of the
widget's display message, of the offline copy (``text/html``), the cell's end (kernel idle),
and the reply to a trivial cell sent right after it (is the kernel free while the copy is
built?). Two ways, side by side in one kernel, so ratios hold on a busy machine:

- ``before``: the bundle with the copy built first, then displayed (the previous behaviour,
  still what ``_repr_mimebundle_`` returns);
- ``after``: ``view.show()``: the copy is built in a worker thread; the view is shown with it
  if ready within ``OFFLINE_COPY_WAIT_S`` (0.5 s), else without it, and the copy is added as an
  update of the same display when built.
"""

from __future__ import annotations

import argparse
import statistics
import time

from jupyter_client.manager import start_new_kernel

WIDGET = "application/vnd.jupyter.widget-view+json"

SETUP = """
from llmlab.attention.engine import attention_of_ids
from llmlab.models.registry import load_model
from llmlab.widgets.attention import AttentionView
lm = load_model("default")
TEXT = ("The lighthouse keeper wound each clock at dusk, listening to the sea argue with the "
        "rocks, and wrote down the minutes every one of them had lost since the last storm. ")
def capture(n):
    ids = lm.tokenizer(TEXT * (n // 20 + 2), return_tensors="pt").input_ids[:, :n]
    return attention_of_ids(lm, ids, text=TEXT, n_prompt=n)
"""

SHOW = {
    "before": "from IPython.display import display\n"
    "b = AttentionView(r)._repr_mimebundle_()\n"
    "display(*b if isinstance(b, tuple) else (b,), raw=True)",
    "after": "AttentionView(r).show()",
}


def run(kc, code: str, timeout: float = 900) -> dict[str, float]:
    """Execute ``code``; seconds from its execute_input to each event, then a trivial cell."""
    msg_id = kc.execute(code)
    start = None
    times: dict[str, float] = {}
    while "idle" not in times:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content, now = msg["msg_type"], msg["content"], time.perf_counter()
        if kind == "execute_input":
            start = now
        elif kind in ("display_data", "update_display_data") and start is not None:
            if WIDGET in content["data"]:
                times.setdefault("widget", now - start)
            if "text/html" in content["data"]:
                times.setdefault("copy", now - start)
        elif kind == "error":
            raise RuntimeError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle" and start is not None:
            times["idle"] = now - start
    # A trivial cell right away: how soon the kernel answers it (the copy may still build).
    next_id = kc.execute("1 + 1")
    while "next cell" not in times or "copy" not in times:
        msg = kc.get_iopub_msg(timeout=timeout)
        now, parent = time.perf_counter(), msg["parent_header"].get("msg_id")
        if parent == next_id and msg["content"].get("execution_state") == "idle":
            times["next cell"] = now - start
        elif parent == msg_id and "text/html" in msg["content"].get("data", {}):
            times.setdefault("copy", now - start)
    return times


def quiet(kc, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=900, output_hook=lambda msg: None)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{code!r}: {reply['content'].get('evalue')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        quiet(kc, SETUP)
        print(f"{'tokens':>6} {'way':>6}  median s from cell start: widget / copy / idle / next")
        for n in args.tokens:
            runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
            for i in range(args.repeats):
                # A fresh capture each time (a result caches what its copy asks), the two ways
                # in turn so that neither always runs on a warmer kernel.
                for way in ("before", "after")[:: 1 if i % 2 == 0 else -1]:
                    quiet(kc, f"r = capture({n})")
                    runs[way].append(run(kc, SHOW[way]))
            for way, timed in runs.items():
                med = {k: statistics.median(r[k] for r in timed) for k in timed[0]}
                print(
                    f"{n:>6} {way:>6}  {med['widget']:6.2f} / {med['copy']:6.2f} / "
                    f"{med['idle']:6.2f} / {med['next cell']:6.2f}",
                    flush=True,
                )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
