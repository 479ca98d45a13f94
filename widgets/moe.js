// MoE routing: tabs for the token × layer map, load, co-activation, same-expert runs and
// across-input views. Charts are plain SVG built here (no plotly.js to ship); token text is
// inserted with textContent only. Per-choice arrays arrive packed as bytes (base64).

const SVG = "http://www.w3.org/2000/svg";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs, title) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (title) {
    const t = document.createElementNS(SVG, "title");
    t.textContent = title;
    node.append(t);
  }
  return node;
}

function bytes(b64) {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// Unpack (layers, tokens, k) experts and weights.
export function unpack(p) {
  const raw = bytes(p.experts_b64);
  const experts = p.index_bytes === 2 ? new Uint16Array(raw.buffer) : raw;
  const q = bytes(p.weights_b64);
  const weights = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) weights[i] = (q[i] / 255) * p.weight_max;
  return { experts, weights, T: p.tokens.length, K: p.top_k, L: p.layers.length };
}

// P(j in top-k | i in top-k) for one layer, E × E (diagonal 0); mirrors stats.coactivation.
export function coactivation(d, layerPos, E) {
  const both = new Float64Array(E * E), count = new Float64Array(E);
  const base = layerPos * d.T * d.K;
  for (let t = 0; t < d.T; t++) {
    const row = base + t * d.K;
    for (let a = 0; a < d.K; a++) {
      const i = d.experts[row + a];
      count[i] += 1;
      for (let b = 0; b < d.K; b++) if (a !== b) both[i * E + d.experts[row + b]] += 1;
    }
  }
  for (let i = 0; i < E; i++) for (let j = 0; j < E; j++) both[i * E + j] /= count[i] || 1;
  return both;
}

function ratioColor(ratio) {
  const x = Math.max(-1, Math.min(1, Math.log2(Math.max(ratio, 1e-6)) / 2));
  if (x >= 0) { const c = Math.round(255 - 175 * x); return `rgb(255,${c},${c})`; }
  return `rgb(${Math.round(255 + 175 * x)},${Math.round(255 + 120 * x)},255)`;
}

function seqColor(v) {
  const p = Math.max(0, Math.min(1, v));
  return `rgb(${Math.round(255 - 222 * p)},${Math.round(255 - 160 * p)},${Math.round(255 - 60 * p)})`;
}

function visible(tok) {
  return tok.replace(/\n/g, "↵").replace(/\t/g, "→") || "∅";
}

function note(text) { return el("div", "llmlab-moe-sub", text); }

// ---- views -------------------------------------------------------------------------------

function mapView(p, d, state) {
  const box = el("div");
  const single = state.mapLayer !== "all";
  box.append(note(single
    ? `Each token coloured by its first-choice expert in layer ${state.mapLayer}. Hover for the top-${p.top_k}.`
    : `Each token's strip stacks the ${d.L} MoE layers (layer ${p.layers[0]} on top), coloured by ` +
      `first-choice expert. Hover for every layer's top-${p.top_k} experts and gate weights. ` +
      "Generated tokens are purple."));
  const tip = el("div", "llmlab-moe-tip");
  tip.style.display = "none";
  const pos = single ? p.layers.indexOf(Number(state.mapLayer)) : -1;
  for (const input of p.inputs) {
    if (p.inputs.length > 1) box.append(el("div", "llmlab-moe-input", input.name));
    const map = el("div", "llmlab-moe-map");
    const frag = document.createDocumentFragment();
    for (let t = input.start; t < input.start + input.n; t++) {
      const tok = el("span", "llmlab-moe-tok");
      if (t - input.start >= input.n_prompt) tok.classList.add("llmlab-moe-gen");
      const strip = el("span", "llmlab-moe-strip");
      if (single) {
        strip.style.background = p.palette[d.experts[(pos * d.T + t) * d.K]];
        strip.style.height = "6px";
      } else {
        const step = 100 / d.L;
        const stops = [];
        for (let l = 0; l < d.L; l++) {
          const c = p.palette[d.experts[(l * d.T + t) * d.K]];
          stops.push(`${c} ${(l * step).toFixed(2)}% ${((l + 1) * step).toFixed(2)}%`);
        }
        strip.style.background = `linear-gradient(${stops.join(",")})`;
      }
      tok.append(strip, el("span", "llmlab-moe-txt", visible(p.tokens[t])));
      tok.dataset.t = t;
      frag.append(tok);
    }
    map.append(frag);
    box.append(map);
  }
  // One delegated listener: cheap for thousands of tokens.
  box.addEventListener("mousemove", (ev) => {
    const tok = ev.target.closest(".llmlab-moe-tok");
    if (!tok) { tip.style.display = "none"; return; }
    const t = Number(tok.dataset.t);
    tip.replaceChildren(el("div", "llmlab-moe-tip-head", `${JSON.stringify(p.tokens[t])} · position ${t}`));
    const table = el("table");
    const layers = single ? [pos] : [...Array(d.L).keys()];
    for (const l of layers) {
      const tr = el("tr");
      tr.append(el("td", null, `L${p.layers[l]}`));
      for (let k = 0; k < d.K; k++) {
        const i = (l * d.T + t) * d.K + k;
        const cell = el("td", null, `e${d.experts[i]} ${d.weights[i].toFixed(2)}`);
        cell.style.borderLeft = `4px solid ${p.palette[d.experts[i]]}`;
        tr.append(cell);
      }
      table.append(tr);
    }
    tip.append(table);
    tip.style.display = "block";
    // Fixed position, so the scrolling body never clips the tooltip.
    tip.style.left = `${Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 8)}px`;
    const below = ev.clientY + 16 + tip.offsetHeight < window.innerHeight;
    tip.style.top = `${below ? ev.clientY + 16 : Math.max(ev.clientY - 8 - tip.offsetHeight, 0)}px`;
  });
  box.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  box.append(tip);
  return box;
}

function barChart(values, opts) {
  // values: [{v, color, title, label}], optional overlay values and dashed reference lines.
  // Reference lines are labelled in a margin right of the bars, so labels never cover a bar.
  const lines = opts.lines || [];
  const margin = lines.length ? 118 : 0;
  const W = (opts.width || 640) + margin, H = opts.height || 150, plotW = W - margin;
  const peak = Math.max(...values.map((x) => x.v), ...lines.map((x) => x.v), 1e-9) * 1.12;
  const y = (v) => H - 14 - ((H - 24) * v) / peak;
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  const bw = plotW / values.length;
  values.forEach((x, i) => {
    s.append(svg("rect", { x: i * bw + 0.5, y: y(x.v), width: Math.max(bw - 1, 1), height: y(0) - y(x.v),
      fill: x.color, opacity: x.opacity ?? 1 }, x.title));
    if (x.over !== undefined) {
      s.append(svg("rect", { x: i * bw + 0.5, y: y(x.over), width: Math.max(bw - 1, 1),
        height: y(0) - y(x.over), fill: x.color }, x.title));
    }
    if (x.label) {
      const label = svg("text", { x: i * bw + bw / 2, y: H - 2, "text-anchor": "middle" });
      label.textContent = x.label;
      s.append(label);
    }
  });
  let lastY = -Infinity;
  for (const line of [...lines].sort((a, b) => b.v - a.v)) {
    s.append(svg("line", { x1: 0, x2: plotW, y1: y(line.v), y2: y(line.v), stroke: line.color, "stroke-dasharray": line.dash }));
    const ty = Math.max(y(line.v) + 3, lastY + 11); // equal shares (k = 1) would stack labels
    lastY = ty;
    const t = svg("text", { x: plotW + 4, y: ty });
    t.textContent = line.label;
    s.append(t);
  }
  if (opts.xTitle) {
    const t = svg("text", { x: plotW / 2, y: H + 10, "text-anchor": "middle" });
    t.textContent = opts.xTitle;
    s.setAttribute("height", H + 14);
    s.setAttribute("viewBox", `0 0 ${W} ${H + 14}`);
    s.append(t);
  }
  return s;
}

// Label every expert whose number fits in its px-wide column, else every few.
const expertTick = (e, E, px) =>
  e % Math.max(Math.ceil(E / 32), Math.ceil((E > 100 ? 20 : E > 10 ? 15 : 8) / px)) === 0;

function loadView(p, d, state) {
  const box = el("div");
  const pos = p.layers.indexOf(state.layer), E = p.n_experts, T = d.T, K = p.top_k;
  box.append(note(`Layer ${state.layer}: share of tokens with the expert in their top-${K} (pale) and ` +
    "as first choice (solid). Dashed: uniform shares."));
  box.append(barChart(p.load_topk[pos].map((c, e) => ({
    v: c / T, over: p.load_top1[pos][e] / T, color: p.palette[e], opacity: 0.45,
    title: `expert ${e}: top-${K} ${c} tokens (${(c / T).toFixed(3)}), first choice ${p.load_top1[pos][e]}`,
    label: expertTick(e, E, 640 / E) ? String(e) : undefined,
  })), { xTitle: "expert", lines: [
    { v: K / E, color: "#cf222e", dash: "4 3", label: `uniform k/E = ${(K / E).toFixed(3)}` },
    { v: 1 / E, color: "#1f2328", dash: "2 3", label: `1/E = ${(1 / E).toFixed(3)}` },
  ] }));
  box.append(note("Every layer: top-k load ÷ uniform (red above, blue below). Click a row to open that layer."));
  const cell = Math.max(4, Math.min(14, Math.floor(600 / E))), left = 34, top = 12;
  const heat = svg("svg", { width: left + E * cell, height: top + d.L * cell });
  for (let e = 0; e < E; e++) {
    if (!expertTick(e, E, cell)) continue;
    const t = svg("text", { x: left + e * cell + cell / 2, y: top - 2, "text-anchor": "middle" });
    t.textContent = String(e);
    heat.append(t);
  }
  const rows = svg("g", { transform: `translate(0 ${top})` });
  heat.append(rows);
  p.layers.forEach((layer, l) => {
    const label = svg("text", { x: 0, y: l * cell + cell - 2 });
    label.textContent = `L${layer}`;
    rows.append(label);
    for (let e = 0; e < E; e++) {
      const ratio = p.load_topk[l][e] / (T * K / E);
      const r = svg("rect", { x: left + e * cell, y: l * cell, width: cell, height: cell, fill: ratioColor(ratio) },
        `layer ${layer}, expert ${e}: ${ratio.toFixed(2)}× uniform`);
      r.style.cursor = "pointer";
      r.addEventListener("click", () => state.setLayer(layer));
      rows.append(r);
    }
  });
  box.append(heat);
  const table = el("table");
  const head = el("tr");
  for (const h of ["layer", "CV top-1", "max/mean top-1", `CV top-${K}`, `max/mean top-${K}`]) head.append(el("th", null, h));
  table.append(head);
  p.layers.forEach((layer, l) => {
    const tr = el("tr", layer === state.layer ? "llmlab-moe-current" : null);
    for (const v of [layer, p.cv_top1[l], p.max_mean_top1[l], p.cv_topk[l], p.max_mean_topk[l]]) {
      tr.append(el("td", null, typeof v === "number" && v % 1 ? v.toFixed(2) : String(v)));
    }
    table.append(tr);
  });
  box.append(table);
  return box;
}

function coactView(p, d, state) {
  const box = el("div");
  const E = p.n_experts, K = p.top_k;
  const P = coactivation(d, p.layers.indexOf(state.layer), E);
  let top = 0;
  for (const v of P) top = Math.max(top, v);
  box.append(note(`Layer ${state.layer}: row i, column j = P(j in top-${K} | i in top-${K}); ` +
    `darkest ${top.toFixed(2)}; independent choices give about ${((K - 1) / Math.max(E - 1, 1)).toFixed(2)}.`));
  const cell = Math.max(4, Math.min(16, Math.floor(480 / E)));
  // Expert numbers on both axes (every one, or every few when there are many experts).
  const left = 40, head = 34;
  const s = svg("svg", { width: left + E * cell, height: head + E * cell });
  const caption = svg("text", { x: left, y: 9 });
  caption.textContent = "expert j (also chosen) →";
  const side = svg("text", { x: 0, y: 21 });
  side.textContent = "expert i ↓";
  s.append(caption, side);
  for (let e = 0; e < E; e++) {
    if (!expertTick(e, E, cell)) continue;
    const c = svg("text", { x: left + e * cell + cell / 2, y: head - 4, "text-anchor": "middle" });
    c.textContent = String(e);
    const r = svg("text", { x: left - 4, y: head + e * cell + cell / 2 + 3, "text-anchor": "end" });
    r.textContent = String(e);
    s.append(c, r);
  }
  const grid = svg("g", { transform: `translate(${left} ${head})` });
  grid.append(svg("rect", { x: 0, y: 0, width: E * cell, height: E * cell, fill: "none", stroke: "#d0d7de" }));
  for (let i = 0; i < E; i++) for (let j = 0; j < E; j++) {
    const v = P[i * E + j];
    if (v > 0) grid.append(svg("rect", { x: j * cell, y: i * cell, width: cell, height: cell, fill: seqColor(v / (top || 1)) },
      `P(expert ${j} | expert ${i}) = ${v.toFixed(2)}`));
  }
  s.append(grid);
  box.append(s);
  return box;
}

function runsView(p) {
  const box = el("div");
  const E = p.n_experts;
  box.append(note("Share of consecutive tokens whose first choice stays the same (blue) against the same " +
    "tokens in random order (grey) and uniform 1/E (dashed)."));
  const values = [];
  p.layers.forEach((layer, l) => {
    values.push({ v: p.runs_observed[l] ?? 0, color: "#0969da", label: `L${layer}`,
      title: `layer ${layer}: ${(p.runs_observed[l] ?? 0).toFixed(3)} keep their first choice` });
    values.push({ v: p.runs_shuffled[l], color: "#afb8c1",
      title: `layer ${layer}: random order gives ${p.runs_shuffled[l].toFixed(3)}` });
  });
  box.append(barChart(values, { height: 140, lines: [{ v: 1 / E, color: "#cf222e", dash: "4 3", label: `1/E = ${(1 / E).toFixed(3)}` }] }));
  return box;
}

function acrossView(p, d, state) {
  const box = el("div");
  const pos = p.layers.indexOf(state.layer), E = p.n_experts;
  if (p.input_shares.length) {
    box.append(note(`Layer ${state.layer}: each input's share of top-${p.top_k} picks per expert ÷ uniform 1/E.`));
    const cell = Math.max(4, Math.min(14, Math.floor(560 / E))), left = 110;
    const s = svg("svg", { width: left + E * cell, height: p.inputs.length * 16 });
    p.inputs.forEach((input, i) => {
      const label = svg("text", { x: 0, y: i * 16 + 12 });
      label.textContent = input.name.slice(0, 18);
      s.append(label);
      for (let e = 0; e < E; e++) {
        const share = p.input_shares[i][pos][e];
        s.append(svg("rect", { x: left + e * cell, y: i * 16, width: cell, height: 15, fill: ratioColor(share * E) },
          `${input.name}, expert ${e}: share ${share.toFixed(3)} (${(share * E).toFixed(2)}× uniform)`));
      }
    });
    box.append(s);
  } else {
    box.append(note("Give several texts (--texts a.txt b.txt, or a list / dict in Python) to compare inputs."));
  }
  box.append(note("Vocabulary specialization: share of a token id's occurrences (ids seen twice or more) " +
    "routed first to its most frequent expert (purple), against ids shuffled over positions (grey)."));
  const values = [];
  p.layers.forEach((layer, l) => {
    values.push({ v: p.vocab_mean[l] ?? 0, color: "#8250df", label: `L${layer}`, title: `layer ${layer}: ${((p.vocab_mean[l] ?? 0) * 100).toFixed(1)}%` });
    values.push({ v: p.vocab_baseline[l] ?? 0, color: "#afb8c1", title: `layer ${layer}, shuffled ids: ${((p.vocab_baseline[l] ?? 0) * 100).toFixed(1)}%` });
  });
  box.append(barChart(values, { height: 130 }));
  const table = el("table");
  const head = el("tr");
  for (const h of ["token", "count", "expert", "share"]) head.append(el("th", null, h));
  table.append(head);
  for (const [tok, count, expert, share] of p.vocab_top[pos]) {
    const tr = el("tr");
    tr.append(el("td", "llmlab-moe-code", JSON.stringify(tok)), el("td", null, String(count)),
      el("td", null, `e${expert}`), el("td", null, share.toFixed(2)));
    tr.children[2].style.borderLeft = `4px solid ${p.palette[expert]}`;
    table.append(tr);
  }
  box.append(note(`Most specialised token ids in layer ${state.layer}:`), table);
  return box;
}

// Specialisation: how far routing is from chance, beside the untrained router (same
// architecture, init seed). Figures come computed from the engine (llmlab.moe.stats).
function specView(p, d, state) {
  const box = el("div");
  const sp = p.specialisation || {};
  const hasBase = Array.isArray(sp.mi_class_untrained);
  box.append(note("Mutual information (bits) between each token's first-choice expert and its class " +
    "(code / prose / digit / punctuation / whitespace): blue trained" +
    (hasBase ? `, grey untrained (${p.untrained_label})` : " (no untrained comparison for this model)") +
    "; dashed: the same with classes shuffled over tokens (chance)."));
  const values = [];
  p.layers.forEach((layer, l) => {
    values.push({ v: sp.mi_class[l] ?? 0, color: "#0969da", label: `L${layer}`,
      title: `layer ${layer}: MI(class; expert) ${(sp.mi_class[l] ?? 0).toFixed(3)} bits` });
    if (hasBase) values.push({ v: sp.mi_class_untrained[l] ?? 0, color: "#afb8c1",
      title: `layer ${layer}, untrained: ${(sp.mi_class_untrained[l] ?? 0).toFixed(3)} bits` });
  });
  const chance = Math.max(...sp.mi_class_chance.map((x) => x ?? 0));
  box.append(barChart(values, { height: 140, lines: [{ v: chance, color: "#cf222e", dash: "4 3",
    label: `chance ≤ ${chance.toFixed(3)}` }] }));
  const table = el("table");
  const cols = [["layer", null], ["MI class", "mi_class"], ["untrained", "mi_class_untrained"],
    ["chance", "mi_class_chance"], ["MI token", "mi_token"], ["untrained", "mi_token_untrained"],
    ["chance", "mi_token_chance"], ["balance", "balance"], ["untrained", "balance_untrained"]]
    .filter(([, key]) => key === null || Array.isArray(sp[key]));
  const head = el("tr");
  for (const [h] of cols) head.append(el("th", null, h));
  table.append(head);
  p.layers.forEach((layer, l) => {
    const tr = el("tr");
    if (layer === state.layer) tr.className = "llmlab-moe-current";
    for (const [, key] of cols) {
      const v = key === null ? layer : sp[key][l];
      tr.append(el("td", null, key === null ? String(v) : v === null ? "–" : v.toFixed(3)));
    }
    table.append(tr);
  });
  box.append(table, note(`Balance: entropy of the top-${p.top_k} load ÷ log E (1 = every expert equally used).`));
  // Where each class's tokens go first, in the chosen layer.
  const pos = p.layers.indexOf(state.layer), E = p.n_experts;
  const counts = p.class_names.map(() => new Float64Array(E));
  for (let t = 0; t < d.T; t++) counts[p.classes[t]][d.experts[(pos * d.T + t) * d.K]] += 1;
  box.append(note(`Layer ${state.layer}: where each class's tokens go first (a bar is 100% of the class).`));
  p.class_names.forEach((name, c) => {
    const n = counts[c].reduce((a, b) => a + b, 0);
    if (!n) return;
    const row = el("div", "llmlab-moe-classrow");
    row.append(el("span", "llmlab-moe-classname", `${name} (${n})`));
    const s = svg("svg", { width: 300, height: 12 });
    let x = 0;
    for (let e = 0; e < E; e++) {
      const w = (counts[c][e] / n) * 300;
      if (w > 0) s.append(svg("rect", { x, y: 0, width: w, height: 12, fill: p.palette[e] },
        `${name}: ${((counts[c][e] / n) * 100).toFixed(0)}% to expert ${e}`));
      x += w;
    }
    row.append(s);
    box.append(row);
  });
  return box;
}

const TABS = [
  ["Token map", mapView],
  ["Load", loadView],
  ["Co-activation", coactView],
  ["Same-expert runs", runsView],
  ["Across inputs", acrossView],
  ["Specialisation", specView],
];

function render({ model, el: root }) {
  const p = model.get("payload");
  const d = unpack(p);
  const box = el("div", "llmlab-moe");
  const head = el("div", "llmlab-moe-head");
  head.append(el("b", null, "MoE routing"),
    el("span", null, ` · ${p.model} · ${p.family}: ${p.n_experts} experts, top-${p.top_k}, ` +
      `${p.layers.length} of ${p.n_layers} layers sparse · ${d.T} tokens`));
  box.append(head, note(`rule: ${p.rule}`));
  for (const n of p.notes) box.append(el("div", "llmlab-moe-warn", n));

  const bar = el("div", "llmlab-moe-tabs");
  const layerSelect = el("select", "llmlab-moe-layer");
  layerSelect.append(...p.layers.map((l) => { const o = el("option", null, `layer ${l}`); o.value = l; return o; }));
  const mapSelect = el("select", "llmlab-moe-layer");
  const all = el("option", null, "all MoE layers");
  all.value = "all";
  mapSelect.append(all, ...p.layers.map((l) => { const o = el("option", null, `layer ${l}`); o.value = l; return o; }));
  const body = el("div", "llmlab-moe-body");
  const state = { tab: 0, layer: p.focus_layer, mapLayer: "all", setLayer: null };
  layerSelect.value = String(state.layer);

  const buttons = TABS.map(([name], i) => {
    const b = el("button", "llmlab-moe-tab", name);
    b.addEventListener("click", () => { state.tab = i; draw(); });
    return b;
  });
  bar.append(...buttons, el("span", "llmlab-moe-spacer"), mapSelect, layerSelect);
  function draw() {
    buttons.forEach((b, i) => b.classList.toggle("llmlab-moe-active", i === state.tab));
    mapSelect.style.display = state.tab === 0 ? "" : "none";
    layerSelect.style.display = [1, 2, 4, 5].includes(state.tab) ? "" : "none";
    body.replaceChildren(TABS[state.tab][1](p, d, state));
  }
  // One chosen layer for every tab: picking a layer in the token map, load, co-activation or
  // across-inputs tab keeps it when you switch tabs (the map's "all" stays a map-only mode).
  state.setLayer = (layer) => {
    state.layer = layer;
    layerSelect.value = String(layer);
    if (state.mapLayer !== "all") { state.mapLayer = String(layer); mapSelect.value = String(layer); }
    draw();
  };
  layerSelect.addEventListener("change", () => state.setLayer(Number(layerSelect.value)));
  mapSelect.addEventListener("change", () => {
    state.mapLayer = mapSelect.value;
    if (state.mapLayer !== "all") state.setLayer(Number(state.mapLayer));
    else draw();
  });
  box.append(bar, body);
  root.append(box);
  draw();
}

export default { render };
