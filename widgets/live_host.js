// The anywidget module of every llmlab view: runs the view's own module (synced as
// "_view_esm") once it knows a kernel is behind the model.
//
// A model restored from a notebook's saved widget state has no kernel behind it (its comm is
// not live): a view drawn from it would show stale data and wait forever for answers. Such a
// view draws nothing and marks itself stale; the offline copy next to it (copy_host.js) shows
// instead. A live view marks itself with its id, so its copy stays hidden.

const modules = new Map();

async function viewOf(source) {
  if (!modules.has(source)) {
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    modules.set(source, import(url).finally(() => URL.revokeObjectURL(url)));
  }
  const mod = await modules.get(source);
  const widget = mod.default ?? mod;
  return typeof widget === "function" ? widget() : widget;
}

// ipywidgets' models say whether their comm is live; a host whose manager cannot say (marimo's
// models have no comm_live; a lookup that fails or hangs) is taken as live, as anywidget does.
async function kernelBehind(model) {
  const lookup = (async () => {
    try {
      const real = await model.widget_manager.get_model(model.get("_llmlab_id"));
      return real.comm_live !== false;
    } catch {
      return true;
    }
  })();
  const undecided = new Promise((resolve) => setTimeout(() => resolve(true), 1500));
  return Promise.race([lookup, undecided]);
}

export default {
  async initialize({ model, experimental }) {
    const view = await viewOf(model.get("_view_esm"));
    if (view.initialize) return view.initialize({ model, experimental });
  },
  async render({ model, el, experimental }) {
    const uid = model.get("_llmlab_id");
    if (!(await kernelBehind(model))) {
      el.classList.add("llmlab-stale");
      return;
    }
    const view = await viewOf(model.get("_view_esm"));
    el.classList.add("llmlab-live", `llmlab-live-${uid}`);
    window.dispatchEvent(new CustomEvent("llmlab:live", { detail: uid }));
    if (view.render) return view.render({ model, el, experimental });
  },
};
