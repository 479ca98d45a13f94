// %llm accel: one row of toggles per acceleration, a Run button, the last two runs side by side.
// Model text is inserted with textContent only. Greyed toggles carry their reason in `title`.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// The config string the engine parses: only values that differ from each default.
function configOf(controls, chosen) {
  const parts = controls
    .filter((c) => chosen[c.name] !== c.default)
    .map((c) => `${c.name}=${chosen[c.name]}`);
  return parts.join(",") || "baseline";
}

function parseConfig(text) {
  const out = {};
  if (!text || text === "baseline") return out;
  for (const item of text.split(",")) {
    const [k, v] = item.split("=");
    if (k && v) out[k.trim()] = v.trim();
  }
  return out;
}

// Names of the figures in runs saved before the kernel sent them in words (extra_shown).
const STAT_NAMES = {
  acceptance_rate: "acceptance rate",
  tokens_per_target_pass: "tokens / target pass",
  target_passes: "target passes",
  drafted_tokens: "drafted tokens",
  prefix_reused_tokens: "prefix tokens reused",
  ttft_saved_ms_est: "TTFT saved ≈ ms",
  weight_mb: "weights MB",
  weight_mb_before: "weights MB before",
  warmup_s: "warm-up s (not timed)",
  build_s: "copy built in s (not timed)",
  first_call_compile_s: "compile s (first call, not timed)",
  kl_to_base_nats: "mean KL to loaded weights, nats",
  kl_to_base_ci95: "95% CI of that mean KL",
  kl_positions: "KL over answer tokens (n)",
  top1_to_base: "top-1 same as loaded weights",
};

function times(x) {
  return x === null || x === undefined ? "" : `  (${x.toFixed(2)}×)`;
}

// A run beside the baseline run: speed ratio and token identity come from the kernel
// (run.vs_baseline), measured against the latest baseline run on the same prompt.
function runCard(run, title) {
  const box = el("div", "llmlab-ac-run");
  const head = el("div", "llmlab-ac-run-head");
  head.append(el("span", "llmlab-ac-run-title", title), el("code", "llmlab-ac-label", run.label));
  const badge = el("span", run.preserving ? "llmlab-ac-badge llmlab-ac-keep" : "llmlab-ac-badge llmlab-ac-approx",
    run.preserving ? "output-preserving" : "approximates");
  head.append(badge);
  const vs = run.vs_baseline || {};
  if (vs.same_tokens !== undefined) {
    head.append(el("span", vs.same_tokens ? "llmlab-ac-badge llmlab-ac-keep" : "llmlab-ac-badge llmlab-ac-approx",
      vs.same_tokens ? "same tokens as baseline" : "tokens differ from baseline"));
  }
  if (vs.note) head.append(el("span", "llmlab-ac-muted", vs.note));
  const text = el("div", "llmlab-ac-text", run.text);
  // The headline speed-up is end to end (what a user waits for), decode and TTFT beside it.
  const speedup = vs.headline ? el("div", "llmlab-ac-speedup", vs.headline) : null;
  const stats = el("table", "llmlab-ac-stats");
  const perToken = vs.e2e_per_token ? " per token" : "";
  const rows = [
    ["end to end s", run.total_s, vs.e2e_speedup === undefined ? "" : times(vs.e2e_speedup) + perToken],
    ["TTFT ms", run.ttft_ms, times(vs.ttft_speedup)],
    ["decode tok/s", run.decode_tok_s, times(vs.decode_ratio)],
    ["new tokens", run.new_tokens, ""],
    ["prompt tokens", run.prompt_tokens, ""],
  ];
  if (run.threads) rows.push(["torch threads", run.threads, ""]);
  const shown = run.extra_shown || Object.entries(run.extra || {}).map(([k, v]) => [STAT_NAMES[k] || k, v]);
  for (const [k, v] of shown) rows.push([k, v, ""]);
  for (const [k, v, ratio] of rows) {
    const tr = el("tr");
    const td = el("td", "llmlab-ac-num", (v === null || v === undefined ? "–" : String(v)) + (ratio || ""));
    tr.append(el("th", null, k), td);
    stats.append(tr);
  }
  box.append(head, text);
  if (speedup) box.append(speedup);
  box.append(stats);
  // What was done so that this run's timing is not a cold start's (kernel-side note).
  if (run.warmup) box.append(el("div", "llmlab-ac-muted llmlab-ac-warm", run.warmup));
  if (run.drafts) box.append(draftsToggle(run.drafts));
  return box;
}

// A speculative run's drafts (accepted, rejected, the target's own tokens), drawn on demand by
// the drafts view's own module, whose source the panel's state carries (drafts_view).
let draftsSource = { esm: "", css: "" };
let draftsModule = null;
function draftsToggle(trace) {
  const box = el("details", "llmlab-ac-drafts");
  box.append(el("style", null, draftsSource.css));
  box.append(el("summary", null, `show drafts: ${trace.steps.length} target passes, ${trace.accepted} of ${trace.drafted} drafts accepted`));
  box.addEventListener("toggle", async () => {
    if (!box.open || box.dataset.drawn) return;
    box.dataset.drawn = "1";
    try {
      if (!draftsModule) {
        const url = URL.createObjectURL(new Blob([draftsSource.esm], { type: "text/javascript" }));
        draftsModule = import(url).finally(() => URL.revokeObjectURL(url));
      }
      (await draftsModule).drawDrafts(box, trace);
    } catch (err) {
      box.append(el("div", "llmlab-ac-error", `could not draw the drafts: ${err.message}`));
    }
  });
  return box;
}

function render({ model, el: root }) {
  const p = model.get("payload");
  draftsSource = model.get("drafts_view") || draftsSource;
  const chosen = {};
  const start = parseConfig(p.config);
  for (const c of p.controls) chosen[c.name] = start[c.name] || c.default;

  const box = el("div", "llmlab-ac");
  const head = el("div", "llmlab-ac-head");
  head.append(el("b", null, "Accelerations for "), el("code", null, p.model),
    el("span", "llmlab-ac-muted", ` · ${p.device}/${p.dtype}`));
  // The legend shows sample chips: a dashed border described in words alone is easy to miss.
  const legend = el("div", "llmlab-ac-legend");
  legend.append(el("span", "llmlab-ac-value llmlab-ac-sample llmlab-ac-lossy", "dashed"),
    el("span", null, "approximates the output"),
    el("span", "llmlab-ac-value llmlab-ac-sample llmlab-ac-off", "struck out"),
    el("span", null, "cannot run here (hover for why)"));
  head.append(legend);

  const grid = el("div", "llmlab-ac-grid");
  const buttons = {};
  for (const c of p.controls) {
    const name = el("div", "llmlab-ac-name", c.name);
    name.title = `${c.changes} (applied at ${c.applied})`;
    const group = el("div", "llmlab-ac-values");
    buttons[c.name] = [];
    for (const v of c.values) {
      const b = el("button", "llmlab-ac-value", v.value);
      b.type = "button";
      b.dataset.name = c.name;
      b.dataset.value = v.value;
      b.title = v.ok ? (v.help || v.value) + (v.preserving ? "" : " · approximates the output") : v.why;
      if (!v.ok) { b.disabled = true; b.classList.add("llmlab-ac-off"); }
      if (!v.preserving) b.classList.add("llmlab-ac-lossy");
      b.addEventListener("click", () => {
        chosen[c.name] = v.value;
        sync();
        model.send({ type: "check", config: configOf(p.controls, chosen) });
      });
      buttons[c.name].push(b);
      group.append(b);
    }
    grid.append(name, group);
  }

  const form = el("div", "llmlab-ac-form");
  const prompt = el("textarea", "llmlab-ac-prompt");
  prompt.value = p.prompt;
  prompt.rows = 3;
  const maxNew = el("input", "llmlab-ac-max");
  Object.assign(maxNew, { type: "number", min: 1, max: 1024, value: p.max_new_tokens });
  maxNew.title = "max new tokens (greedy decoding)";
  const run = el("button", "llmlab-ac-run-button", "Run");
  run.type = "button";
  const status = el("div", "llmlab-ac-status");
  const controlsRow = el("div", "llmlab-ac-row");
  controlsRow.append(el("span", "llmlab-ac-muted", "max new tokens"), maxNew, run, status);
  form.append(prompt, controlsRow);

  const runs = el("div", "llmlab-ac-runs");
  box.append(head, grid, form, runs);
  root.append(box);

  function sync() {
    for (const [name, list] of Object.entries(buttons)) {
      for (const b of list) b.classList.toggle("llmlab-ac-on", b.dataset.value === chosen[name]);
    }
  }

  function showStatus() {
    const s = model.get("status") || {};
    status.replaceChildren();
    run.disabled = Boolean(s.busy);
    run.textContent = s.busy ? "Running…" : "Run";
    if (s.error) {
      status.append(el("span", "llmlab-ac-error", s.error));
      return;
    }
    status.append(el("code", "llmlab-ac-label", s.label || "baseline"));
    if (s.preserving !== undefined) {
      status.append(el("span", s.preserving ? "llmlab-ac-badge llmlab-ac-keep" : "llmlab-ac-badge llmlab-ac-approx",
        s.preserving ? "output-preserving" : "approximates"));
    }
  }

  function showRuns() {
    const list = model.get("runs") || [];
    runs.replaceChildren();
    if (!list.length) {
      runs.append(el("div", "llmlab-ac-muted", "Press Run: each run appears here, beside the baseline run (run baseline first)."));
      return;
    }
    list.forEach((r, i) => runs.append(runCard(r, r.title || (i === list.length - 1 ? "this run" : "previous"))));
  }

  run.addEventListener("click", () => {
    model.send({
      type: "run",
      config: configOf(p.controls, chosen),
      prompt: prompt.value,
      max_new_tokens: Number(maxNew.value) || 64,
    });
  });
  model.on("change:status", showStatus);
  model.on("change:runs", showRuns);
  sync();
  showStatus();
  showRuns();
}

export default { render };
