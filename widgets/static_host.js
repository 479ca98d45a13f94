// Runs a view's own anywidget module in an offline page: no kernel, no network.
//
// widgets/static.py writes, per view, a container holding a JSON block (the module's source, the
// model state, answers prepared in Python for a bounded set of the view's requests) and this
// script. A small stand-in for anywidget's model API (get/set/on/off/save_changes/send) lets the
// same render() run: changes stay local, requests are answered from the prepared table, and a
// request that truly needs the kernel is answered with an error the view shows, plus a note.
// anywidget has no offline host of its own (its state is not rendered by nbconvert), hence this.
// No globals: everything hangs off the container, so several views share a page safely.

function decodeBuffer(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new DataView(bytes.buffer);
}

// The key a request is looked up by: its fields minus "id", keys sorted (matches static.py).
function requestKey(value) {
  if (Array.isArray(value)) return `[${value.map(requestKey).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).filter((k) => k !== "id").sort()
      .map((k) => `${JSON.stringify(k)}:${requestKey(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function makeModel(data, note) {
  const state = { ...data.state };
  const listeners = new Map();
  const emit = (name, ...args) => (listeners.get(name) || []).slice().forEach((cb) => cb(...args));
  return {
    get: (name) => state[name],
    set(name, value) {
      const old = state[name];
      state[name] = value;
      if (old !== value) emit(`change:${name}`, { new: value, old });
      emit("change", { name, new: value, old });
    },
    on(name, cb) {
      for (const n of name.split(/\s+/)) listeners.set(n, [...(listeners.get(n) || []), cb]);
    },
    off(name, cb) {
      if (!name) { listeners.clear(); return; }
      for (const n of name.split(/\s+/)) {
        listeners.set(n, cb ? (listeners.get(n) || []).filter((x) => x !== cb) : []);
      }
    },
    save_changes() {}, // nothing to sync with: changes live in this page only
    send(content) {
      const hit = data.replies[requestKey(content)];
      // Asynchronous, like a kernel round trip, so views see the order they expect.
      setTimeout(() => {
        if (hit) {
          emit("msg:custom", { ...hit.msg, id: content.id }, hit.buffers.map(decodeBuffer));
          return;
        }
        note(data.note);
        if (content && content.id !== undefined) {
          emit("msg:custom", { ...content, error: data.missing }, []);
        }
      }, 0);
    },
    widget_manager: {},
  };
}

// Inside the view nothing of the host page's CSS applies (a report's or JupyterLab's table
// rules right-aligned cells and striped rows): the view renders in a shadow root that holds
// only its own style, on a reset of every inherited property.
const RESET = ":host{all:initial!important;display:block!important}"
  + ".llmlab-static-root{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;"
  + "font-size:13px;line-height:1.4;color:#1f2328;text-align:left}";

export async function host(container) {
  if (container.dataset.llmlabHosted) return;
  container.dataset.llmlabHosted = "1";
  const data = JSON.parse(container.querySelector(":scope > .llmlab-static-data").textContent);
  const fallback = container.querySelector(":scope > .llmlab-static-fallback");
  const view = container.querySelector(":scope > .llmlab-static-view");
  const noteEl = container.querySelector(":scope > .llmlab-static-note");
  const note = (text) => { noteEl.textContent = text; noteEl.style.display = text ? "" : "none"; };
  const url = URL.createObjectURL(new Blob([data.esm], { type: "text/javascript" }));
  try {
    const mod = await import(url);
    let widget = mod.default ?? mod;
    if (typeof widget === "function") widget = await widget();
    const model = makeModel(data, note);
    const experimental = { invoke: async () => { throw new Error(data.missing); } };
    const shadow = view.shadowRoot ?? view.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = RESET + (data.css || "");
    const root = document.createElement("div");
    root.className = "llmlab-static-root";
    shadow.replaceChildren(style, root);
    if (widget.initialize) await widget.initialize({ model, experimental });
    view.style.display = "";
    if (widget.render) await widget.render({ model, el: root, experimental });
    if (fallback) fallback.remove();
  } catch (err) {
    // The reduced static copy stays; say why the interactive one is missing.
    view.remove();
    note(`interactive view unavailable offline: ${err.message}`);
  } finally {
    URL.revokeObjectURL(url);
  }
}

// The copy's own script: run the view now, or, inside an offline-copy output next to a live
// view (copy_host.js), once that output settles on showing the copy.
export function hostWhenShown(container) {
  const copy = container.closest(".llmlab-copy");
  if (!copy) return host(container);
  if (copy.dataset.llmlabOffline) return host(container);
  copy.addEventListener("llmlab:offline", () => host(container), { once: true });
}
