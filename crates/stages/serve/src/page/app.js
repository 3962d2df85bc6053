// The CellOps page: pick an image type, drop an image, see the overlay, the summary and the
// nuclei; download the rows as CSV. Only this service is contacted; every value is shown as text.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // { file, model, type }

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function json(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || body.reason || r.statusText);
  return body;
}

async function load() {
  const ready = await fetch("/v2/health/ready").then((r) => r.json());
  if (!ready.ready) {
    $("release").textContent = "not ready: " + (ready.reason || "unknown");
    setTimeout(load, 2000);
    return;
  }
  $("release").textContent = "release " + ready.release;
  const select = $("type");
  select.replaceChildren();
  for (const name of Object.keys(ready.models)) {
    const meta = await json("/v2/models/" + encodeURIComponent(name));
    for (const type of meta.parameters.image_types) {
      const o = document.createElement("option");
      o.value = JSON.stringify({ model: name, type });
      o.textContent = type + " (model " + name + ")";
      select.append(o);
    }
  }
  select.disabled = false;
}

function measureUrl(choice, file, extra) {
  const stem = file.name.replace(/\.[^.]*$/, "");
  const q = new URLSearchParams({ params: choice.type, name: stem, ...extra });
  return "/v2/models/" + encodeURIComponent(choice.model) + "/measure?" + q;
}

async function post(url, file, accept) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": file.type || "application/octet-stream", Accept: accept },
    body: file,
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error(body.error || r.statusText);
  }
  return r;
}

function cell(tag, text) {
  const c = document.createElement(tag);
  c.textContent = text === null || text === undefined ? "" : String(text);
  return c;
}

function show(answer) {
  $("name").textContent = current.file.name;
  const summary = $("summary").tBodies[0];
  summary.replaceChildren();
  for (const [k, v] of Object.entries(answer.summary)) {
    if (v !== null && typeof v === "object") continue;
    const tr = document.createElement("tr");
    tr.append(cell("td", k), cell("td", typeof v === "number" ? +v.toPrecision(6) : v));
    summary.append(tr);
  }
  const rows = answer.objects;
  $("count").textContent = "(" + rows.length + ")";
  const head = $("objects").tHead;
  const body = $("objects").tBodies[0];
  head.replaceChildren();
  body.replaceChildren();
  if (rows.length) {
    const tr = document.createElement("tr");
    for (const k of Object.keys(rows[0])) tr.append(cell("th", k));
    head.append(tr);
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const v of Object.values(row)) tr.append(cell("td", typeof v === "number" ? +v.toPrecision(6) : v));
    body.append(tr);
  }
  $("result").hidden = false;
}

async function measure(file) {
  current = { file, ...JSON.parse($("type").value) };
  status("measuring " + file.name + "…");
  try {
    const answer = await (await post(measureUrl(current, file, {}), file, "application/json")).json();
    const png = await (await post(measureUrl(current, file, { overlay: "png" }), file, "image/png")).blob();
    const img = $("overlay");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(png);
    show(answer);
    status(answer.objects.length + " nuclei in " + file.name + " (release " + answer.release + ", bundle " + answer.model_version + ")");
  } catch (e) {
    status(file.name + ": " + e.message, true);
  }
}

async function downloadCsv() {
  if (!current) return;
  try {
    const r = await post(measureUrl(current, current.file, {}), current.file, "text/csv");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = current.file.name.replace(/\.[^.]*$/, "") + "-objects.csv";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    status("CSV: " + e.message, true);
  }
}

function wire() {
  const drop = $("drop");
  const take = (files) => files && files.length && measure(files[0]);
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && $("file").click());
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); });
  $("file").addEventListener("change", (e) => take(e.target.files));
  $("csv").addEventListener("click", downloadCsv);
  load().catch((e) => { $("release").textContent = "cannot reach the service: " + e.message; });
}

wire();
