"""Logit lens cost on the default model, measured side by side in one run (medians).

Run:  .venv/bin/python benchmarks/bench_lens.py [--tokens 128 512] [--repeats 3]

Per length: a plain forward pass (what the model itself costs), the lens (one forward with
hidden states, then every row read through the final norm and unembedding), the ratio, and the
live payload's size. The lens reads 31 rows through SmolLM2's 49,152 × 576 unembedding, which
is 28 M of its 135 M parameters: expect several forward passes' worth of work per lens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

TEXT = (
    "The Eiffel Tower is in Paris. The Colosseum is in Rome. The Brandenburg Gate is in "
    "Berlin. The Sagrada Familia is in Barcelona. "
)


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import torch

    from llmlab import Lab
    from llmlab.lens import lens

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lm = Lab().load()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a busy machine "
          "slows both columns alike)")  # fmt: skip
    print(f"{'tokens':>7} {'forward s':>10} {'lens s':>8} {'ratio':>6} {'payload KB':>11}")
    for n in args.tokens:
        ids = lm.tokenizer(TEXT * 200, return_tensors="pt").input_ids[:, :n]
        text = lm.tokenizer.decode(ids[0])

        def forward(ids=ids):
            with torch.inference_mode():
                lm.model(input_ids=ids)

        forward()  # warm-up
        t_forward = median_seconds(forward, args.repeats)
        t_lens = median_seconds(lambda text=text: lens(lm, text), args.repeats)
        size = len(json.dumps(lens(lm, text).payload())) / 1024
        print(f"{n:>7} {t_forward:>10.2f} {t_lens:>8.2f} {t_lens / t_forward:>6.1f} {size:>11.0f}")


if __name__ == "__main__":
    main()
