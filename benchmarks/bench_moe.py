"""MoE routing at scale: a 2,048-token text through a 16-layer, 64-expert, top-8 model
(OLMoE's routing shape, tiny random widths).

Prints, measured side by side in one run: the forward pass with and without capture hooks,
the payload the live view ships (packed bytes) against the same data as plain JSON lists, the
static HTML size, and — where Chromium is installed — how long the widget takes to draw each
tab in headless Chromium.

    python benchmarks/bench_moe.py [--tokens 2048] [--no-browser]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from llmlab.models.loaded import LoadedModel
from llmlab.models.tiny import tiny_tokenizer
from llmlab.models.tiny_moe import olmoe_scale_config
from llmlab.moe import capture_routing

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = (
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
    "Mixture-of-experts layers send each token to a few experts chosen by a router. "
)


def timed(fn, repeat: int = 3):
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, statistics.median(times)


def browser_render_ms(payload: dict) -> dict[str, float] | None:
    """Milliseconds to draw each tab of widgets/moe.js in headless Chromium (no JupyterLab)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return None
    js = (ROOT / "widgets" / "moe.js").read_text()
    css = (ROOT / "widgets" / "moe.css").read_text()
    module = base64.b64encode(js.encode()).decode()
    page_html = f"""<!doctype html><meta charset="utf-8"><style>{css}</style><div id=root></div>
<script type="module">
import view from "data:text/javascript;base64,{module}";
const payload = {json.dumps(payload)};
const t0 = performance.now();
view.render({{model: {{get: () => payload}}, el: document.getElementById("root")}});
window.times = {{"Token map": performance.now() - t0}};
const tabs = [...document.querySelectorAll(".llmlab-moe-tab")];
for (const tab of tabs.slice(1)) {{
  const t = performance.now(); tab.click(); window.times[tab.textContent] = performance.now() - t;
}}
window.done = true;
</script>"""
    path = ROOT / "build" / "bench_moe_page.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(page_html)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(path.as_uri())
        page.wait_for_function("window.done === true", timeout=120_000)
        times = page.evaluate("window.times")
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    config = olmoe_scale_config()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    lm = LoadedModel("olmoe-scale", "bench", model, tiny_tokenizer(), "cpu", "random weights", 0)
    text = (SAMPLE * (args.tokens // len(SAMPLE) + 1))[: args.tokens]
    ids = torch.tensor([tiny_tokenizer()(text).input_ids])
    print(
        f"model: {config.num_hidden_layers} layers, {config.num_experts} experts, "
        f"top-{config.num_experts_per_tok}, hidden {config.hidden_size}; "
        f"text: {ids.shape[1]} tokens"
    )

    def plain():
        with torch.inference_mode():
            model(ids)

    plain()  # warm-up: first calls pay for allocations
    _, t_plain = timed(plain)
    routing, t_capture = timed(lambda: capture_routing(lm, text))
    payload, t_payload = timed(routing.payload)
    html, t_html = timed(routing.to_html)
    packed = len(json.dumps(payload, separators=(",", ":")))
    as_lists = len(
        json.dumps(
            {"experts": routing.experts.tolist(), "weights": routing.weights.round(4).tolist()},
            separators=(",", ":"),
        )
    )
    choices = routing.experts.size
    print(f"forward, no hooks:        {t_plain * 1000:8.0f} ms")
    print(
        f"capture (forward + hooks): {t_capture * 1000:7.0f} ms  "
        f"({t_capture / t_plain:.2f}x the plain forward)"
    )
    print(f"payload():                {t_payload * 1000:8.0f} ms")
    print(
        f"payload size:             {packed / 1e6:8.2f} MB for {choices:,} (token, layer, rank) "
        f"choices = {packed / choices:.2f} bytes each"
    )
    print(
        f"  same choices as JSON lists: {as_lists / 1e6:.2f} MB "
        f"({as_lists / packed:.1f}x the packed payload)"
    )
    print(f"to_html() (static, offline): {t_html * 1000:5.0f} ms, {len(html) / 1e6:.2f} MB")
    if not args.no_browser:
        times = browser_render_ms(payload)
        if times is None:
            print("browser: chromium or playwright missing, render not timed")
        else:
            shown = ", ".join(f"{k} {v:.0f} ms" for k, v in times.items())
            print(f"widget draw in headless Chromium: {shown}")


if __name__ == "__main__":
    main()
