// Draws one plotly chart from the JSON beside it once plotly.js is on the page.
//
// plotly.js (4.8 MB) rides once per notebook or report, in the first chart's output
// (llmlab/html.py), not in every chart: later charts wait here for window.Plotly. If the output
// that carried it is gone (cleared, its cell deleted), a line says so.
function llmlabPlot(id) {
  const el = document.getElementById(id);
  if (!el || el.dataset.llmlabDrawn) return;
  const spec = JSON.parse(document.getElementById(id + "-figure").textContent);
  let note = null;
  const started = Date.now();
  const draw = () => {
    el.dataset.llmlabDrawn = "1";
    if (note) note.remove();
    window.Plotly.newPlot(el, spec.data, spec.layout, spec.config);
  };
  const wait = () => {
    if (!el.isConnected) return;
    if (window.Plotly) return draw();
    if (!note && Date.now() - started > 10000) {
      note = document.createElement("div");
      note.style.cssText = "color:#9a6700;font:12px system-ui,sans-serif;margin:4px 0";
      note.textContent = "This chart waits for plotly.js, which rides in the first chart of this "
        + "notebook: that output is gone. Display the result again to draw it.";
      el.before(note);
    }
    setTimeout(wait, 100);
  };
  wait();
}
