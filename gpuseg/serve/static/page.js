// gpuseg's page: upload an image once, then re-cluster it live as the controls move.
// A newer request supersedes an older one (the older is aborted and its answer ignored); a large image is
// clustered on its downscaled preview while a control is dragged, and at full resolution when released.

const $ = (id) => document.getElementById(id);
const controls = ["eps", "min-samples", "color", "xy-scale", "noise-mode", "min-region", "view"];
let session = null; // {id, name, width, height, preview}
let curve = null; // {knee_eps, k_distances}
let latest = 0; // number of the newest request; answers to older ones are dropped
let inflight = null; // AbortController of the request in flight
let debounce = null;
let changedAt = 0; // when the control that led to the pending request moved
let downloads = [];

function parameters() {
  return {
    eps: $("eps").value,
    min_samples: $("min-samples").value,
    color: $("color").value,
    xy_scale: $("xy-scale").value,
    noise: $("noise-mode").value,
    min_region: $("min-region").value,
  };
}

async function call(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const token = $("token").value.trim();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) {
      /* not JSON: keep the status line */
    }
    if (response.status === 401) $("token-row").hidden = false;
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

async function upload(file) {
  if (!file) return;
  showError("");
  $("input").src = URL.createObjectURL(file);
  $("resolution").textContent = "uploading…";
  const body = new FormData();
  body.append("image", file, file.name);
  try {
    session = await call("/v1/sessions", { method: "POST", body, headers: { "X-Filename": file.name } });
  } catch (error) {
    session = null;
    $("resolution").textContent = "no image";
    $("result").dataset.state = "error";
    showError(error.message);
    return;
  }
  $("copy-command").disabled = false;
  showCommand();
  loadCurve();
  request(false);
}

function query(extra) {
  return new URLSearchParams({ ...parameters(), ...extra }).toString();
}

function invalid() {
  // a number field being edited (empty, or out of its range) is not sent: the page says what it needs
  for (const [id, name, need] of [["min-samples", "min_samples", "an integer >= 1"],
    ["xy-scale", "xy_scale", "a number >= 0 (0 for colour only)"],
    ["min-region", "min_region", "an integer >= 0 (pixels)"]]) {
    if ($(id).value === "" || !$(id).checkValidity()) return `${name} needs ${need}`;
  }
  return "";
}

function schedule(preview) {
  changedAt = performance.now();
  $("eps-value").textContent = Number($("eps").value).toFixed(4);
  const problem = invalid();
  showError(problem);
  if (problem) return;
  showCommand();
  drawCurve();
  if (!session) return;
  clearTimeout(debounce);
  debounce = setTimeout(() => request(preview && session.preview !== null), preview ? 40 : 0);
}

async function request(preview) {
  const mine = ++latest;
  if (inflight) inflight.abort();
  inflight = new AbortController();
  const started = changedAt || performance.now();
  $("result").dataset.state = "busy";
  try {
    const path = `/v1/sessions/${session.id}/segment?${query({ view: $("view").value, preview })}`;
    const result = await call(path, { signal: inflight.signal });
    if (mine !== latest) return;
    await show(result);
    if (mine !== latest) return;
    $("result").dataset.latencyMs = String(Math.round(performance.now() - started));
    $("result").dataset.state = result.preview ? "preview" : "ready";
    $("result").dataset.request = String(mine);
  } catch (error) {
    if (error.name === "AbortError" || mine !== latest) return;
    if (error.status === 404) session = null; // expired on the server: the message says to upload again
    $("result").dataset.state = "error";
    showError(error.message);
  }
}

function show(result) {
  showError("");
  const shown = result.shown_noise_fraction !== result.noise_fraction
    ? ` (${(100 * result.shown_noise_fraction).toFixed(1)}% after fill)` : "";
  const merged = result.shown_clusters !== result.n_clusters ? ` (${result.shown_clusters} after merging)` : "";
  $("clusters").textContent = String(result.n_clusters);
  $("merged").textContent = merged;
  $("noise").textContent = `${(100 * result.noise_fraction).toFixed(1)}%${shown}`;
  $("cluster-time").textContent = `${(1000 * result.cluster_s).toFixed(1)} ms`;
  $("device").textContent = result.device;
  $("engine").textContent = result.engine;
  $("resolution").textContent = result.preview
    ? `preview ${result.width}×${result.height}, approximate figures (release the control for full resolution)`
    : `full resolution ${result.width}×${result.height}`;
  $("result-caption").textContent = `${$("view").value}, ${result.preview ? "preview" : "full resolution"}`;
  $("warnings").textContent = result.warnings.join(" ");
  $("warnings").hidden = result.warnings.length === 0;
  if (!result.preview) offerDownloads(result);
  return new Promise((resolve) => {
    $("result").onload = resolve;
    $("result").onerror = resolve;
    $("result").src = result.picture;
  });
}

function offerDownloads(result) {
  downloads.forEach((url) => URL.revokeObjectURL(url));
  const bytes = Uint8Array.from(atob(result.labels_png), (c) => c.charCodeAt(0));
  const stem = (session.name || "image").replace(/\.[^.]*$/, "");
  const labels = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  const report = URL.createObjectURL(
    new Blob([JSON.stringify(result.report, null, 2)], { type: "application/json" }));
  downloads = [labels, report];
  for (const [id, url, name] of [["download-labels", labels, `${stem}.labels.png`],
    ["download-report", report, `${stem}.json`]]) {
    $(id).href = url;
    $(id).download = name;
    $(id).setAttribute("aria-disabled", "false");
  }
}

function command() {
  const p = parameters();
  const name = session ? session.name : "IMAGE";
  let text = `gpuseg segment ${name} --eps ${Number(p.eps).toFixed(4)} --min-samples ${p.min_samples} `
    + `--color ${p.color} --xy-scale ${p.xy_scale}`;
  if (p.noise !== "keep") text += ` --noise ${p.noise}`;
  if (Number(p.min_region) > 1) text += ` --min-region ${p.min_region}`;
  return text;
}

function showCommand() {
  $("command").textContent = command();
}

async function loadCurve() {
  if (!session) return;
  const p = parameters();
  try {
    curve = await call(`/v1/sessions/${session.id}/k-distances?${new URLSearchParams({
      min_samples: p.min_samples, color: p.color, xy_scale: p.xy_scale })}`);
    $("use-knee").disabled = false;
  } catch (error) {
    curve = null;
    showError(error.message);
  }
  drawCurve();
}

function drawCurve() {
  const canvas = $("kdist");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!curve || curve.k_distances.length === 0) return;
  const d = curve.k_distances;
  const eps = Number($("eps").value);
  const top = Math.max(d[d.length - 1], eps) * 1.05 || 1;
  const x = (i) => 40 + (i / Math.max(1, d.length - 1)) * (canvas.width - 50);
  const y = (v) => canvas.height - 20 - (v / top) * (canvas.height - 30);
  g.strokeStyle = "#999";
  g.strokeRect(40, 10, canvas.width - 50, canvas.height - 30);
  g.fillStyle = "#333";
  g.font = "11px system-ui";
  g.fillText(top.toFixed(3), 2, 16);
  g.fillText("0", 28, canvas.height - 20);
  g.strokeStyle = "#1f77b4";
  g.lineWidth = 2;
  g.beginPath();
  d.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.stroke();
  g.strokeStyle = "#d62728";
  g.lineWidth = 1;
  g.beginPath();
  g.moveTo(40, y(eps));
  g.lineTo(canvas.width - 10, y(eps));
  g.stroke();
  g.fillStyle = "#d62728";
  g.fillText(`eps ${eps.toFixed(4)}; knee ${curve.knee_eps.toFixed(4)}`, 48, Math.max(22, y(eps) - 4));
}

function watch() {
  for (const id of controls) {
    const element = $(id);
    if (element.type === "range") {
      element.addEventListener("input", () => schedule(true)); // dragging: the preview
      element.addEventListener("change", () => schedule(false)); // released: full resolution
    } else {
      element.addEventListener("change", () => {
        if (["min-samples", "color", "xy-scale"].includes(id) && !invalid()) loadCurve();
        schedule(false);
      });
    }
  }
  $("image").addEventListener("change", () => upload($("image").files[0]));
  $("use-knee").addEventListener("click", () => {
    if (!curve) return;
    $("eps").value = curve.knee_eps.toFixed(4);
    schedule(false);
  });
  $("copy-command").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(command());
      $("copy-command").textContent = "Copied";
    } catch (_) {
      window.getSelection().selectAllChildren($("command")); // no clipboard access: select it instead
      $("copy-command").textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => ($("copy-command").textContent = "Copy the command"), 1500);
  });
  document.body.addEventListener("dragover", (event) => {
    event.preventDefault();
    document.body.classList.add("dragging");
  });
  document.body.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.body.addEventListener("drop", (event) => {
    event.preventDefault();
    document.body.classList.remove("dragging");
    upload(event.dataTransfer.files[0]);
  });
  $("token").addEventListener("change", () => (session ? request(false) : upload($("image").files[0])));
  showCommand();
}

watch();
