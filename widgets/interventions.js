// Intervention scans: head importance (layer × head heatmap + sortable table; a click shows
// that head's attention pattern over the same tokens) and activation patching (heatmaps of
// the restored logit difference for the residual stream, each head's output and MoE layers).
// Every token is inserted with textContent, never as markup.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
const shown = (tok) => {
  const t = tok.replace(/\n/g, "↵").replace(/\t/g, "→");
  return t.trim() === "" ? t.replace(/ /g, "␣") : t;
};
const fmt = (x, d = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(d));

// Diverging colour: blue for positive, red for negative, white at 0 (t in [-1, 1]).
export function diverging(t) {
  if (t === null || t === undefined || Number.isNaN(t)) return "#f6f8fa";
  const s = Math.max(-1, Math.min(1, t));
  const to = s >= 0 ? [33, 102, 172] : [178, 24, 43];
  const a = Math.sqrt(Math.abs(s));
  const c = to.map((v) => Math.round(255 + (v - 255) * a));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
const dark = (t) => t !== null && Math.sqrt(Math.abs(t)) > 0.62;

function absMax(grid) {
  let m = 0;
  for (const row of grid || []) for (const v of row) if (v !== null && Math.abs(v) > m) m = Math.abs(v);
  return m || 1;
}

// A heatmap table: rows × cols of values (null: no such variant); onPick(r, c) on click.
function heatmap(grid, rowLabels, colLabels, { scale, onPick, title, digits = 2, rotate = false }) {
  const wrap = el("div", "llmlab-int-heatwrap");
  if (title) wrap.append(el("div", "llmlab-int-title", title));
  const table = el("table", "llmlab-int-heat");
  const head = el("tr");
  head.append(el("th"));
  for (const c of colLabels) {
    const th = el("th", rotate ? "llmlab-int-col llmlab-int-rot" : "llmlab-int-col");
    th.append(el("span", null, c));
    head.append(th);
  }
  table.append(head);
  const cells = [];
  grid.forEach((row, r) => {
    const tr = el("tr");
    tr.append(el("th", "llmlab-int-row", rowLabels[r]));
    cells.push([]);
    row.forEach((v, c) => {
      const td = el("td", "llmlab-int-cell");
      td.style.background = diverging(v === null ? null : v / scale);
      if (v !== null && dark(v / scale)) td.classList.add("llmlab-int-dark");
      td.textContent = v === null ? "" : Number(v).toFixed(digits);
      td.title = `${rowLabels[r]} · ${colLabels[c]}: ${fmt(v, 4)}`;
      if (v !== null && onPick) td.addEventListener("click", () => onPick(r, c, td));
      if (v === null) td.classList.add("llmlab-int-none");
      tr.append(td);
      cells[r].push(td);
    });
    table.append(tr);
  });
  wrap.append(table);
  return { wrap, cells };
}

function render({ model, el: root }) {
  const p = model.get("payload");
  let nextId = 1;
  const pending = new Map();
  model.on("msg:custom", (msg, buffers) => {
    const done = pending.get(msg.id);
    if (!done) return;
    pending.delete(msg.id);
    const bufs = (buffers || []).map((b) =>
      new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
    done(msg, bufs);
  });
  const request = (req) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, (msg, bufs) => (msg.error ? reject(new Error(msg.error)) : resolve([msg, bufs])));
    model.send({ ...req, id });
  });
  const box = el("div", "llmlab-int");
  root.append(box);
  if (p.kind === "heads") renderHeads(p, box, request);
  else renderPatching(p, box);
}

// -- head importance ------------------------------------------------------------------------------
function renderHeads(p, box, request) {
  const L = p.effects.length, H = p.effects[0].length;
  const header = el("div", "llmlab-int-header");
  header.append(el("b", null, "Head importance "),
    el("span", "llmlab-int-muted", `${p.model} · ${p.mode} ablation of every head · ${p.metric_words}`));
  const prompt = el("div", "llmlab-int-prompt", p.text);
  const base = p.answer !== null
    ? `answer ${JSON.stringify(p.answer)}: log p = ${fmt(p.answer_logprob)} without ablation`
    : `the model predicts ${JSON.stringify(p.predicted)} without ablation`;
  const info = el("div", "llmlab-int-muted", `${base} · ${p.timing}`);
  box.append(header, prompt, info);
  const scale = absMax(p.effects);
  const legend = el("div", "llmlab-int-muted",
    p.metric === "logprob"
      ? `Colour: red = ablating the head lowers the answer's log-probability, blue = raises it (±${fmt(scale)}). Click a head for its attention pattern.`
      : `Colour: KL divergence from the unablated next-token distribution (0 … ${fmt(scale, 4)} nats). Click a head for its attention pattern.`);
  box.append(legend);
  const split = el("div", "llmlab-int-split");
  const left = el("div", "llmlab-int-left");
  const side = el("div", "llmlab-int-side");
  split.append(left, side);
  box.append(split);
  const rows = p.effects.map((_, l) => `L${l}` + (p.kinds[l] && p.kinds[l] !== "attention" && p.effects[l].every((v) => v === null) ? ` (${p.kinds[l]})` : ""));
  const cols = [...Array(H).keys()].map((h) => `H${h}`);
  const colourOf = (v) => (p.metric === "kl" ? -v : v); // KL: larger is worse, shown in red
  const grid = p.effects.map((row) => row.map((v) => (v === null ? null : colourOf(v))));
  let picked = null;
  const { wrap, cells } = heatmap(grid, rows, cols, {
    scale,
    onPick: (l, h) => pick(l, h),
    title: "layer × head",
  });
  // Show the real value (KL is not negated in the text).
  p.effects.forEach((row, l) => row.forEach((v, h) => {
    if (v !== null) cells[l][h].textContent = Number(v).toFixed(2);
  }));
  left.append(wrap);

  // Sortable table of every head.
  const tableBox = el("div", "llmlab-int-tablebox");
  const list = [];
  p.effects.forEach((row, l) => row.forEach((v, h) => { if (v !== null) list.push({ l, h, v }); }));
  let sortKey = "abs", sortDir = -1;
  const columns = [["layer", "l"], ["head", "h"], [p.metric === "logprob" ? "Δ log p(answer)" : "KL (nats)", "v"], ["|effect|", "abs"]];
  function drawTable() {
    const sorted = list.slice().sort((a, b) => {
      const ka = sortKey === "abs" ? Math.abs(a.v) : a[sortKey];
      const kb = sortKey === "abs" ? Math.abs(b.v) : b[sortKey];
      return sortDir * (ka - kb) || a.l - b.l || a.h - b.h;
    });
    const table = el("table", "llmlab-int-table");
    const tr = el("tr");
    for (const [name, key] of columns) {
      const th = el("th", "llmlab-int-sort", name + (sortKey === key ? (sortDir < 0 ? " ▼" : " ▲") : ""));
      th.addEventListener("click", () => {
        sortDir = sortKey === key ? -sortDir : -1;
        sortKey = key;
        drawTable();
      });
      tr.append(th);
    }
    table.append(tr);
    for (const r of sorted) {
      const row = el("tr", "llmlab-int-trow");
      if (picked && picked.l === r.l && picked.h === r.h) row.classList.add("llmlab-int-picked-row");
      row.append(el("td", null, String(r.l)), el("td", null, String(r.h)),
        el("td", null, fmt(r.v, 4)), el("td", null, fmt(Math.abs(r.v), 4)));
      row.addEventListener("click", () => pick(r.l, r.h));
      table.append(row);
    }
    tableBox.replaceChildren(el("div", "llmlab-int-muted", "Every head; click a column to sort, a row to open the head."), table);
  }
  drawTable();
  left.append(tableBox);

  side.append(el("div", "llmlab-int-muted", "Click a cell or a row to see that head's attention over these tokens."));
  async function pick(l, h) {
    if (picked) cells[picked.l][picked.h].classList.remove("llmlab-int-picked");
    picked = { l, h };
    cells[l][h].classList.add("llmlab-int-picked");
    drawTable();
    side.replaceChildren(el("div", "llmlab-int-title", `layer ${l}, head ${h}`),
      el("div", "llmlab-int-muted", `${p.metric === "logprob" ? "Δ log p(answer)" : "KL"} = ${fmt(p.effects[l][h], 4)}`));
    if (!p.patterns) {
      side.append(el("div", "llmlab-int-muted", "No attention was captured with this scan."));
      return;
    }
    const status = el("div", "llmlab-int-muted", "fetching the pattern…");
    side.append(status);
    try {
      const [msg, [buf]] = await request({ kind: "head", layer: l, head: h });
      const data = new Uint16Array(buf.buffer);
      status.remove();
      side.append(pattern(p.tokens, msg.n, (i) => data[i] / 65535, l, h));
    } catch (err) {
      status.textContent = `could not fetch the pattern: ${err.message}`;
    }
  }
  // Open on the strongest head.
  let best = null;
  for (const r of list) if (!best || Math.abs(r.v) > Math.abs(best.v)) best = r;
  if (best) pick(best.l, best.h);
}

// One head's attention: rows = queries, columns = keys, token labels, hover for the weight.
function pattern(tokens, n, at, l, h) {
  const wrap = el("div", "llmlab-int-pattern");
  const table = el("table", "llmlab-int-heat llmlab-int-att");
  const head = el("tr");
  head.append(el("th"));
  for (let k = 0; k < n; k++) {
    const th = el("th", "llmlab-int-col llmlab-int-rot");
    th.append(el("span", null, shown(tokens[k])));
    head.append(th);
  }
  table.append(head);
  for (let q = 0; q < n; q++) {
    const tr = el("tr");
    tr.append(el("th", "llmlab-int-row", shown(tokens[q])));
    for (let k = 0; k < n; k++) {
      const w = at(q * n + k);
      const td = el("td", "llmlab-int-acell");
      const s = Math.sqrt(w);
      td.style.background = `rgb(${Math.round(255 - 247 * s)},${Math.round(255 - 207 * s)},${Math.round(255 - 148 * s)})`;
      td.title = `${JSON.stringify(tokens[q])} → ${JSON.stringify(tokens[k])}: ${w.toFixed(4)} (L${l}H${h})`;
      tr.append(td);
    }
    table.append(tr);
  }
  wrap.append(el("div", "llmlab-int-muted", "rows: query tokens, columns: key tokens (colour: √weight)"), table);
  return wrap;
}

// -- activation patching ---------------------------------------------------------------------------
function renderPatching(p, box) {
  const header = el("div", "llmlab-int-header");
  header.append(el("b", null, "Activation patching "),
    el("span", "llmlab-int-muted", `${p.model} · clean activations put into the corrupted run`));
  const prompts = el("div", "llmlab-int-prompt");
  prompts.append(el("div", null, `clean: ${p.clean}`), el("div", null, `corrupted: ${p.corrupted}`));
  const metric = el("div", "llmlab-int-muted",
    `restored logit difference logit(${JSON.stringify(p.answer)}) − logit(${JSON.stringify(p.wrong)}), ` +
    `normalised: 0 = corrupted (${fmt(p.ld_corrupted)}), 1 = clean (${fmt(p.ld_clean)})`);
  box.append(header, prompts, metric);
  const tabs = el("div", "llmlab-int-tabs");
  const panels = el("div");
  const detail = el("div", "llmlab-int-detail", "Click a cell for its value.");
  box.append(tabs, panels, detail);
  const toks = p.clean_tokens.map((c, i) => (c === p.corrupted_tokens[i] ? shown(c) : `${shown(c)}/${shown(p.corrupted_tokens[i])}`));
  const views = [];
  if (p.resid) views.push(["Residual stream", p.resid, p.resid.map((_, l) => `L${l}`), toks, "token", true]);
  if (p.heads) views.push(["Head outputs", p.heads, p.heads.map((_, l) => `L${l}`), p.heads[0].map((_, h) => `H${h}`), "head", false]);
  if (p.moe) views.push(["MoE layers", p.moe, p.moe_layers.map((l) => `L${l}`), toks, "token", true]);
  const buttons = [];
  views.forEach(([name, grid, rows, cols, what, rotate], i) => {
    const b = el("button", "llmlab-int-tab", name);
    const panel = el("div", "llmlab-int-panel");
    const { wrap } = heatmap(grid, rows, cols, {
      scale: Math.max(1, absMax(grid)),
      rotate,
      title: `${name}: layer × ${what} (blue: restores the clean answer)`,
      onPick: (r, c) => {
        detail.textContent = `${name}: ${rows[r]}, ${what} ${c} ${JSON.stringify(cols[c])} → restored ${fmt(grid[r][c], 4)}`;
      },
    });
    panel.append(wrap);
    panels.append(panel);
    b.addEventListener("click", () => show(i));
    tabs.append(b);
    buttons.push([b, panel]);
  });
  function show(i) {
    detail.textContent = "Click a cell for its value.";
    buttons.forEach(([b, panel], j) => {
      b.classList.toggle("llmlab-int-active", i === j);
      panel.style.display = i === j ? "" : "none";
    });
  }
  show(0);
}

export default { render };
