"""quant=lossless decode: each decoder layer in two native calls instead of ~150 aten ops.

A decode step of the default model spends ~40 % of its time dispatching small ops from Python
(norms, rotary embeddings, reshapes, the MLP's activation), not multiplying. For the families
whose layers have the llama layout, :func:`fuse_decoder_layers` gives each layer a forward that
runs norm + q/k/v + rotary embeddings in one call (``layer_attn_input``), the cache update in
Python (transformers' cache classes, so speculative decoding's rollback still works), and
attention + o_proj + norm + MLP + residuals in a second call (``layer_attn_output_mlp``). q, k
and v are packed into one [q+k+v, hidden] grid layer, gate and up into one [2I, hidden]: the
separate modules keep views of those rows, so nothing is stored twice.

A layer runs fused only when nothing could tell the difference: one sequence, a decode-sized
pass (at most ``lossless.DEQUANT_ROWS`` new tokens), inference, and no hook on any of its
submodules (the views, interventions and attention capture hook them): otherwise the module's
own forward runs, on the same packed weights.
"""

from __future__ import annotations

import dataclasses
import types
from typing import TYPE_CHECKING, Any

from llmlab.accel import lossless

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Families whose decoder layer is the llama layout (pre-norm RMSNorm, q/k/v/o projections with
#: rotate-half rotary embeddings from the model, SiLU-gated MLP): ``(attention, mlp)`` names.
#: A family joins by being that layout, checked again per layer in :func:`_plan`.
LLAMA_LAYOUT: dict[str, tuple[str, str]] = {
    "llama": ("self_attn", "mlp"),
    "mistral": ("self_attn", "mlp"),
    "qwen2": ("self_attn", "mlp"),
}


@dataclasses.dataclass(frozen=True)
class FusedPlan:
    """What the two native calls of one layer read: each linear layer as [codes, d, m, bias]."""

    qkv: list[torch.Tensor]
    o_proj: list[torch.Tensor]
    gate_up: list[torch.Tensor]
    down: list[torch.Tensor]
    norm_in: torch.Tensor
    eps_in: float
    norm_post: torch.Tensor
    eps_post: float
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    layer_idx: int
    #: The hook dicts of the layer's submodules: one not empty sends the pass to the module
    #: path. torch adds hooks to these dicts in place (it never replaces them after __init__),
    #: so holding them is a per-call check of ~26 dicts without walking the modules.
    hooks: tuple[dict, ...]


def fuse_decoder_layers(model: nn.Module) -> int:
    """Give every llama-layout decoder layer of ``model`` (already swapped to grid layers) the
    fused forward; the number of layers fused (0 for other families)."""
    config = model.config.get_text_config()
    names = LLAMA_LAYOUT.get(config.model_type)
    if names is None or config.hidden_act != "silu" or _sliding(config):
        return 0
    fused = 0
    for layer in model.get_decoder().layers:
        plan = _plan(layer, *names)
        if plan is not None:
            layer._llmlab_fused = plan
            layer.forward = types.MethodType(_fused_forward, layer)
            fused += 1
    return fused


def _sliding(config: Any) -> bool:
    window = getattr(config, "sliding_window", None)
    return window is not None and getattr(config, "use_sliding_window", True)


def _grid_parts(mod: nn.Module) -> tuple[str, list[torch.Tensor]] | None:
    import torch

    q4, q8 = lossless._module_classes()
    empty = torch.empty(0)
    bias = mod.bias.detach() if getattr(mod, "bias", None) is not None else empty
    if isinstance(mod, q4):
        return "q4", [mod.packed, mod.d, mod.m, bias]
    if isinstance(mod, q8):
        return "q8", [mod.q, mod.d, empty, bias]
    return None


def _stack(mods: list[nn.Module]) -> list[torch.Tensor] | None:
    """One grid layer of ``mods``' rows, each module left holding views of its own rows (no
    second copy); None unless they are all the same kind of grid layer."""
    import torch

    parts = [_grid_parts(m) for m in mods]
    if any(p is None for p in parts) or len({p[0] for p in parts}) != 1:
        return None
    kind, per_module = parts[0][0], [p[1] for p in parts]
    stacked = [torch.cat([t[i] for t in per_module]) for i in range(3)]  # codes, d, m
    if any(t[3].numel() for t in per_module):
        zeros = [torch.zeros(m.out_features) for m in mods]
        stacked.append(
            torch.cat([t[3] if t[3].numel() else z for t, z in zip(per_module, zeros, strict=True)])
        )
    else:
        stacked.append(torch.empty(0))
    names = ("packed", "d", "m") if kind == "q4" else ("q", "d")
    row = 0
    for mod in mods:
        rows = slice(row, row + mod.out_features)
        for name, tensor in zip(names, stacked, strict=False):
            setattr(mod, name, tensor[rows])
        row += mod.out_features
    return stacked


def _plan(layer: nn.Module, attn_name: str, mlp_name: str) -> FusedPlan | None:
    attn, mlp = getattr(layer, attn_name, None), getattr(layer, mlp_name, None)
    norms = [getattr(layer, n, None) for n in ("input_layernorm", "post_attention_layernorm")]
    if attn is None or mlp is None or not all(type(n).__name__.endswith("RMSNorm") for n in norms):
        return None
    projections = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    mlp_parts = [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    o = _grid_parts(projections[3]) if projections[3] is not None else None
    down = _grid_parts(mlp_parts[2]) if mlp_parts[2] is not None else None
    if None in projections or None in mlp_parts or o is None or down is None:
        return None
    qkv = _stack(projections[:3])
    gate_up = _stack(mlp_parts[:2])
    if qkv is None or gate_up is None:
        return None
    config = attn.config
    return FusedPlan(
        qkv=qkv,
        o_proj=o[1],
        gate_up=gate_up,
        down=down[1],
        norm_in=norms[0].weight.detach(),
        eps_in=float(norms[0].variance_epsilon),
        norm_post=norms[1].weight.detach(),
        eps_post=float(norms[1].variance_epsilon),
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        head_dim=attn.head_dim,
        scaling=float(attn.scaling),
        layer_idx=attn.layer_idx,
        hooks=tuple(
            hooks
            for m in layer.modules()
            if m is not layer
            for hooks in (m._forward_hooks, m._forward_pre_hooks)
        ),
    )


def _hooked(hooks: tuple[dict, ...]) -> bool:
    from torch.nn.modules import module as nn_module

    return bool(
        nn_module._global_forward_hooks
        or nn_module._global_forward_pre_hooks
        or nn_module._global_backward_hooks
        or any(hooks)
    )


def _fused_forward(
    self: nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cache: Any = None,
    use_cache: bool | None = False,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    import torch

    plan: FusedPlan = self._llmlab_fused
    cache = kwargs.pop("past_key_values", cache)
    batch, rows = hidden_states.shape[:2]
    if (
        batch != 1
        or rows > lossless.DEQUANT_ROWS
        or position_embeddings is None
        or self.training
        or hidden_states.dtype != torch.float32
        or torch.is_grad_enabled()
        or _hooked(plan.hooks)
    ):
        return type(self).forward(
            self,
            hidden_states,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
    kernels = lossless._kernels()
    x = hidden_states.contiguous()
    cos, sin = position_embeddings
    q, k, v = kernels.layer_attn_input(
        x,
        plan.norm_in,
        plan.eps_in,
        plan.qkv,
        cos,
        sin,
        plan.heads,
        plan.kv_heads,
        plan.head_dim,
    )
    if cache is not None:
        k, v = cache.update(k, v, plan.layer_idx)
    mask = attention_mask if isinstance(attention_mask, torch.Tensor) else torch.empty(0)
    return kernels.layer_attn_output_mlp(
        x,
        q,
        k,
        v,
        mask,
        plan.scaling,
        plan.o_proj,
        plan.norm_post,
        plan.eps_post,
        plan.gate_up,
        plan.down,
    )
