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
    assert "<p>reduced</p>" in html
    # The view's CSS goes into its shadow root only: none of it styles the host page.
    assert _data(html)["css"] == ".a{color:red}" and "<style>.a{color:red}" not in html
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


class _Handle:
    """Stands in for IPython's DisplayHandle: records the bundles sent to the display."""

    def __init__(self, data, metadata):
        self.sent = [(data, metadata)]

    def update(self, data, metadata=None, raw=False):
        assert raw
        self.sent.append((data, metadata))


def _slow_view(monkeypatch):
    """A view whose offline copy waits for ``release``; ``display`` records a fake handle."""
    import threading

    import IPython.display
    from llmlab.widgets.base import LabWidget

    class Slow(LabWidget):
        _esm = "export default { render() {} }"
        started, release = threading.Event(), threading.Event()

        @classmethod
        def render_static(cls, result, state=None):
            cls.started.set()
            assert cls.release.wait(30)
            return f"<p>copy of {state['payload']['n']}</p>"

    class Result:
        def payload(self):
            return {"n": 1}

    handles = []

    def display(data, metadata=None, raw=False, display_id=None):
        assert raw and display_id
        handles.append(_Handle(data, metadata))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    return Slow(Result()), handles


def _drain():
    from llmlab.widgets import base

    base._BUILDER.submit(lambda: None).result(timeout=30)


WIDGET = "application/vnd.jupyter.widget-view+json"


def _copy(data) -> str:
    """The offline copy inside a copy output's bundle (what copy_host.js shows or hides)."""
    assert WIDGET not in data
    match = re.fullmatch(
        r'<div class="llmlab-copy" id="llmlab-copy-[0-9a-f]+" data-llmlab-for="([0-9a-f]+)">'
        r"(.*)<script type=\"module\">.*settleCopy\(.*</script></div>",
        data["text/html"],
        re.S,
    )
    assert match, data["text/html"][:300]
    return match.group(2)


def test_a_view_is_two_outputs_its_widget_then_its_offline_copy(monkeypatch):
    # JupyterLab draws an output holding a widget with the widget renderer only (never its
    # text/html): a reopened notebook showed "model not found". The copy is an output of its
    # own, linked to the live view by the view's id.
    monkeypatch.delenv("LLMLAB_OFFLINE_COPY", raising=False)
    view, handles = _slow_view(monkeypatch)
    view.release.set()
    live = view.show()
    _drain()
    live_out, copy_out = handles
    assert live is live_out
    ((data, metadata),) = live_out.sent
    assert WIDGET in data and "text/html" not in data
    assert data[WIDGET]["model_id"] == view._llmlab_id == view.model_id
    assert metadata["llmlab"] == {"offline_copy_follows": True}  # the report skips it
    ((copy, _),) = copy_out.sent
    assert f'data-llmlab-for="{view.model_id}"' in copy["text/html"]
    # In a kernel anywidget runs live_host.js, which runs the view's own module.
    assert "kernelBehind" in view._esm and view._view_esm == "export default { render() {} }"


def test_show_returns_before_the_offline_copy_is_built(monkeypatch):
    monkeypatch.delenv("LLMLAB_OFFLINE_COPY", raising=False)
    view, handles = _slow_view(monkeypatch)
    handle = view.show()
    # The live view is on the page while its copy is still being built.
    assert view.started.wait(30) and not view.release.is_set()
    live, copy = handles
    ((data, _),) = handle.sent
    assert handle is live and WIDGET in data and "text/html" not in data
    assert "not built before its kernel ended" in _copy(copy.sent[0][0])  # placeholder
    view.release.set()
    _drain()
    assert _copy(copy.sent[-1][0]) == "<p>copy of 1</p>"
    assert len(live.sent) == 1  # the live view is not drawn again
    # A later refresh (e.g. after the accel panel's run) sends the new state the same way.
    view.payload = {"n": 2}
    view.refresh_offline_copy()
    _drain()
    assert _copy(copy.sent[-1][0]) == "<p>copy of 2</p>" and len(handles) == 2


def test_a_quick_copy_rides_in_the_first_message(monkeypatch):
    # No update follows.
    monkeypatch.delenv("LLMLAB_OFFLINE_COPY", raising=False)
    view, handles = _slow_view(monkeypatch)
    view.release.set()
    view.show()
    _drain()
    live, copy = handles
    ((data, _),) = live.sent
    assert WIDGET in data
    ((data, _),) = copy.sent
    assert _copy(data) == "<p>copy of 1</p>"


def test_headless_runs_build_the_copy_before_the_cell_ends(monkeypatch):
    from llmlab.widgets import base

    monkeypatch.setenv(base.OFFLINE_COPY_ENV, "now")
    monkeypatch.setattr(base, "OFFLINE_COPY_WAIT_S", 0)
    view, handles = _slow_view(monkeypatch)
    view.release.set()
    view.show()
    _, copy = handles
    ((data, _),) = copy.sent
    assert _copy(data) == "<p>copy of 1</p>"
    view.payload = {"n": 2}
    assert view.refresh_offline_copy() is None
    assert _copy(copy.sent[-1][0]) == "<p>copy of 2</p>"


def test_a_failed_copy_leaves_a_note_and_the_live_view(monkeypatch):
    monkeypatch.delenv("LLMLAB_OFFLINE_COPY", raising=False)
    view, handles = _slow_view(monkeypatch)

    def fail(result, state=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(type(view), "render_static", staticmethod(fail))
    view.show()
    _drain()
    live, copy = handles
    assert WIDGET in live.sent[-1][0]
    assert "No offline copy: RuntimeError: out of memory" in _copy(copy.sent[-1][0])
