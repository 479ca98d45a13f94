"""Acceleration benchmark: decode speed of every runnable configuration vs fp32 + dynamic cache,
on input-grounded prompts (summaries, rewrites: the answer copies the context) and open prompts.

Run:  .venv/bin/python benchmarks/bench_accel.py [--new-tokens 64] [--pairs 1] [--threads 0]
      .venv/bin/python benchmarks/bench_accel.py --only "spec=hybrid;quant=int8" --prompts open
      .venv/bin/python benchmarks/bench_accel.py --int8-recipes   # the int8 recipes compared
      .venv/bin/python benchmarks/bench_accel.py --where "spec=hybrid"  # a decode step's time
      .venv/bin/python benchmarks/bench_accel.py --no-llama      # without llama.cpp beside it

Beside llmlab it runs llama.cpp (llama-cpp-python, built by scripts/llama_server.sh) on the same
GGUF the default model is converted from, with the same thread count, the same prompt token ids
(llmlab's chat template applied once, the ids handed to both) and greedy decoding, interleaved
with the baseline runs; every configuration's decode tok/s and TTFT are also printed as a ratio
to llama.cpp's (decode: higher is better; TTFT: lower is better): its ratio to the baseline
times the baseline's to llama.cpp, each taken pair by pair, so that the machine's drift between
the llama.cpp runs and the configuration's runs cancels out.

Default model, greedy, one process. The machine may be shared and noisy, so every
configuration is measured in *pairs* with the baseline (baseline run, config run) per prompt,
and a configuration's ratio is the median of its per-pair ratios over the prompts of a kind.
Each configuration gets one untimed warm-up first (builds quantized copies, compiles).

For each kind the script prints the goals of issue 15 and, where one is not reached, what
limits it, measured: acceptance and tokens per target pass (speculation), the cost of a target
pass over k+1 tokens against one token (verification is not free on a CPU), the drafter's cost,
the share of wall time outside model forward passes (per-step overhead), and the memory
bandwidth the decode reaches against the machine's (quantization).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from llmlab.accel import PrefixCache, generate_accelerated, parse_config, variant
from llmlab.accel.registry import ACCELERATIONS, ALLOW_CPU_COMPILE_ENV
from llmlab.generation.engine import encode_prompt, generate
from llmlab.generation.settings import GenerationSettings
from llmlab.models.registry import load_model

warnings.filterwarnings("ignore")

REEF = (
    "The Great Barrier Reef is the world's largest coral reef system. It is composed of over "
    "2,900 individual reefs and 900 islands stretching for over 2,300 kilometres over an area "
    "of approximately 344,400 square kilometres. The reef is located in the Coral Sea, off the "
    "coast of Queensland, Australia. The Great Barrier Reef can be seen from outer space and is "
    "the world's biggest single structure made by living organisms. This reef structure is "
    "composed of and built by billions of tiny organisms, known as coral polyps. It supports a "
    "wide diversity of life and was selected as a World Heritage Site in 1981."
)
TOWER = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It "
    "is named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889. It was the entrance arch to the 1889 World's Fair. The tower is 330 "
    "metres tall, about the same height as an 81-storey building, and the tallest structure in "
    "Paris. It has three levels for visitors, with restaurants on the first and second levels."
)
CODE = (
    "def total_price(items, tax_rate):\n    total = 0\n    for item in items:\n        total = "
    "total + item.price * item.quantity\n    total = total + total * tax_rate\n    return total\n"
)
PROMPTS = {
    "grounded": {
        "summary": f"{REEF}\n\nSummarise the text above in three sentences.",
        "facts": f"{TOWER}\n\nList the facts about the tower's height and builders from the text.",
        "code": f"Rename the variable total to subtotal in this function:\n\n{CODE}",
    },
    "open": {
        "story": "Write a short story about a robot who learns to paint.",
        "explain": "Explain why the sky is blue to a ten-year-old.",
        "tips": "Give me five tips for staying focused while studying.",
    },
}
GOALS = {"grounded": 2.5, "open": 1.5}
INT8_GOAL = (0.01, 1.3)  # teacher-forced KL to fp32 at most, decode ratio at least

CONFIGS = [
    "kv=static",
    "kv=fp8",
    "dtype=bf16",
    "quant=int8",
    "quant=int4",
    "spec=prompt-lookup",
    "spec=self-int8",
    "spec=self-int4",
    "spec=hybrid",
    "spec=prompt-lookup,quant=int4",
    "quant=lossless",
    "quant=lossless,spec=prompt-lookup",
    "quant=lossless,spec=hybrid",
]


class LlamaCpp:
    """llama.cpp in this process on the default model's GGUF: the reference decode speed."""

    def __init__(self, threads: int) -> None:
        from llama_cpp import Llama

        from llmlab.models.default import gguf_path

        self.llm = Llama(
            model_path=str(gguf_path()), n_ctx=2048, n_threads=threads, n_batch=512,
            verbose=False,
        )  # fmt: skip

    def run(self, ids: list[int], new_tokens: int) -> tuple[float, float, int]:
        """(TTFT s, decode tok/s, tokens) for greedy decoding from the token ids ``ids``."""
        self.llm.reset()  # no KV reuse between runs: llmlab's baseline starts cold too
        start = time.perf_counter()
        times = []
        for _ in self.llm.create_completion(
            ids, max_tokens=new_tokens, temperature=0.0, top_k=1, stream=True
        ):
            times.append(time.perf_counter() - start)
        if len(times) < 2:
            return times[0] if times else float("nan"), float("nan"), len(times)
        return times[0], (len(times) - 1) / (times[-1] - times[0]), len(times)


def runnable(lm, text: str) -> tuple[bool, str]:
    cfg = parse_config(text, device=lm.device)
    for name, value in cfg.parts:
        ok, why = ACCELERATIONS[name].value_available(lm, value)
        if not ok:
            return False, why
    return True, ""


class ForwardClock:
    """Wall time spent inside ``model.forward`` (target and draft apart) during a run."""

    def __init__(self, **models):
        self.models, self.seconds = models, dict.fromkeys(models, 0.0)

    def __enter__(self):
        self._handles = []
        for name, model in self.models.items():
            start = {}

            def pre(_m, _a, name=name, start=start):
                start["t"] = time.perf_counter()

            def post(_m, _a, _o, name=name, start=start):
                self.seconds[name] += time.perf_counter() - start["t"]

            self._handles.append(model.register_forward_pre_hook(pre))
            self._handles.append(model.register_forward_hook(post))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()


def verify_cost(lm, ids, ks=(0, 3, 8), reps=5) -> dict[int, float]:
    """Seconds of one target forward pass over k+1 new tokens with the prompt cached."""
    from transformers import DynamicCache

    out = {}
    with torch.inference_mode():
        for k in ks:
            cache = DynamicCache(config=lm.model.config)
            lm.model(ids[:, : -(k + 1)], cache=cache)
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                lm.model(ids[:, -(k + 1) :], cache=cache)
                times.append(time.perf_counter() - t)
                cache.crop(-(k + 1))
            out[k] = statistics.median(times)
    return out


def teacher_forced_kl(lm, cfg_text: str, n_tokens: int = 200) -> tuple[float, float]:
    from llmlab.measure.quality import compare_logprobs, continuation_logprobs, default_text

    ids = lm.tokenizer(default_text(), return_tensors="pt").input_ids[0, :n_tokens]
    reference = continuation_logprobs(lm.model, ids, 1)
    with variant(lm, parse_config(cfg_text)) as vlm:
        agreement = compare_logprobs(reference, continuation_logprobs(vlm.model, ids, 1))
    return agreement.mean_kl, agreement.top1_agreement


def measure_kind(
    lm, kind: str, configs: list[str], settings, pairs: int, llama: LlamaCpp | None = None
) -> list[dict]:
    prompts = PROMPTS[kind]
    refs, ref_llama = {}, {}
    print(f"\n== {kind} prompts: {', '.join(prompts)}; {settings.max_new_tokens} new tokens ==")
    for name, prompt in prompts.items():
        generate(lm, prompt, GenerationSettings(max_new_tokens=4))
        refs[name] = generate(lm, prompt, settings)
        s = refs[name].stats
        tps = s.decode_tokens_per_s
        line = f"  {name}: {s.prompt_tokens} prompt tokens, baseline {tps:.1f} tok/s"
        if llama is not None:
            ids = encode_prompt(lm, prompt)[0].tolist()
            llama.run(ids, 4)  # warm-up
            runs, decode_vs, ttft_vs = [], [], []
            for _ in range(pairs):  # interleaved with llmlab's baseline
                runs.append(llama.run(ids, settings.max_new_tokens))
                base = generate(lm, prompt, settings).stats
                decode_vs.append(base.decode_tokens_per_s / runs[-1][1])
                ttft_vs.append(base.ttft_s / runs[-1][0])
            ttft = statistics.median(r[0] for r in runs)
            ltps = statistics.median(r[1] for r in runs)
            # The baseline against llama.cpp, pair by pair: a configuration's ratio to llama.cpp
            # is its ratio to the baseline (also pair by pair) times this, so the machine's
            # drift between the two measurements cancels out of both.
            ref_llama[name] = (statistics.median(ttft_vs), statistics.median(decode_vs))
            line += (
                f" (TTFT {s.ttft_s * 1000:.0f} ms); llama.cpp {ltps:.1f} tok/s, TTFT "
                f"{ttft * 1000:.0f} ms: baseline decode {ref_llama[name][1]:.2f}x, TTFT "
                f"{ref_llama[name][0]:.2f}x llama.cpp's (pair by pair)"
            )
        print(line, flush=True)
    vs = f" {'dec/llama':>9} {'TTFT/llama':>10}" if llama is not None else ""
    header = (
        f"{'config':32} {'keeps':>5} {'ratio':>6} {'per prompt':>20} {'same':>5} "
        f"{'accept':>6} {'tok/pass':>8}{vs}  notes"
    )
    print(header + "\n" + "-" * len(header))
    rows = []
    for text in configs:
        cfg = parse_config(text, device=lm.device)
        ok, why = runnable(lm, text)
        if not ok:
            print(f"{cfg.label:32} greyed: {why}")
            continue
        per_prompt, same, accept, per_pass, warm = [], True, [], [], 0.0
        vs_llama_decode, vs_llama_ttft = [], []
        for name, prompt in prompts.items():
            start = time.perf_counter()
            generate_accelerated(lm, prompt, GenerationSettings(max_new_tokens=4), cfg,
                                 prefix_cache=PrefixCache())  # fmt: skip
            warm = max(warm, time.perf_counter() - start)
            ratios, ttft_ratios = [], []
            for _ in range(pairs):
                base = generate(lm, prompt, settings)
                res = generate_accelerated(lm, prompt, settings, cfg, prefix_cache=PrefixCache())
                ratios.append(res.stats.decode_tokens_per_s / base.stats.decode_tokens_per_s)
                ttft_ratios.append(res.stats.ttft_s / base.stats.ttft_s)
            per_prompt.append(statistics.median(ratios))
            if name in ref_llama:
                ttft_vs, decode_vs = ref_llama[name]
                vs_llama_decode.append(per_prompt[-1] * decode_vs)
                vs_llama_ttft.append(statistics.median(ttft_ratios) * ttft_vs)
            same &= res.token_ids == refs[name].token_ids
            if "acceptance_rate" in res.stats.extra:
                accept.append(res.stats.extra["acceptance_rate"])
                per_pass.append(res.stats.extra["tokens_per_target_pass"])
        ratio = statistics.median(per_prompt)
        notes = [f"warm-up {warm:.0f} s"] if warm > 5 else []
        row = dict(cfg=cfg, ratio=ratio, same=same, accept=accept, per_pass=per_pass)
        vs = ""
        if vs_llama_decode:
            row["vs_llama"] = statistics.median(vs_llama_decode)
            row["ttft_vs_llama"] = statistics.median(vs_llama_ttft)
            vs = f" {row['vs_llama']:9.2f} {row['ttft_vs_llama']:10.2f}"
        if cfg.get("quant") != "none" or cfg.get("dtype") != "auto":
            kl, top1 = teacher_forced_kl(lm, text)
            row.update(kl=kl, top1=top1)
            notes.append(f"KL {kl:.4f} nats, top-1 {top1:.2f}")
        rows.append(row)
        print(
            f"{cfg.label:32} {'yes' if cfg.output_preserving else 'no':>5} {ratio:6.2f} "
            f"{' '.join(f'{r:.2f}' for r in per_prompt):>20} {'yes' if same else 'NO':>5} "
            f"{statistics.mean(accept) if accept else float('nan'):6.2f} "
            f"{statistics.mean(per_pass) if per_pass else float('nan'):8.2f}{vs}  "
            f"{'; '.join(notes)}",
            flush=True,
        )
    return rows


def explain_speculation(lm, kind: str, label: str, settings) -> None:
    """Where the time of one speculative run goes, and the verification cost curve."""
    from llmlab.accel.run import resolve_draft

    cfg = parse_config(label, device=lm.device)
    prompt = next(iter(PROMPTS[kind].values()))
    ids = encode_prompt(lm, prompt)
    cost = verify_cost(lm, ids)
    draft = resolve_draft(lm, cfg, {}) if cfg.get("spec") not in ("prompt-lookup",) else None
    models = {"target": lm.model} | ({"draft": draft.model} if draft else {})
    with ForwardClock(**models) as clock:
        res = generate_accelerated(lm, prompt, settings, cfg)
    total = res.stats.total_s
    inside = sum(clock.seconds.values())
    growth = f"{cost[3] / cost[0]:.2f}x / {cost[8] / cost[0]:.2f}x"
    outside = 100 * (total - inside) / total
    parts = [f"{k} forward {100 * v / total:.0f}%" for k, v in clock.seconds.items()]
    print(
        f"  limits of {label} ({kind}): acceptance {res.stats.extra.get('acceptance_rate')}, "
        f"{res.stats.extra.get('tokens_per_target_pass')} tokens per target pass; "
        f"a target pass over 4 / 9 tokens costs {growth} one over 1 token; time: "
        f"{', '.join(parts)}, outside forward passes (per-step overhead: Python, cache "
        f"cropping, logits processing) {outside:.0f}%"
    )
    if draft is not None:
        dcost = verify_cost(draft, ids, ks=(0,))[0]
        print(f"  one draft token costs {dcost / cost[0]:.2f} of a 1-token target pass")


def explain_bandwidth(lm, label: str, settings) -> None:
    from llmlab.measure.bandwidth import memory_bandwidth
    from llmlab.models.facts import weight_bytes

    prompt = next(iter(PROMPTS["open"].values()))
    bw = memory_bandwidth("cpu", refresh=True)  # now, beside the figures it bounds
    for text in ("baseline", label):
        cfg = parse_config(text, device=lm.device)
        res = generate_accelerated(lm, prompt, settings, cfg)
        with variant(lm, cfg) as vlm:
            nbytes = weight_bytes(vlm.model)
        reached = nbytes * res.stats.decode_tokens_per_s
        print(
            f"  {text}: {nbytes / 2**20:.0f} MB of weights read per token x "
            f"{res.stats.decode_tokens_per_s:.1f} tok/s = {reached / 1e9:.1f} GB/s of "
            f"{bw / 1e9:.1f} GB/s measured ({100 * reached / bw:.0f}% of the roofline)"
        )


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul")


def grid_kernels(model, wall: float, bw: float, reps: int = 20) -> bool:
    """quant=lossless: its C++ kernels are not aten ops (the profiler counts them as Python
    module code), so time every packed layer on one activation row, as decode calls it. Each
    layer is timed alone, repeatedly, so its blocks may sit in cache: a lower bound of what
    the streamed pass costs. False when the model has no packed layers."""
    layers = [m for m in model.modules() if type(m).__name__ in ("Q4Linear", "Q8Linear")]
    if not layers:
        return False
    nbytes, seconds = 0, 0.0
    with torch.inference_mode():
        for mod in layers:
            x = torch.randn(1, 1, mod.in_features)
            mod(x)
            t = time.perf_counter()
            for _ in range(reps):
                mod(x)
            seconds += (time.perf_counter() - t) / reps
            nbytes += sum(b.numel() * b.element_size() for b in mod.buffers())
    print(
        f"  its {len(layers)} packed layers ({nbytes / 2**20:.0f} MB of codes and scales, read "
        f"once per token) take {seconds * 1000:.1f} ms per token in the C++ kernels "
        f"({nbytes / seconds / 1e9:.1f} GB/s, each timed alone on one row): "
        f"{100 * seconds / wall:.0f}% of a forward; the rest is the other ops and Python. "
        f"Memory floor for those bytes at the measured {bw / 1e9:.1f} GB/s: "
        f"{nbytes / bw * 1000:.1f} ms (the tied float32 embedding is read one row a token)"
    )
    return True


def explain_decode_step(lm, label: str, settings, llama: LlamaCpp | None, steps: int = 16):
    """Where one decode step's time goes: weight bytes against the memory roofline, matmul
    kernels, the other ops (count and mean cost: per-op dispatch), and everything outside the
    model's forward (the Python generation loop, logits processing, cache handling)."""
    from transformers import DynamicCache

    from llmlab.measure.bandwidth import memory_bandwidth
    from llmlab.models.facts import weight_bytes

    prompt = PROMPTS["open"]["story"]
    ids = encode_prompt(lm, prompt)
    cfg = parse_config(label, device=lm.device)
    bw = memory_bandwidth("cpu", refresh=True)  # now, beside the figures it bounds
    print(f"\n== where a decode step's time goes: {label} (prompt 'story') ==")
    models = {"target": lm.model}
    if cfg.get("spec") not in ("off", "prompt-lookup"):
        from llmlab.accel.run import resolve_draft

        models["draft"] = resolve_draft(lm, cfg, {}).model
    with ForwardClock(**models) as clock:
        res = generate_accelerated(lm, prompt, settings, cfg)
    st = res.stats
    per_token = (st.total_s - (st.ttft_s or 0)) / max(st.new_tokens - 1, 1)
    decode_s = st.total_s - (st.ttft_s or 0)
    # The clocks can overlap (a drafter that calls into the target's modules): the target's
    # share is the floor of the time inside forward passes.
    inside = min(sum(clock.seconds.values()), st.total_s)
    shares = ", ".join(f"{k} {100 * v / st.total_s:.0f}%" for k, v in clock.seconds.items())
    print(
        f"  {label}: {st.decode_tokens_per_s:.1f} tok/s = {per_token * 1000:.1f} ms per token "
        f"({decode_s:.2f} s decode, {st.total_s:.2f} s in all); inside forward passes: "
        f"{shares}; outside them (the generation loop in Python, logits processing, cache "
        f"handling) at most {100 * (st.total_s - inside) / st.total_s:.0f}%"
    )
    with variant(lm, cfg) as vlm, torch.inference_mode():
        model = vlm.model
        nbytes = weight_bytes(model)
        cache = DynamicCache(config=model.config)
        out = model(ids, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        t = time.perf_counter()
        for _ in range(4):  # warm
            out = model(token, past_key_values=cache, use_cache=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            for _ in range(steps):
                out = model(token, past_key_values=cache, use_cache=True)
            wall = (time.perf_counter() - t) / steps
    events = prof.key_averages()
    top = [e for e in events if e.key.startswith("aten::")]
    matmul = sum(e.self_cpu_time_total for e in top if e.key in MATMUL_OPS) / 1e6 / steps
    other = sum(e.self_cpu_time_total for e in top if e.key not in MATMUL_OPS) / 1e6 / steps
    n_other = sum(e.count for e in top if e.key not in MATMUL_OPS) / steps
    floor = nbytes / bw
    print(
        f"  one 1-token forward of the model {label} runs: {wall * 1000:.1f} ms (profiled; "
        f"the profiler adds its own cost): matmul kernels {matmul * 1000:.1f} ms, "
        f"{n_other:.0f} other aten ops {other * 1000:.1f} ms "
        f"({1e6 * other / max(n_other, 1):.0f} µs each: per-op dispatch), Python module code "
        f"{max(wall - matmul - other, 0) * 1000:.1f} ms"
    )
    if not grid_kernels(vlm.model, wall, bw):
        print(
            f"  weights read per token {nbytes / 2**20:.0f} MB; at the measured "
            f"{bw / 1e9:.1f} GB/s the memory floor is {floor * 1000:.1f} ms per token; the "
            f"matmuls reach {nbytes / max(matmul, 1e-9) / 1e9:.1f} GB/s"
        )
    if llama is not None:
        _, ltps, _ = llama.run(ids[0].tolist(), settings.max_new_tokens)
        print(
            f"  llama.cpp on the same GGUF and threads: {ltps:.1f} tok/s = {1000 / ltps:.1f} ms "
            f"per token (it reads the Q4_1 blocks, {gguf_size()} on disk, with fused "
            "kernels and no per-op dispatch in Python): llmlab's "
            f"{label} is {st.decode_tokens_per_s / ltps:.2f}x its decode"
        )


def gguf_size() -> str:
    from llmlab.models.default import gguf_path

    return f"{gguf_path().stat().st_size / 2**20:.0f} MB"


def summarise(lm, kind: str, rows: list[dict], settings) -> None:
    goal = GOALS[kind]
    keep = [r for r in rows if r["cfg"].output_preserving and r["same"]]
    if keep:
        best = max(keep, key=lambda r: r["ratio"])
        met = "met" if best["ratio"] >= goal else "NOT met"
        print(
            f"fastest output-preserving on {kind} prompts: {best['cfg'].label} "
            f"{best['ratio']:.2f}x (goal {goal}x: {met})"
        )
        if "vs_llama" in best:
            met = "met" if best["vs_llama"] >= 1.0 else "NOT met"
            print(
                f"  beside llama.cpp (same GGUF, threads, prompt ids): decode "
                f"{best['vs_llama']:.2f}x llama.cpp's (goal 1.0x: {met}), TTFT "
                f"{best['ttft_vs_llama']:.2f}x llama.cpp's"
            )
        if best["ratio"] < goal and best["cfg"].get("spec") != "off":
            explain_speculation(lm, kind, best["cfg"].label, settings)
    int8 = [r for r in rows if r["cfg"].label == "quant=int8"]
    if int8:
        r = int8[0]
        kl_ok, speed_ok = r["kl"] <= INT8_GOAL[0], r["ratio"] >= INT8_GOAL[1]
        print(
            f"quant=int8 on {kind} prompts: KL {r['kl']:.4f} nats (goal <= {INT8_GOAL[0]}: "
            f"{'met' if kl_ok else 'NOT met'}), {r['ratio']:.2f}x (goal >= {INT8_GOAL[1]}x: "
            f"{'met' if speed_ok else 'NOT met'})"
        )
        if not speed_ok:
            explain_bandwidth(lm, "quant=int8", settings)


def int8_recipes(lm, settings, pairs: int) -> None:
    """The int8 recipes measured side by side: KL to fp32 and decode ratio on an open prompt."""
    import copy

    from torch.ao.quantization import quantize_dynamic

    from llmlab.accel.quant import quantize

    def dynamic(keep_float=("down_proj",)):
        model = copy.deepcopy(lm.model)
        names = {
            n
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not n.endswith(keep_float)
        }
        return quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)

    recipes = {
        "fbgemm dynamic int8, down_proj fp32 (the old recipe)": dynamic,
        "int8 weight-only + fp16 down_proj/head (quant=int8)": lambda: quantize(
            copy.deepcopy(lm.model), "int8", "cpu"
        ),
    }
    from llmlab.measure.quality import compare_logprobs, continuation_logprobs, default_text

    ids = lm.tokenizer(default_text(), return_tensors="pt").input_ids[0, :200]
    reference = continuation_logprobs(lm.model, ids, 1)
    prompt = encode_prompt(lm, PROMPTS["open"]["story"])
    kw = dict(max_new_tokens=settings.max_new_tokens, do_sample=False,
              pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip

    def timed(model):
        with torch.inference_mode():
            t = time.perf_counter()
            model.generate(prompt, attention_mask=torch.ones_like(prompt), **kw)
            return time.perf_counter() - t

    print("\n== int8 recipes (teacher-forced on 200 tokens of the shipped text) ==")
    for name, build in recipes.items():
        model = build().eval()
        agreement = compare_logprobs(reference, continuation_logprobs(model, ids, 1))
        timed(model)
        ratios = [timed(lm.model) / timed(model) for _ in range(max(pairs, 2))]
        print(
            f"{name:56} KL {agreement.mean_kl:.4f} top-1 {agreement.top1_agreement:.2f} "
            f"{statistics.median(ratios):.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=1, help="baseline/config pairs per prompt")
    parser.add_argument("--prompts", choices=[*PROMPTS, "both"], default="both")
    parser.add_argument("--compile", action="store_true", help="also time compile=on (slow)")
    parser.add_argument("--int8-recipes", action="store_true", help="compare the int8 recipes")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); on a shared, loaded machine 1 thread is far "
        "steadier: 2 threads fighting other processes ran 10x slower here",
    )
    parser.add_argument("--only", help="configs separated by ';' (default: all)")
    parser.add_argument("--no-llama", action="store_true", help="skip llama.cpp beside llmlab")
    parser.add_argument(
        "--where", metavar="CONFIG", help="only: where a decode step's time goes for CONFIG"
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model("default")
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {lm.name} on {lm.device}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    llama = None
    if not args.no_llama:
        try:
            llama = LlamaCpp(torch.get_num_threads())
            print(f"llama.cpp beside it: same GGUF, {torch.get_num_threads()} threads, greedy")
        except ImportError:
            print("llama.cpp not installed (bash scripts/llama_server.sh): no ratios to it")
    if args.int8_recipes:
        int8_recipes(lm, settings, args.pairs)
        return
    if args.where:
        explain_decode_step(lm, args.where, settings, llama)
        return
    configs = args.only.split(";") if args.only else list(CONFIGS)
    if args.compile:
        os.environ[ALLOW_CPU_COMPILE_ENV] = "1"  # greyed on CPU by default: measure it anyway
        configs.append("compile=on")
    kinds = list(PROMPTS) if args.prompts == "both" else [args.prompts]
    for kind in kinds:
        rows = measure_kind(lm, kind, configs, settings, args.pairs, llama)
        summarise(lm, kind, rows, settings)


if __name__ == "__main__":
    main()
