// Speculative decoding made visible: the generated text as the verification steps built it.
// Green: drafted and accepted; red, struck: drafted and rejected; blue: the target's own token
// (the replacement of the first rejected draft, or the bonus after a fully accepted draft).
// Below: acceptance by draft position. Token text is inserted with textContent only.
// The accelerations panel loads this same module (its source travels in the panel's state).

const SVG = "http://www.w3.org/2000/svg";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Rejected drafts are shown inline: make whitespace visible so they cannot reflow the text.
const visible = (t) => t.replace(/\n/g, "↵").replace(/\t/g, "→");

function positionChart(rows) {
  const W = 520, H = 160, left = 34, bottom = 30, top = 28;
  // Scales down with its box (the accel panel's run column is narrower than W).
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "llmlab-sd-chart" });
  s.style.width = "100%";
  s.style.maxWidth = `${W}px`;
  const plotW = W - left - 8, plotH = H - top - bottom;
  const bw = plotW / Math.max(rows.length, 1);
  for (const v of [0, 0.5, 1]) {
    const y = top + plotH * (1 - v);
    s.append(svg("line", { x1: left, x2: W - 8, y1: y, y2: y, class: "llmlab-sd-grid" }));
    s.append(svg("text", { x: left - 4, y: y + 3, "text-anchor": "end" }, v.toFixed(1)));
  }
  rows.forEach((r, i) => {
    const h = plotH * r.rate;
    const bar = svg("rect", { x: left + i * bw + 2, y: top + plotH - h, width: Math.max(bw - 4, 1), height: h,
      class: "llmlab-sd-bar" });
    bar.append(svg("title", {}, `draft position ${r.position}: ${r.accepted} of ${r.drafted} drafts accepted (${(100 * r.rate).toFixed(0)}%)`));
    s.append(bar);
    const cx = left + i * bw + bw / 2;
    s.append(svg("text", { x: cx, y: top + plotH + 12, "text-anchor": "middle" }, String(r.position)));
    if (bw >= 22) s.append(svg("text", { x: cx, y: top + plotH - h - 3, "text-anchor": "middle", class: "llmlab-sd-n" }, `${r.accepted}/${r.drafted}`));
  });
  s.append(svg("text", { x: left + plotW / 2, y: H - 4, "text-anchor": "middle" }, "position in the draft (1 = first drafted token)"));
  s.append(svg("text", { x: 0, y: 10 }, "share of drafts accepted"));
  return s;
}

// Draw a trace (DraftTrace.payload()) into root; used by this view and the accel panel.
export function drawDrafts(root, d) {
  const box = el("div", "llmlab-sd");
  const passes = d.steps.length;
  const rate = d.drafted ? (d.accepted / d.drafted).toFixed(2) : "–";
  const head = el("div", "llmlab-sd-head");
  head.append(el("b", null, "Drafts "), el("span", "llmlab-sd-muted",
    `${d.method} · ${passes} target passes for ${d.new_tokens} tokens ` +
    `(${(d.new_tokens / Math.max(passes, 1)).toFixed(2)} per pass) · ${d.drafted} drafted, ` +
    `${d.accepted} accepted (rate ${rate})`));
  const legend = el("div", "llmlab-sd-legend");
  legend.append(el("span", "llmlab-sd-acc", "accepted draft"), el("s", "llmlab-sd-rej", "rejected draft"),
    el("span", "llmlab-sd-tgt", "target's own token"), el("span", "llmlab-sd-muted", "│ one target pass"));
  const toggle = el("label", "llmlab-sd-muted");
  const check = el("input");
  check.type = "checkbox";
  check.checked = true;
  toggle.append(check, document.createTextNode(" show rejected drafts"));
  legend.append(toggle);
  const text = el("div", "llmlab-sd-text");
  const tok = (id) => d.texts[String(id)] ?? "";
  d.steps.forEach((s, i) => {
    const step = el("span", "llmlab-sd-step");
    const k = s.accepted;
    s.added.slice(0, k).forEach((id) => step.append(el("span", "llmlab-sd-acc", tok(id))));
    s.drafted.slice(k).forEach((id) => step.append(el("s", "llmlab-sd-rej", visible(tok(id)))));
    s.added.slice(k).forEach((id) => step.append(el("span", "llmlab-sd-tgt", tok(id))));
    const why = s.drafted.length === 0 ? "nothing drafted: a plain target step"
      : k === s.drafted.length ? "every draft accepted; the target added the next token"
        : `draft ${k + 1} rejected: the target chose ${JSON.stringify(tok(s.added[k] ?? -1))} instead of ${JSON.stringify(tok(s.drafted[k]))}`;
    step.title = `pass ${i + 1}: drafted ${s.drafted.length}, accepted ${k}, added ${s.added.length} · ${why}`;
    text.append(step);
  });
  check.addEventListener("change", () => box.classList.toggle("llmlab-sd-hide-rej", !check.checked));
  const chartTitle = el("div", "llmlab-sd-muted",
    "Acceptance by draft position: how often the target kept the draft's n-th token, among drafts that reached it.");
  box.append(head, legend, text, chartTitle, d.by_position.length ? positionChart(d.by_position)
    : el("div", "llmlab-sd-muted", "Nothing was drafted."));
  root.append(box);
  return box;
}

function render({ model, el: root }) {
  drawDrafts(root, model.get("payload"));
}

export default { render };
