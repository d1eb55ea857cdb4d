// The live page: REST for state and pictures, a WebSocket for what changes.
"use strict";

const $ = (id) => document.getElementById(id);
const view = {
  uid: null,          // the selected run
  index: null,        // the selected ptychogram
  follow: true,       // follow the newest run and the ptychogram being reconstructed
  detail: null,       // GET /api/runs/{uid}
  boxes: {},          // image id -> [left, top, right, bottom] of the image in its PNG
  busy: {},           // what is being fetched, so that updates do not pile up
  again: {},          // what changed while it was being fetched
  stackShown: null,   // `updated` of the stack analysis shown
};

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    err.status = response.status;
    throw err;
  }
  return body;
}

// Run one refresh of `name` at a time; a request made meanwhile runs once more afterwards.
async function once(name, work) {
  if (view.busy[name]) { view.again[name] = true; return; }
  view.busy[name] = true;
  try { await work(); } catch (err) { if (err.status !== 404) console.warn(name, err.message); }
  finally {
    view.busy[name] = false;
    if (view.again[name]) { view.again[name] = false; once(name, work); }
  }
}

// ------------------------------------------------------------------ runs
function renderRuns(runs) {
  const list = $("runs");
  list.innerHTML = "";
  for (const run of runs) {
    const li = document.createElement("li");
    li.dataset.uid = run.uid;
    const energies = run.energies.length > 1
      ? `${run.energies.length} E × ${run.polarizations.join("/")}`
      : `${run.energies[0]} eV ${run.polarizations.join("/")}`;
    li.innerHTML = `<span class="state">${run.state}</span>#${run.scan_id ?? "?"} ${run.plan_name ?? ""}<br><small>${energies}</small>`;
    if (run.uid === view.uid) li.classList.add("selected");
    li.onclick = () => { view.follow = false; selectRun(run.uid); };
    list.appendChild(li);
  }
  if (runs.length && (view.uid === null || (view.follow && runs[0].uid !== view.uid))) {
    selectRun(runs[0].uid);
  }
}

async function loadRuns() { renderRuns(await api("/api/runs?limit=30")); }

function selectRun(uid) {
  view.uid = uid;
  view.index = null;
  for (const li of $("runs").children) li.classList.toggle("selected", li.dataset.uid === uid);
  $("thumbs").innerHTML = "";
  $("dichroism").innerHTML = "";
  view.stackShown = null;
  for (const kind of ["amplitude", "phase", "probe"]) { $(`img-${kind}`).removeAttribute("src"); $(`img-${kind}`).dataset.updated = ""; }
  refreshRun();
}

// ------------------------------------------------------------------ one run
function refreshRun() {
  return once("run", async () => {
    if (!view.uid) return;
    const d = await api(`/api/runs/${view.uid}`);
    view.detail = d;
    const total = d.points_total || 0;
    $("run-title").textContent = `Run #${d.scan_id ?? "?"} ${d.plan_name ?? ""} — ${d.state}`;
    const pct = total ? Math.min(100, (100 * d.frames) / total) : 0;
    $("progress-bar").style.width = `${pct}%`;
    $("progress-text").textContent = `${d.frames} / ${total} frames`;
    const g = d.geometry || {};
    $("run-info").textContent = g.energies
      ? `${g.energies.map((e) => e.toFixed(1)).join(", ")} eV × ${g.polarizations.join(", ")}; ` +
        `spot ${(g.spot_m * 1e6).toFixed(2)} µm, overlap ${g.overlap}, ` +
        `${g.points_per_ptychogram} points of ${g.exposure_s} s per ptychogram`
      : "";
    const dose = d.dose || {};
    $("dose").textContent = dose.k !== undefined
      ? `Dose: overlap factor k = ${Number(dose.k).toFixed(1)}, up to ${dose.max_exposures} exposures per spot` +
        (dose.dose_gray_total ? `, ${Number(dose.dose_gray_total).toExponential(2)} Gy in total` : "")
      : "";
    renderPtychograms(d);
    renderThumbs(d);
    if (d.stack && String(d.stack.updated) !== view.stackShown) loadStack();
  });
}

function renderPtychograms(d) {
  const select = $("ptychogram");
  const n = d.n_ptychograms || 1;
  if (select.options.length !== n) {
    select.innerHTML = "";
    for (let i = 0; i < n; i++) {
      const r = d.results.find((x) => x.index === i);
      const label = r ? `${Number(r.energy_ev).toFixed(1)} eV ${r.polarization}` : "";
      select.add(new Option(`${i} ${label}`, String(i)));
    }
    select.onchange = () => { view.follow = false; view.index = Number(select.value); refreshResult(true); };
  }
  if (view.follow || view.index === null) {
    const started = d.results.map((r) => r.index);
    view.index = started.length ? Math.max(...started) : 0;
  }
  select.value = String(view.index);
  const r = d.results.find((x) => x.index === view.index);
  $("result-status").textContent = r
    ? `${r.status}, ${r.frames_used ?? 0}/${r.frames_total ?? "?"} frames, ${r.iterations ?? 0} iterations, ${r.algorithm}`
    : "waiting for frames";
  // the pictures and the LLK only when the shown result was rewritten (not at every frame)
  const shown = $("img-amplitude").dataset;
  const current = r && shown.index === String(view.index) && shown.updated === String(r.updated ?? "");
  if (r && !current) refreshResult(false);
  refreshPositions();
}

async function loadPicture(img, url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) return false;
  const box = response.headers.get("X-Image-Box");
  const blob = await response.blob();
  const old = img.src;
  img.src = URL.createObjectURL(blob);
  if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
  if (box) view.boxes[img.id || url] = box.split(",").map(Number);
  return true;
}

function refreshResult(force) {
  return once("result", async () => {
    if (!view.uid || view.index === null) return;
    const index = view.index;
    const r = await api(`/api/runs/${view.uid}/results/${index}`);
    // a picture is current when it shows this ptychogram as last written (arrays are written
    // before the metadata that stamps them, so an unstamped result is fetched again later)
    const stamp = r.updated === undefined || r.updated === null ? "" : String(r.updated);
    for (const kind of ["amplitude", "phase", "probe"]) {
      const img = $(`img-${kind}`);
      if (!force && stamp && img.dataset.updated === stamp && img.dataset.index === String(index)) continue;
      if (await loadPicture(img, `/api/runs/${view.uid}/results/${index}/${kind}.png?t=${stamp}`)) {
        img.dataset.updated = stamp;
        img.dataset.index = String(index);
        img.dataset.iterations = String(r.iterations);
      }
    }
    Plotly.react("plot-llk", [{ y: r.llk, mode: "lines", name: "LLK", line: { color: "#1f6feb" } }], {
      title: { text: `Convergence (${r.status})`, font: { size: 13 } },
      xaxis: { title: { text: "iteration" } }, yaxis: { title: { text: "log-likelihood" }, type: "log" },
      margin: { l: 60, r: 10, t: 35, b: 40 },
    }, { displayModeBar: false });
  });
}

function refreshPositions() {
  return once("positions", async () => {
    if (!view.uid || view.index === null) return;
    const p = await api(`/api/runs/${view.uid}/positions/${view.index}`);
    Plotly.react("plot-positions", [
      { x: p.planned.x, y: p.planned.y, mode: "markers", name: "planned", marker: { color: "#ccc", size: 6 } },
      { x: p.measured.x, y: p.measured.y, mode: "markers", name: "measured",
        marker: { color: p.measured.order, colorscale: "Viridis", size: 8, showscale: true,
                  colorbar: { title: { text: "point" }, thickness: 10 } } },
    ], {
      title: { text: `Scan positions (${p.measured.x.length}/${p.planned.x.length})`, font: { size: 13 } },
      xaxis: { title: { text: "x (µm)" } }, yaxis: { title: { text: "y (µm)" }, scaleanchor: "x" },
      margin: { l: 50, r: 10, t: 35, b: 40 }, showlegend: false,
    }, { displayModeBar: false });
  });
}

// ------------------------------------------------------------------ stack
function renderThumbs(d) {
  const g = d.geometry || {};
  const energies = g.energies || [];
  const pols = g.polarizations || [];
  const grid = $("thumbs");
  grid.style.gridTemplateColumns = `3em repeat(${energies.length}, 154px)`;
  for (const r of d.results) {
    const row = pols.indexOf(r.polarization);
    const col = energies.findIndex((e) => Math.abs(e - r.energy_ev) < 1e-6);
    if (row < 0 || col < 0) continue;
    const id = `thumb-${r.index}`;
    let img = $(id);
    if (!img) {
      if (!grid.children.length) {
        grid.appendChild(document.createElement("span"));
        for (const e of energies) { const s = document.createElement("span"); s.className = "label"; s.textContent = `${e.toFixed(1)} eV`; grid.appendChild(s); }
        for (const p of pols) {
          const s = document.createElement("span"); s.className = "label"; s.textContent = p; grid.appendChild(s);
          for (let c = 0; c < energies.length; c++) { const cell = document.createElement("span"); cell.id = `cell-${p}-${c}`; grid.appendChild(cell); }
        }
      }
      img = document.createElement("img");
      img.id = id;
      img.alt = `${r.energy_ev} eV ${r.polarization}`;
      img.onclick = (event) => clickSpectrum(event, img);
      const cell = $(`cell-${pols[row]}-${col}`);
      if (cell) cell.appendChild(img);
    }
    if (img.dataset.updated !== String(r.updated)) {
      img.dataset.updated = String(r.updated);
      loadPicture(img, `/api/runs/${d.uid}/results/${r.index}/amplitude.png?thumb=1&t=${r.updated}`);
    }
  }
}

function loadStack() {
  return once("stack", async () => {
    if (!view.uid) return;
    const s = await api(`/api/runs/${view.uid}/stack`);
    view.stackShown = String(s.updated);
    const box = $("dichroism");
    const want = [];
    for (const [name, count] of Object.entries(s.maps || {})) {
      for (let i = 0; i < count; i++) want.push([name, i]);
    }
    box.innerHTML = "";
    for (const [name, i] of want) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.id = `map-${name}-${i}`;
      img.alt = `${name} ${i}`;
      fig.appendChild(img);
      box.appendChild(fig);
      loadPicture(img, `/api/runs/${view.uid}/stack/${name}/${i}.png?t=${s.updated}`);
    }
  });
}

async function clickSpectrum(event, img) {
  const rect = img.getBoundingClientRect();
  const fx = (event.clientX - rect.left) / rect.width;
  const fy = (event.clientY - rect.top) / rect.height;
  const [l, t, r, b] = view.boxes[img.id] || [0, 0, 1, 1];
  const x = Math.min(1, Math.max(0, (fx - l) / (r - l)));
  const y = Math.min(1, Math.max(0, (fy - t) / (b - t)));
  const h = 0.06;
  const q = new URLSearchParams({
    x0: Math.max(0, x - h), y0: Math.max(0, y - h), x1: Math.min(1, x + h), y1: Math.min(1, y + h),
  });
  try {
    const s = await api(`/api/runs/${view.uid}/spectrum?${q}`);
    const traces = s.series.map((series) => ({
      x: series.energies, y: series.od, mode: "lines+markers", name: series.polarization,
    }));
    await Plotly.react("plot-spectrum", traces, {
      title: { text: `OD spectrum at (${x.toFixed(2)}, ${y.toFixed(2)}) from ${s.source}`, font: { size: 13 } },
      xaxis: { title: { text: "energy (eV)" } }, yaxis: { title: { text: "optical density" } },
      margin: { l: 55, r: 10, t: 35, b: 40 },
    }, { displayModeBar: false });
    $("plot-spectrum").dataset.points = String(traces.reduce((n, t) => n + t.x.length, 0));
  } catch (err) {
    $("plot-spectrum").dataset.error = err.message;
  }
}

// ------------------------------------------------------------------ scans
function scanRequest() {
  const numbers = (text) => text.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const common = {
    area_m: Number($("scan-area").value) * 1e-6,
    spot_m: Number($("scan-spot").value) * 1e-6,
    overlap: Number($("scan-overlap").value),
    exposure_s: Number($("scan-exposure").value),
    mode: $("scan-mode").value,
    motion: $("scan-motion").value,
    frame_size: Number($("scan-frame").value),
    n_dark: 5,
    ...(window.doseParams ? window.doseParams() : {}),  // sample, thickness, budget (dose.js)
  };
  const energies = numbers($("scan-energies").value);
  const pols = $("scan-pols").value.split(",").map((s) => s.trim().toUpperCase()).filter(Boolean);
  if ($("scan-kind").value === "raster") {
    return { kind: "raster", params: { ...common, energy_ev: energies[0], polarization: pols[0] } };
  }
  return { kind: "stack", params: { ...common, energies, polarizations: pols } };
}

async function scanAction(path, body) {
  const message = $("scan-message");
  message.className = "message";
  message.textContent = "…";
  try {
    const state = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-API-Key": $("operator-key").value },
      body: body ? JSON.stringify(body) : undefined,
    });
    message.className = "message ok";
    message.textContent = `scan ${state.state}`;
    showScan(state);
    view.follow = true;
  } catch (err) {
    message.textContent = `${err.status}: ${err.message}`;
  }
}

function showScan(state) {
  $("scan-state").textContent = `scan: ${state.state}`;
  $("scan-state").dataset.state = state.state;
  // a beam loss, a camera fault: one line next to the controls until the RunEngine clears it
  const notice = $("scan-notice");
  notice.textContent = state.notice || "";
  notice.hidden = !state.notice;
  $("scan-state").classList.toggle("alert", Boolean(state.notice));
  showQueue(state);
}

// One line of a plan: its name, the main parameters, who queued it.
function describePlan(plan) {
  const p = plan.params || {};
  const parts = [];
  if (p.energies) parts.push(`${p.energies.length} E ${p.energies[0]}–${p.energies[p.energies.length - 1]} eV`);
  if (p.energy_ev !== undefined) parts.push(`${p.energy_ev} eV`);
  const pols = p.polarizations || (p.polarization ? [p.polarization] : []);
  if (pols.length) parts.push(pols.join("/"));
  if (p.spot_m !== undefined) parts.push(`spot ${(p.spot_m * 1e6).toFixed(2)} µm`);
  if (p.area_m !== undefined) parts.push(`area ${(p.area_m * 1e6).toFixed(2)} µm`);
  if (p.exposure_s !== undefined) parts.push(`${p.exposure_s} s`);
  const by = (p.md && p.md.queued_by) || plan.user;  // the HTTP server names every item alike
  const who = by ? ` — by ${by}${plan.user_group ? ` (${plan.user_group})` : ""}` : "";
  return `${plan.name || plan.kind} ${parts.join(", ")}${who}`;
}

// The RunEngine that runs the scans, the running plan and, with a queue server, what waits.
function showQueue(state) {
  $("scan-backend").textContent = state.backend || "–";
  $("scan-running").textContent = state.plan ? `running: ${describePlan(state.plan)}` : "";
  const list = $("scan-queue");
  list.innerHTML = "";
  for (const item of state.queue || []) {
    const li = document.createElement("li");
    li.textContent = describePlan(item);
    li.dataset.uid = item.item_uid || "";
    list.appendChild(li);
  }
  $("scan-queue-count").textContent = state.queue && state.queue.length ? `(${state.queue.length} waiting)` : "";
  $("scan-queue-panel").hidden = state.backend !== "queue" && !state.plan;
}

$("scan-start").onclick = () => scanAction("/api/scan", scanRequest());
$("scan-pause").onclick = () => scanAction("/api/scan/pause");
$("scan-resume").onclick = () => scanAction("/api/scan/resume");
$("scan-abort").onclick = () => scanAction("/api/scan/abort");
$("img-amplitude").onclick = (event) => clickSpectrum(event, $("img-amplitude"));

// ------------------------------------------------------------------ live
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { $("connection").textContent = "live"; $("connection").className = "pill on"; };
  ws.onclose = () => {
    $("connection").textContent = "offline"; $("connection").className = "pill off";
    setTimeout(connect, 1000);
  };
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "hello") { if (m.runs.length) renderRuns(m.runs); showScan(m.scan); }
    else if (m.type === "runs") renderRuns(m.runs);
    else if (m.type === "scan") showScan(m);
    else if (m.uid === view.uid) {
      if (m.type === "frames" || m.type === "result") refreshRun();
      if (m.type === "stack") loadStack();
    }
    window.lastMessage = m;
  };
}

loadRuns().catch((err) => console.warn(err.message));
api("/api/scan").then(showScan).catch(() => {});
connect();
