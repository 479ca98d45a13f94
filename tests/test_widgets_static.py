"""Offline copies of live views: the view's own module and its data, inlined and escaped."""

from __future__ import annotations

import json
import re

import llmlab.widgets  # noqa: F401  (registers the offline renderers)
import pytest
from llmlab.widgets.static import MISSING, prepared_replies, request_key, static_view

EVIL = "</script><script>window.__pwned = 1</script>"


def _data(html: str) -> dict:
    """The JSON block of the (first) offline copy in ``html``."""
    match = re.search(
        r'<script type="application/json" class="llmlab-static-data">(.*?)</script>', html, re.S
    )
    assert match, "no offline data block"
    return json.loads(match.group(1))


def _assert_inert(html: str) -> None:
    # Only our own two script elements per view; model text never opens another one.
    assert EVIL not in html
    assert html.count("<script") == 2 * html.count('class="llmlab-static"')


def test_static_view_escapes_state_and_keeps_a_fallback():
    html = static_view(
        "export default { render({ model, el }) { el.textContent = model.get('x'); } };",
        ".a{color:red}",
        {"x": EVIL},
        fallback_html="<p>reduced</p>",
    )
    _assert_inert(html)
    assert _data(html)["state"] == {"x": EVIL}
    assert "<p>reduced</p>" in html and "<style>.a{color:red}</style>" in html
    assert _data(html)["missing"] == MISSING
    assert "http://" not in html and "https://" not in html


def test_two_views_do_not_share_an_id():
    a = static_view("export default {};", None, {})
    b = static_view("export default {};", None, {})
    ids = re.findall(r'id="(llmlab-static-[0-9a-f]+)"', a + b)
    assert len(set(ids)) == 2


def test_request_key_ignores_id_and_order():
    assert request_key({"id": 3, "layer": 1, "kind": "lines"}) == request_key(
        {"kind": "lines", "layer": 1, "id": 9}
    )


def test_prepared_replies_stop_at_the_budget():
    def answer(request):
        if request["layer"] == 2:
            return {"error": "no"}, []
        return {"layer": request["layer"]}, [bytes(100)]

    requests = [{"kind": "x", "layer": i} for i in range(10)]
    replies = prepared_replies(answer, requests, budget_bytes=10_000)
    assert len(replies) == 9 and request_key(requests[2]) not in replies
    small = prepared_replies(answer, requests, budget_bytes=400)
    assert 0 < len(small) < 9
    assert list(small) == [request_key(r) for r in requests[: len(small)]]


def test_attention_copy_carries_every_layer_within_budget(tiny_llama):
    from llmlab.widgets.attention import AttentionView

    from llmlab.attention import attention

    result = attention(tiny_llama, "The cat sat on the mat.")
    result.tokens[1] = EVIL
    html = result.static_html()
    _assert_inert(html)
    data = _data(html)
    assert "paintPooled" in data["esm"]  # the live view's own module
    assert data["state"]["payload"]["tokens"][1] == EVIL
    # Every layer's head view: the first in the payload, the others answered ahead.
    assert data["state"]["payload"]["lines"]["layer"] == result.initial_layer()
    for layer in set(range(result.n_layers)) - {result.initial_layer()}:
        key = request_key({"kind": "lines", "stack": "self", "layer": layer, "which": "a"})
        assert data["replies"][key]["msg"]["lines"]["layer"] == layer
    assert AttentionView.offline_note in data["note"]
    assert "llmlab-static-fallback" in html and "<svg" in html  # reduced copy kept inside


def test_next_token_and_accel_copies_keep_their_state(tiny_llama):
    from llmlab.accel.panel import AccelPanelState
    from llmlab.generation.next_token import next_token_distribution

    dist = next_token_distribution(tiny_llama, "hello", temperature=0.7)
    data = _data(dist.static_html())
    assert data["state"]["temperature"] == pytest.approx(0.7)
    assert "applyFilters" in data["esm"]

    panel = AccelPanelState(lm=tiny_llama, models={"tiny-llama": tiny_llama}, max_new_tokens=4)
    panel.run("baseline", "hi", 4)
    data = _data(panel.static_html())
    assert len(data["state"]["runs"]) == 1 and data["state"]["status"]["busy"] is False


def test_static_html_falls_back_to_the_reduced_copy():
    from dataclasses import dataclass

    from llmlab.results import Result, register_static

    @dataclass(repr=False)
    class Plain(Result):
        def to_html(self) -> str:
            return "<p>reduced</p>"

    @dataclass(repr=False)
    class Rich(Plain):
        pass

    register_static(Rich, lambda r: "<p>rich</p>")
    assert Plain().static_html() == "<p>reduced</p>"  # no renderer: the engine's own copy
    assert Rich().static_html() == "<p>rich</p>"
    assert "<p>rich</p>" in Rich()._repr_mimebundle_()["text/html"]


def test_a_large_reduced_copy_gives_way_to_a_note(tiny_llama, monkeypatch):
    import llmlab.widgets.base as base

    from llmlab.attention import attention

    result = attention(tiny_llama, "The cat sat on the mat.")
    monkeypatch.setattr(base, "FALLBACK_BYTES", 1_000)
    html = result.static_html()
    assert "<svg" not in html and "runs scripts" in html
    assert _data(html)["state"]["payload"]["tokens"] == result.tokens
