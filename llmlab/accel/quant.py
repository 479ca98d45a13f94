"""Weight quantization that runs on CPU here, applied in place to a model copy.

What is fast where (2 shared AVX-512 cores, SmolLM2-135M, one token at a time):

- int8: the aten weight-only kernel ``_weight_int8pack_mm`` (int8 weights, one scale per output
  channel) is ~6x *slower* than fp32 with float32 activations but 1.5-4x *faster* with bfloat16
  ones, so the recipe casts activations to bfloat16 inside the matmul only. Torch's dynamic
  quantization (fbgemm, activations quantized per tensor on the fly) was the old recipe: fast,
  but its per-tensor activation scale cost a teacher-forced KL to fp32 of 0.26-0.29 nats and
  changed answers; weight-only measured 0.002-0.005 nats at a higher speed
  (benchmarks/bench_accel.py --int8-recipes).
- int4: ``_weight_int4pack_mm_for_cpu`` with bfloat16 activations matches fp32 on the small
  layer shapes and is slow on the huge output head, so int4 keeps the head in dynamic int8.
- CUDA: weight-only int8 (``_weight_int8pack_mm``) / int4 (tinygemm) kernels, or bitsandbytes.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch
    from torch import nn

INT4_GROUP = 32
INT4_INNER_K_TILES = 8


#: Linear layers the int8 recipe keeps in float16 (fbgemm's packed fp16 GEMM, float32
#: activations). The MLP down-projection reads the gated product with its few huge outliers and
#: the output head decides the token: with both in float16 the default model's teacher-forced KL
#: to fp32 measured 0.0017 nats (top-1 0.97) vs 0.0046 with them in int8, at the same speed.
INT8_FLOAT16 = ("down_proj", "lm_head")


def _int8_module_class():
    # Defined inside a function so that importing llmlab.accel does not import torch.
    import torch

    class _Int8WeightOnly(torch.nn.Module):
        """int8 weights with one float scale per output channel (symmetric), multiplied by
        torch's ``_weight_int8pack_mm`` with bfloat16 activations (its fast CPU path); the
        output returns in the input's dtype."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            w = linear.weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
            q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
            self.register_buffer("weight_int8", q.contiguous())
            self.register_buffer("scales", scale.to(torch.bfloat16))
            self.bias = linear.bias
            self.out_features, self.in_features = w.shape

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            y = torch._weight_int8pack_mm(
                x.reshape(-1, shape[-1]).to(torch.bfloat16), self.weight_int8, self.scales
            ).to(x.dtype)
            y = y.reshape(*shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias

    return _Int8WeightOnly


def _float16_packed(linear: nn.Module) -> nn.Module:
    """An ``nn.Linear`` as fbgemm's dynamic float16 linear (weights packed in fp16)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization warns it moves to torchao
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.float16
        )[0]


def quantize_int8_weight_only(model: nn.Module) -> nn.Module:
    """Every ``nn.Linear`` -> int8 weight-only, except ``INT8_FLOAT16`` (and the output head)
    -> packed float16; in place."""
    import torch

    cls = _int8_module_class()
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            if child is head or child_name.endswith(INT8_FLOAT16):
                setattr(parent, child_name, _float16_packed(child))
            else:
                setattr(parent, child_name, cls(child))
    return model


def _int4_module_class():
    # Defined inside a function so that importing llmlab.accel does not import torch.
    import torch

    class _Int4Linear(torch.nn.Module):
        """Weight-only int4 (asymmetric, groups of 32 along K) via torch's CPU int4pack kernel;
        activations run in bfloat16 inside the matmul, as that kernel is only fast there."""

        def __init__(self, linear: torch.nn.Linear, group: int = INT4_GROUP):
            super().__init__()
            w = linear.weight.detach().float()
            n, k = w.shape
            if k % group:
                raise LabError(f"int4 needs in-features divisible by {group}; got {k}")
            wg = w.reshape(n, k // group, group)
            lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
            scale = ((hi - lo) / 15).clamp(min=1e-8)
            q = torch.round((wg - lo) / scale).clamp(0, 15).to(torch.int32).reshape(n, k)
            # The kernel computes (q - 8) * scale + zero, so zero = lo + 8 * scale.
            zeros = lo + 8 * scale
            sz = torch.stack([scale.squeeze(-1), zeros.squeeze(-1)], -1).transpose(0, 1)
            self.register_buffer(
                "packed", torch._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES)
            )
            self.register_buffer("scales_and_zeros", sz.contiguous().to(torch.bfloat16))
            self.bias = linear.bias
            self.group, self.out_features, self.in_features = group, n, k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            y = torch._weight_int4pack_mm_for_cpu(
                x.reshape(-1, shape[-1]).to(torch.bfloat16),
                self.packed,
                self.group,
                self.scales_and_zeros,
            ).to(x.dtype)
            y = y.reshape(*shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias

    return _Int4Linear


#: torch's int4pack kernel packs weights whose output size is a multiple of this.
INT4_N_MULTIPLE = 16


def int4_unpackable(model: nn.Module) -> list[str]:
    """The linear layers int4 would convert but torch's int4pack kernel cannot pack (e.g. a
    MoE shared-expert gate with one output), as ``name (out x in)``."""
    import torch

    head = model.get_output_embeddings()
    return [
        f"{name} ({m.out_features}x{m.in_features})"
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and m is not head
        and (m.in_features % INT4_GROUP or m.out_features % INT4_N_MULTIPLE)
    ]


def quantize_int4_weight_only(model: nn.Module) -> nn.Module:
    """Decoder ``nn.Linear`` layers -> int4 weight-only; the output head -> dynamic int8."""
    import torch

    cls = _int4_module_class()
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and child is not head:
                setattr(parent, child_name, cls(child))
    if isinstance(head, torch.nn.Linear):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(head), {torch.nn.Linear}, dtype=torch.qint8
            )[0]
        for parent in model.modules():
            for child_name, child in list(parent.named_children()):
                if child is head:
                    setattr(parent, child_name, quantized)
    return model


def quantize(model: nn.Module, method: str, device: str) -> nn.Module:
    """Quantize ``model`` (a private copy) in place with ``method`` on ``device``."""
    if not device.startswith("cpu") and method in ("lossless", "int8", "int4"):
        raise LabError(
            f"quant={method} is wired to torch's CPU kernels here; on CUDA use "
            "quant=int4-torchao, bnb8 or bnb4"
        )
    if method == "lossless":
        from llmlab.accel.lossless import quantize_lossless

        return quantize_lossless(model)
    if method == "int4-torchao":
        return _torchao_int4(model)
    if method == "int8":
        return quantize_int8_weight_only(model)
    if method == "int4":
        return quantize_int4_weight_only(model)
    if method in ("bnb8", "bnb4"):
        return _bitsandbytes(model, method)
    raise LabError(f"unknown quantization {method!r}")


def _torchao_int4(model: nn.Module) -> nn.Module:
    """torchao's int4 weight-only (tinygemm kernels; CUDA, bfloat16 activations)."""
    import torch
    from torchao.quantization import Int4WeightOnlyConfig, quantize_

    from llmlab.accel.registry import TORCHAO_GROUP

    model.to(torch.bfloat16)
    head = model.get_output_embeddings()
    quantize_(
        model,
        Int4WeightOnlyConfig(group_size=TORCHAO_GROUP),
        filter_fn=lambda m, _name: isinstance(m, torch.nn.Linear) and m is not head,
    )
    return model


def _bitsandbytes(model: nn.Module, method: str) -> nn.Module:
    """Swap Linear layers for bitsandbytes ones (CUDA only; not exercised on CPU machines)."""
    import bitsandbytes as bnb
    import torch

    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or child is head:
                continue
            has_bias = child.bias is not None
            if method == "bnb8":
                new = bnb.nn.Linear8bitLt(
                    child.in_features, child.out_features, has_bias, has_fp16_weights=False
                )
                new.weight = bnb.nn.Int8Params(child.weight.data.cpu(), requires_grad=False)
            else:
                new = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    has_bias,
                    compute_dtype=torch.bfloat16,
                    quant_type="nf4",
                )
                new.weight = bnb.nn.Params4bit(
                    child.weight.data.cpu(), requires_grad=False, quant_type="nf4"
                )
            if has_bias:
                new.bias = child.bias
            setattr(parent, child_name, new.to(child.weight.device))
    return model
