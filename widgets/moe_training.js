// Watching a router learn: the demo MoE's loss curve, and a fixed probe text's routing
// (token × layer, coloured by first-choice expert) redrawn at every snapshot, with the expert
// load per layer and MI(class; expert). A step slider replays earlier snapshots; Stop asks
// the kernel to end the run after the current step (finished steps are kept).
// Token text is inserted with textContent only.

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

function visible(token) {
  return token.replace(/\n/g, "↵").replace(/\t/g, "→") || "∅";
}

function lossCurve(p, marker) {
  const W = 640, H = 150, left = 36, bottom = 18;
  const box = svg("svg", { width: W, height: H, class: "llmlab-moet-loss" });
  const L = p.losses;
  if (!L.length) {
    box.append(svg("text", { x: left, y: H / 2 }, null));
    box.lastChild.textContent = "waiting for the first step…";
    return box;
  }
  const top = Math.max(...L), low = Math.min(...L), span = top - low || 1;
  const n = Math.max(p.steps - 1, 1);
  const x = (i) => left + ((W - left - 8) * i) / n;
  const y = (v) => 8 + ((H - bottom - 8) * (top - v)) / span;
  const pts = L.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  box.append(svg("polyline", { points: pts, fill: "none", stroke: "#0969da", "stroke-width": 1.4 }));
  const labels = [[4, 14, top.toFixed(2)], [4, H - bottom, low.toFixed(2)],
    [left, H - 3, "step 1"], [W - 8, H - 3, `step ${p.steps}`]];
  for (const [lx, ly, text] of labels) {
    const t = svg("text", { x: lx, y: ly, "text-anchor": lx > W / 2 ? "end" : "start" });
    t.textContent = text;
    box.append(t);
  }
  if (marker > 0) {
    box.append(svg("line", { x1: x(marker - 1), x2: x(marker - 1), y1: 4, y2: H - bottom,
      stroke: "#cf222e", "stroke-dasharray": "3 3" }, `snapshot at step ${marker}`));
  }
  return box;
}

function probeMap(p, snap) {
  const L = p.layers.length, T = p.tokens.length;
  const first = bytes(snap.first_b64);
  const wrap = el("div", "llmlab-moet-map");
  for (let t = 0; t < T; t++) {
    const tok = el("span", "llmlab-moet-tok");
    const lines = [];
    for (let l = 0; l < L; l++) {
      const e = first[l * T + t];
      const band = el("span", "llmlab-moet-band");
      band.style.background = p.palette[e];
      tok.append(band);
      lines.push(`L${p.layers[l]}: expert ${e}`);
    }
    tok.append(el("span", "llmlab-moet-txt", visible(p.tokens[t])));
    tok.title = `${JSON.stringify(p.tokens[t])} (${p.class_names[p.classes[t]]})\n${lines.join("\n")}`;
    wrap.append(tok);
  }
  return wrap;
}

function loadGrid(p, snap) {
  const E = p.n_experts, cell = 22, left = 30;
  const box = svg("svg", { width: left + E * cell + 8, height: p.layers.length * 16 + 16 });
  p.layers.forEach((layer, l) => {
    const counts = snap.load[l], total = counts.reduce((a, b) => a + b, 0) || 1;
    const lab = svg("text", { x: 0, y: l * 16 + 12 });
    lab.textContent = `L${layer}`;
    box.append(lab);
    counts.forEach((c, e) => {
      const ratio = (c / total) * E;  // 1 = uniform share
      const shade = Math.max(0.08, Math.min(1, ratio / 3));
      box.append(svg("rect", { x: left + e * cell, y: l * 16, width: cell - 2, height: 14,
        fill: p.palette[e], "fill-opacity": shade.toFixed(2) },
        `layer ${layer}, expert ${e}: ${(c / total * 100).toFixed(1)}% of top-${p.top_k} picks (${ratio.toFixed(2)}× uniform)`));
    });
  });
  for (let e = 0; e < E; e++) {
    const t = svg("text", { x: left + e * cell + (cell - 2) / 2, y: p.layers.length * 16 + 12,
      "text-anchor": "middle" });
    t.textContent = `e${e}`;
    box.append(t);
  }
  return box;
}

function miRow(p, snap) {
  const first = p.snapshots[0];
  const table = el("table");
  const head = el("tr");
  for (const h of ["layer", "MI(class; expert) now", "before training"]) head.append(el("th", null, h));
  table.append(head);
  p.layers.forEach((layer, l) => {
    const tr = el("tr");
    tr.append(el("td", null, String(layer)));
    tr.append(el("td", null, snap.mi_class[l].toFixed(3)));
    tr.append(el("td", null, first.mi_class[l].toFixed(3)));
    table.append(tr);
  });
  return table;
}

function render({ model, el: root }) {
  const view = el("div", "llmlab-moet");
  root.append(view);
  const state = { follow: true, index: 0 };

  function draw() {
    const p = model.get("payload");
    const snaps = p.snapshots || [];
    if (state.follow || state.index >= snaps.length) state.index = Math.max(snaps.length - 1, 0);
    const snap = snaps[state.index];
    const head = el("div", "llmlab-moet-head");
    const last = snaps.length ? snaps[snaps.length - 1] : null;
    head.append(el("b", null, "MoE demo training"));
    head.append(el("span", "llmlab-moet-status",
      ` · ${p.status} · step ${last ? last.step : 0}/${p.steps} · ${p.seconds} s`));
    const stop = el("button", "llmlab-moet-stop", p.status === "running" ? "Stop" : "Stopped");
    if (p.status !== "running") stop.textContent = p.status === "done" ? "Done" : p.status;
    stop.disabled = p.status !== "running";
    stop.title = "end the run after this step; the finished steps are kept";
    stop.addEventListener("click", () => {
      stop.disabled = true;
      stop.textContent = "Stopping…";
      model.send({ type: "stop" });
    });
    head.append(stop);
    const parts = [head];
    if (p.error) parts.push(el("div", "llmlab-moet-warn", p.error));
    parts.push(el("div", "llmlab-moet-sub", "Training loss per step (nats per token, full vocabulary)"));
    parts.push(lossCurve(p, snap ? snap.step : 0));
    if (snap) {
      const row = el("div", "llmlab-moet-row");
      const slider = el("input", "llmlab-moet-slider");
      slider.type = "range";
      slider.min = 0;
      slider.max = Math.max(snaps.length - 1, 0);
      slider.value = state.index;
      slider.addEventListener("input", () => {
        state.index = Number(slider.value);
        state.follow = state.index === snaps.length - 1;
        draw();
      });
      row.append(el("span", null, `probe routing at step ${snap.step} (loss ${snap.loss.toFixed(2)}) `), slider,
        el("span", "llmlab-moet-sub", state.follow ? " following the run" : " (drag right to follow)"));
      parts.push(row);
      parts.push(el("div", "llmlab-moet-sub",
        "Each token: one band per layer (first on top), coloured by its first-choice expert; hover for details."));
      parts.push(probeMap(p, snap));
      const bottom = el("div", "llmlab-moet-cols");
      const left = el("div");
      left.append(el("div", "llmlab-moet-sub", `Expert load per layer (share of top-${p.top_k} picks; darker = more)`),
        loadGrid(p, snap));
      const right = el("div");
      right.append(el("div", "llmlab-moet-sub",
        `How much the first choice says about a token's class (bits, on ${p.measured_on})`),
        miRow(p, snap));
      bottom.append(left, right);
      parts.push(bottom);
    }
    view.replaceChildren(...parts);
  }

  model.on("change:payload", draw);
  draw();
}

export default { render };
