"""One GPU check: load, generate, attention, MoE capture and a CUDA tradeoff sweep, one table.

Run on a GPU machine (no network needed; torch, transformers and accelerate are enough, llmlab
is imported from this checkout without installing it):

    python benchmarks/gpu_check.py                  # < 5 minutes on one H100 / H200
    python benchmarks/gpu_check.py --dry            # tiny shapes on the CPU: the same path, ~1 min

Models are random weights in real shapes built from configs (no downloads): the default
model's shape (SmolLM2-135M: 30 layers, 576 wide, 49,152 vocabulary) and a 1 B Llama shape
(Llama-3.2-1B: 16 layers, 2,048 wide, 128,256 vocabulary). Random weights generate noise, which
is fine for speed: every decode runs a fixed number of tokens (no early stop).

Printed: decode tok/s of the plain default (dynamic cache) and the "fast" preset (static cache
+ torch.compile; its first-call compile time apart), the share of the measured memory
bandwidth that decode reaches (weights read per token x tok/s), attention capture at 1,024
tokens, MoE routing capture on a 64-expert config, and a sweep of the CUDA configurations,
exported to HTML where plotly is installed (said so where not). Goal of issue 11: "fast" at
least 5x the plain default on the default model's shape.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_llmlab_from_checkout() -> None:
    """Make ``llmlab`` importable without pip-installing the checkout: the repo root on
    ``sys.path``, and its ``magics/`` and ``widgets/`` folders as ``llmlab.magics`` /
    ``llmlab.widgets`` (as pyproject maps them; their ``__init__`` is not run, since it needs
    IPython / anywidget, which this check does not use)."""
    import importlib.util
    import types

    try:
        if importlib.util.find_spec("llmlab") is not None:
            return  # installed (or already on the path)
    except ImportError:
        pass
    sys.path.insert(0, str(REPO))
    for front in ("magics", "widgets"):
        module = types.ModuleType(f"llmlab.{front}")
        module.__path__ = [str(REPO / front)]
        sys.modules.setdefault(f"llmlab.{front}", module)


@dataclass
class Shape:
    name: str
    config: dict
    kind: str = "llama"


SMOLLM2 = Shape(
    "default shape (SmolLM2-135M)",
    dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
         max_position_embeddings=8192, rope_theta=100000.0),
)  # fmt: skip
LLAMA_1B = Shape(
    "1 B Llama shape (Llama-3.2-1B)",
    dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
         num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
         max_position_embeddings=4096, rope_theta=500000.0),
)  # fmt: skip
TINY = Shape(
    "tiny shape (dry run)",
    dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True,
         max_position_embeddings=1024),
)  # fmt: skip

CUDA_SWEEP = "baseline,dtype=fp16,kv=static,kv=fp8,attn=eager,attn=flash,quant=int4-torchao,quant=bnb8,quant=bnb4,compile=on"  # noqa: E501
DRY_SWEEP = "baseline,kv=static"


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, value: str, detail: str = "") -> None:
        self.rows.append((what, value, detail))
        print(f"  {what}: {value} {detail}", flush=True)

    def print(self, title: str) -> None:
        width = max(len(r[0]) for r in self.rows)
        vwidth = max(len(r[1]) for r in self.rows)
        print(f"\n== {title} ==")
        for what, value, detail in self.rows:
            print(f"{what:<{width}}  {value:>{vwidth}}  {detail}")
        for note in self.notes:
            print(f"note: {note}")


def save_random_model(shape: Shape, folder: Path, dtype) -> Path:
    """A random-weight model of ``shape`` saved with a byte-level tokenizer (ids past the
    tokenizer's 259 decode to nothing; speed does not care)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from llmlab.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    config = LlamaConfig(
        **shape.config, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    target = folder / shape.name.split()[0]
    model.save_pretrained(target)
    tok.save_pretrained(target)
    return target


def decode_speed(lm, cfg: str, new_tokens: int, repeats: int) -> tuple[float, dict]:
    """Median decode tok/s over ``repeats`` runs (after the untimed first call) with ``cfg``.
    Generation never stops early: random weights would hit an end token by chance."""
    from llmlab.accel import generate_accelerated
    from llmlab.generation.settings import GenerationSettings

    settings = GenerationSettings(max_new_tokens=new_tokens)
    eos = lm.model.generation_config.eos_token_id
    lm.model.generation_config.eos_token_id = None
    try:
        first = generate_accelerated(lm, PROMPT, settings, cfg)
        speeds = [
            generate_accelerated(lm, PROMPT, settings, cfg).stats.decode_tokens_per_s
            for _ in range(repeats)
        ]
    finally:
        lm.model.generation_config.eos_token_id = eos
    return statistics.median(speeds), first.stats.extra


PROMPT = "The quick brown fox jumps over the lazy dog. " * 4


def check_shape(shape: Shape, folder: Path, device: str, args, report: Report, bw: float) -> None:
    """Load, decode plain and "fast"; on the default shape also the captures and the sweep."""
    import torch

    from llmlab.models.facts import weight_bytes
    from llmlab.models.registry import load_model

    dtype = torch.float32 if args.dry else torch.bfloat16
    start = time.perf_counter()
    path = save_random_model(shape, folder, dtype)
    built = time.perf_counter() - start
    lm = load_model(str(path), name=shape.name.split()[0], device=device)
    report.add(
        f"{shape.name}: load",
        f"{lm.load_seconds:.1f} s",
        f"(built + saved in {built:.1f} s; {lm.n_params / 1e6:.0f} M params, {lm.placement}/"
        f"{lm.dtype}, {lm.attn_implementation} attention)",
    )
    plain, _ = decode_speed(lm, "baseline", args.new_tokens, args.repeats)
    nbytes = weight_bytes(lm.model)
    report.add(
        f"{shape.name}: decode, default",
        f"{plain:.0f} tok/s",
        f"(dynamic cache; {100 * nbytes * plain / bw:.1f}% of {bw / 1e9:.0f} GB/s)",
    )
    fast_cfg = "fast" if not args.dry else "kv=static"
    fast, extra = decode_speed(lm, fast_cfg, args.new_tokens, args.repeats)
    from llmlab.accel import parse_config

    label = parse_config(fast_cfg, device=lm.device).label
    compile_s = extra.get("first_call_compile_s")
    report.add(
        f"{shape.name}: decode, {fast_cfg}",
        f"{fast:.0f} tok/s",
        f"({label}; {fast / plain:.1f}x the default; {100 * nbytes * fast / bw:.1f}% of the "
        f"bandwidth" + (f"; first call incl. compile {compile_s} s)" if compile_s else ")"),
    )
    if shape is SMOLLM2 or args.dry:
        check_captures(lm, args, report)
        check_sweep(lm, args, report, folder)
    del lm
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def check_captures(lm, args, report: Report) -> None:
    import torch

    from llmlab import memory
    from llmlab.attention.engine import attention_of_ids
    from llmlab.devices import synchronize

    n = 64 if args.dry else 1024
    ids = torch.randint(3, 259, (1, n), device=lm.device)
    estimate = memory.guard(memory.attention_capture(lm.config, n), lm.device)
    synchronize(lm.device)
    start = time.perf_counter()
    attention_of_ids(lm, ids, text="(random tokens)", n_prompt=n)
    synchronize(lm.device)
    report.add(
        f"attention capture, {n} tokens",
        f"{time.perf_counter() - start:.2f} s",
        f"({lm.config.num_hidden_layers} layers x {lm.config.num_attention_heads} heads; "
        f"estimated {estimate})",
    )
    from llmlab.models.loaded import LoadedModel
    from llmlab.models.tiny import tiny_tokenizer
    from llmlab.models.tiny_moe import olmoe_scale_config
    from llmlab.moe.capture import capture_routing

    experts = 8 if args.dry else 64
    cfg = olmoe_scale_config(
        num_hidden_layers=2 if args.dry else 16, num_experts=experts, top_k=2 if args.dry else 8
    )
    tok = tiny_tokenizer()
    cfg.vocab_size, cfg.eos_token_id, cfg.pad_token_id = len(tok), tok.eos_token_id, None
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(cfg).to(lm.device).eval()
    moe = LoadedModel("olmoe-64", "olmoe", model, tok, lm.device, "random weights", 0.0)
    text = "Experts route every token. " * (2 if args.dry else 40)
    start = time.perf_counter()
    routing = capture_routing(moe, text)
    synchronize(lm.device)
    report.add(
        f"MoE routing capture, {experts} experts",
        f"{time.perf_counter() - start:.2f} s",
        f"({len(routing.moe_layers)} MoE layers, top-{routing.top_k}, "
        f"{routing.inputs[0].experts.shape[1]} tokens)",
    )


def check_sweep(lm, args, report: Report, folder: Path) -> None:
    from llmlab.accel import ACCELERATIONS, parse_config
    from llmlab.tradeoff.runner import run_sweep

    runnable, greyed = [], []
    for text in (DRY_SWEEP if args.dry else CUDA_SWEEP).split(","):
        cfg = parse_config(text, device=lm.device)
        why = next(
            (ACCELERATIONS[k].value_available(lm, v)[1] for k, v in cfg.parts
             if not ACCELERATIONS[k].value_available(lm, v)[0]),
            "",
        )  # fmt: skip
        (greyed if why else runnable).append((cfg.label, why))
    start = time.perf_counter()
    sweep = run_sweep(
        lm,
        [label for label, _ in runnable],
        prompts=["Tell me about the sea."] if args.dry else ["Tell me about the sea.", "Hi."],
        max_new_tokens=4 if args.dry else 32,
        repeats=3,
        warmup=0 if args.dry else 1,
        text_tokens=32 if args.dry else 256,
    )
    report.add(
        "tradeoff sweep",
        f"{time.perf_counter() - start:.0f} s",
        f"({len(runnable)} configurations: {', '.join(label for label, _ in runnable)})",
    )
    for point in sweep.points:
        tps = point.latency.decode_tps.median if point.latency else None
        kl = f", KL {point.kl.mean:.4f} nats" if point.kl and point.kl.values else ""
        report.add(
            f"  sweep: {point.config}",
            "failed" if point.error else (f"{tps:.0f} tok/s" if tps else "-"),
            point.error or (f"(decode{kl})" if tps else ""),
        )
    for label, why in greyed:
        report.notes.append(f"sweep skipped {label}: {why}")
    try:
        import plotly  # noqa: F401
    except ImportError:
        report.notes.append("plotly is not installed: the sweep was not exported to HTML")
        return
    out = Path(args.out) / "gpu_check_sweep.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep.save_html(str(out))
    report.add("sweep exported", str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed decodes per figure")
    parser.add_argument("--out", default=str(REPO / "build"), help="where the sweep HTML goes")
    args = parser.parse_args(argv)
    args.new_tokens = args.new_tokens or (4 if args.dry else 128)
    args.repeats = args.repeats or (1 if args.dry else 3)
    warnings.filterwarnings("ignore")
    _import_llmlab_from_checkout()
    import importlib.util
    import os

    if importlib.util.find_spec("platformdirs") is None:
        # llmlab's cache (bandwidth figures) in a scratch folder where platformdirs, which
        # places the default one, is not installed.
        os.environ.setdefault("LLMLAB_CACHE", tempfile.mkdtemp(prefix="llmlab-gpu-check-"))

    import torch

    from llmlab.devices import resolve_device
    from llmlab.measure.bandwidth import measure_bandwidth

    device = "cpu" if args.dry else resolve_device("auto")
    if not args.dry and not device.startswith("cuda"):
        print("no CUDA GPU here; run with --dry for the CPU path with tiny shapes")
        return 2
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(f"gpu_check on {name}: torch {torch.__version__}", flush=True)
    start = time.perf_counter()
    bw = measure_bandwidth(device, nbytes=(64 if args.dry else 1024) * 2**20)
    report = Report()
    report.add("memory bandwidth (measured)", f"{bw / 1e9:.0f} GB/s")
    shapes = [TINY] if args.dry else [SMOLLM2, LLAMA_1B]
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            check_shape(shape, Path(tmp), device, args, report, bw)
    report.add("total", f"{time.perf_counter() - start:.0f} s")
    report.print(f"gpu_check on {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
