// The dose panel: a sample's accumulated dose map over its stage coordinates, with the
// budget, and the dose fields of the scan form (sample, thickness, budget).
"use strict";

(() => {
  const el = (id) => document.getElementById(id);
  const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toPrecision(2));

  // The scan form's dose fields as plan parameters (only those filled in).
  window.doseParams = () => {
    const out = {};
    const sample = el("scan-sample").value.trim();
    const thickness = el("scan-thickness").value.trim();
    const budget = el("scan-budget").value.trim();
    if (sample) out.sample = sample;
    if (thickness) out.thickness_m = Number(thickness) * 1e-9;
    if (budget) out.dose_budget_gray = Number(budget);
    return out;
  };

  function budget() {
    const text = el("scan-budget").value.trim();
    return text ? Number(text) : null;
  }

  async function show() {
    const panel = el("plot-dose");
    const sample = el("dose-sample").value.trim() || el("scan-sample").value.trim();
    if (!sample) return;
    const response = await fetch(`/api/dose/${encodeURIComponent(sample)}`, { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      el("dose-summary").textContent = response.status === 404 ? `no dose recorded for ${sample}` : body.detail || response.statusText;
      panel.dataset.max = "";
      return;
    }
    const cap = budget();
    // near the budget the colour scale ends at it (above: saturated); far below, at the peak
    const near = cap && body.max_gray >= cap * 0.5;
    const traces = [{
      type: "heatmap", x: body.x_um, y: body.y_um, z: body.dose_gray,
      colorscale: "Viridis", zmin: 0, zmax: near ? cap : body.max_gray || 1,
      colorbar: { title: { text: near ? "Gy (top: budget)" : "Gy" } },
      hovertemplate: "x %{x:.2f} µm<br>y %{y:.2f} µm<br>%{z:.3g} Gy<extra></extra>",
    }];
    if (near) {  // the budget line
      traces.push({
        type: "contour", x: body.x_um, y: body.y_um, z: body.dose_gray, showscale: false,
        contours: { start: cap, end: cap, size: 1, coloring: "lines" },
        line: { color: "#ff4d4d", width: 2 }, name: "budget", hoverinfo: "skip",
      });
    }
    await Plotly.react("plot-dose", traces, {
      title: { text: `dose of ${sample} (${body.runs.length} run${body.runs.length === 1 ? "" : "s"})`, font: { size: 13 } },
      xaxis: { title: { text: "stage x (µm)" }, zeroline: false },
      yaxis: { title: { text: "stage y (µm)" }, scaleanchor: "x", zeroline: false },
      margin: { l: 55, r: 10, t: 35, b: 40 },
    }, { displayModeBar: false });
    const over = cap && body.max_gray > cap ? " — over budget" : "";
    el("dose-summary").textContent = cap
      ? `max ${fmt(body.max_gray)} Gy of budget ${fmt(cap)} Gy${over}`
      : `max ${fmt(body.max_gray)} Gy (no budget set)`;
    panel.dataset.max = String(body.max_gray);
  }

  async function listSamples() {
    const response = await fetch("/api/dose", { cache: "no-store" });
    if (!response.ok) return;
    const body = await response.json();
    const list = el("dose-samples");
    list.innerHTML = "";
    for (const name of body.samples || []) {
      const option = document.createElement("option");
      option.value = name;
      list.appendChild(option);
    }
  }

  window.addEventListener("DOMContentLoaded", () => {
    el("dose-show").onclick = () => show();
    listSamples();
    // the map grows while a scan of the sample runs: look again every few seconds
    setInterval(() => { if (!document.hidden) { listSamples(); show(); } }, 5000);
  });
})();
