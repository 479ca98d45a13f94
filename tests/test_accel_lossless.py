"""quant=lossless: grid detection, the C++ kernel against x @ w.T, and the real default model."""

from __future__ import annotations

import copy
import dataclasses
import shutil

import pytest
import torch

from llmlab.accel import ACCELERATIONS, generate_accelerated, parse_config, variant
from llmlab.accel.lossless import (
    DEQUANT_ROWS,
    grid_module,
    pack_q4,
    q4_grid,
    q8_grid,
    unpack_q4,
)
from llmlab.errors import LabError
from llmlab.generation.engine import generate
from llmlab.generation.settings import GenerationSettings
from tests.test_accel import assert_same_model, fingerprint

needs_compiler = pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++")), reason="no C++ compiler for the kernel"
)
GREEDY = GenerationSettings(max_new_tokens=24)


# Reference quantizers written the way llama.cpp's Q4_1 / Q8_0 are, dequantized the way
# gguf-py does (float16 d and m, float32 arithmetic): their output is what a GGUF-converted
# model holds.
def q4_1(w: torch.Tensor) -> torch.Tensor:
    n, k = w.shape
    wb = w.reshape(n, k // 32, 32)
    lo, hi = wb.amin(-1, keepdim=True), wb.amax(-1, keepdim=True)
    d = ((hi - lo) / 15).half().float()
    m = lo.half().float()
    q = torch.round((wb - m) / torch.where(d > 0, d, 1)).clamp(0, 15)
    return (d * q + m).reshape(n, k)


def q8_0(w: torch.Tensor) -> torch.Tensor:
    n, k = w.shape
    wb = w.reshape(n, k // 32, 32)
    d = (wb.abs().amax(-1, keepdim=True) / 127).half().float()
    q = torch.round(wb / torch.where(d > 0, d, 1)).clamp(-127, 127)
    return (d * q).reshape(n, k)


def linear_with(w: torch.Tensor, bias: bool = False) -> torch.nn.Linear:
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias)
    lin.weight.data = w.clone()
    return lin


# -- grid detection ----------------------------------------------------------------------------
def test_q4_grid_rebuilds_a_q4_1_weight_bit_for_bit():
    torch.manual_seed(0)
    w = q4_1(torch.randn(48, 96) * 0.05)
    w[3, 32:64] = 0.25  # a constant block: d == 0
    q, d, m = q4_grid(w)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    rebuilt = (d.repeat_interleave(32, 1) * q.float() + m.repeat_interleave(32, 1)).reshape(w.shape)
    assert torch.equal(rebuilt, w)
    assert torch.equal(unpack_q4(pack_q4(q)), q)


def test_q8_grid_rebuilds_a_q8_0_weight_bit_for_bit():
    torch.manual_seed(1)
    w = q8_0(torch.randn(40, 64))
    w[0, :32] = 0.0  # an all-zero block
    q, d = q8_grid(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
    assert torch.equal(d.repeat_interleave(32, 1) * q.float(), w)
    assert q4_grid(w) is None  # 255 levels per block are not 16


def test_plain_float32_weights_are_not_on_a_grid():
    torch.manual_seed(2)
    w = torch.randn(64, 64)
    assert q4_grid(w) is None and q8_grid(w) is None
    assert grid_module(linear_with(w)) is None
    assert q4_grid(w.to(torch.bfloat16)) is None  # float32 weights only
    assert q4_grid(torch.randn(8, 40)) is None  # in-features not a multiple of 32
    # One weight off the grid by one ulp refuses the whole layer.
    w = q4_1(torch.randn(16, 64))
    w[5, 7] = torch.nextafter(w[5, 7], torch.tensor(1.0))
    assert q4_grid(w) is None


# -- the kernel --------------------------------------------------------------------------------
@needs_compiler
@pytest.mark.parametrize("quantizer", [q4_1, q8_0])
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_kernel_matches_the_float32_matmul(quantizer, rows):
    torch.manual_seed(3)
    w = quantizer(torch.randn(200, 160) * 0.1)
    lin = linear_with(w, bias=True)
    packed = grid_module(lin)
    assert (
        packed is not None
        and type(packed).__name__ == {q4_1: "Q4Linear", q8_0: "Q8Linear"}[quantizer]
    )
    x = torch.randn(2, rows, 160)
    with torch.no_grad():
        ref, out = lin(x), packed(x)
    assert out.shape == ref.shape and packed.d.dtype == torch.float16  # GGUF's own scales
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    if rows * 2 > DEQUANT_ROWS:  # the prefill path dequantizes exactly
        assert torch.equal(packed.dequantized(), w)


# -- a tiny model snapped onto a grid (fast tier) ----------------------------------------------
def snapped(lm):
    """A copy of ``lm`` whose linear layers lie on Q4_1 grids (as a GGUF-converted model)."""
    model = copy.deepcopy(lm.model)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(q4_1(mod.weight))
    return dataclasses.replace(lm, model=model)


def test_random_weights_are_refused_in_one_line(tiny_llama):
    ok, why = ACCELERATIONS["quant"].value_available(tiny_llama, "lossless")
    assert not ok and "no weight of" in why and "4- or 8-bit block grid" in why
    with pytest.raises(LabError, match="quant=lossless cannot run here") as err:
        generate_accelerated(tiny_llama, "Hi", GREEDY, "quant=lossless")
    assert "\n" not in str(err.value)
    # A grid model loaded in bfloat16 is refused for its dtype, not for its grid.
    half = dataclasses.replace(tiny_llama, model=copy.deepcopy(tiny_llama.model).bfloat16())
    ok, why = ACCELERATIONS["quant"].value_available(half, "lossless")
    assert not ok and "bfloat16" in why and "float32" in why


def test_registry_claims_lossless_preserves_and_composes():
    assert parse_config("quant=lossless").output_preserving
    assert parse_config("lossless").label == "quant=lossless"
    assert not parse_config("quant=int4").output_preserving
    for spec in ("prompt-lookup", "hybrid", "self-int4"):
        assert parse_config(f"quant=lossless,spec={spec}").output_preserving
    with pytest.raises(LabError, match="float32 activations"):
        parse_config("quant=lossless,dtype=bf16")
    assert "lossless" in ACCELERATIONS["quant"].row()["output-preserving"]


@needs_compiler
def test_snapped_tiny_model_keeps_greedy_tokens_and_is_left_unchanged(tiny_llama):
    lm = snapped(tiny_llama)
    before = fingerprint(lm)
    prompt = "abc abc abc abc abc abc"
    ref = generate(lm, prompt, GREEDY)
    for spec in ("off", "prompt-lookup", "hybrid"):
        text = f"quant=lossless,spec={spec}"
        res = generate_accelerated(lm, prompt, GREEDY, text)
        assert res.token_ids == ref.token_ids, text
    with variant(lm, "quant=lossless") as vlm:
        kinds = {type(m).__name__ for m in vlm.model.modules()}
        assert "Q4Linear" in kinds and "Linear" not in kinds
    assert_same_model(before, lm)


# -- fused decoder layers (fast tier) ----------------------------------------------------------
def decode_logits(model, ids: torch.Tensor, steps: int = 5) -> list[torch.Tensor]:
    """Logits of a prefill, ``steps`` one-token steps and a 3-token pass on the cache (what
    draft verification runs), greedy."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        out = model(input_ids=ids, cache=cache, use_cache=True)
        logits = [out.logits]
        token = out.logits[:, -1:].argmax(-1)
        for _ in range(steps):
            out = model(input_ids=token, cache=cache, use_cache=True)
            logits.append(out.logits)
            token = out.logits[:, -1:].argmax(-1)
        logits.append(model(input_ids=token.repeat(1, 3), cache=cache, use_cache=True).logits)
    return logits


def unfused(model) -> None:
    for layer in model.get_decoder().layers:
        layer.__dict__.pop("forward", None)


@needs_compiler
@pytest.mark.parametrize("family", ["llama", "qwen2"])  # qwen2: q/k/v carry a bias
def test_fused_layers_match_the_module_path(family, monkeypatch):
    from llmlab.accel import lossless
    from llmlab.models.registry import load_model

    kernels = lossless._kernels()
    calls: list[int] = []
    native = kernels.layer_attn_input
    monkeypatch.setattr(kernels, "layer_attn_input", lambda *a: calls.append(1) or native(*a))
    lm = snapped(load_model(f"tiny:{family}"))
    ids = torch.tensor([[5, 17, 9, 33, 2, 41, 8, 12, 30, 7, 19, 4]])
    with variant(lm, "quant=lossless") as vlm:
        layers = vlm.model.get_decoder().layers
        assert all(hasattr(layer, "_llmlab_fused") for layer in layers)
        attn = layers[0].self_attn
        # q, k and v read rows of one stacked grid: stored once.
        assert attn.k_proj.packed.untyped_storage().data_ptr() == (
            attn.q_proj.packed.untyped_storage().data_ptr()
        )
        fused = decode_logits(vlm.model, ids)
        assert len(calls) == len(layers) * 7  # prefill, 5 steps, the 3-token pass: all fused
        unfused(vlm.model)
        reference = decode_logits(vlm.model, ids)
    for got, ref in zip(fused, reference, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@needs_compiler
def test_fused_layers_step_aside_for_hooks_and_batches(tiny_llama):
    lm = snapped(tiny_llama)
    ids = torch.tensor([[5, 17, 9, 33, 2, 41]])
    with variant(lm, "quant=lossless") as vlm:
        layers = vlm.model.get_decoder().layers
        seen: list[str] = []
        # A hook on a submodule (what the views and interventions add) gets its call...
        handle = layers[1].mlp.register_forward_hook(lambda *_: seen.append("mlp"))
        # ...and a hook on the layer itself fires on the fused path too.
        outer = layers[2].register_forward_hook(lambda *_: seen.append("layer"))
        decode_logits(vlm.model, ids, steps=2)
        handle.remove()
        outer.remove()
        assert seen.count("mlp") == 4 and seen.count("layer") == 4  # prefill, 2 steps, verify
        batch = decode_logits(vlm.model, ids.repeat(2, 1), steps=2)  # two rows: module path
        single = decode_logits(vlm.model, ids, steps=2)
    for got, ref in zip(batch, single, strict=True):
        torch.testing.assert_close(got[:1], ref, rtol=1e-5, atol=1e-5)


# -- the real default model (slow tier) --------------------------------------------------------
PROMPTS = [
    "What is the capital of France?",
    "Summarise: The Great Barrier Reef is the world's largest coral reef system. It is composed "
    "of over 2,900 individual reefs and 900 islands stretching for over 2,300 kilometres.",
]


@pytest.mark.slow
@needs_compiler
def test_default_model_is_stored_losslessly_with_identical_tokens(default_lm, monkeypatch):
    from llmlab.accel import lossless
    from llmlab.measure.quality import continuation_logprobs, default_text

    before = fingerprint(default_lm)
    settings = GenerationSettings(max_new_tokens=40)
    for prompt in PROMPTS:
        ref = generate(default_lm, prompt, settings)
        for text in ("quant=lossless", "quant=lossless,spec=prompt-lookup"):
            res = generate_accelerated(default_lm, prompt, settings, text)
            assert res.token_ids == ref.token_ids, (text, prompt)
    ids = default_lm.tokenizer(default_text(), return_tensors="pt").input_ids[0, :120]
    ref = continuation_logprobs(default_lm.model, ids, 1)
    with variant(default_lm, "quant=lossless") as vlm:
        kinds = [type(m).__name__ for m in vlm.model.modules()]
        # 210 Q4_1 linear layers and the Q8_0 output head; the tied embedding stays float32.
        assert kinds.count("Q4Linear") == 210 and kinds.count("Q8Linear") == 1
        assert "Linear" not in kinds
        assert vlm.model.get_input_embeddings().weight.dtype == torch.float32
        # Prefill-sized passes multiply the dequantized (identical) weights with torch's matmul.
        assert torch.equal(continuation_logprobs(vlm.model, ids, 1), ref)
        # Through the kernel (as decode and draft verification run): only the summation order
        # differs; measured max |delta logprob| 5.2e-5 over 119 positions x 49152 tokens.
        monkeypatch.setattr(lossless, "DEQUANT_ROWS", 10**9)
        got = continuation_logprobs(vlm.model, ids, 1)
    delta = float((got - ref).abs().max())
    assert 0 < delta < 1e-3
    assert bool((got.argmax(-1) == ref.argmax(-1)).all())
    assert_same_model(before, default_lm)
