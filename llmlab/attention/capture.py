"""Capture attention from any transformers family, reduced as it is computed.

transformers 5 refuses ``output_attentions=True`` under sdpa, sdpa never materialises the
weights, and each modeling file has its own eager kernel. But almost every family (GPT-2,
GPT-NeoX, GPT-J, BERT, T5, BART, Llama, Gemma, Qwen3-Next, LFM2, ...) calls its attention
through a function looked up by name in ``transformers.AttentionInterface``. For the length of
one forward pass we register a capturing function there (plus the eager mask function under
the same name), switch the model to it, and restore the original kernel in ``finally`` -- also
when the forward pass raises or is interrupted. No hook is attached to any module.

The capturing function (``_capturing_attention``) computes the weights as the eager kernels do
(:mod:`llmlab.attention.compute`), in chunks of query rows: each chunk is reduced at once
(statistics, thumbnails; :mod:`llmlab.attention.reduce`) and multiplied by the values to give
the layer's output, and the layer keeps only its queries and keys (a :class:`Recipe`) from
which any head or row is recomputed exactly, on demand. Layers outside ``layers=`` are computed
by the same code without being kept.

Families whose modules compute their weights themselves (Falcon, Bloom, MPT: see
``adapters.py``) are captured through ``output_attentions`` under the eager kernel instead;
their full weights are kept (float16, or float32 with ``precision="float32"``).
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from llmlab.attention import adapters
from llmlab.attention.compute import Recipe, recipe_of_call, spans
from llmlab.attention.reduce import LayerReducer, row_entropy_nats
from llmlab.errors import LabError

if TYPE_CHECKING:
    from llmlab.models.loaded import LoadedModel

#: The name the capturing function is registered under in transformers' attention interface.
KERNEL = "llmlab_capture"
#: Families captured through ``output_attentions`` keep every layer's full weights: above this
#: many tokens that store (layers × heads × n² × 2 bytes) gets too large.
MAX_TOKENS = 2048
#: Grid thumbnails are at most this many pixels a side.
THUMB = 64
PRECISIONS = ("auto", "float16", "float32")


@dataclass
class LayerInfo:
    """One layer of a stack: what it is and whether its weights were captured."""

    index: int
    kind: str  # "attention", "sliding-window attention", "Mamba", "short convolution", ...
    has_attention: bool = True
    captured: bool = False
    note: str = ""  # why a layer with attention weights is not shown ("" when it is)


@dataclass
class StoredLayer:
    """Full weights returned by a module (families that never call the attention interface)."""

    w: torch.Tensor  # (H, nq, nk) float16 or float32

    @property
    def nbytes(self) -> int:
        return self.w.nelement() * self.w.element_size()

    def head(self, head: int) -> torch.Tensor:
        return self.w[head].float()

    def row(self, query: int) -> torch.Tensor:
        return self.w[:, query].float()

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        return self.w[:, r0:r1].float()


Source = Recipe | StoredLayer


@dataclass
class Stack:
    """One stack of attention layers: decoder-only "self", or "encoder", "decoder", "cross".

    Shapes: C captured layers, H query heads, Tq × Tk thumbnail pixels. ``queries``/``keys``
    say which token list each axis is ("source": the input; "target": decoder tokens).
    """

    name: str
    queries: str
    keys: str
    layers: list[LayerInfo]
    n_heads: int = 0
    n_kv_heads: int = 0
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (C, H)
    thumbs: torch.Tensor | None = None  # (C, H, Tq, Tk) float32, max-pooled weights
    sources: list[Source] = field(default_factory=list)  # per captured layer

    @property
    def title(self) -> str:
        return adapters.STACK_TITLES[self.name]

    @property
    def captured(self) -> list[int]:
        return [info.index for info in self.layers if info.captured]

    def slot(self, layer: int) -> int:
        """Position of a captured layer in ``stats``/``thumbs``/``sources``."""
        try:
            return self.captured.index(layer)
        except ValueError:
            raise LabError(self.why_not(layer)) from None

    def why_not(self, layer: int) -> str:
        if not 0 <= layer < len(self.layers):
            return f"layer {layer} is out of range: layers 0-{len(self.layers) - 1}"
        info = self.layers[layer]
        if not info.has_attention:
            return f"layer {layer} is {info.kind}: it has no attention weights"
        if info.note:
            return f"layer {layer} is not shown: {info.note}"
        return f"layer {layer} was not captured (captured: {span_text(self.captured)})"

    def source(self, layer: int) -> Source:
        return self.sources[self.slot(layer)]

    def head(self, layer: int, head: int) -> torch.Tensor:
        """(nq, nk) float32."""
        return self.source(layer).head(head)

    def row(self, layer: int, query: int) -> torch.Tensor:
        """(H, nk) float32."""
        return self.source(layer).row(query)

    def block(self, layer: int, head: int, rows: int, keys: int) -> torch.Tensor:
        """The top-left (rows, keys) of one head, float32, computing only those rows."""
        src = self.source(layer)
        if isinstance(src, StoredLayer):
            return src.w[head, :rows, :keys].float()
        p = src.probs(0, rows, heads=[head], stop=src.n_keys)[0][0]
        return p[:, :keys]

    def layer_rows(self, layer: int, multiple: int = 1) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(r0, r1, weights (H, r, nk)) over all query rows of a layer, chunk by chunk (each
        chunk starting on a multiple of ``multiple``)."""
        src = self.source(layer)
        if isinstance(src, StoredLayer):
            for r0, r1 in spans(src.w.shape[1], max(1, 256 // multiple) * multiple):
                yield r0, r1, src.rows(r0, r1)
            return
        nk = src.n_keys
        for r0, r1 in spans(src.n_queries, src.chunk_rows(multiple)):
            p = src.probs(r0, r1)[0]
            if p.shape[-1] < nk:
                p = torch.nn.functional.pad(p, (0, nk - p.shape[-1]))
            yield r0, r1, p.cpu()

    @property
    def nbytes(self) -> int:
        kept = sum(s.nbytes for s in self.sources)
        return kept + (self.thumbs.nelement() * 4 if self.thumbs is not None else 0)


@dataclass
class Captured:
    """One forward pass's attention, reduced: one :class:`Stack` per kind of attention."""

    stacks: dict[str, Stack]
    precision: str
    shared_bytes: int = 0  # masks and position biases all layers share

    @property
    def main(self) -> Stack:
        return next(iter(self.stacks.values()))

    @property
    def thumbs(self) -> torch.Tensor:
        return self.main.thumbs

    @property
    def stats(self) -> dict[str, torch.Tensor]:
        return self.main.stats

    @property
    def weights(self) -> torch.Tensor:
        """Every captured layer's full weights of the first stack, (C, H, nq, nk) float32.
        Materialised on each call: for short inputs and tests (a long input's would not fit)."""
        stack = self.main
        out = []
        for layer in stack.captured:
            rows = [p for _, _, p in stack.layer_rows(layer)]
            out.append(torch.cat(rows, dim=1))
        return torch.stack(out)

    @property
    def nbytes(self) -> int:
        """What the capture keeps: queries and keys (or stored weights), thumbnails, masks."""
        return sum(s.nbytes for s in self.stacks.values()) + self.shared_bytes


def span_text(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    if not layers:
        return "none"
    parts, start, prev = [], layers[0], layers[0]
    for i in layers[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def parse_layers(spec: str | Iterable[int] | None) -> list[int] | None:
    """``"10-20"``, ``"3"``, ``"0-3,8"`` or a list of ints -> sorted layer numbers."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        return sorted({int(i) for i in spec})
    out: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise LabError(f"--layers {spec!r}: write layer numbers like 10-20 or 3,5,8") from None
        if b < a:
            raise LabError(f"--layers {spec!r}: the range {part} runs backwards")
        out.update(range(a, b + 1))
    if not out:
        raise LabError(f"--layers {spec!r}: no layer named")
    return sorted(out)


def plan(lm: LoadedModel) -> dict[str, Stack]:
    """The stacks of ``lm`` and their layers (kinds from the config), before any compute."""
    model = lm.model
    encoder_only = adapters.is_encoder_only(model)
    encdec = adapters.is_encoder_decoder(model.config)
    sizes = adapters.stack_sizes(model.config, encoder_only)
    stacks = {}
    for name, n in sizes.items():
        if name == "self":
            kinds = adapters.layer_kinds(model.config, lm.family, n)
        else:
            kinds = [("attention", True)] * n
        queries = "target" if encdec and name in ("decoder", "cross") else "source"
        keys = "target" if encdec and name == "decoder" else "source"
        layers = [LayerInfo(i, kind, has) for i, (kind, has) in enumerate(kinds)]
        stacks[name] = Stack(name, queries, keys, layers)
    if not any(info.has_attention for s in stacks.values() for info in s.layers):
        kinds = sorted({info.kind for s in stacks.values() for info in s.layers})
        raise LabError(
            f"cannot capture attention of the {lm.family!r} family: none of its layers has "
            f"attention weights (its layers are {' and '.join(kinds) or 'none'})"
        )
    return stacks


def check_layers(lm: LoadedModel, layers: list[int] | None, stacks: dict[str, Stack]) -> None:
    """One clear line when a requested layer does not exist or has no attention weights."""
    if layers is None:
        return
    main = next(iter(stacks.values()))
    n = len(main.layers)
    for layer in layers:
        if not 0 <= layer < n:
            raise LabError(f"layer {layer} is out of range: {lm.name} has layers 0-{n - 1}")
    if not any(main.layers[i].has_attention for i in layers):
        info = main.layers[layers[0]]
        kinds = sorted({main.layers[i].kind for i in layers})
        what = f"layer {layers[0]} is" if len(layers) == 1 else f"layers {span_text(layers)} are"
        with_attention = [i.index for i in main.layers if i.has_attention]
        raise LabError(
            f"{what} {' and '.join(kinds) if len(kinds) > 1 else info.kind} in the "
            f"{lm.family!r} family: no attention weights there (layers with attention: "
            f"{span_text(with_attention)})"
        )


# -- the capturing attention function -------------------------------------------------------
class _Session:
    """What one capture collects while the model runs (one at a time per process)."""

    def __init__(self, names: dict[int, str], stacks, layers, encoder_only, encdec, thumb, keep):
        self.names, self.stacks, self.layers = names, stacks, layers
        self.encoder_only, self.encdec = encoder_only, encdec
        self.thumb, self.keep = thumb, keep
        self.shared: dict[int, Any] = {}
        self.results: dict[tuple[str, int], tuple[Recipe, LayerReducer]] = {}
        self.calls = 0

    def where(self, module: Any) -> tuple[str, int] | None:
        name = self.names.get(id(module))
        if name is None:
            return None
        layer = adapters.layer_of(name)
        stack = adapters.stack_of(name, self.encoder_only, self.encdec)
        return (stack, layer) if layer is not None and stack in self.stacks else None

    def wanted(self, stack: str, layer: int) -> bool:
        return self.layers is None or layer in self.layers


_active = threading.local()


def _capturing_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Drop-in for transformers' attention functions: same inputs, same output, and the
    layer's reductions recorded on the active capture session."""
    session: _Session | None = getattr(_active, "session", None)
    shared = session.shared if session is not None else {}
    recipe = recipe_of_call(module, query, key, attention_mask, scaling, kwargs, shared)
    where = session.where(module) if session is not None else None
    record = where is not None and session.wanted(*where)
    v = value[0]
    reducer = None
    if record:
        stack, layer = where
        session.calls += 1
        reducer = LayerReducer(
            recipe.n_heads,
            recipe.n_queries,
            recipe.n_keys,
            session.thumb,
            causal=stack in adapters.CAUSAL_STACKS,
            cross=stack == "cross",
            device=v.device,
        )
    out = torch.empty(recipe.n_heads, recipe.n_queries, v.shape[-1], dtype=v.dtype)
    out = out.to(v.device)
    multiples = (reducer.bq, reducer.bk) if reducer is not None else (1, 1)
    for r0, r1, p, entropy, sums in recipe.chunks(*multiples):
        if reducer is not None:
            reducer.add(r0, p, entropy, sums)
        out[:, r0:r1] = recipe.output(p, v, r0, r1)
    if record:
        recipe.q = recipe.q.to(session.keep or recipe.q.dtype).contiguous()
        recipe.k = recipe.k.to(session.keep or recipe.k.dtype).contiguous()
        session.results[where] = (recipe, reducer)
    # Contiguous, as the eager kernels return it: some modules .view() the output (JetMoE).
    return out.transpose(0, 1).contiguous().unsqueeze(0), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(KERNEL, _capturing_attention)
    # The same additive masks the eager kernels get, so weights match theirs.
    AttentionMaskInterface.register(KERNEL, eager_mask)


def kernel_name(model: Any) -> Any:
    """The model's attention kernel setting as ``set_attn_implementation`` takes it back:
    a string, or per sub-config a dict when a multimodal model mixes them."""
    config = model.config
    main = config._attn_implementation
    subs = {}
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        impl = getattr(sub, "_attn_implementation", None)
        if sub is not None and impl is not None and impl != main:
            subs[key] = impl
    return {"": main, **subs} if subs else main


@contextmanager
def switched_kernel(model: Any, family: str, kernel: str) -> Iterator[None]:
    """Run the model with attention kernel ``kernel`` inside the block; restore it after
    (also on exceptions and KeyboardInterrupt)."""
    original = kernel_name(model)
    plain = original if isinstance(original, str) else original[""]
    if plain != kernel:
        try:
            model.set_attn_implementation(kernel)
        except (ValueError, ImportError, AttributeError, KeyError) as err:
            raise LabError(
                f"cannot capture attention of the {family!r} family: it cannot switch to the "
                f"{kernel} attention kernel ({str(err).splitlines()[0] if str(err) else err})"
            ) from err
    try:
        if model.config._attn_implementation != kernel:
            # set_attn_implementation only warns for models that cannot switch at run time.
            raise LabError(
                f"cannot capture attention of the {family!r} family: it does not support "
                "switching its attention kernel at run time"
            )
        yield
    finally:
        if kernel_name(model) != original:
            if isinstance(original, dict):
                main = original.pop("")
                model.set_attn_implementation({"": main, **original} if original else main)
            else:
                model.set_attn_implementation(original)


@contextmanager
def eager_attention(model: Any, family: str) -> Iterator[None]:
    """Run the model with the eager attention kernel inside the block; restore it after."""
    with switched_kernel(model, family, "eager"):
        yield


def hook_count(model: Any) -> int:
    """How many forward hooks are attached anywhere in ``model`` (tests compare before/after)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _keep_dtype(precision: str) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise LabError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return torch.float16 if precision == "float16" else None


def _forward(lm: LoadedModel, input_ids: torch.Tensor, target_ids: torch.Tensor | None, **kw):
    ids = input_ids.to(lm.device)
    kwargs: dict[str, Any] = dict(attention_mask=torch.ones_like(ids), **kw)
    if target_ids is not None:
        kwargs["decoder_input_ids"] = target_ids.to(lm.device)
    if not adapters.is_encoder_only(lm.model):
        kwargs["use_cache"] = False
    if "logits_to_keep" in inspect.signature(lm.model.forward).parameters:
        # The capture needs no logits: all of them would be n × vocabulary floats (805 MB
        # for the default model at 4,096 tokens) and the largest product of the pass.
        kwargs["logits_to_keep"] = 1
    with torch.inference_mode():
        return lm.model(ids, **kwargs)


def capture(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    *,
    target_ids: torch.Tensor | None = None,
    layers: str | Iterable[int] | None = None,
    precision: str = "auto",
    thumb: int = THUMB,
) -> Captured:
    """Run ``lm`` once over ``input_ids`` (shape (1, n); with ``target_ids`` the decoder's
    tokens of an encoder-decoder model) and capture the attention of ``layers`` (default all).

    ``precision``: "auto" keeps queries and keys at the model's own precision (weights are
    recomputed from them in float32, as the forward pass computed them) and, for families
    captured through ``output_attentions``, full weights in float16; "float32" keeps those in
    float32 too; "float16" also rounds queries and keys to float16 (half the memory).
    """
    keep = _keep_dtype(precision)
    wanted = parse_layers(layers)
    stacks = plan(lm)
    check_layers(lm, wanted, stacks)
    _guard_memory(lm, input_ids, target_ids, wanted, precision)
    if adapters.is_encoder_decoder(lm.model.config) and target_ids is None:
        raise LabError(
            f"{lm.family!r} is an encoder-decoder model: give decoder tokens (target_ids) too"
        )
    with lm.exclusive("attention capture"):
        if adapters.adapter(lm.family).interface:
            session = _run_interface(lm, input_ids, target_ids, stacks, wanted, thumb, keep)
            if session.calls == 0:  # a family the table does not know computes its own
                stacks = plan(lm)
                _run_outputs(lm, input_ids, target_ids, stacks, wanted, thumb, precision)
                shared = 0
            else:
                shared = _collect(session, stacks, lm)
        else:
            _run_outputs(lm, input_ids, target_ids, stacks, wanted, thumb, precision)
            shared = 0
    return Captured(stacks=stacks, precision=precision, shared_bytes=shared)


def _guard_memory(lm, input_ids, target_ids, wanted, precision) -> None:
    """Refuse, before running, a capture bigger than the memory budget (llmlab.memory)."""
    from llmlab import memory

    n = int(input_ids.shape[1]) + (int(target_ids.shape[1]) if target_ids is not None else 0)
    store = 2 if precision == "float16" else lm.model.dtype.itemsize
    layers = len(wanted) if wanted else None
    estimate = memory.attention_capture(lm.config, n, layers, store_bytes=store)
    memory.guard(estimate, lm.device)


def _run_interface(lm, input_ids, target_ids, stacks, wanted, thumb, keep) -> _Session:
    _register()
    model = lm.model
    names = {id(m): name for name, m in model.named_modules()}
    session = _Session(
        names,
        stacks,
        wanted,
        adapters.is_encoder_only(model),
        adapters.is_encoder_decoder(model.config),
        thumb,
        keep,
    )
    if getattr(_active, "session", None) is not None:
        raise LabError("an attention capture is already running in this thread")
    _active.session = session
    try:
        with switched_kernel(model, lm.family, KERNEL):
            _forward(lm, input_ids, target_ids)
    finally:
        _active.session = None
    return session


def _collect(session: _Session, stacks: dict[str, Stack], lm: LoadedModel) -> int:
    for name, stack in stacks.items():
        found = sorted(layer for (s, layer) in session.results if s == name)
        for layer in found:
            if layer < len(stack.layers):
                stack.layers[layer].captured = True
                stack.layers[layer].has_attention = True
        found = _same_shape(found, session, name, stack)
        if not found:
            continue
        recipes, reducers = zip(*(session.results[(name, layer)] for layer in found))
        stack.sources = list(recipes)
        stack.n_heads = recipes[0].n_heads
        stack.n_kv_heads = int(recipes[0].k.shape[0])
        per_layer = [r.stats() for r in reducers]
        stack.stats = {k: torch.stack([s[k] for s in per_layer]) for k in per_layer[0]}
        stack.thumbs = torch.stack([r.thumb for r in reducers]).cpu()
    stacks_with = {k: s for k, s in stacks.items() if s.sources}
    if not stacks_with:
        notes = [(i.index, i.note) for s in stacks.values() for i in s.layers if i.note]
        why = f"layer {notes[0][0]}: {notes[0][1]}" if notes else "no attention layer ran"
        raise LabError(f"cannot capture attention of the {lm.family!r} family: {why}")
    for key in [k for k in stacks if k not in stacks_with]:
        del stacks[key]
    seen: dict[int, int] = {}
    for entry in session.shared.values():
        for t in entry[1:]:
            if isinstance(t, torch.Tensor):
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _same_shape(found: list[int], session: _Session, name: str, stack: Stack) -> list[int]:
    """The layers of one stack that can share its layers × heads grid over one token axis,
    where its layers differ: those with one key per token (self-attention stacks), then the
    head count most of them have.

    A few families mix shapes: Inkling's hybrid layers have 4 heads where its sliding ones
    have 64, and DeepSeek-V4's compressed layers attend to compressed blocks appended after
    the tokens. Those layers stay in the stack, not captured, with the reason in words."""
    recipes = {layer: session.results[(name, layer)][0] for layer in found}
    if len({(r.n_heads, r.n_keys) for r in recipes.values()}) <= 1:
        return found
    per_token = {
        layer: r for layer, r in recipes.items() if name == "cross" or r.n_keys == r.n_queries
    } or recipes
    heads = Counter(r.n_heads for r in per_token.values()).most_common(1)
    keys = Counter(r.n_keys for r in per_token.values()).most_common(1)
    kept = []
    for layer, recipe in recipes.items():
        if layer in per_token and (recipe.n_heads, recipe.n_keys) == (heads[0][0], keys[0][0]):
            kept.append(layer)
            continue
        if layer >= len(stack.layers):
            continue
        info = stack.layers[layer]
        info.captured = False
        if layer not in per_token:
            extra = recipe.n_keys - recipe.n_queries
            info.note = (
                f"it attends to {recipe.n_keys} keys for {recipe.n_queries} tokens "
                f"({abs(extra)} {'compressed or extra' if extra > 0 else 'fewer'} entries), "
                "not one key per token"
            )
        elif recipe.n_heads != heads[0][0]:
            info.note = f"it has {recipe.n_heads} heads where the other layers have {heads[0][0]}"
        else:
            info.note = f"it has {recipe.n_keys} keys where the other layers have {keys[0][0]}"
    return kept


def _run_outputs(lm, input_ids, target_ids, stacks, wanted, thumb, precision) -> None:
    """Families that never call the attention interface: eager kernel + output_attentions."""
    n = int(input_ids.shape[1]) + (int(target_ids.shape[1]) if target_ids is not None else 0)
    if n > MAX_TOKENS:
        raise LabError(
            f"{n} tokens is too long for an attention view of the {lm.family!r} family (its "
            f"weights are kept whole); use at most {MAX_TOKENS} tokens or fewer --layers"
        )
    store = torch.float32 if precision == "float32" else torch.float16
    with _eager_config(lm) if _cannot_switch(lm.model) else eager_attention(lm.model, lm.family):
        out = _forward(lm, input_ids, target_ids, output_attentions=True)
    groups = {
        "self": getattr(out, "attentions", None),
        "encoder": getattr(out, "encoder_attentions", None) or getattr(out, "attentions", None),
        "decoder": getattr(out, "decoder_attentions", None),
        "cross": getattr(out, "cross_attentions", None),
    }
    for name in list(stacks):
        stack = stacks[name]
        weights = groups.get(name)
        if not weights or any(w is None for w in weights):
            raise LabError(
                f"cannot capture attention of the {lm.family!r} family: its attention modules "
                "do not return weights under the eager kernel"
            )
        layers = [i for i in range(len(weights)) if wanted is None or i in wanted]
        reducers = []
        for i in layers:
            a = weights[i][0].detach().float().cpu()  # (H, nq, nk)
            r = LayerReducer(
                a.shape[0],
                a.shape[1],
                a.shape[2],
                thumb,
                causal=name in adapters.CAUSAL_STACKS,
                cross=name == "cross",
            )
            for r0, r1 in spans(a.shape[1], r.row_multiple * max(1, 256 // r.row_multiple)):
                r.add(r0, a[:, r0:r1], row_entropy_nats(a[:, r0:r1]))
            reducers.append(r)
            stack.sources.append(StoredLayer(a.to(store)))
            stack.layers[i].captured = True
        stack.n_heads = int(weights[0].shape[1])
        stack.n_kv_heads = _n_kv_heads(lm, stack.n_heads)
        per_layer = [r.stats() for r in reducers]
        stack.stats = {k: torch.stack([s[k] for s in per_layer]) for k in per_layer[0]}
        stack.thumbs = torch.stack([r.thumb for r in reducers])


def _cannot_switch(model: Any) -> bool:
    return getattr(model, "_supports_attention_backend", True) is False


@contextmanager
def _eager_config(lm: LoadedModel) -> Iterator[None]:
    """Eager for a model whose ``set_attn_implementation`` refuses to switch at run time
    (Falcon): its modules read the kernel from the shared config on every call, so setting it
    there for one forward pass is enough (its sdpa path ignores the causal mask when asked
    for weights)."""
    config = lm.model.config
    original = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = original


def _n_kv_heads(lm: LoadedModel, n_heads: int) -> int:
    text = lm.config.get_text_config()
    kv = getattr(text, "num_key_value_heads", None) or getattr(text, "num_kv_heads", None)
    if getattr(text, "multi_query", False) and not getattr(text, "new_decoder_architecture", 0):
        kv = 1
    return int(kv) if kv and n_heads % int(kv) == 0 else n_heads
