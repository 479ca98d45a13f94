"""Attention benchmark: capture + payload time, memory and payload sizes on the default model.

Run:  .venv/bin/python benchmarks/bench_attention.py [--tokens 1024 4096] [--repeats 3]

Goals: capture + payload <= 3 s on CPU at 1,024 tokens; 4,096 tokens within 1 GB of memory.
For each length it prints the median time of the capture (one forward pass whose attention is
computed in row chunks and reduced on the fly) and of building the live payload, and --
measured side by side in the same run, so the ratios hold on a busy machine -- a plain sdpa
forward pass and a plain eager forward pass over the same ids. Memory: what the result keeps
(queries, keys, thumbnails, mask) and the process's resident-memory peak above its level
before the capture (sampled every 5 ms). Also the size of the initial payload, of one
on-demand full-resolution head and of the static HTML.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import psutil
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


class RssPeak:
    """The process's resident memory peak above its level at the start, sampled."""

    def __enter__(self):
        self.proc = psutil.Process(os.getpid())
        self.base = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.extra = self.peak - self.base


def plain_forward(lm, ids, kernel: str) -> float:
    original = lm.model.config._attn_implementation
    lm.model.set_attn_implementation(kernel)
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            lm.model(ids, use_cache=False)
        return time.perf_counter() - start
    finally:
        lm.model.set_attn_implementation(original)


def measure(lm, n: int, repeats: int, eager: bool) -> dict[str, float]:
    ids = ids_of(lm, n)
    capture_s, payload_s, sdpa_s, eager_s, extra = [], [], [], [], []
    for _ in range(repeats):
        sdpa_s.append(plain_forward(lm, ids, "sdpa"))
        if eager:
            eager_s.append(plain_forward(lm, ids, "eager"))
        with RssPeak() as rss:
            start = time.perf_counter()
            result = attention_of_ids(lm, ids, text=TEXT, n_prompt=n)
            capture_s.append(time.perf_counter() - start)
        extra.append(rss.extra)
        start = time.perf_counter()
        payload = json.dumps(result.payload(), separators=(",", ":"))
        payload_s.append(time.perf_counter() - start)
        kept = result.captured.nbytes
        if _ < repeats - 1:
            del result
    _, buffers = result.answer({"kind": "head", "layer": 0, "head": 0})
    start = time.perf_counter()
    html = result.to_html()
    html_s = time.perf_counter() - start
    return {
        "capture_s": statistics.median(capture_s),
        "payload_s": statistics.median(payload_s),
        "sdpa_s": statistics.median(sdpa_s),
        "eager_s": statistics.median(eager_s) if eager_s else float("nan"),
        "kept_bytes": kept,
        "rss_extra": max(extra),
        "payload_bytes": len(payload.encode()),
        "head_bytes": sum(len(b) for b in buffers),
        "html_bytes": len(html.encode()),
        "html_s": html_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lm = load_model("default")
    s = lm.summary()
    print(
        f"model {lm.name}: {s['layers']} layers × {s['heads']} heads, {lm.device}/{lm.dtype}, "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    measure(lm, 32, 1, eager=False)  # warm-up
    for n in args.tokens:
        # An eager forward pass at 4,096 tokens holds 2 × 9 × 4096² floats per layer (1.2 GB):
        # compared only where it fits comfortably.
        m = measure(lm, n, args.repeats, eager=n <= 2048)
        total = m["capture_s"] + m["payload_s"]
        print(
            f"{n:>5} tokens: capture {m['capture_s']:.2f} s + payload {m['payload_s']:.2f} s "
            f"= {total:.2f} s | plain sdpa forward {m['sdpa_s']:.2f} s ({total / m['sdpa_s']:.2f}x)"
            f", plain eager forward {m['eager_s']:.2f} s ({total / m['eager_s']:.2f}x) | "
            f"kept {m['kept_bytes'] / 1e6:.0f} MB, resident peak +{m['rss_extra'] / 1e6:.0f} MB"
            f" | initial payload {m['payload_bytes'] / 1e6:.2f} MB | one full head on demand "
            f"{m['head_bytes'] / 1e6:.2f} MB | static HTML {m['html_bytes'] / 1e6:.2f} MB in "
            f"{m['html_s']:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
