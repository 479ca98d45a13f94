"""Foundation benchmark: overhead of `%llm generate`, warm load of the default, import time.

Run:  .venv/bin/python benchmarks/bench_generate.py [--tokens 64] [--repeats 5]

Every figure is measured side by side in this one run, interleaved, and reported as a median.
Decode rate is (N - 1) / (T(N) - T(1)): the time of an N-token call minus a 1-token call
(which holds the prefill and the first step), so both paths are measured the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import time

PROMPT = "Tell me a story about a lighthouse keeper who collects clocks."


def fresh_process_seconds(code: str, repeats: int, setup: str = "pass") -> float:
    """Median seconds of `code` timed inside a fresh interpreter, after `setup` (untimed)."""
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                f"{setup}; import time; t = time.perf_counter(); {code}; "
                "print(time.perf_counter() - t)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.tokens

    import torch
    from IPython.testing.globalipapp import get_ipython

    from llmlab.generation.engine import encode_prompt
    from llmlab.session import default_lab

    shell = get_ipython()
    shell.run_line_magic("load_ext", "llmlab")
    shell.run_line_magic("llm", "load")
    lm = default_lab().model()
    ids = encode_prompt(lm, PROMPT)
    mask = torch.ones_like(ids)

    def raw(tokens: int) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            lm.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                pad_token_id=0,
            )
        return time.perf_counter() - start

    reported: list[float] = []

    def magic(tokens: int) -> float:
        line = f'generate --max-new-tokens {tokens} "{PROMPT}"'
        start = time.perf_counter()
        # min_new_tokens is not a user flag; the engine is told through generate_kwargs so
        # both paths decode exactly `tokens` tokens.
        with contextlib.redirect_stdout(io.StringIO()), _force_length(tokens):
            result = shell.run_line_magic("llm", line)
        elapsed = time.perf_counter() - start
        if tokens == n and result.stats.decode_tokens_per_s:
            reported.append(result.stats.decode_tokens_per_s)
        return elapsed

    raw(n), magic(n)  # warm-up
    raw_rates, magic_rates = [], []
    for _ in range(args.repeats):
        raw_rates.append((n - 1) / (raw(n) - raw(1)))
        magic_rates.append((n - 1) / (magic(n) - magic(1)))
    ratio = statistics.median(magic_rates) / statistics.median(raw_rates)

    libraries = (
        "import torch, transformers, transformers.models.llama.modeling_llama; "
        "from transformers import AutoModelForCausalLM, AutoTokenizer"
    )
    load = fresh_process_seconds(
        "from llmlab import load_model; load_model('default')", 3, setup=libraries
    )
    imports = fresh_process_seconds(libraries, 3)
    import_llmlab = fresh_process_seconds("import llmlab", 5)

    print(
        f"device: {lm.device}/{lm.dtype}, {torch.get_num_threads()} threads, "
        f"{n} new tokens, {args.repeats} interleaved repeats"
    )
    print(
        f"raw model.generate decode:   {statistics.median(raw_rates):6.1f} tok/s "
        f"(min {min(raw_rates):.1f}, max {max(raw_rates):.1f})"
    )
    print(
        f"%llm generate decode:        {statistics.median(magic_rates):6.1f} tok/s "
        f"(min {min(magic_rates):.1f}, max {max(magic_rates):.1f}); "
        f"its own stats footer said {statistics.median(reported):.1f}"
    )
    print(f"ratio %llm / raw:            {ratio:6.3f}   (goal >= 0.97)")
    print(
        f"warm load of the default:    {load:6.2f} s in a fresh process, after importing "
        f"torch + transformers + the llama modules ({imports:.2f} s, once per process)"
    )
    print(f"import llmlab:               {import_llmlab:6.3f} s   (goal <= 0.5 s)")


@contextlib.contextmanager
def _force_length(tokens: int):
    from llmlab.generation import engine

    original = engine.generate

    def fixed(*a, **kw):
        kw["generate_kwargs"] = {**(kw.get("generate_kwargs") or {}), "min_new_tokens": tokens}
        return original(*a, **kw)

    engine_session = sys.modules["llmlab.session"]
    engine_session.generate = fixed
    try:
        yield
    finally:
        engine_session.generate = original


if __name__ == "__main__":
    main()
