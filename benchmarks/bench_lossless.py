"""quant=lossless on the default model, side by side in one run (1 thread unless --threads):

1. the grid kernels per layer kind for one activation row, as weights read per second;
2. the crossover between the kernel and "dequantize the layer, then torch's matmul" as the
   number of activation rows grows (where ``lossless.DEQUANT_ROWS`` should sit);
3. a one-token decode forward with the fused decoder layers against the module path on the
   same packed weights, and the largest logit difference between them.

    .venv/bin/python benchmarks/bench_lossless.py [--threads N]
"""

from __future__ import annotations

import argparse
import copy

import torch


def timed(fn, repeat: int = 5) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after one warm-up."""
    from llmlab.measure.latency import time_call

    return time_call(fn, repeats=repeat, warmup=1).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import DynamicCache

    from llmlab.accel.quant import quantize
    from llmlab.models.registry import load_model

    lm = load_model("default", threads=args.threads)
    model = quantize(copy.deepcopy(lm.model), "lossless", "cpu").eval()
    layers = model.get_decoder().layers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), default model\n")

    kinds = {
        "q_proj": [layer.self_attn.q_proj for layer in layers],
        "gate_proj": [layer.mlp.gate_proj for layer in layers],
        "down_proj": [layer.mlp.down_proj for layer in layers],
        "lm_head": [model.get_output_embeddings()],
    }
    print("== the kernels, one activation row (each layer of a kind once) ==")
    with torch.inference_mode():
        for name, mods in kinds.items():
            x = {id(m): torch.randn(1, m.in_features) for m in mods}
            s = timed(lambda mods=mods, x=x: [m.multiply(x[id(m)]) for m in mods])
            weights = sum(m.in_features * m.out_features for m in mods)
            print(f"  {name:10s} {type(mods[0]).__name__}: {weights / s / 1e9:5.1f} G weights/s")

    print("\n== kernel vs dequantize + torch matmul, by activation rows (90 layers) ==")
    mods = kinds["q_proj"] + kinds["gate_proj"] + kinds["down_proj"]
    with torch.inference_mode():
        for rows in (4, 8, 16, 24, 32, 48, 64, 128):
            x = {id(m): torch.randn(rows, m.in_features) for m in mods}
            kernel = timed(lambda x=x: [m.multiply(x[id(m)]) for m in mods], 3)
            blas = timed(lambda x=x: [x[id(m)] @ m.dequantized().T for m in mods], 3)
            print(
                f"  {rows:4d} rows: kernel {kernel * 1e3:6.1f} ms, dequantize + matmul "
                f"{blas * 1e3:6.1f} ms: kernel/matmul {kernel / blas:.2f}"
            )

    print("\n== one-token decode forward: fused layers vs the module path (same weights) ==")
    ids = lm.tokenizer("The quick brown fox jumps over the lazy dog. " * 4, return_tensors="pt")
    plain = copy.deepcopy(model)
    for layer in plain.get_decoder().layers:
        layer.__dict__.pop("forward", None)  # back to the class's forward

    def forward_ms(m: torch.nn.Module) -> tuple[float, torch.Tensor]:
        cache = DynamicCache(config=m.config)
        with torch.inference_mode():
            out = m(input_ids=ids.input_ids, cache=cache, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            logits = m(input_ids=token, cache=cache, use_cache=True).logits
            step = lambda: m(input_ids=token, cache=cache, use_cache=True)  # noqa: E731
            return timed(step, 20) * 1e3, logits

    for _ in range(2):  # alternate, twice: the machine's speed drifts
        fused, fused_logits = forward_ms(model)
        module, module_logits = forward_ms(plain)
        print(
            f"  fused {fused:.1f} ms, module path {module:.1f} ms: {module / fused:.2f}x; "
            f"max |logit difference| {float((fused_logits - module_logits).abs().max()):.1e}"
        )


if __name__ == "__main__":
    main()
