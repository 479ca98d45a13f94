// Decides, in the page, whether a view's offline copy shows or its live view does.
//
// Every llmlab view is displayed as two outputs: the live widget, then its offline copy (a
// text/html output). JupyterLab and Notebook 7 always draw a widget output with the widget
// renderer, which never falls back to another mime type: a notebook reopened without the
// widget's model (fresh kernel, no kernel, "save widget state" off) shows "Error displaying
// widget: model not found" or "Loading widget..." there. So the copy is its own output and
// this script, run in it, settles which of the two the reader sees:
//   - a live view of the same id is on the page (marked by live_host.js or, for ipywidgets
//     views, by a class set from Python): the copy hides;
//   - the widget output next to the copy ends in an error, holds a view with no kernel behind
//     it (a model restored from saved widget state), or is still loading after WAIT_MS: the
//     copy shows and the broken widget output hides;
//   - nothing widget-like around (an exported report, nbconvert, a viewer without widgets):
//     the copy shows at once.
// A live view that appears later (the page reloaded while its kernel ran) takes over.
// No globals: each call works on its own copy element.

const WIDGET_MIME = "application/vnd.jupyter.widget-view+json";
// How long a widget output may stay "Loading widget..." before the copy shows instead (no
// kernel: JupyterLab starts no widget manager and the output never settles).
const WAIT_MS = 3000;

function liveView(uid) {
  return document.querySelector(`.llmlab-live-${CSS.escape(uid)}`);
}

// JupyterLab / Notebook 7: the widget output is an earlier sibling in the same output area.
// Its renderer (ipywidgets') sets no data-mime-type, where every other renderer does.
function partnerOf(copy) {
  let child = copy.closest(".jp-OutputArea-child");
  while (child && (child = child.previousElementSibling)) {
    const out = child.querySelector(":scope > .jp-OutputArea-output");
    if (out && (out.dataset.mimeType === WIDGET_MIME || !out.hasAttribute("data-mime-type"))) {
      return { child, out };
    }
  }
  return null;
}

function broken(out) {
  return /Error displaying widget/.test(out.textContent) || !!out.querySelector(".llmlab-stale");
}

// Calls showOffline() once, when the copy is to be seen; returns nothing.
export function settleCopy(copy, showOffline) {
  const uid = copy.dataset.llmlabFor;
  const partner = partnerOf(copy);
  let offline = false;
  // Beside a live view the copy leaves the page (not only hides): nothing of it runs, and
  // nothing in it answers for the live view's elements. The saved notebook keeps it: it is in
  // the output's data, not in this page's elements.
  const goLive = () => {
    stop();
    copy.style.display = "none";
    copy.replaceChildren();
    if (partner) partner.child.style.display = "";
  };
  const goOffline = () => {
    copy.style.display = "";
    if (partner && !liveView(uid)) partner.child.style.display = "none";
    if (!offline) {
      offline = true;
      showOffline();
    }
  };
  const check = () => {
    if (!copy.isConnected) return stop();
    if (liveView(uid)) goLive();
    else if (!partner || broken(partner.out)) goOffline();
  };
  const onLive = (event) => { if (event.detail === uid) check(); };
  const observer = partner ? new MutationObserver(check) : null;
  const timer = partner ? setTimeout(() => { if (!liveView(uid)) goOffline(); }, WAIT_MS) : null;
  function stop() {
    if (observer) observer.disconnect();
    clearTimeout(timer);
    window.removeEventListener("llmlab:live", onLive);
  }
  if (liveView(uid)) return goLive();
  if (partner) {
    copy.style.display = "none"; // no flash of the copy while the widget loads
    observer.observe(partner.out, {
      childList: true, subtree: true, characterData: true, attributes: true,
      attributeFilter: ["class"],
    });
  }
  window.addEventListener("llmlab:live", onLive);
  check();
}
