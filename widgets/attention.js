// Attention views in one widget: head view, layer × head grid, per-head table, diff between
// two variants; one set of tabs per stack (masked self-attention; or encoder, decoder and
// cross-attention for encoder-decoder models). Layers without attention weights (hybrid
// models' Mamba/convolution layers, layers not captured) are listed with their kind. The payload carries 8-bit thumbnails and one layer's head-view lines; full
// heads, other layers and exact rows are fetched from the kernel on demand (custom messages).
// Every token is inserted with textContent, never as markup.

const ROW = 18; // px per token in the head view
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

// -- decoding (mirrors llmlab/attention/encode.py) -------------------------------------------
export function fromB64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const u16 = (bytes) => new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
export const sqrt8Value = (code) => (code / 255) ** 2;
export function signed8Value(code) {
  const x = (code - 127.5) / 127.5;
  return Math.sign(x) * x * x;
}

function ramp(stops) {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    let j = 0;
    while (j < stops.length - 2 && x > stops[j + 1][0]) j++;
    const [p0, c0] = stops[j], [p1, c1] = stops[j + 1];
    const t = Math.min(1, Math.max(0, (x - p0) / (p1 - p0)));
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(c0[c] + t * (c1[c] - c0[c]));
  }
  return lut;
}
const BLUES = ramp([[0, [255, 255, 255]], [0.5, [66, 133, 244]], [1, [8, 29, 88]]]);
const DIVERGING = ramp([[0, [33, 102, 172]], [0.5, [255, 255, 255]], [1, [178, 24, 43]]]);

// Draw a rows×cols image whose pixel i has colour index codeAt(i) into a canvas.
function paint(canvas, rows, cols, codeAt, lut) {
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const c = codeAt(i) * 3;
    img.data[i * 4] = lut[c];
    img.data[i * 4 + 1] = lut[c + 1];
    img.data[i * 4 + 2] = lut[c + 2];
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
// Draw an n×n head at no more than MAX_PIXELS a side: each pixel shows the strongest value
// (by magnitude) of its block, so a one-token-wide sink column survives the shrinking.
const MAX_PIXELS = 640;
function paintPooled(canvas, nq, nk, at, code, lut) {
  const rows = Math.min(nq, MAX_PIXELS), cols = Math.min(nk, MAX_PIXELS);
  const best = new Float32Array(rows * cols);
  for (let q = 0; q < nq; q++) {
    const y = Math.floor((q * rows) / nq);
    for (let k = 0; k < nk; k++) {
      const v = at(q * nk + k);
      const j = y * cols + Math.floor((k * cols) / nk);
      if (Math.abs(v) > Math.abs(best[j])) best[j] = v;
    }
  }
  paint(canvas, rows, cols, (i) => code(best[i]), lut);
}
const weightCode = (w) => Math.round(255 * Math.sqrt(Math.min(1, Math.max(0, w))));
const diffCode = (d, scale) => {
  const x = Math.max(-1, Math.min(1, d / scale));
  return Math.round(127.5 + 127.5 * Math.sign(x) * Math.sqrt(Math.abs(x)));
};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
const shown = (tok) => tok.replace(/\n/g, "↵").replace(/\t/g, "→");
const fmt = (x, d = 3) => (x === undefined || x === null ? "–" : Number(x).toFixed(d));

// The stack picker (encoder / decoder / cross-attention) and the comm, shared by the stacks.
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
  // request(req, say): one request/reply by id; say(text) reports a slow kernel.
  function request(req, say, status) {
    return new Promise((resolve, reject) => {
      const id = nextId++;
      // No timeout: a kernel busy with another cell answers when it is done.
      const slow = setTimeout(() => say("waiting for the kernel (busy running a cell?)…"), 3000);
      pending.set(id, (msg, bufs) => {
        clearTimeout(slow);
        if (status.textContent.startsWith("waiting")) say("");
        msg.error ? reject(new Error(msg.error)) : resolve([msg, bufs]);
      });
      model.send({ ...req, id });
    });
  }
  const holder = el("div", "llmlab-att-stacks");
  root.append(holder);
  const body = el("div");
  if (p.stacks.length > 1) {
    const bar = el("div", "llmlab-att-stackbar");
    for (const st of p.stacks) {
      const b = el("button", "llmlab-att-stackbtn", st.title[0].toUpperCase() + st.title.slice(1));
      b.dataset.stack = st.name;
      b.title = `${st.queries === "target" ? "decoder" : "input"} tokens attend to ` +
        `${st.keys === "target" ? "decoder" : "input"} tokens`;
      b.addEventListener("click", () => mount(st.name));
      bar.append(b);
    }
    holder.append(bar);
  }
  holder.append(body);
  function mount(name) {
    for (const b of holder.querySelectorAll(".llmlab-att-stackbtn")) {
      b.classList.toggle("llmlab-att-active", b.dataset.stack === name);
    }
    body.replaceChildren();
    renderStack(p, name, body, request);
  }
  mount(p.stack);
}

// Per-head statistic of a captured layer slot (cross-attention has no prev/distance).
const stat = (s, key, l, h) => (s[key] ? s[key][l][h] : null);

function renderStack(p, stackName, root, send) {
  const st = p.stacks.find((x) => x.name === stackName);
  const qTok = st.queries === "target" ? p.target_tokens : p.tokens;
  const kTok = st.keys === "target" ? p.target_tokens : p.tokens;
  const n = qTok.length, nk = kTok.length, H = st.n_heads;
  const LI = st.layers.filter((x) => x.captured).map((x) => x.index); // slot -> layer number
  const L = LI.length;
  const group = H / st.n_kv_heads;
  const cmp0 = p.compare;
  const cmp = cmp0 ? { label: cmp0.label, ...cmp0.diffs[stackName], ...cmp0.stacks[stackName] } : null;
  const va = p.a.stacks[stackName];
  const variants = { a: { label: p.a.label, ...va }, b: cmp };
  const slotOf = (layer) => Math.max(0, LI.indexOf(layer));
  const state = {
    which: "a",
    layer: slotOf(p.stack === stackName ? p.layer : LI[Math.floor(L / 2)]),
    heads: new Set(p.head === null || p.head === undefined || p.head >= H ? [...Array(H).keys()] : [p.head]),
    focus: null, // {side: "q" | "k", index}
    hover: null,
  };
  const linesCache = {};
  if (p.lines.stack === stackName || (p.lines.stack === undefined && p.stack === stackName)) {
    linesCache[`a:${slotOf(p.lines.layer)}`] = decodeLines(p.lines);
  }
  const thumbs = { a: fromB64(va.thumb.data), b: cmp ? fromB64(cmp.thumb.data) : null };
  const TR = va.thumb.rows, TC = va.thumb.cols;
  const isGen = (axis, i) => axis === "source" && i >= p.n_prompt;
  const request = (req) => send({ ...req, stack: stackName, layer: LI[req.layer] }, say, status);
  function decodeLines(lines) {
    return { k: lines.k, index: u16(fromB64(lines.index)), value: u16(fromB64(lines.value)) };
  }
  async function getLines(which, layer) {
    const key = `${which}:${layer}`;
    if (!linesCache[key]) {
      const [msg] = await request({ kind: "lines", layer, which });
      linesCache[key] = decodeLines(msg.lines);
    }
    return linesCache[key];
  }
  const headCache = new Map();
  async function getHead(which, layer, head) {
    const key = `${which}:${layer}:${head}`;
    if (!headCache.has(key)) {
      const [msg, [buf]] = await request({ kind: "head", layer, head, which });
      const data = msg.enc === "s16" ? new Int16Array(buf.buffer) : new Uint16Array(buf.buffer);
      const scale = msg.enc === "s16" ? 32767 : 65535;
      headCache.set(key, { n: msg.n, at: (i) => data[i] / scale });
      if (headCache.size > 12) headCache.delete(headCache.keys().next().value);
    }
    return headCache.get(key);
  }

  // -- frame: header and tabs ---------------------------------------------------------------
  const box = el("div", "llmlab-att");
  const header = el("div", "llmlab-att-header");
  const gen = p.tokens.length - p.n_prompt;
  const kept = L === st.layers.length ? `${L} layers` : `${L} of ${st.layers.length} layers with weights`;
  // Names the variant being shown (A or B), so the header follows the "showing" picker.
  const headerInfo = el("span", "llmlab-att-muted");
  const describe = () => {
    const tag = cmp ? `${state.which.toUpperCase()}: ` : "";
    const target = p.target_tokens ? ` · ${p.target_tokens.length} decoder tokens` : "";
    headerInfo.textContent = `${tag}${variants[state.which].label} · ${p.n_prompt} tokens` +
      `${gen ? ` + ${gen} generated` : ""}${target} · ${st.title} · ${kept} × ${H} heads` +
      (group > 1 ? ` · ${st.n_kv_heads} KV heads (each shared by ${group} query heads)` : "");
  };
  describe();
  header.append(el("b", null, "Attention "), headerInfo);
  const variantPick = el("select", "llmlab-att-variant");
  if (cmp) {
    for (const [v, label] of [["a", `A: ${p.a.label}`], ["b", `B: ${cmp.label}`]]) {
      const o = el("option", null, label);
      o.value = v;
      variantPick.append(o);
    }
    const wrap = el("label", "llmlab-att-pick", "showing ");
    wrap.append(variantPick);
    header.append(wrap);
  }
  const tabs = el("div", "llmlab-att-tabs");
  const panels = el("div", "llmlab-att-panels");
  const status = el("div", "llmlab-att-status");
  box.append(header, tabs, panels, status);
  root.append(box);
  const tabNames = ["Head view", "Grid", "Heads table", "Link"].concat(cmp ? ["Diff"] : []);
  const panel = {}, tabButton = {};
  for (const name of tabNames) {
    const b = el("button", "llmlab-att-tab", name);
    b.addEventListener("click", () => show(name));
    tabs.append(b);
    tabButton[name] = b;
    panel[name] = el("div", "llmlab-att-panel");
    panels.append(panel[name]);
  }
  function show(name) {
    for (const t of tabNames) {
      tabButton[t].classList.toggle("llmlab-att-active", t === name);
      panel[t].style.display = t === name ? "" : "none";
    }
    if (name === "Head view") drawLines();
  }
  const say = (text) => { status.textContent = text; };
  const fail = (err) => say(`could not fetch: ${err.message}`);

  // -- head view ----------------------------------------------------------------------------
  const hv = panel["Head view"];
  const controls = el("div", "llmlab-att-controls");
  const layerPick = el("select");
  for (const info of st.layers) {
    const o = el("option", null, info.captured ? `layer ${info.index}` :
      `layer ${info.index} · ${info.kind} (${info.has_attention ? "not captured" : "no weights"})`);
    o.value = info.captured ? String(LI.indexOf(info.index)) : "";
    o.disabled = !info.captured;
    layerPick.append(o);
  }
  const chips = el("div", "llmlab-att-chips");
  const chipOf = [];
  for (let g = 0; g < st.n_kv_heads; g++) {
    const kv = el("span", "llmlab-att-kv");
    kv.append(el("span", "llmlab-att-muted", `KV ${g}:`));
    for (let h = g * group; h < (g + 1) * group; h++) {
      const c = el("button", "llmlab-att-chip", `h${h}`);
      c.style.setProperty("--head", PALETTE[h % PALETTE.length]);
      c.title = `query head ${h} reads key/value head ${g}`;
      c.addEventListener("click", (e) => {
        if (e.shiftKey || e.metaKey || e.ctrlKey) {
          state.heads.has(h) ? state.heads.delete(h) : state.heads.add(h);
        } else {
          state.heads = state.heads.size === 1 && state.heads.has(h) ? new Set([...Array(H).keys()]) : new Set([h]);
        }
        updateHeadView();
      });
      chipOf[h] = c;
      kv.append(c);
    }
    chips.append(kv);
  }
  const allBtn = el("button", "llmlab-att-small", "all heads");
  allBtn.addEventListener("click", () => { state.heads = new Set([...Array(H).keys()]); updateHeadView(); });
  controls.append(layerPick, chips, allBtn);
  const hint = el("div", "llmlab-att-muted",
    "Click a head to show it alone (shift-click: add), click a token to focus it, hover for weights. " +
    "Left: queries, right: keys.");
  const scroll = el("div", "llmlab-att-scroll");
  const cols = el("div", "llmlab-att-cols");
  const left = el("div", "llmlab-att-col llmlab-att-left");
  const mid = el("div", "llmlab-att-mid");
  const right = el("div", "llmlab-att-col llmlab-att-right");
  const canvas = el("canvas", "llmlab-att-canvas");
  mid.append(canvas);
  mid.style.height = left.style.height = right.style.height = `${Math.max(n, nk) * ROW}px`;
  cols.append(left, mid, right);
  scroll.append(cols);
  const tip = el("div", "llmlab-att-tip");
  hv.append(controls, hint, scroll, tip);
  const leftTok = [], rightTok = [];
  for (const [col, list, side, toks, axis] of [[left, leftTok, "q", qTok, st.queries], [right, rightTok, "k", kTok, st.keys]]) {
    for (let i = 0; i < toks.length; i++) {
      const t = el("div", "llmlab-att-tok", shown(toks[i]));
      if (isGen(axis, i)) t.classList.add("llmlab-att-gen");
      if (isGen(axis, i) && i === p.n_prompt) t.classList.add("llmlab-att-genstart");
      t.addEventListener("mouseenter", (e) => { state.hover = { side, index: i }; drawLines(); showTip(e, side, i); });
      t.addEventListener("mouseleave", () => { state.hover = null; tip.style.display = "none"; drawLines(); });
      t.addEventListener("click", () => {
        const same = state.focus && state.focus.side === side && state.focus.index === i;
        state.focus = same ? null : { side, index: i };
        if (!same && side === "q") fetchRow(i);
        drawLines();
      });
      list.push(t);
      col.append(t);
    }
  }
  const rowCache = new Map();
  function fetchRow(q) {
    const key = `${state.which}:${state.layer}:${q}`;
    if (rowCache.has(key)) return;
    request({ kind: "row", layer: state.layer, query: q, which: state.which })
      .then(([, [buf]]) => { rowCache.set(key, new Float32Array(buf.buffer)); drawLines(); })
      .catch(() => {});
  }
  // Weight of query q on key k in head h: the exact row if fetched, else the top-k lines.
  function weight(lines, h, q, k) {
    const row = rowCache.get(`${state.which}:${state.layer}:${q}`);
    if (row) return row[h * nk + k];
    const base = (h * n + q) * lines.k;
    for (let j = 0; j < lines.k; j++) if (lines.index[base + j] === k) return lines.value[base + j] / 65535;
    return null; // below the top-k
  }
  function showTip(e, side, i) {
    const lines = linesCache[`${state.which}:${state.layer}`];
    if (!lines) return;
    tip.replaceChildren();
    const heads = [...state.heads].sort((a, b) => a - b);
    if (side === "k" && state.focus && state.focus.side === "q") {
      const q = state.focus.index;
      tip.append(el("div", "llmlab-att-tiphead", `${shown(qTok[q])} → ${shown(kTok[i])}`));
      for (const h of heads) {
        const w = weight(lines, h, q, i);
        tip.append(el("div", null, `h${h}: ${w === null ? "< top-" + lines.k : fmt(w)}`));
      }
    } else if (side === "q") {
      tip.append(el("div", "llmlab-att-tiphead", `${shown(qTok[i])} attends to`));
      for (const h of heads.slice(0, 4)) {
        const base = (h * n + i) * lines.k;
        const parts = [];
        for (let j = 0; j < Math.min(3, lines.k); j++) {
          const w = lines.value[base + j] / 65535;
          if (w > 0) parts.push(`${shown(kTok[lines.index[base + j]])} ${fmt(w, 2)}`);
        }
        tip.append(el("div", null, `h${h}: ${parts.join(" · ")}`));
      }
      if (heads.length > 4) tip.append(el("div", "llmlab-att-muted", `… ${heads.length - 4} more heads`));
    } else {
      tip.append(el("div", "llmlab-att-tiphead", `attention into ${shown(kTok[i])}`));
      tip.append(el("div", "llmlab-att-muted", "click a query token on the left for exact weights"));
    }
    const r = hv.getBoundingClientRect(), t = e.target.getBoundingClientRect();
    tip.style.left = `${t.right - r.left + 8}px`;
    tip.style.top = `${t.top - r.top}px`;
    tip.style.display = "block";
  }
  function drawLines() {
    const lines = linesCache[`${state.which}:${state.layer}`];
    const viewH = Math.min(scroll.clientHeight || 560, Math.max(n, nk) * ROW);
    const width = mid.clientWidth || 240;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = width * dpr;
    canvas.height = viewH * dpr;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${viewH}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, viewH);
    const top = scroll.scrollTop;
    canvas.style.top = "0px";
    const focus = state.focus || state.hover;
    const shade = new Float32Array(Math.max(n, nk));
    if (!lines) return;
    for (const h of state.heads) {
      ctx.strokeStyle = PALETTE[h % PALETTE.length];
      for (let q = 0; q < n; q++) {
        if (focus && focus.side === "q" && focus.index !== q) continue;
        const y1 = q * ROW + ROW / 2 - top;
        const base = (h * n + q) * lines.k;
        for (let j = 0; j < lines.k; j++) {
          const k = lines.index[base + j];
          if (focus && focus.side === "k" && focus.index !== k) continue;
          const w = lines.value[base + j] / 65535;
          if (focus) shade[focus.side === "q" ? k : q] = Math.max(shade[focus.side === "q" ? k : q], w);
          if (w < 0.01) continue;
          const y2 = k * ROW + ROW / 2 - top;
          if ((y1 < -ROW && y2 < -ROW) || (y1 > viewH + ROW && y2 > viewH + ROW)) continue;
          ctx.globalAlpha = Math.min(1, focus ? 0.15 + w : w / Math.sqrt(state.heads.size));
          ctx.lineWidth = focus ? 1 + 3 * w : 2;
          ctx.beginPath();
          ctx.moveTo(0, y1);
          ctx.lineTo(width, y2);
          ctx.stroke();
        }
      }
    }
    ctx.globalAlpha = 1;
    // Shade the other side's tokens by their weight while a token is focused (exact row if any).
    const row = focus && focus.side === "q" ? rowCache.get(`${state.which}:${state.layer}:${focus.index}`) : null;
    for (let i = 0; i < Math.max(n, nk); i++) {
      let w = shade[i];
      if (row && i < nk) { w = 0; for (const h of state.heads) w = Math.max(w, row[h * nk + i]); }
      const target = focus ? (focus.side === "q" ? rightTok[i] : leftTok[i]) : null;
      if (leftTok[i]) leftTok[i].style.background = "";
      if (rightTok[i]) rightTok[i].style.background = "";
      if (target && w > 0.005) target.style.background = `rgba(66,133,244,${Math.min(0.85, 0.1 + Math.sqrt(w))})`;
      if (leftTok[i]) leftTok[i].classList.toggle("llmlab-att-focus", !!focus && focus.side === "q" && focus.index === i);
      if (rightTok[i]) rightTok[i].classList.toggle("llmlab-att-focus", !!focus && focus.side === "k" && focus.index === i);
    }
  }
  scroll.addEventListener("scroll", () => requestAnimationFrame(drawLines));
  function updateHeadView() {
    layerPick.value = String(state.layer);
    chipOf.forEach((c, h) => c.classList.toggle("llmlab-att-on", state.heads.has(h)));
    const key = `${state.which}:${state.layer}`;
    if (!linesCache[key]) {
      say(`fetching layer ${LI[state.layer]}…`);
      getLines(state.which, state.layer).then(() => { say(""); drawLines(); }).catch(fail);
    }
    if (state.focus && state.focus.side === "q") fetchRow(state.focus.index);
    drawLines();
  }
  layerPick.addEventListener("change", () => { state.layer = Number(layerPick.value); updateHeadView(); });
  function openHead(layer, head) {
    state.layer = layer;
    state.heads = new Set([head]);
    show("Head view");
    updateHeadView();
  }

  // -- grid -----------------------------------------------------------------------------------
  function gridOf(kind, onPick) {
    // kind: "a" | "b" | "diff"
    const wrap = el("div", "llmlab-att-gridwrap" + (kind === "diff" ? " llmlab-att-small-grid" : ""));
    const table = el("table", "llmlab-att-grid");
    const hdr = el("tr"), sub = el("tr");
    hdr.append(el("th"));
    sub.append(el("th"));
    for (let g = 0; g < st.n_kv_heads; g++) {
      const th = el("th", "llmlab-att-kvhead", `KV ${g}`);
      th.colSpan = group;
      hdr.append(th);
    }
    for (let h = 0; h < H; h++) sub.append(el("th", null, `h${h}`));
    table.append(hdr, sub);
    const cells = [];
    let scale = 1;
    let diffCodes = null;
    if (kind === "diff") {
      diffCodes = fromB64(cmp.data);
      scale = Math.max(1e-6, ...cmp.max_abs.flat());
    }
    for (const info of st.layers) {
      const tr = el("tr");
      tr.append(el("th", null, `L${info.index}`));
      if (!info.captured) {
        const td = el("td", "llmlab-att-nolayer",
          `${info.kind} · ${info.has_attention ? "not captured (--layers)" : "no attention weights"}`);
        td.colSpan = H;
        tr.append(td);
        table.append(tr);
        continue;
      }
      const l = LI.indexOf(info.index);
      for (let h = 0; h < H; h++) {
        const td = el("td");
        const c = el("canvas", "llmlab-att-thumb");
        // Cross-attention thumbnails keep their decoder × input aspect ratio.
        if (TR !== TC) c.style.height = `${Math.max(8, Math.round((40 * TR) / TC))}px`;
        const off = (l * H + h) * TR * TC;
        if (kind === "diff") {
          paint(c, TR, TC, (i) => diffCode(signed8Value(diffCodes[off + i]), scale), DIVERGING);
          c.title = `L${LI[l]} H${h} (KV ${Math.floor(h / group)}) · change ${fmt(cmp.change[l][h], 4)} · max |Δ| ${fmt(cmp.max_abs[l][h], 4)}`;
        } else {
          const codes = thumbs[kind];
          paint(c, TR, TC, (i) => codes[off + i], BLUES);
          const s = variants[kind].stats;
          c.title = `L${LI[l]} H${h} (KV ${Math.floor(h / group)}) · entropy ${fmt(stat(s, "entropy", l, h), 2)} bits · ` +
            `sink ${fmt(stat(s, "sink", l, h), 2)}` + (s.prev ? ` · prev ${fmt(stat(s, "prev", l, h), 2)} · distance ${fmt(stat(s, "distance", l, h), 1)}` : "");
        }
        c.addEventListener("click", () => {
          cells.forEach((x) => x.classList.remove("llmlab-att-picked"));
          c.classList.add("llmlab-att-picked");
          onPick(l, h);
        });
        cells.push(c);
        td.append(c);
        tr.append(td);
      }
      table.append(tr);
    }
    wrap.append(table);
    return { wrap, scale };
  }

  // A large view of one head; draws the thumbnail at once, then the full-resolution head.
  function bigHead(title, kind, layer, head, { scale = 1, side = 320, labels = true } = {}) {
    const card = el("div", "llmlab-att-big");
    const heading = el("div", "llmlab-att-bigtitle", title);
    heading.title = title; // the trio keeps titles on one line; the full one on hover
    card.append(heading);
    const c = el("canvas", "llmlab-att-bigcanvas");
    // Square for self-attention; cross-attention keeps its queries × keys aspect ratio.
    const cw = Math.max(24, Math.round((side * nk) / Math.max(n, nk)));
    const ch = Math.max(24, Math.round((side * n) / Math.max(n, nk)));
    c.style.width = `${cw}px`;
    c.style.height = `${ch}px`;
    const readout = el("div", "llmlab-att-readout", "hover for weights");
    readout.style.maxWidth = `${side}px`;
    const body = el("div", "llmlab-att-bigbody");
    // Short inputs get the query tokens beside the rows; long ones rely on the hover readout.
    if (labels && ch / n >= 8) {
      const column = el("div", "llmlab-att-rowlabels");
      column.style.height = `${ch}px`;
      column.style.gridTemplateRows = `repeat(${n}, 1fr)`;
      column.style.fontSize = `${Math.min(11, Math.floor(ch / n) - 1)}px`;
      qTok.forEach((tok) => column.append(el("div", null, shown(tok))));
      body.append(column);
    }
    body.append(c);
    card.append(body, readout);
    card.style.maxWidth = `${side + (body.children.length > 1 ? 75 : 2)}px`;
    const off = (layer * H + head) * TR * TC;
    const lut = kind === "diff" ? DIVERGING : BLUES;
    if (kind === "diff") {
      const codes = fromB64(cmp.data);
      paint(c, TR, TC, (i) => diffCode(signed8Value(codes[off + i]), scale), lut);
    } else {
      paint(c, TR, TC, (i) => thumbs[kind][off + i], lut);
    }
    let full = null;
    getHead(kind, layer, head).then((data) => {
      full = data;
      const code = kind === "diff" ? (v) => diffCode(v, scale) : weightCode;
      paintPooled(c, n, nk, data.at, code, lut);
    }).catch(fail);
    c.addEventListener("mousemove", (e) => {
      const r = c.getBoundingClientRect();
      const q = Math.floor(((e.clientY - r.top) / r.height) * n);
      const k = Math.floor(((e.clientX - r.left) / r.width) * nk);
      if (q < 0 || k < 0 || q >= n || k >= nk) return;
      const v = full ? fmt(full.at(q * nk + k), 4) : "…";
      readout.textContent = `query ${q} ${shown(qTok[q])} → key ${k} ${shown(kTok[k])}: ${v}`;
    });
    return card;
  }

  function statsLine(kind, l, h) {
    const s = variants[kind].stats;
    return `entropy ${fmt(stat(s, "entropy", l, h), 2)} bits · sink ${fmt(stat(s, "sink", l, h))}` +
      (s.prev ? ` · previous-token ${fmt(stat(s, "prev", l, h))} · mean distance ${fmt(stat(s, "distance", l, h), 1)}` : "");
  }

  const gridPanel = panel.Grid;
  function buildGrid() {
    gridPanel.replaceChildren();
    const side = el("div", "llmlab-att-side");
    side.append(el("div", "llmlab-att-muted", "Click a thumbnail to enlarge it (colour: √weight; rows: query, columns: key)."));
    const { wrap } = gridOf(state.which, (l, h) => {
      side.replaceChildren();
      const kv = Math.floor(h / group);
      const shared = group > 1 ? ` (KV ${kv}, shared with heads ${kv * group}–${(kv + 1) * group - 1})` : "";
      side.append(bigHead(`layer ${LI[l]}, head ${h}${shared}`, state.which, l, h));
      side.append(el("div", "llmlab-att-muted", statsLine(state.which, l, h)));
      const go = el("button", "llmlab-att-small", "open in head view");
      go.addEventListener("click", () => openHead(l, h));
      side.append(go);
    });
    const row = el("div", "llmlab-att-split");
    row.append(wrap, side);
    gridPanel.append(row);
  }

  // -- table ----------------------------------------------------------------------------------
  const tablePanel = panel["Heads table"];
  let sortKey = "layer", sortDesc = false;
  function buildTable() {
    tablePanel.replaceChildren();
    const s = variants[state.which].stats;
    const columns = [
      ["layer", "layer"], ["head", "head"], ["kv", "KV head"], ["entropy", "entropy (bits)"],
      ["sink", "sink mass"], ["prev", "previous-token"], ["distance", "mean distance"],
    ].filter(([k]) => !["entropy", "sink", "prev", "distance"].includes(k) || s[k])
      .concat(cmp ? [["change", "change vs other"]] : []);
    const rows = [];
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
      rows.push({ layer: LI[l], slot: l, head: h, kv: Math.floor(h / group), entropy: stat(s, "entropy", l, h),
        sink: stat(s, "sink", l, h), prev: stat(s, "prev", l, h), distance: stat(s, "distance", l, h),
        change: cmp ? cmp.change[l][h] : null });
    }
    rows.sort((x, y) => (sortDesc ? y[sortKey] - x[sortKey] : x[sortKey] - y[sortKey]) || x.layer - y.layer || x.head - y.head);
    const max = {};
    for (const [k] of columns) max[k] = Math.max(1e-9, ...rows.map((r) => r[k] ?? 0));
    const hint = el("div", "llmlab-att-muted",
      "Click a column to sort, a row to open that head. Sink mass: share of attention on the first token; " +
      "previous-token: weight on the token just before; mean distance: how far back a head looks (tokens).");
    const box = el("div", "llmlab-att-tablebox");
    const table = el("table", "llmlab-att-table");
    const tr = el("tr");
    for (const [k, label] of columns) {
      const th = el("th", null, label + (k === sortKey ? (sortDesc ? " ▼" : " ▲") : ""));
      th.addEventListener("click", () => {
        sortDesc = k === sortKey ? !sortDesc : k !== "layer" && k !== "head" && k !== "kv";
        sortKey = k;
        buildTable();
      });
      tr.append(th);
    }
    table.append(tr);
    for (const r of rows) {
      const row = el("tr");
      for (const [k] of columns) {
        const v = r[k];
        const integer = k === "layer" || k === "head" || k === "kv";
        const td = el("td", integer ? null : "llmlab-att-num", integer ? String(v) : fmt(v, k === "change" ? 4 : 3));
        if (!integer) td.style.setProperty("--fill", `${(100 * (v ?? 0)) / max[k]}%`);
        row.append(td);
      }
      row.addEventListener("click", () => openHead(r.slot, r.head));
      table.append(row);
    }
    box.append(table);
    tablePanel.append(hint, box);
  }

  // -- diff -----------------------------------------------------------------------------------
  function buildDiff() {
    const dp = panel.Diff;
    const side = el("div", "llmlab-att-side");
    const { wrap, scale } = gridOf("diff", (l, h) => pickDiff(l, h));
    dp.append(el("div", "llmlab-att-muted",
      `B − A per head: red = more attention in B (${cmp.label}), blue = less. Colour scale ±${fmt(scale, 4)} ` +
      "(the largest change anywhere). Click a head or a ranking row to compare it."));
    const ranking = el("div", "llmlab-att-ranking");
    ranking.append(el("div", "llmlab-att-bigtitle", "Most changed heads (mean total variation per query)"));
    const order = [];
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) order.push([cmp.change[l][h], l, h]);
    order.sort((x, y) => y[0] - x[0]);
    const top = order[0][0] || 1e-9;
    for (const [v, l, h] of order.slice(0, 10)) {
      const r = el("div", "llmlab-att-rank");
      const bar = el("span", "llmlab-att-rankbar");
      bar.style.width = `${(100 * v) / top}%`;
      r.append(el("span", "llmlab-att-ranklabel", `L${LI[l]} H${h}`), el("span", "llmlab-att-ranktrack"), el("span", "llmlab-att-muted", fmt(v, 4)));
      r.children[1].append(bar);
      r.addEventListener("click", () => pickDiff(l, h));
      ranking.append(r);
    }
    function pickDiff(l, h) {
      side.replaceChildren();
      const trio = el("div", "llmlab-att-trio");
      const small = { side: 130, labels: false };
      trio.append(bigHead(`A: ${p.a.label}`, "a", l, h, { ...small, labels: true }),
        bigHead(`B: ${cmp.label}`, "b", l, h, small),
        bigHead(`B − A (±${fmt(cmp.max_abs[l][h], 4)})`, "diff", l, h,
          { ...small, scale: Math.max(1e-6, cmp.max_abs[l][h]) }));
      side.append(el("div", "llmlab-att-bigtitle", `layer ${LI[l]}, head ${h}: change ${fmt(cmp.change[l][h], 4)}`), trio);
    }
    const row = el("div", "llmlab-att-split");
    const rightCol = el("div");
    rightCol.append(ranking, side);
    row.append(wrap, rightCol);
    dp.append(row);
    pickDiff(order[0][1], order[0][2]);
  }

  // -- link: which heads link a query token to a key token ----------------------------------------
  // Every head's weights come at once for short inputs ("links", also in the offline copy) and
  // are ranked here for any pair; longer inputs ask the kernel per pair ("link").
  const linkPanel = panel.Link;
  const linkCache = {};
  const link = { q: p.link ? p.link[0] : n - 1, k: p.link ? p.link[1] : 0 };
  async function linkWeights(which, q, k) {
    if (linkCache[which] === undefined) {
      try {
        const [msg, [buf]] = await request({ kind: "links", layer: 0, which });
        linkCache[which] = { shape: msg.shape, data: new Uint16Array(buf.buffer) };
      } catch (err) {
        linkCache[which] = null; // too long for the whole table, or offline without it
      }
    }
    const table = linkCache[which];
    if (table) {
      const [C, HH, NQ, NK] = table.shape;
      const out = new Float32Array(C * HH);
      for (let l = 0; l < C; l++) for (let h = 0; h < HH; h++) {
        out[l * HH + h] = table.data[((l * HH + h) * NQ + q) * NK + k] / 65535;
      }
      return out;
    }
    const [, [buf]] = await request({ kind: "link", layer: 0, query: q, key: k, which });
    return new Float32Array(buf.buffer);
  }
  function tokenPick(toks, axis, value, onChange) {
    const sel = el("select", "llmlab-att-linkpick");
    toks.forEach((t, i) => {
      const o = el("option", null, `${i}: ${JSON.stringify(t)}${isGen(axis, i) ? " (generated)" : ""}`);
      o.value = String(i);
      sel.append(o);
    });
    sel.value = String(value);
    sel.addEventListener("change", () => onChange(Number(sel.value)));
    return sel;
  }
  function buildLink() {
    linkPanel.replaceChildren();
    const controls = el("div", "llmlab-att-linkbar");
    const qWrap = el("label", null, "query token ");
    qWrap.append(tokenPick(qTok, st.queries, link.q, (v) => { link.q = v; drawLink(); }));
    const kWrap = el("label", null, "attends to key token ");
    kWrap.append(tokenPick(kTok, st.keys, link.k, (v) => { link.k = v; drawLink(); }));
    controls.append(qWrap, kWrap);
    const out = el("div", "llmlab-att-linkout");
    linkPanel.append(el("div", "llmlab-att-muted",
      "Which heads link these two tokens: every head ranked by the weight the query token puts on " +
      "the key token. Click a head to open its pattern in the head view."), controls, out);
    async function drawLink() {
      out.replaceChildren(el("div", "llmlab-att-muted", "ranking heads…"));
      let w;
      try {
        w = await linkWeights(state.which, link.q, link.k);
      } catch (err) {
        out.replaceChildren(el("div", "llmlab-att-muted", `could not rank: ${err.message}`));
        return;
      }
      const order = [];
      for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) order.push([w[l * H + h], l, h]);
      order.sort((x, y) => y[0] - x[0] || x[1] - y[1] || x[2] - y[2]);
      const causal = st.queries === st.keys && st.name !== "encoder" && link.k > link.q;
      const title = `${JSON.stringify(qTok[link.q])} (${link.q}) → ${JSON.stringify(kTok[link.k])} (${link.k})`;
      const list = el("div", "llmlab-att-ranking");
      list.append(el("div", "llmlab-att-bigtitle", causal
        ? `${title}: a token cannot attend to a later one in masked self-attention (every weight is 0)`
        : `${title}: heads ranked by weight`));
      const top = order[0][0] || 1e-9;
      for (const [v, l, h] of order.slice(0, 20)) {
        const r = el("div", "llmlab-att-rank llmlab-att-linkrow");
        const bar = el("span", "llmlab-att-rankbar");
        bar.style.width = `${(100 * v) / top}%`;
        r.append(el("span", "llmlab-att-ranklabel", `L${LI[l]} H${h}`), el("span", "llmlab-att-ranktrack"),
          el("span", "llmlab-att-muted", fmt(v, 3)));
        r.children[1].append(bar);
        r.title = `open layer ${LI[l]} head ${h} in the head view`;
        r.addEventListener("click", () => { state.focus = { side: "q", index: link.q }; openHead(l, h); fetchRow(link.q); });
        list.append(r);
      }
      out.replaceChildren(list);
    }
    drawLink();
  }

  variantPick.addEventListener("change", () => {
    state.which = variantPick.value;
    describe();
    buildGrid();
    buildTable();
    buildLink();
    updateHeadView();
  });
  buildGrid();
  buildTable();
  buildLink();
  if (cmp) buildDiff();
  show(cmp ? "Diff" : p.link ? "Link" : "Head view");
  updateHeadView();
  // The canvas needs the scroll box's real size, known only once the widget is attached.
  requestAnimationFrame(() => drawLines());
}

export default { render };
