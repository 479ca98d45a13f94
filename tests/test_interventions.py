"""Interventions against independent computations (float32, 1e-5), on tiny random models.

Each mechanism is checked against a computation that does not use it: zero-ablating a head
against zeroing that head's columns of the output projection; mean ablation against the
projection's bias carrying the mean; patching against a plain forward hook that overwrites a
hidden state; removing an expert against a router whose logit for it is masked. The batched
scans are checked against one forward pass per variant.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmlab import memory
from llmlab.attention import hook_count
from llmlab.errors import LabError
from llmlab.interventions import (
    generate_with,
    head_importance,
    intervened,
    parse,
    patching,
    sites_of,
    steering_vector,
)
from llmlab.interventions.edits import forward
from llmlab.models.registry import load_model
from tests.attention_families import save_tiny
from tests.test_accel import assert_same_model, fingerprint

TOL = 1e-5
TEXT = "hello there world"


@pytest.fixture(scope="module")
def llama():
    return load_model("tiny:llama")


@pytest.fixture(scope="module")
def moe():
    return load_model("tiny:qwen3_moe")


def ids_of(lm, text=TEXT):
    return lm.tokenizer(text, return_tensors="pt").input_ids


def zero_columns(site, head, head_dim):
    """Zero one head's input columns of the output projection (Conv1D keeps them as rows)."""
    w = site.output.weight.data
    cols = slice(head * head_dim, (head + 1) * head_dim)
    saved = w.clone()
    if type(site.output).__name__ == "Conv1D":
        w[cols, :] = 0
    else:
        w[:, cols] = 0
    return lambda: w.copy_(saved)


# -- exactness ------------------------------------------------------------------------------------
def test_zero_ablation_equals_zeroing_the_heads_output_columns(llama):
    sites = sites_of(llama)
    ids = ids_of(llama)
    for layer, head in [(0, 0), (1, 2), (3, 3)]:
        with intervened(llama, f"ablate={layer}.{head}"):
            ablated = forward(llama, ids, last_only=False)
        restore = zero_columns(sites.attention[layer], head, sites.head_dim)
        try:
            reference = forward(llama, ids, last_only=False)
        finally:
            restore()
        assert torch.allclose(ablated, reference, atol=TOL), (layer, head)
        assert not torch.allclose(ablated, forward(llama, ids, last_only=False), atol=TOL)


def test_mean_ablation_equals_the_mean_carried_by_the_projection_bias(llama):
    sites = sites_of(llama)
    ids = ids_of(llama)
    layer, head, d = 2, 1, sites.head_dim
    seen = {}
    hook = sites.attention[layer].output.register_forward_pre_hook(
        lambda m, a: seen.setdefault("x", a[0].detach().clone())
    )
    try:
        forward(llama, ids)
    finally:
        hook.remove()
    mean = seen["x"][0, :, head * d : (head + 1) * d].mean(0)
    out = sites.attention[layer].output
    with intervened(llama, f"ablate={layer}.{head}:mean"):
        ablated = forward(llama, ids, last_only=False)
    # Independent: zero the head's columns and add W[:, head] @ mean as a bias.
    w = out.weight.data
    saved_w = w.clone()
    extra = w[:, head * d : (head + 1) * d] @ mean
    w[:, head * d : (head + 1) * d] = 0
    had_bias = out.bias is not None
    if not had_bias:
        out.bias = torch.nn.Parameter(extra.clone())
    else:
        saved_b = out.bias.data.clone()
        out.bias.data += extra
    try:
        reference = forward(llama, ids, last_only=False)
    finally:
        w.copy_(saved_w)
        if had_bias:
            out.bias.data.copy_(saved_b)
        else:
            out.bias = None
    assert torch.allclose(ablated, reference, atol=TOL)


def test_batched_head_scan_equals_one_forward_per_head(llama):
    batched = head_importance(llama, TEXT, answer="o")
    loop = head_importance(llama, TEXT, answer="o", method="loop")
    assert np.allclose(batched.effects, loop.effects, atol=TOL)
    assert batched.timing.passes < loop.timing.passes == 16
    # Each entry is the single ablation through intervened().
    base = forward(llama, ids_of(llama))[0, -1].log_softmax(-1)
    o = llama.tokenizer("o", add_special_tokens=False).input_ids[0]
    with intervened(llama, "ablate=2.3"):
        one = forward(llama, ids_of(llama))[0, -1].log_softmax(-1)
    assert abs(batched.effect(2, 3) - float(one[o] - base[o])) < TOL
    frame = batched.to_pandas()
    assert list(frame.columns) == ["layer", "head", "Δ log p(answer)"] and len(frame) == 16
    kl = head_importance(llama, TEXT)
    assert kl.metric == "kl" and np.nanmin(kl.effects) >= -TOL


def _hidden_patch_reference(lm, clean, corrupted, layer, position, a, b):
    """Independent patching: record with output_hidden_states, overwrite with a plain hook."""
    cids, xids = ids_of(lm, clean), ids_of(lm, corrupted)
    with torch.inference_mode():
        hs = lm.model(cids, output_hidden_states=True).hidden_states
    value = hs[layer + 1][0, position].clone()

    def overwrite(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[:, position] = value
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = sites_of(lm).layers[layer].register_forward_hook(overwrite)
    try:
        with torch.inference_mode():
            logits = lm.model(xids).logits[0, -1]
    finally:
        handle.remove()
    with torch.inference_mode():
        lc = lm.model(cids).logits[0, -1]
        lx = lm.model(xids).logits[0, -1]
    ld = lambda x: float(x[a] - x[b])  # noqa: E731
    return (ld(logits) - ld(lx)) / (ld(lc) - ld(lx))


@pytest.mark.parametrize("spec", ["llama", "qwen3_moe"])
def test_patching_equals_a_hook_that_overwrites_the_hidden_state(spec, llama, moe):
    lm = llama if spec == "llama" else moe
    clean, corrupted = "hello there", "jello where"
    result = patching(lm, clean, corrupted, "o", "x")
    tok = lm.tokenizer
    a, b = (tok(t, add_special_tokens=False).input_ids[0] for t in ("o", "x"))
    n_layers = sites_of(lm).n_layers
    for layer, position in [(0, 0), (1, 3), (n_layers - 2, 10)]:
        reference = _hidden_patch_reference(lm, clean, corrupted, layer, position, a, b)
        assert abs(result.resid[layer, position] - reference) < TOL, (layer, position)
    # The last layer patched at the last position restores the clean run exactly.
    assert abs(result.resid[n_layers - 1, -1] - 1.0) < TOL
    loop = patching(lm, clean, corrupted, "o", "x", method="loop")
    for kind in ("resid", "heads", "moe"):
        got, want = getattr(result, kind), getattr(loop, kind)
        if want is None:
            assert got is None
            continue
        assert np.allclose(got, want, atol=1e-4, equal_nan=True), kind


def _layer_inputs(lm):
    """Record (layer, rows, tokens) that every decoder layer computed; returns (seen, remove).
    (Hooks run in the order they were added, so these see a layer's output before the scan's
    own hooks add rows to it.)"""
    seen: list[tuple[int, int, int]] = []

    def hook(index):
        def record(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            seen.append((index, int(hidden.shape[0]), int(hidden.shape[1])))

        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(sites_of(lm).layers)]
    return seen, lambda: [h.remove() for h in handles]


def test_each_variant_joins_the_batch_at_its_own_layer(llama):
    seen, remove = _layer_inputs(llama)
    try:
        batched = head_importance(llama, TEXT, answer="o")
    finally:
        remove()
    loop = head_importance(llama, TEXT, answer="o", method="loop")
    assert np.allclose(batched.effects, loop.effects, atol=TOL)
    # 16 heads in one pass: row 0 (layer 3's last head, the reference the others copy) runs
    # from the input; layer ℓ's 4 heads join before layer ℓ, so layer ℓ sees 1 + 4(ℓ+1) rows
    # (the last layer all 16), and no row computes a layer before the one it ablates.
    n = ids_of(llama).shape[1]
    scan = [rows for _, rows, tokens in seen[-4:]]
    assert scan == [5, 9, 13, 16] and all(t == n for *_, t in seen[-4:])
    assert batched.timing.passes == 1 and batched.timing.rows_per_pass == 16
    assert abs(batched.timing.work - (5 + 9 + 13 + 16) / 64) < 1e-9
    assert "67% of a loop's layer × token work" in batched.timing.text()


def test_a_growing_batch_needs_its_rows_ordered_by_the_layer_their_edit_starts():
    from llmlab.interventions.edits import Edits

    edits = Edits(batch=3, grow=True)
    edits.head_keep[2] = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    edits.head_keep[0] = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    assert edits.joins() == [1, -1, 1]
    assert [edits.rows_in(layer) for layer in range(4)] == [2, 2, 3, 3]
    edits = Edits(batch=2, grow=True)
    edits.head_keep[0] = torch.tensor([[0.0], [1.0]])
    edits.head_keep[3] = torch.tensor([[1.0], [0.0]])
    with pytest.raises(LabError, match="row 0 to start last"):
        edits.rows_in(1)


@pytest.mark.parametrize("spec", ["llama", "qwen3_moe"])
def test_patching_runs_only_the_tokens_from_the_patched_position(spec, llama, moe):
    from llmlab.interventions import prefix

    lm = llama if spec == "llama" else moe
    clean, corrupted = "hello there", "jello where"
    n = ids_of(lm, corrupted).shape[1]
    kinds = ["resid", "moe"] if spec == "qwen3_moe" else ["resid"]
    assert prefix.reusable(lm)  # (asked once per model, by a short generation: not counted)
    seen, remove = _layer_inputs(lm)
    try:
        batched = patching(lm, clean, corrupted, "o", "x", kinds=kinds)
    finally:
        remove()
    loop = patching(lm, clean, corrupted, "o", "x", kinds=kinds, method="loop")
    for kind in kinds:
        assert np.allclose(getattr(batched, kind), getattr(loop, kind), atol=TOL), kind
        timing = batched.timings[kind]
        assert timing.prefix_reused and timing.passes == n  # one pass per position
    # Layer 0 sees the tokens from each position p (n - p of them), each exactly once per
    # kind: the corrupted run's keys and values stand for the ones before.
    first = sorted(tokens for layer, _, tokens in seen if layer == 0)
    runs = 3  # the clean recording, the corrupted run, the corrupted run's prefix
    assert first == sorted([n] * runs + list(range(1, n + 1)) * len(kinds))
    # A resid pass: the variant patching the last layer is row 0 and the variant patching
    # layer ℓ joins at ℓ's output, so layer ℓ is computed by 1 + ℓ rows.
    n_layers = sites_of(lm).n_layers
    if spec == "llama":
        resid = seen[runs * n_layers :]  # the first pass (p = 0) after those runs
        assert [rows for _, rows, _ in resid[:n_layers]] == [1 + i for i in range(n_layers)]


@pytest.mark.parametrize(
    ("family", "why"), [("gemma2", "sliding-window layers"), ("qwen3_next", "recurrent state")]
)
def test_patching_runs_the_full_sequence_where_the_cache_is_not_plain(family, why, saved):
    from llmlab.interventions import prefix

    lm = load_model(str(saved[family]))
    clean, corrupted = "hello there", "jello where"
    n = ids_of(lm, corrupted).shape[1]
    assert prefix.record(lm, ids_of(lm, corrupted), sites_of(lm).n_layers) is None, why
    seen, remove = _layer_inputs(lm)
    try:
        batched = patching(lm, clean, corrupted, "o", "x", kinds=["resid"])
    finally:
        remove()
    loop = patching(lm, clean, corrupted, "o", "x", kinds=["resid"], method="loop")
    assert np.allclose(batched.resid, loop.resid, atol=1e-4)
    assert not batched.timings["resid"].prefix_reused
    assert {tokens for *_, tokens in seen} == {n}


def test_removing_an_expert_equals_masking_its_router_logit(moe):
    sites = sites_of(moe)
    ids = ids_of(moe)
    with intervened(moe, "experts=-3-5"):
        removed = forward(moe, ids, last_only=False)
    # Independent: each router's own rule, with its logits for experts 3 and 5 at -inf.
    patched = []
    for layer in sites.moe:
        router = layer.router

        def masked(hidden_states, router=router):
            hidden = hidden_states.reshape(-1, router.hidden_dim)
            logits = torch.nn.functional.linear(hidden, router.weight)
            logits[:, [3, 5]] = float("-inf")
            probs = torch.softmax(logits, dtype=torch.float, dim=-1)
            top, index = torch.topk(probs, router.top_k, dim=-1)
            if router.norm_topk_prob:
                top /= top.sum(dim=-1, keepdim=True)
            return logits, top.to(logits.dtype), index

        router.forward = masked
        patched.append(router)
    try:
        reference = forward(moe, ids, last_only=False)
    finally:
        for router in patched:
            del router.forward
    assert torch.allclose(removed, reference, atol=TOL)
    assert not torch.allclose(removed, forward(moe, ids, last_only=False), atol=TOL)


def test_removed_experts_are_never_routed_and_forced_routing_is_obeyed(moe):
    from llmlab.moe.capture import recording

    ids = ids_of(moe)
    with intervened(moe, "experts=-3"), recording(moe.model) as rec:
        forward(moe, ids)
    experts, _ = rec.result()
    assert not (experts == 3).any() and experts.size
    k = sites_of(moe).top_k
    chosen = list(range(8, 8 + k))
    spec = f"route=1.4:{'/'.join(map(str, chosen))}"
    with intervened(moe, spec), recording(moe.model) as rec:
        forward(moe, ids)
    experts, _ = rec.result()
    assert sorted(experts[1, 4].tolist()) == chosen  # MoE layer slot 1 is layer 1
    assert sorted(experts[1, 3].tolist()) != chosen


def test_steering_vector_is_the_mean_difference_and_scale_zero_changes_nothing(llama):
    v = steering_vector(llama, "love", "hate", layer=1, name="t-love")
    with torch.inference_mode():
        hp = llama.model(ids_of(llama, "love"), output_hidden_states=True).hidden_states[2]
        hn = llama.model(ids_of(llama, "hate"), output_hidden_states=True).hidden_states[2]
    assert torch.allclose(v.vector, hp[0].mean(0) - hn[0].mean(0), atol=TOL)
    ids = ids_of(llama)
    with intervened(llama, "steer=t-love*0"):
        assert torch.allclose(forward(llama, ids), forward(llama, ids), atol=TOL)
    with intervened(llama, "steer=t-love*4"):
        steered = forward(llama, ids)
    assert not torch.allclose(steered, forward(llama, ids), atol=1e-3)
    both = generate_with(llama, "hi", "steer=t-love*8", raw=True, max_new_tokens=4)
    assert both.label == "steer=t-love*8" and both.plain.text != both.intervened.text


# -- the model stays exactly as it was ------------------------------------------------------------
def test_every_intervention_and_scan_leaves_the_model_exactly_as_it_was(llama, moe):
    steering_vector(llama, "a", "b", layer=0, name="t-ab")
    for lm, specs in [
        (llama, ["ablate=1.2", "ablate=0.*:mean", "steer=t-ab*3"]),
        (moe, ["experts=-1", "route=0.2:1/2/3/4", "experts=1:-2,ablate=0.1"]),
    ]:
        before, hooks = fingerprint(lm), hook_count(lm.model)
        for spec in specs:
            with intervened(lm, spec):
                forward(lm, ids_of(lm))
            with pytest.raises(RuntimeError), intervened(lm, spec):
                raise RuntimeError("interrupted")
        head_importance(lm, TEXT, mode="mean")
        patching(lm, "hello there", "jello where", "o", "x")
        assert hook_count(lm.model) == hooks
        assert not any("forward" in m.__dict__ for m in lm.model.modules())
        assert_same_model(before, lm)


# -- families -------------------------------------------------------------------------------------
DECODERS = ["llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "phi", "olmo", "gpt_oss",
            "gpt2", "gpt_neox", "gptj", "falcon", "bloom", "qwen3_next", "lfm2"]  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: save_tiny(name, root) for name in DECODERS + ["jetmoe"]}


@pytest.mark.parametrize("family", DECODERS)
def test_head_ablation_on_every_family_with_attention(family, saved):
    lm = load_model(str(saved[family]))
    sites = sites_of(lm)
    layer = sites.head_layers[-1]
    ids = ids_of(lm)
    with intervened(lm, f"ablate={layer}.1"):
        ablated = forward(lm, ids, last_only=False)
    restore = zero_columns(sites.attention[layer], 1, sites.head_dim)
    try:
        reference = forward(lm, ids, last_only=False)
    finally:
        restore()
    assert torch.allclose(ablated, reference, atol=TOL)
    scan = head_importance(lm, TEXT)
    assert np.isfinite(scan.effects[sites.head_layers]).all()
    # Patching the residual stream: batched (one row until the edited layer) == one pass each.
    batched = patching(lm, "hello there", "jello where", "o", "x", kinds=["resid"])
    loop = patching(lm, "hello there", "jello where", "o", "x", kinds=["resid"], method="loop")
    assert np.allclose(batched.resid, loop.resid, atol=1e-4)
    assert abs(batched.resid[-1, -1] - 1) < 1e-4  # the last layer's last position is the clean run
    assert hook_count(lm.model) == 0


def test_hybrid_layers_without_heads_and_unsupported_families_say_so_in_one_line(saved):
    lm = load_model(str(saved["lfm2"]))
    with pytest.raises(LabError, match="layer 0 is short convolution: it has no attention heads"):
        parse("ablate=0.1", lm)
    jet = load_model(str(saved["jetmoe"]))
    with pytest.raises(LabError, match="cannot intervene on heads of the 'jetmoe' family"):
        parse("ablate=0.1", jet)


# -- bad input: one line each ---------------------------------------------------------------------
def test_bad_input_names_the_valid_range(llama, moe):
    cases = [
        (llama, "ablate=9.1", "layer 9 is out of range: layers 0-3"),
        (llama, "ablate=1.7", "head 7 is out of range: heads 0-3"),
        (llama, "ablate=1", "name heads as LAYER.HEAD"),
        (llama, "ablate=1.1:max", "zero or mean"),
        (llama, "experts=-1", "this model has no experts"),
        (moe, "experts=-99", "expert 99 is out of range: experts 0-15"),
        (moe, "experts=2:-1", "layer 2 is not a MoE layer; MoE layers: 0-1, 3"),
        (moe, "route=0.1:1/2", "give 4 different experts"),
        (llama, "steer=nothing", "no steering vector named 'nothing'"),
        (llama, "ablate", "write key=value"),
    ]
    for lm, spec, message in cases:
        with pytest.raises(LabError, match=message):
            parse(spec, lm)
    n = sites_of(moe).n_experts
    with pytest.raises(LabError, match="leaves 3, fewer than the 4"):
        parse("experts=" + "".join(f"-{e}" for e in range(n - 3)), moe)


def test_scan_inputs_are_checked_in_one_line(llama):
    with pytest.raises(LabError, match="clean has 11, corrupted has 5"):
        patching(llama, "hello there", "hello", "o", "x")
    with pytest.raises(LabError, match=r"the answer 'ox' is 2 tokens \('o' \+ 'x'\); give one"):
        patching(llama, "hello there", "jello where", "ox", "x")
    with pytest.raises(LabError, match="without spaces 'o' is one"):
        patching(llama, "hello there", "jello where", " o", "x")
    with pytest.raises(LabError, match="the same token"):
        patching(llama, "hello there", "jello where", "o", "o")
    with pytest.raises(LabError, match="layer 7 is out of range"):
        head_importance(llama, TEXT, layers=[7])
    with pytest.raises(LabError, match="metric 'loss'"):
        head_importance(llama, TEXT, metric="loss")


def test_served_models_need_the_weights():
    from types import SimpleNamespace

    from llmlab.models.capabilities import Capabilities

    served = SimpleNamespace(
        name="remote", capabilities=Capabilities(remote=True, internals=False, top_logprobs=5)
    )
    for call in (
        lambda: parse("ablate=1.1", served),
        lambda: head_importance(served, TEXT),
        lambda: patching(served, "a", "b", "o", "x"),
    ):
        with pytest.raises(
            LabError, match="remote is a served model: interventions need the weights"
        ):
            call()


def test_memory_guard_splits_a_scan_or_refuses_it(llama):
    from llmlab.interventions.scans import row_bytes

    whole = head_importance(llama, TEXT)
    per_row = row_bytes(llama, len(ids_of(llama)[0]))
    try:
        memory.set_budget(3 * per_row)
        split = head_importance(llama, TEXT)
        assert split.timing.rows_per_pass == 3 and split.timing.passes == 6
        assert np.allclose(split.effects, whole.effects, atol=TOL)
        memory.set_budget(per_row - 1)
        with pytest.raises(LabError, match="intervention scan would hold"):
            head_importance(llama, TEXT)
    finally:
        memory.set_budget(None)
    assert head_importance(llama, TEXT).timing.passes == 1  # the session goes on


MOE_FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "flex_olmo", "granitemoe",
                "phimoe", "dbrx", "deepseek_v2", "deepseek_v3", "glm4_moe", "ernie4_5_moe",
                "hunyuan_v1_moe", "minimax", "gpt_oss"]  # fmt: skip


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_a_removed_expert_is_never_routed_in_any_moe_family(family):
    from llmlab.moe.capture import recording

    lm = load_model(f"tiny:{family}")
    ids = ids_of(lm, "hello there world, how are you")
    with recording(lm.model) as rec:
        forward(lm, ids)
    before, _ = rec.result()
    top = int(np.bincount(before.ravel()).argmax())
    for layer in sites_of(lm).moe:  # a trained router's choice bias cannot bring it back
        bias = getattr(layer.router, "e_score_correction_bias", None)
        if bias is not None:
            bias[top] = 100.0
    try:
        with intervened(lm, f"experts=-{top}"), recording(lm.model) as rec:
            forward(lm, ids)
        after, _ = rec.result()
    finally:
        for layer in sites_of(lm).moe:
            bias = getattr(layer.router, "e_score_correction_bias", None)
            if bias is not None:
                bias[top] = 0.0
    assert (before == top).sum() > 0 and (after == top).sum() == 0
