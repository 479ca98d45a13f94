// Logit lens: a layer × token grid (output row on top), each cell the top token that layer
// predicts after that token, coloured by probability, by the rank of the model's final
// prediction, by entropy or by KL to the final layer; per-layer bars beside the rows; details of
// a cell below. With a compared variant: A, B, or where they part (KL(A‖B), top-1 agreement).
// Every token is inserted with textContent, never as markup.

const CELL_CHARS = 7;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
// Newlines and tabs as arrows; a token of spaces only as "␣" marks, so no cell looks empty.
const shown = (tok) => {
  const t = tok.replace(/\n/g, "↵").replace(/\t/g, "→");
  return t.trim() === "" ? t.replace(/ /g, "␣") : t;
};
const fmt = (x, d = 3) => Number(x).toFixed(d);

// Colour ramps: t in [0, 1] -> "rgb(...)" between white and a hue.
function ramp(to) {
  return (t) => {
    const s = Math.sqrt(Math.min(1, Math.max(0, t)));
    const c = to.map((v) => Math.round(255 + (v - 255) * s));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  };
}
const BLUE = ramp([8, 48, 107]);
const GREEN = ramp([0, 109, 44]);
const PURPLE = ramp([84, 39, 143]);
const RED = ramp([178, 24, 43]);
const dark = (t) => Math.sqrt(Math.min(1, Math.max(0, t))) > 0.6;

function maxOf(grid) {
  let m = 0;
  for (const row of grid) for (const v of row) if (v > m) m = v;
  return m || 1;
}

// What each colouring shows: value of a cell in [0, 1] (darker = more), legend text.
function modes(v, extra) {
  const entMax = maxOf(v.entropy), klMax = maxOf(v.kl);
  const out = {
    prob: { name: "probability of the top token", at: (r, i) => v.p[r][i][0], ramp: BLUE,
      legend: "darker: the layer is surer of its top token" },
    rank: { name: "rank of the final prediction", ramp: GREEN,
      // log scale: rank 0 (the final prediction is already top) darkest, rank ≥ 1000 white
      at: (r, i) => 1 - Math.min(1, Math.log10(1 + v.rank[r][i]) / 3),
      legend: "darker: the model's final prediction ranks higher in this layer (log scale, rank 0 darkest, ≥1000 white)" },
    entropy: { name: "entropy", at: (r, i) => v.entropy[r][i] / entMax, ramp: PURPLE,
      legend: `darker: flatter distribution (max here ${fmt(entMax, 2)} nats)` },
    kl: { name: "KL to the final layer", at: (r, i) => v.kl[r][i] / klMax, ramp: RED,
      legend: `darker: further from the final distribution (max here ${fmt(klMax, 2)} nats)` },
  };
  if (extra) {
    const abMax = maxOf(extra.kl_ab);
    out.diverge = { name: "KL(A‖B)", at: (r, i) => extra.kl_ab[r][i] / abMax, ramp: RED,
      legend: `darker: the variants' readings differ more (max ${fmt(abMax, 4)} nats); cells show B's top token where the top-1 differs, '=' where it agrees` };
  }
  return out;
}

function render({ model, el: root }) {
  const p = model.get("payload");
  const cmp = p.compare;
  const R = p.rows.length, n = p.tokens.length;
  const variants = { a: p.a, b: cmp };
  const state = { which: "a", mode: "prob", picked: null };

  const box = el("div", "llmlab-lens");
  const head = el("div", "llmlab-lens-header");
  head.append(el("b", null, "Logit lens"), el("span", null, ` · ${p.a.label}`),
    el("span", "llmlab-lens-muted",
      ` · ${p.n_prompt} tokens${n > p.n_prompt ? ` + ${n - p.n_prompt} generated` : ""} · embeddings + ${R - 1} layers`));
  const reading = el("div", "llmlab-lens-muted", `each row read as ${p.a.reading}; column i predicts token i+1`);
  const controls = el("div", "llmlab-lens-controls");
  const legend = el("div", "llmlab-lens-legend");
  const scroll = el("div", "llmlab-lens-scroll");
  const detail = el("div", "llmlab-lens-detail");
  box.append(head, reading, controls, legend, scroll, detail);
  root.append(box);

  // -- controls -------------------------------------------------------------------------------
  function select(label, options, value, onChange) {
    const wrap = el("label", "llmlab-lens-select");
    wrap.append(el("span", "llmlab-lens-muted", label + " "));
    const s = el("select");
    for (const [key, text] of options) {
      const o = el("option", null, text);
      o.value = key;
      s.append(o);
    }
    s.value = value;
    s.addEventListener("change", () => onChange(s.value));
    wrap.append(s);
    controls.append(wrap);
    return s;
  }
  let modeSelect = null;
  function modeOptions() {
    const m = modes(variants[state.which === "b" ? "b" : "a"], state.which === "diff" ? cmp : null);
    return Object.entries(m).filter(([k]) => (state.which === "diff") === (k === "diverge"))
      .map(([k, v]) => [k, v.name]);
  }
  if (cmp) {
    select("show", [["a", `A: ${p.a.label}`], ["b", `B: ${cmp.label}`], ["diff", "where B parts from A"]],
      "a", (v) => {
        state.which = v;
        state.mode = v === "diff" ? "diverge" : (state.mode === "diverge" ? "prob" : state.mode);
        modeSelect.replaceChildren(...modeOptions().map(([k, t]) => { const o = el("option", null, t); o.value = k; return o; }));
        modeSelect.value = state.mode;
        draw();
      });
  }
  modeSelect = select("colour by", modeOptions(), state.mode, (v) => { state.mode = v; draw(); });

  // -- grid -----------------------------------------------------------------------------------
  const table = el("table", "llmlab-lens-grid");
  scroll.append(table);
  const cells = [];  // cells[r][i] -> td
  const bars = [];  // per row: [td, td]
  const headRow = el("tr");
  // Per-layer bars stay at the right edge (sticky) while the token columns scroll.
  const barHeads = [el("th", "llmlab-lens-bar-head llmlab-lens-bar1"),
    el("th", "llmlab-lens-bar-head llmlab-lens-bar2")];
  headRow.append(el("th", "llmlab-lens-corner", ""));
  p.tokens.forEach((tok, i) => {
    const th = el("th", i >= p.n_prompt ? "llmlab-lens-gen" : null, shown(tok).slice(0, CELL_CHARS));
    th.title = JSON.stringify(tok);
    headRow.append(th);
  });
  headRow.append(...barHeads);
  const thead = el("thead");
  thead.append(headRow);
  const tbody = el("tbody");
  table.append(thead, tbody);
  for (let r = R - 1; r >= 0; r--) {
    const tr = el("tr");
    const b1 = el("td", "llmlab-lens-bar llmlab-lens-bar1");
    const b2 = el("td", "llmlab-lens-bar llmlab-lens-bar2");
    bars[r] = [b1, b2];
    tr.append(el("th", "llmlab-lens-row", p.rows[r]));
    cells[r] = [];
    for (let i = 0; i < n; i++) {
      const td = el("td", "llmlab-lens-cell");
      td.addEventListener("mouseenter", () => showDetail(r, i));
      td.addEventListener("click", () => { state.picked = state.picked && state.picked[0] === r && state.picked[1] === i ? null : [r, i]; draw(); });
      cells[r][i] = td;
      tr.append(td);
    }
    tr.append(b1, b2);
    tbody.append(tr);
  }
  table.addEventListener("mouseleave", () => {
    if (state.picked) showDetail(...state.picked); else showDetail(R - 1, n - 1);
  });

  const word = (v, r, i) => shown(p.vocab[v.top[r][i][0]]);
  function mean(row) { return row.reduce((a, b) => a + b, 0) / row.length; }
  function bar(td, value, top, text, color) {
    td.style.setProperty("--fill", `${top > 0 ? Math.min(100, (100 * value) / top) : 0}%`);
    td.style.setProperty("--bar", color);
    td.textContent = text;
  }

  function draw() {
    const diff = state.which === "diff";
    const v = variants[state.which === "b" ? "b" : "a"];
    const m = modes(v, diff ? cmp : null)[state.mode];
    legend.textContent = `colour: ${m.name} — ${m.legend}. Hover a cell for details; click to keep it.`;
    for (let r = 0; r < R; r++) {
      for (let i = 0; i < n; i++) {
        const td = cells[r][i];
        const t = m.at(r, i);
        td.style.background = m.ramp(t);
        td.style.color = dark(t) ? "#fff" : "#1f2328";
        td.textContent = diff
          ? (cmp.agree[r][i] ? "=" : word(cmp, r, i).slice(0, CELL_CHARS))
          : word(v, r, i).slice(0, CELL_CHARS);
        td.classList.toggle("llmlab-lens-picked", !!state.picked && state.picked[0] === r && state.picked[1] === i);
      }
    }
    // Per-layer bars: entropy and KL to final, or (diff) KL(A‖B) and top-1 agreement.
    if (diff) {
      barHeads[0].textContent = "KL(A‖B)";
      barHeads[1].textContent = "top-1 agree";
      const kls = cmp.kl_ab.map(mean), top = Math.max(...kls, 1e-9);
      for (let r = 0; r < R; r++) {
        bar(bars[r][0], kls[r], top, fmt(kls[r], 4), "#f3c1c6");
        const agree = mean(cmp.agree[r]);
        bar(bars[r][1], agree, 1, `${Math.round(100 * agree)}%`, "#c6e9c9");
      }
    } else {
      barHeads[0].textContent = "entropy";
      barHeads[1].textContent = "KL to final";
      const ent = v.entropy.map(mean), kl = v.kl.map(mean);
      // Scaled without the embeddings row: with tied embeddings it predicts the input token
      // itself, so its KL dwarfs every layer's (the bar is cut; the number is exact).
      const layers = (xs) => (xs.length > 2 ? xs.slice(1) : xs);
      const te = Math.max(...layers(ent), 1e-9), tk = Math.max(...layers(kl), 1e-9);
      for (let r = 0; r < R; r++) {
        bar(bars[r][0], ent[r], te, fmt(ent[r], 2), "#ddd3f0");
        bar(bars[r][1], kl[r], tk, fmt(kl[r], 2), "#f3c1c6");
      }
    }
    if (state.picked) showDetail(...state.picked); else showDetail(R - 1, n - 1);
  }

  // -- details of one cell --------------------------------------------------------------------
  function topList(v, r, i, title) {
    const wrap = el("div", "llmlab-lens-top");
    wrap.append(el("div", "llmlab-lens-toptitle", title));
    v.top[r][i].forEach((id, k) => {
      const line = el("div", "llmlab-lens-topline");
      const prob = v.p[r][i][k];
      const track = el("span", "llmlab-lens-toptrack");
      const fill = el("span", "llmlab-lens-topfill");
      fill.style.width = `${(100 * prob).toFixed(1)}%`;
      track.append(fill);
      const tok = el("code", null, shown(p.vocab[id]));
      tok.title = JSON.stringify(p.vocab[id]);
      line.append(tok, track, el("span", "llmlab-lens-muted", fmt(prob)));
      wrap.append(line);
    });
    const finalId = v.top[R - 1][i][0];
    wrap.append(el("div", "llmlab-lens-muted",
      `final prediction ${JSON.stringify(p.vocab[finalId])}: rank ${v.rank[r][i]}, p ${fmt(v.p_final[r][i])} · ` +
      `entropy ${fmt(v.entropy[r][i], 2)} nats · KL to final ${fmt(v.kl[r][i], 2)} nats`));
    return wrap;
  }
  function showDetail(r, i) {
    const next = i + 1 < n ? ` (next token in the text: ${JSON.stringify(p.tokens[i + 1])})` : "";
    const title = el("div", "llmlab-lens-dtitle",
      `${p.rows[r]}, after token ${i} ${JSON.stringify(p.tokens[i])}${next}`);
    const parts = [title];
    const lists = el("div", "llmlab-lens-tops");
    lists.append(topList(p.a, r, i, cmp ? `A: ${p.a.label}` : "top tokens"));
    if (cmp) {
      lists.append(topList(cmp, r, i, `B: ${cmp.label}`));
      parts.push(el("div", "llmlab-lens-muted",
        `KL(A‖B) ${fmt(cmp.kl_ab[r][i], 4)} nats · top-1 ${cmp.agree[r][i] ? "agrees" : "differs"}`));
    }
    parts.splice(1, 0, lists);
    detail.replaceChildren(...parts);
  }

  draw();
  // Open on the last token, where a reader usually looks first (once laid out).
  requestAnimationFrame(() => { scroll.scrollLeft = scroll.scrollWidth; });
}

export default { render };
