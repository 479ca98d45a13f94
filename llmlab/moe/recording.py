"""Record which experts each token went to, in a forward pass or during generation.

A forward pre-hook on each experts module reads the ``(top_k_index, top_k_weights)`` it is
called with: the selection the layer actually computed with, whatever the family's rule.
Hooks live only inside :func:`recording`, which removes them also when the run raises.
Like the family tables (:mod:`llmlab.moe.adapters`), this sits below every feature: the MoE
view, the demo model's training and interventions all record routing through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.errors import LabError
from llmlab.moe.adapters import MoeLayer, adapter_for, moe_layers, routing_shape

if TYPE_CHECKING:
    import torch


class RoutingRecorder:
    """Per MoE layer, the chunks of ``(indices, weights)`` seen so far, in call order.

    Each forward call routes ``batch × new tokens`` rows (the whole prompt at prefill, one
    token per decoding step), so concatenating the chunks gives one row per token position.
    """

    def __init__(self, layers: list[MoeLayer]):
        self.layers = layers
        self.chunks: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {
            layer.index: [] for layer in layers
        }

    def hook_for(self, layer: MoeLayer):
        def record(module: Any, args: tuple, kwargs: dict) -> None:
            # experts(hidden_states, top_k_index, top_k_weights): positional in every family;
            # read keywords too (their names differ: top_k_index / router_indices ...).
            rest = list(args[1:]) + list(kwargs.values())
            if len(rest) < 2:
                raise LabError(f"unexpected call of {type(module).__name__}: no routing inputs")
            self._keep(layer, rest[0], rest[1])

        return record

    def router_hook_for(self, layer: MoeLayer, read: Any, top_k: int):
        """For families whose experts never see the indices: read the router's output."""

        def record(module: Any, args: tuple, output: Any) -> None:
            index, weights = read(module, output, top_k)
            self._keep(layer, index, weights)

        return record

    def _keep(self, layer: MoeLayer, index: Any, weights: Any) -> None:
        self.chunks[layer.index].append(
            (index.detach().to("cpu"), weights.detach().to("cpu", dtype=_float32()))
        )

    def reset(self) -> None:
        for chunks in self.chunks.values():
            chunks.clear()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``experts`` (layers, tokens, k) int16 and ``weights`` float32, each token's
        choices sorted by weight, heaviest first (DeepSeek's top-k comes unsorted)."""
        import torch

        per_layer = []
        for layer in self.layers:
            chunks = self.chunks[layer.index]
            if not chunks:
                raise LabError(
                    f"layer {layer.index}'s experts were never called; "
                    "this model may route through a fused kernel that capture cannot see"
                )
            index = torch.cat([c[0].reshape(-1, c[0].shape[-1]) for c in chunks])
            weights = torch.cat([c[1].reshape(-1, c[1].shape[-1]) for c in chunks])
            order = torch.sort(weights, dim=-1, descending=True, stable=True).indices
            per_layer.append((index.gather(-1, order), weights.gather(-1, order)))
        lengths = {int(ix.shape[0]) for ix, _ in per_layer}
        if len(lengths) != 1:
            raise LabError(f"MoE layers routed different token counts {sorted(lengths)}")
        experts = np.stack([ix.numpy() for ix, _ in per_layer]).astype(np.int16)
        weights = np.stack([w.numpy() for _, w in per_layer]).astype(np.float32)
        return experts, weights


def _float32() -> Any:
    import torch

    return torch.float32


@contextmanager
def recording(model: Any, layers: list[MoeLayer] | None = None) -> Iterator[RoutingRecorder]:
    """Hook every MoE layer of ``model`` for the duration of the block; always unhooks."""
    adapter = adapter_for(model)
    if layers is None:
        layers = moe_layers(model, adapter)
    recorder = RoutingRecorder(layers)
    handles = []
    try:
        for layer in layers:
            if adapter.read_router is not None:
                top_k = routing_shape(layer, model.config)[1]
                hook = recorder.router_hook_for(layer, adapter.read_router, top_k)
                handles.append(layer.router.register_forward_hook(hook))
            else:
                handles.append(
                    layer.experts.register_forward_pre_hook(
                        recorder.hook_for(layer), with_kwargs=True
                    )
                )
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
