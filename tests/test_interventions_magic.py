"""%llm heads / patch / steer / generate --intervene / attention --link, Lab() alike, and the
views' offline copies (self-contained, no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

from llmlab import Lab
from llmlab.attention import AttentionResult
from llmlab.interventions import HeadImportance, InterventionGeneration, PatchingResult
from tests.helpers import run_magic


def test_magics_run_the_three_scans_and_steer(ip, capsys):
    run_magic(ip, "load tiny:qwen3_moe")
    scan = run_magic(ip, 'heads --answer o "hello there world"')
    assert isinstance(scan, HeadImportance) and scan.metric == "logprob"
    assert scan.attention is not None and scan.attention.tokens == scan.tokens
    kl = run_magic(ip, "heads --mode mean --layers 1-2 hello")
    assert kl.metric == "kl" and np.isnan(kl.effects[0]).all() and np.isfinite(kl.effects[1]).all()
    patched = run_magic(
        ip, 'patch --clean "hello there" --corrupted "jello where" --answer o --wrong x'
    )
    assert isinstance(patched, PatchingResult) and patched.moe is not None
    assert patched.resid.shape == (4, 11) and patched.heads.shape == (4, 4)
    vector = run_magic(ip, 'steer --positive "love" --negative "hate" --layer 1 --name mlove')
    assert "steer=mlove*4" in capsys.readouterr().out and vector.layer == 1
    both = run_magic(
        ip, 'generate --raw --max-new-tokens 4 --intervene "steer=mlove*8,experts=-2" hi'
    )
    assert isinstance(both, InterventionGeneration)
    assert both.label == "steer=mlove*8,experts=-2"
    run_magic(ip, "help heads")
    assert "--answer" in capsys.readouterr().out


def test_magic_errors_are_one_line_and_the_session_goes_on(ip):
    run_magic(ip, "load tiny:llama")
    cases = [
        ('heads --answer "ox" hello', "the answer 'ox' is 2 tokens"),
        ("heads --layers 9 hello", "layer 9 is out of range: layers 0-3"),
        (
            'patch --clean "hello there" --corrupted "hi" --answer o --wrong x',
            "clean has 11, corrupted has 2",
        ),
        ('patch --clean "ab" --corrupted "cd" --answer o --wrong x --kinds moe', "no experts"),
        ('generate --intervene "ablate=1.9" hi', "head 9 is out of range: heads 0-3"),
        ("steer --positive a --negative b --layer 7", "layer 7 is out of range"),
        ("attention --link it,tiger hello", "no token 'it' in the text"),
    ]
    for line, message in cases:
        with pytest.raises(UsageError, match=message):
            run_magic(ip, line)
    assert isinstance(run_magic(ip, "heads hello"), HeadImportance)


def test_attention_link_ranks_heads_for_a_token_pair(ip):
    run_magic(ip, "load tiny:llama")
    att = run_magic(ip, 'attention --link "3,1" "abcdef"')
    assert isinstance(att, AttentionResult) and att.link == (3, 1)
    assert att.payload()["link"] == [3, 1]
    ranked = att.links(3, 1)
    w = att.link_weights(3, 1)
    assert len(ranked) == w.size and ranked.weight.iloc[0] == pytest.approx(w.max())
    layer, head = int(ranked.layer.iloc[0]), int(ranked["head"].iloc[0])
    assert att.head_weights(layer, head)[3, 1] == pytest.approx(ranked.weight.iloc[0], abs=1e-6)
    msg, (buf,) = att.answer({"kind": "links", "layer": 0})
    table = np.frombuffer(buf, dtype="<u2").reshape(msg["shape"])
    assert abs(table[..., 3, 1] / 65535 - w).max() < 1e-4
    msg, (buf,) = att.answer({"kind": "link", "layer": 0, "query": 3, "key": 1})
    assert np.allclose(np.frombuffer(buf, "<f4").reshape(w.shape), w)
    assert (
        "out of range"
        in att.answer({"kind": "link", "layer": 0, "query": 99, "key": 1})[0]["error"]
    )


def test_lab_api_and_offline_copies(tmp_path):
    from llmlab.widgets.attention import AttentionView
    from llmlab.widgets.interventions import InterventionView

    lab = Lab()
    lab.load("tiny:llama")
    scan = lab.head_importance("hello there world", answer="o")
    msg, (buf,) = scan.answer({"kind": "head", "layer": 1, "head": 2})
    assert msg["n"] == len(scan.tokens) and len(buf) == 2 * msg["n"] ** 2
    html = InterventionView.render_static(scan)
    assert "llmlab-static" in html and "cdn" not in html.lower() and "unpkg" not in html
    assert '"kind":"heads"' in html and InterventionView.offline_requests(scan)
    assert '"replies":{}' not in html  # the strongest heads' patterns ride along
    patched = lab.patching("hello there", "jello where", "o", "x")
    page = patched.save_html(tmp_path / "patching.html").read_text()
    assert "Activation patching" in page and "residual stream" in page
    plain = lab.next_token("hello").logits
    with lab.intervene("ablate=1.*"):
        inside = lab.next_token("hello").logits
    assert inside != plain and lab.next_token("hello").logits == plain
    att = lab.model().model  # the model has no hooks left after the block
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in att.modules()) == 0
    assert "Link" in AttentionView.render_static(scan.attention.set_link(5, 0))


def test_interventions_are_targets_wherever_a_variant_is_taken(ip):
    from llmlab.attention import AttentionComparison
    from llmlab.lens import LensComparison
    from llmlab.moe import MoeRouting
    from llmlab.targets import resolve, spec_keys

    assert {"ablate", "experts", "route", "steer"} <= set(spec_keys())
    run_magic(ip, "load tiny:qwen3_moe")
    lab = ip.user_ns.get("_llmlab_lab") or __import__("llmlab").default_lab()
    lm = lab.model()
    target = resolve("quant=int8,ablate=1.2/1.3,experts=-3", lm, models=lab.models)
    assert target.label == "quant=int8,ablate=1.2/1.3,experts=-3" and target.claim is False
    pruned = resolve("experts=-3-5", lm, models=lab.models).weight_bytes()
    experts = sum(
        p.numel() * p.element_size()
        for layer in __import__("llmlab.interventions", fromlist=["x"]).sites_of(lm).moe
        for p in layer.experts.parameters()
    )
    assert lm.weight_bytes - pruned == experts * 2 // 16
    att = run_magic(ip, 'attention --compare "ablate=1.2" "hello there"')
    assert isinstance(att, AttentionComparison) and att.b.label.endswith("(ablate=1.2)")
    assert np.allclose(att.change[:2], 0) and att.change[2:].max() > 0  # only after layer 1
    lens = run_magic(ip, 'lens --compare "quant=int8,ablate=0.*" hello')
    assert isinstance(lens, LensComparison)
    routed = run_magic(ip, 'moe --compare "experts=-3" "hello there"')
    assert isinstance(routed, MoeRouting) and len(routed.inputs) == 2
    assert (routed.inputs[0].experts == 3).any() and not (routed.inputs[1].experts == 3).any()
    accel = run_magic(ip, 'generate --raw --max-new-tokens 3 --accel "experts=-3" hi')
    assert accel.text is not None
    with pytest.raises(UsageError, match="is neither"):
        run_magic(ip, 'attention --compare "ablate=9.9" hello')
    assert np.isfinite(run_magic(ip, "heads hello").effects).any()


def test_a_sweep_row_of_expert_pruning_measures_quality_and_saved_weights():
    from llmlab.interventions.edits import forward
    from llmlab.targets import resolve
    from llmlab.tradeoff import run_sweep

    lab = Lab()
    lm = lab.load("tiny:qwen3_moe")
    sweep = run_sweep(lm, "baseline,experts=-3-5", ["hello there"], max_new_tokens=4,
                      repeats=3, text_tokens=32)  # fmt: skip
    frame = sweep.to_pandas()
    base, pruned = frame.loc["baseline"], frame.loc["experts=-3-5"]
    assert pruned.status == "ok" and pruned.claimed in (False, "approximating")
    assert pruned.weight_mb < base.weight_mb
    assert pruned.kl > 0 and pruned.perplexity != base.perplexity
    # A target opened twice on the same model (a sweep opens it, then generates through it)
    # applies its interventions once: steering is not added twice.
    lab.steering_vector("a", "b", layer=1, name="twice")
    ids = lm.tokenizer("hello", return_tensors="pt").input_ids
    target = resolve("steer=twice*3", lm, models=lab.models)
    with target.open() as vlm:
        once = forward(vlm, ids)
        with target.open(vlm) as again:
            assert torch.equal(forward(again, ids), once)
    assert not torch.equal(forward(lm, ids), once)
