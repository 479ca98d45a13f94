"""The mechanics: what one forward pass changes, per batch row, and the hooks that do it.

An :class:`Edits` describes a forward pass whose batch rows are variants of one input (row
``b`` ablates one head, patches one position, ...). :func:`applied` installs the hooks for the
length of a ``with`` block and removes every one of them in ``finally`` (also on an exception
or an interrupt), so the model is exactly as it was afterwards: no weight is written, no
module replaced, no attribute left.

- Head outputs are edited at the input of the attention output projection, where the heads
  sit side by side (batch, tokens, heads × head_dim): zeroing head ``h`` there is exactly
  zeroing the projection's columns of that head, whatever attention kernel computed them
  (so it composes with attention capture and with accelerated copies).
- The residual stream and MoE block outputs are edited by forward hooks on the decoder layer
  and the MoE block.
- A removed expert's router logit is set to −inf while the router runs (a torch function mode
  around the router's forward adds the mask to the first product giving one column per
  expert), so the family's own rule (softmax, top-k, renormalisation) re-distributes the
  routing exactly as expert pruning does.
- Forced routing rewrites the experts module's ``top_k_index`` for chosen tokens.

A growing batch (``grow``): every row is the same input until its own edit starts, so a
pass starts with one row and each row joins the batch at its own layer, as a copy of row 0
(before a layer whose heads, experts or MoE output it edits; at the output of a layer whose
residual stream it patches). No row computes the layers before its edit. Row 0 is the
reference the others copy: it must be the row whose edit starts last, and rows 1, 2, ... are
ordered by the layer their edit starts at, so the rows computing a layer are always the first
``rows_in(layer)`` ones and every per-row tensor is sliced to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from llmlab.errors import LabError
from llmlab.interventions.sites import ModelSites

NEG_INF = float("-inf")


@dataclass
class RowSet:
    """Overwrite ``hidden[rows[i], positions[i]] = values[i]`` (values: (n, width))."""

    rows: torch.Tensor
    positions: torch.Tensor
    values: torch.Tensor


@dataclass
class Edits:
    """What one forward pass changes. Tensors with a first dimension of 1 apply to every row.

    - ``head_keep[layer]``: (B, heads) 1 keeps a head's output, 0 replaces it by
      ``head_fill[layer]`` ((B or 1, tokens or 1, heads, head_dim); zeros when absent);
    - ``resid_set[layer]``: positions of the layer's output overwritten (patching);
    - ``resid_add[layer]``: (B or 1, width) added to the layer's output at every position;
    - ``moe_set[layer]``: positions of a MoE block's output overwritten;
    - ``expert_mask[layer]``: (B or 1, experts) added to the router's logits (0 or −inf);
    - ``force[layer]``: (row, position, experts) whose top-k experts are replaced;
    - ``grow``: the input is one row and the batch grows to ``batch`` rows inside the model,
      each row joining where its edit starts (module docstring); else every row runs from
      the input.
    """

    batch: int = 1
    head_keep: dict[int, torch.Tensor] = field(default_factory=dict)
    head_fill: dict[int, torch.Tensor] = field(default_factory=dict)
    head_mean: set[int] = field(default_factory=set)  # fill = mean over the first pass's tokens
    resid_set: dict[int, RowSet] = field(default_factory=dict)
    resid_add: dict[int, torch.Tensor] = field(default_factory=dict)
    moe_set: dict[int, RowSet] = field(default_factory=dict)
    expert_mask: dict[int, torch.Tensor] = field(default_factory=dict)
    force: dict[int, list[tuple[int, int, list[int]]]] = field(default_factory=dict)
    grow: bool = False

    def joins(self) -> list[int]:
        """Per row, the layer after whose output the row must exist (−1: the input): one
        before the first layer it edits inside, the layer itself when it edits the layer's
        output. A row without edits joins last (it stays the reference's copy)."""
        never = 1 << 30
        join = [never] * self.batch

        def mark(rows: Any, layer: int) -> None:
            for row in rows:
                join[row] = min(join[row], layer)

        def rows_of(t: torch.Tensor, edited: torch.Tensor) -> Any:
            if t.shape[0] == 1:
                return range(self.batch) if bool(edited.any()) else ()
            return edited.reshape(t.shape[0], -1).any(-1).nonzero().flatten().tolist()

        for layer, keep in self.head_keep.items():
            mark(rows_of(keep, keep != 1), layer - 1)
        for layer, mask in self.expert_mask.items():
            mark(rows_of(mask, mask != 0), layer - 1)
        for layer, forced in self.force.items():
            mark((row for row, _, _ in forced), layer - 1)
        for layer, rows in self.moe_set.items():
            mark(rows.rows.tolist(), layer - 1)
        for layer, rows in self.resid_set.items():
            mark(rows.rows.tolist(), layer)
        for layer, add in self.resid_add.items():
            mark(rows_of(add, add != 0), layer)
        last = max((j for j in join if j < never), default=-1)
        return [min(j, last) for j in join]

    @cached_property
    def _rows_after(self) -> dict[int, int]:
        """Layer -> rows after its output (−1: the input), for a growing batch."""
        if not self.grow:
            return {}
        join = self.joins()
        if any(j > join[0] for j in join[1:]) or join[1:] != sorted(join[1:]):
            raise LabError(
                "a growing batch needs row 0 to start last and the other rows ordered by the "
                f"layer their edit starts at; got {join}"
            )
        counts: dict[int, int] = {}
        for j in join[1:]:
            counts[j] = counts.get(j, 0) + 1
        rows, after = 1, {}
        for layer in sorted(counts):
            rows += counts[layer]
            after[layer] = rows
        return after

    def rows_out(self, layer: int) -> int:
        """Rows alive after ``layer``'s output (−1: the input)."""
        if not self.grow:
            return self.batch
        return max((n for j, n in self._rows_after.items() if j <= layer), default=1)

    def rows_in(self, layer: int) -> int:
        """Rows that compute ``layer``."""
        return self.rows_out(layer - 1)


@dataclass
class Recording:
    """What :func:`applied` records when asked: per layer, one row's tensors on the CPU... or
    on the model's device (kept as computed)."""

    resid: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B, T, width)
    heads: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B, T, H, D)
    moe: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B, T, width)


def _hidden_of(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _grow(hidden: torch.Tensor, rows: int) -> torch.Tensor:
    """``hidden`` with copies of row 0 (the unedited reference) appended up to ``rows``."""
    more = rows - hidden.shape[0]
    if more == 0:
        return hidden
    if more < 0:
        raise LabError(f"a layer saw {hidden.shape[0]} rows where the batch has {rows}")
    return torch.cat([hidden, hidden[:1].expand(more, *hidden.shape[1:])])


def _first_rows(t: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    """A per-row tensor sliced to the rows alive at its layer (one row applies to all)."""
    return t if t is None or t.shape[0] == 1 else t[:rows]


def _set_rows(hidden: torch.Tensor, rows: RowSet) -> torch.Tensor:
    hidden = hidden.clone()
    hidden[rows.rows, rows.positions] = rows.values.to(hidden.dtype)
    return hidden


class _LogitMask(TorchFunctionMode):
    """Adds ``mask`` to the first linear/matmul result with one column per expert."""

    PRODUCTS = {
        torch.nn.functional.linear,
        torch.matmul,
        torch.mm,
        torch.addmm,
        torch.Tensor.matmul,
        torch.Tensor.__matmul__,
    }

    def __init__(self, mask: torch.Tensor, n_experts: int):
        super().__init__()
        self.mask, self.n_experts, self.done = mask, n_experts, False

    #: Families that choose by sigmoid score + a learned bias (DeepSeek-V3, GLM-4-MoE, ...):
    #: sigmoid(−inf) is 0, and 0 + a large bias could still be chosen, so the sigmoid of the
    #: masked logits is masked too.
    SCORES = {torch.sigmoid, torch.Tensor.sigmoid}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not isinstance(out, torch.Tensor) or not out.dim() or out.shape[-1] != self.n_experts:
            return out
        if (not self.done and func in self.PRODUCTS) or (self.done and func in self.SCORES):
            self.done = True
            out = out + _rows_mask(self.mask, out).to(out.dtype)
        return out


def _rows_mask(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The (B or 1, E) mask shaped for router logits (B·T, E) or (B, T, E)."""
    mask = mask.to(logits.device)
    if mask.shape[0] == 1:
        return mask.view(*([1] * (logits.dim() - 1)), -1)
    if logits.dim() == 3:
        return mask[:, None, :]
    rows = logits.shape[0]
    if rows % mask.shape[0]:
        raise LabError(f"router saw {rows} rows for a batch of {mask.shape[0]}")
    return mask.repeat_interleave(rows // mask.shape[0], dim=0)


@contextmanager
def applied(
    sites: ModelSites, edits: Edits | None = None, *, record: Recording | None = None
) -> Iterator[Edits]:
    """Install ``edits`` (and recording hooks) on the model of ``sites`` for the block."""
    edits = edits or Edits()
    handles: list[Any] = []
    routers: list[Any] = []
    try:
        _install(sites, edits, record, handles, routers)
        yield edits
    finally:
        for handle in handles:
            handle.remove()
        for router in routers:  # the per-call forward installed below, gone again
            router.__dict__.pop("forward", None)


def _install(sites, edits, record, handles, routers) -> None:
    first_rows = edits.rows_out(-1)
    if edits.grow and first_rows > 1:

        def grow_input(module, args, kwargs, rows=first_rows):
            if args:
                return (_grow(args[0], rows), *args[1:]), kwargs
            key = "hidden_states"
            return args, {**kwargs, key: _grow(kwargs[key], rows)}

        handles.append(sites.layers[0].register_forward_pre_hook(grow_input, with_kwargs=True))

    for index, layer in enumerate(sites.layers):
        rows_out = edits.rows_out(index)
        grows = edits.grow and rows_out > edits.rows_in(index)
        add = _first_rows(edits.resid_add.get(index), rows_out)
        patch = edits.resid_set.get(index)
        keep = record is not None
        if add is None and patch is None and not grows and not keep:
            continue

        def layer_out(
            module, args, output, add=add, patch=patch, index=index, keep=keep, rows=rows_out
        ):
            hidden = _hidden_of(output)
            if edits.grow:
                hidden = _grow(hidden, rows)
            if patch is not None:
                hidden = _set_rows(hidden, patch)
            if add is not None:
                hidden = hidden + add.to(hidden.device, hidden.dtype)[:, None, :]
            if keep:
                record.resid[index] = hidden.detach()
            return _with_hidden(output, hidden)

        handles.append(layer.register_forward_hook(layer_out))

    for index, site in sites.attention.items():
        rows = edits.rows_in(index)
        keep_heads = _first_rows(edits.head_keep.get(index), rows)
        fill = _first_rows(edits.head_fill.get(index), rows)
        if keep_heads is None and record is None:
            continue

        mean_of_first = [None] if index in edits.head_mean and fill is None else None

        def heads_in(
            module, args, keep_heads=keep_heads, fill=fill, index=index, mean=mean_of_first
        ):
            x = args[0]
            b, t, width = x.shape
            h = sites.n_heads
            heads = x.view(b, t, h, width // h)
            if record is not None:
                record.heads[index] = heads.detach()
            if keep_heads is None:
                return None
            if mean is not None:
                # Mean ablation in a run (a generation): the mean over the first pass's
                # positions (the prompt), kept for the decoding steps that follow.
                if mean[0] is None:
                    mean[0] = heads[:1].mean(dim=1, keepdim=True).detach()
                fill = mean[0]
            k = keep_heads.to(x.device, x.dtype)[:, None, :, None]
            edited = heads * k
            if fill is not None:
                edited = edited + fill.to(x.device, x.dtype) * (1 - k)
            return (edited.reshape(b, t, width), *args[1:])

        handles.append(site.output.register_forward_pre_hook(heads_in))

    for moe in sites.moe:
        index = moe.index
        rows = edits.rows_in(index)
        patch = edits.moe_set.get(index)
        if patch is not None or record is not None:

            def block_out(module, args, output, patch=patch, index=index):
                hidden = _hidden_of(output)
                shape = hidden.shape
                x = args[0] if args else None
                if hidden.dim() == 2 and x is not None and x.dim() == 3:
                    hidden = hidden.view(x.shape[0], x.shape[1], -1)
                if patch is not None:
                    hidden = _set_rows(hidden, patch)
                if record is not None:
                    record.moe[index] = hidden.detach()
                return _with_hidden(output, hidden.reshape(shape))

            handles.append(moe.block.register_forward_hook(block_out))
        mask = _first_rows(edits.expert_mask.get(index), rows)
        if mask is not None:
            _mask_router(moe.router, mask, sites.n_experts, routers)
        forced = edits.force.get(index)
        if forced:
            handles.append(_force_hook(moe, forced, sites, rows))


def _mask_router(router: Any, mask: torch.Tensor, n_experts: int, routers: list) -> None:
    # An instance attribute shadows the class's forward for these calls only; applied()
    # deletes it in finally. The mode is entered and left inside each call, so nothing stays
    # active if the router raises.
    original = router.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        mode = _LogitMask(mask, n_experts)
        with mode:
            out = original(*args, **kwargs)
        if not mode.done:
            raise LabError(
                f"{type(router).__name__} computed no logits with one column per expert: "
                "cannot remove experts in this family"
            )
        return out

    router.forward = forward
    routers.append(router)


def _force_hook(
    moe: Any, forced: list[tuple[int, int, list[int]]], sites: ModelSites, batch: int
) -> Any:
    if sites.moe_adapter is not None and sites.moe_adapter.read_router is not None:
        raise LabError(
            f"cannot force routing in the {sites.moe_adapter.label} family: its experts module "
            "never sees the chosen indices"
        )

    calls = [0]

    def force(module, args, kwargs):
        # Positions are the text's: only the pass over the whole text (a generation's
        # prefill is its first call) is forced, never a later decoding step.
        calls[0] += 1
        if calls[0] > 1:
            return None
        args = list(args)
        if len(args) < 2:  # experts(hidden_states, top_k_index, top_k_weights), positional
            raise LabError(f"unexpected call of {type(module).__name__}: no routing inputs")
        index = args[1]
        n_rows = index.shape[0]
        tokens = n_rows // batch
        index = index.clone()
        for row, position, experts in forced:
            flat = row * tokens + position
            if flat < n_rows and position < tokens:
                index[flat] = torch.tensor(experts, dtype=index.dtype, device=index.device)
        args[1] = index
        return tuple(args), kwargs

    return moe.experts.register_forward_pre_hook(force, with_kwargs=True)


def forward(
    lm: Any,
    input_ids: torch.Tensor,
    *,
    last_only: bool = True,
    cache: Any = None,
) -> torch.Tensor:
    """Logits of one plain forward pass: (rows, 1 or tokens, vocabulary), float32. Without
    ``cache`` no cache is kept; with one (a prefix the ids continue, llmlab.interventions.
    prefix) the ids are the tokens after it."""
    import inspect

    model = lm.model
    ids = input_ids.to(lm.device)
    seen = cache.get_seq_length() if cache is not None else 0
    mask = torch.ones(ids.shape[0], seen + ids.shape[1], dtype=ids.dtype, device=ids.device)
    kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": cache is not None}
    if cache is not None:
        kwargs["cache"] = cache
    if last_only and "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    with torch.inference_mode():
        logits = model(ids, **kwargs).logits
    return (logits[:, -1:] if last_only else logits).float()
