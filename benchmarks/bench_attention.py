"""Attention benchmark: capture + payload build time and payload sizes on the default model.

Run:  .venv/bin/python benchmarks/bench_attention.py [--tokens 1024] [--repeats 3]

Prints, for the long input (goal: capture + payload <= 3 s on CPU, initial payload <= 8 MB)
and for 128 tokens: the median time of the capture (one eager forward pass with per-layer
reduction) and of building the live payload, the payload's JSON size, and -- measured side by
side in the same run -- a plain sdpa forward pass over the same ids, so the capture's own
overhead shows as a ratio even when the machine is busy. Also the size of one on-demand
full-resolution head and of the static HTML.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from llmlab.attention.engine import attention_of_ids
from llmlab.models.registry import load_model

TEXT = (
    "The lighthouse keeper wound each clock at dusk, listening to the sea argue with the rocks, "
    "and wrote down the minutes every one of them had lost since the last storm. "
)


def ids_of(lm, n: int) -> torch.Tensor:
    ids = lm.tokenizer(TEXT * (n // 20 + 2), return_tensors="pt").input_ids[:, :n]
    assert ids.shape[1] == n
    return ids


def measure(lm, n: int, repeats: int) -> dict[str, float]:
    ids = ids_of(lm, n)
    capture_s, payload_s, plain_s = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            lm.model(ids, use_cache=False)
        plain_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = attention_of_ids(lm, ids, text=TEXT, n_prompt=n)
        capture_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        payload = json.dumps(result.payload(), separators=(",", ":"))
        payload_s.append(time.perf_counter() - start)
        del result
    result = attention_of_ids(lm, ids, text=TEXT, n_prompt=n)
    reply, buffers = result.answer({"kind": "head", "layer": 0, "head": 0})
    start = time.perf_counter()
    html = result.to_html()
    html_s = time.perf_counter() - start
    return {
        "capture_s": statistics.median(capture_s),
        "payload_s": statistics.median(payload_s),
        "plain_s": statistics.median(plain_s),
        "payload_bytes": len(payload.encode()),
        "head_bytes": sum(len(b) for b in buffers),
        "html_bytes": len(html.encode()),
        "html_s": html_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lm = load_model("default")
    print(
        f"model {lm.name}: {lm.summary()['layers']} layers × {lm.summary()['heads']} heads, "
        f"{lm.device}/{lm.dtype}, torch threads {torch.get_num_threads()}"
    )
    measure(lm, 32, 1)  # warm-up
    for n in (args.tokens, 128):
        m = measure(lm, n, args.repeats)
        total = m["capture_s"] + m["payload_s"]
        print(
            f"{n:>5} tokens: capture {m['capture_s']:.2f} s + payload {m['payload_s']:.2f} s "
            f"= {total:.2f} s (plain sdpa forward {m['plain_s']:.2f} s, ratio "
            f"{total / m['plain_s']:.2f}x) | initial payload {m['payload_bytes'] / 1e6:.2f} MB | "
            f"one full head on demand {m['head_bytes'] / 1e6:.2f} MB | "
            f"static HTML {m['html_bytes'] / 1e6:.2f} MB in {m['html_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
