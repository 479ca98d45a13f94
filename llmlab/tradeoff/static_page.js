// Static tradeoff page: clicking a point shows its texts next to the reference's.
// Runs inside exported HTML with no kernel; every text goes in through textContent.
function llmlabSweepPage(uid) {
  const gd = document.getElementById(uid);
  const panel = document.getElementById(uid + "-texts");
  const data = JSON.parse(document.getElementById(uid + "-data").textContent);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function show(index) {
    panel.replaceChildren();
    data.prompts.forEach((prompt, j) => {
      const matches = data.matches[index];
      const mark = matches ? (matches[j] ? " ✓ identical" : " ✗ differs") : "";
      panel.append(el("div", "llmlab-prompt", prompt + mark));
      const grid = el("div", "llmlab-sw-compare");
      for (const [title, text] of [["reference (baseline)", data.reference[j]], [data.names[index], (data.texts[index] || [])[j]]]) {
        const box = el("div");
        box.append(el("h4", null, title), el("div", "llmlab-text", text === undefined ? "–" : text));
        grid.append(box);
      }
      panel.append(grid);
    });
  }

  function attach() {
    if (!gd || typeof gd.on !== "function") { setTimeout(attach, 50); return; }
    gd.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point && point.customdata !== undefined) show(Number(point.customdata));
    });
  }
  attach();
}
