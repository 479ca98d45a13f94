// Next-token distribution: bars for the most likely tokens, reshaped live by sliders.
// All model text is inserted with textContent, never as markup.

// Mirrors NextTokenDistribution.reshape in llmlab/generation/next_token.py: recomputed here so
// the sliders respond instantly, without a round trip to the kernel.
export function applyFilters(p, temperature, topK, topP) {
  const t = Math.max(temperature, 1e-6);
  const peak = p.logits[0] / t;
  const weights = p.logits.map((x) => Math.exp(x / t - peak));
  let tail = 0;
  p.tail_centers.forEach((c, i) => { tail += p.tail_counts[i] * Math.exp(c / t - peak); });
  const total = weights.reduce((a, b) => a + b, 0) + tail;
  const probs = weights.map((w) => w / total);
  let kept = probs.map((_, i) => !topK || i < topK);
  if (topP < 1) {
    let cumulative = 0;
    kept = kept.map((k, i) => { const keep = k && cumulative < topP; cumulative += probs[i]; return keep; });
  }
  const tailKept = !topK && topP >= 1;
  const keptMass = probs.reduce((a, q, i) => a + (kept[i] ? q : 0), 0);
  const norm = keptMass + (tailKept ? tail / total : 0);
  return {
    probs: probs.map((q, i) => (kept[i] ? q / norm : 0)),
    kept,
    tailMass: tail / total,
    nKept: tailKept ? p.vocab_size : kept.filter(Boolean).length,
  };
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function slider(label, min, max, step, value, format) {
  const wrap = el("label", "llmlab-nt-slider");
  const name = el("span", "llmlab-nt-slider-name", label);
  const input = el("input");
  Object.assign(input, { type: "range", min, max, step, value });
  const shown = el("span", "llmlab-nt-slider-value", format(Number(value)));
  input.addEventListener("input", () => { shown.textContent = format(Number(input.value)); });
  wrap.append(name, input, shown);
  return { wrap, input };
}

function visibleToken(s) {
  return s.replace(/\n/g, "↵").replace(/ /g, "·");
}

function render({ model, el: root }) {
  const p = model.get("payload");
  const box = el("div", "llmlab-nt");
  const head = el("div", "llmlab-nt-head");
  head.append(el("b", null, "Next token after "), el("span", "llmlab-nt-prompt", (p.prompt.length > 80 ? "…" : "") + p.prompt.slice(-80)));
  const controls = el("div", "llmlab-nt-controls");
  const temp = slider("temperature", 0.05, 2.5, 0.05, model.get("temperature"), (v) => v.toFixed(2));
  const topK = slider("top-k", 0, 50, 1, model.get("top_k"), (v) => (v === 0 ? "off" : String(v)));
  const topP = slider("top-p", 0.05, 1, 0.01, model.get("top_p"), (v) => (v >= 1 ? "off" : v.toFixed(2)));
  controls.append(temp.wrap, topK.wrap, topP.wrap);
  const legend = el("div", "llmlab-nt-legend",
    "grey: probability at T=1 · blue: after temperature and cuts · faded: cut away");
  const rows = el("div", "llmlab-nt-rows");
  const footer = el("div", "llmlab-nt-footer");
  box.append(head, controls, legend, rows, footer);
  root.append(box);

  const base = applyFilters(p, 1, 0, 1).probs;
  const bars = [];
  for (let i = 0; i < p.shown; i++) {
    const row = el("div", "llmlab-nt-row");
    const tok = el("code", "llmlab-nt-token", visibleToken(p.tokens[i]));
    tok.title = JSON.stringify(p.tokens[i]);
    const track = el("div", "llmlab-nt-track");
    const ref = el("div", "llmlab-nt-ref");
    const now = el("div", "llmlab-nt-now");
    track.append(ref, now);
    const value = el("span", "llmlab-nt-value");
    row.append(tok, track, value);
    rows.append(row);
    bars.push({ row, ref, now, value });
  }

  function update() {
    const t = Number(temp.input.value), k = Number(topK.input.value), tp = Number(topP.input.value);
    const r = applyFilters(p, t, k, tp);
    const peak = Math.max(...base.slice(0, p.shown), ...r.probs.slice(0, p.shown), 1e-9);
    bars.forEach((b, i) => {
      b.ref.style.width = (100 * base[i] / peak).toFixed(1) + "%";
      b.now.style.width = (100 * r.probs[i] / peak).toFixed(1) + "%";
      b.row.classList.toggle("llmlab-nt-cut", !r.kept[i]);
      b.value.textContent = `${base[i].toFixed(3)} → ${r.probs[i].toFixed(3)}`;
    });
    footer.textContent = `${r.nKept.toLocaleString()} of ${p.vocab_size.toLocaleString()} tokens can be sampled · ` +
      `mass outside the top ${p.logits.length} at this temperature: ${(100 * r.tailMass).toFixed(2)}%` +
      (p.note ? ` · ${p.note}` : "");
  }
  for (const [s, name, cast] of [[temp, "temperature", Number], [topK, "top_k", (v) => Math.round(Number(v))], [topP, "top_p", Number]]) {
    s.input.addEventListener("input", () => {
      update();
      model.set(name, cast(s.input.value));
      model.save_changes();
    });
  }
  update();
}

export default { render };
