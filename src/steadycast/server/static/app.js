// The steadycast dashboard: plain DOM, no build step. Every value from the API is written with
// textContent (never innerHTML), because series ids, reasons and titles come from data.
"use strict";

const TOKEN_KEY = "steadycast-api-token";
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.addEventListener("click", v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(text) { return el("span", { class: "badge " + String(text) }, text); }
function short(text, n = 19) { return text ? String(text).replace("T", " ").slice(0, n) : ""; }
function num(v, digits = 2) { return v === null || v === undefined ? "" : Number(v).toFixed(digits); }

function setStatus(text, isError) {
  const node = $("#status");
  node.textContent = text || "";
  node.className = isError ? "error" : "";
}

// The token lives in sessionStorage only: gone when the tab closes, never in localStorage.
function token(ask) {
  let value = sessionStorage.getItem(TOKEN_KEY);
  if (!value && ask) {
    value = window.prompt("API token (Authorization: Bearer …)");
    if (value) sessionStorage.setItem(TOKEN_KEY, value.trim());
  }
  return value ? value.trim() : null;
}

async function api(path, options) {
  const opts = Object.assign({ method: "GET", headers: {} }, options || {});
  const write = opts.method !== "GET";
  const t = token(write);
  if (t) opts.headers["Authorization"] = "Bearer " + t;
  if (opts.body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
  }
  let response = await fetch(path, opts);
  if (response.status === 401 && !write && !t && token(true)) {
    opts.headers["Authorization"] = "Bearer " + token(false);
    response = await fetch(path, opts);  // reads need the token on this server
  }
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) sessionStorage.removeItem(TOKEN_KEY);
    const detail = body && body.detail !== undefined ? body.detail : body;
    throw new Error(response.status + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
  }
  return body;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function enc(text) { return encodeURIComponent(text); }

// ------------------------------------------------------------------------- overview
let pipelines = [];

async function loadOverview() {
  const data = await api("/api/v1/pipelines");
  pipelines = data.pipelines;
  for (const select of document.querySelectorAll(".pipeline-select")) {
    const keep = select.value;
    select.replaceChildren(...pipelines.map((p) => el("option", { value: p.name }, p.name)));
    const withRelease = pipelines.find((p) => p.current_release);
    // An alert links to BASE/#pipeline=NAME: open on that pipeline.
    const linked = new URLSearchParams(location.hash.slice(1)).get("pipeline");
    const fromLink = pipelines.some((p) => p.name === linked) ? linked : "";
    select.value = keep || fromLink || (withRelease ? withRelease.name : "");
  }
  fill($("#pipelines-table tbody"), pipelines.map((p) => {
    const run = p.last_run || {};
    const gate = (p.gate || []).filter((g) => !g.passed).map((g) => g.check + ": " + (g.detail || ""));
    const gateCell = el("td", {}, run.status ? badge(run.status) : "no run yet");
    // A pipeline file that does not load runs nothing: say so above whatever ran before.
    if (p.broken) gateCell.prepend(badge("broken"), el("div", { class: "config-error" }, p.config_error || ""));
    // How the run ended and what people did since: "held, then approved by NAME: REASON".
    if (run.outcome && run.outcome !== run.status) gateCell.append(el("div", { class: "outcome" }, run.outcome));
    const approved = (run.outcome || "").startsWith("held, then");
    if (gate.length) gateCell.append(el("div", { class: "info" }, (approved ? "gate held it: " : "gate: ") + gate.join("; ")));
    else if (p.gate && p.gate.length) gateCell.append(el("div", { class: "info" }, `all ${p.gate.length} gate rules passed`));
    const actions = el("td", {});
    if (run.status === "held") {
      actions.append(el("button", { class: "approve-button", "data-run": run.run_id,
        onclick: () => approve(run.run_id) }, "Approve…"));
    }
    return el("tr", { "data-pipeline": p.name, class: p.broken ? "broken" : "" },
      el("td", {}, p.name),
      el("td", { class: "mono" }, run.run_id || ""),
      gateCell,
      el("td", {}, short(run.finished_at)),
      el("td", { class: "num" }, run.series === undefined || run.series === null ? "" :
        run.series + " (" + (run.fallback_series || 0) + ")"),
      el("td", { class: "mono current" }, p.current_release || "none"),
      el("td", { class: "num" }, p.open_incidents + (p.acknowledged_incidents ? " (+" + p.acknowledged_incidents + " ack)" : "")),
      actions);
  }));
}

// ------------------------------------------------------------------------- series
async function suggestSeries() {
  const pipeline = $("#series-pipeline").value;
  if (!pipeline) return;
  const prefix = $("#series-input").value;
  try {
    const data = await api(`/api/v1/pipelines/${enc(pipeline)}/series?limit=50&prefix=${enc(prefix)}`);
    $("#series-options").replaceChildren(...data.series.map((s) => el("option", { value: s })));
  } catch (err) { /* no release yet: nothing to suggest */ }
}

function band(x, lo, hi, name, color) {
  return [
    { x, y: hi, mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip", name: name + " hi" },
    { x, y: lo, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: color, name },
  ];
}

async function showSeries(event) {
  if (event) event.preventDefault();
  const pipeline = $("#series-pipeline").value;
  const id = $("#series-input").value;
  const info = $("#series-info");
  info.replaceChildren();
  const d = await api(`/api/v1/pipelines/${enc(pipeline)}/series/${enc(id)}`);
  const x = d.forecast.map((r) => r.ds);
  const traces = [];
  for (const level of [...d.levels].sort((a, b) => b - a)) {
    const alpha = level >= 95 ? 0.15 : 0.3;
    traces.push(...band(x, d.forecast.map((r) => r["yhat_lo_" + level]),
      d.forecast.map((r) => r["yhat_hi_" + level]), level + "% interval", `rgba(31,111,235,${alpha})`));
  }
  if (d.history) {
    traces.unshift({ x: d.history.map((p) => p.ds), y: d.history.map((p) => p.y), mode: "lines",
      name: "history", line: { color: "#5b6575", width: 1.2 } });
  }
  traces.push({ x, y: d.forecast.map((r) => r.yhat), mode: "lines", name: "forecast",
    line: { color: "#1f6feb", width: 2 } });
  if (d.actuals && d.actuals.length) {
    traces.push({ x: d.actuals.map((p) => p.ds), y: d.actuals.map((p) => p.y), mode: "markers",
      name: "actuals", marker: { color: "#c62828", size: 5 } });
  }
  Plotly.newPlot("series-plot", traces, {
    margin: { t: 30, r: 10, b: 40, l: 50 }, legend: { orientation: "h" },
    title: { text: id, font: { size: 14 } }, xaxis: { type: "date" },
  }, { displaylogo: false, responsive: true });
  const p = d.provenance || {};
  const why = p.source === "selected" || !p.source
    ? (p.selection_reason || "")
    : "fallback (" + p.source + "): " + (p.fallback_reason || "");
  const lines = [
    el("div", {}, "Model: ", el("strong", {}, p.model || (d.forecast[0] || {}).model || "?"),
      p.backtest_score !== undefined && p.backtest_score !== null ? `  (${p.metric || "score"} ${num(p.backtest_score, 3)})` : ""),
    el("div", {}, "Why: ", why || "not recorded"),
    el("div", { class: "mono" }, "Release: " + d.release_id),
  ];
  if (d.note) lines.push(el("div", {}, d.note));
  info.replaceChildren(...lines);
}

// ------------------------------------------------------------------------- incidents
async function loadIncidents() {
  const state = $("#incident-state").value;
  const query = state && state !== "all" ? "?state=" + enc(state) : "";
  let list = (await api("/api/v1/incidents" + query)).incidents;
  if (!state) list = list.filter((i) => i.state !== "resolved");
  fill($("#incidents-table tbody"), list.map((i) => {
    const actions = el("td", {});
    if (i.state === "open") {
      actions.append(el("button", { class: "ack-button", "data-id": String(i.id),
        onclick: () => transition(i.id, "acknowledge") }, "Acknowledge"));
    }
    if (i.state !== "resolved") {
      actions.append(" ", el("button", { class: "resolve-button", "data-id": String(i.id),
        onclick: () => transition(i.id, "resolve") }, "Resolve"));
    }
    const title = el("td", {}, i.title);
    if (i.detail) title.append(el("div", { class: "info" }, i.detail));
    const by = i.acknowledged_by ? "acknowledged by " + i.acknowledged_by : "";
    return el("tr", { "data-id": String(i.id) },
      el("td", {}, i.id), el("td", {}, i.pipeline), el("td", {}, badge(i.severity)),
      el("td", { class: "state" }, badge(i.state), by ? el("div", { class: "info" }, by) : null),
      title, el("td", { class: "num" }, i.occurrences), el("td", {}, short(i.last_seen)), actions);
  }));
}

async function transition(id, action) {
  const note = window.prompt(`Note for the audit log (${action} incident ${id}):`, "");
  if (note === null) return;
  try {
    await api(`/api/v1/incidents/${enc(String(id))}/${action}`, { method: "POST", body: { note: note || null } });
    setStatus(`incident ${id}: ${action}d`);
  } catch (err) { setStatus(String(err.message), true); }
  await Promise.all([loadIncidents(), loadOverview()]);
}

// ------------------------------------------------------------------------- releases
async function loadReleases() {
  const pipeline = $("#releases-pipeline").value;
  if (!pipeline) return;
  const data = await api(`/api/v1/pipelines/${enc(pipeline)}/releases`);
  $("#current-release").textContent = data.current_release || "none";
  fill($("#releases-table tbody"), data.releases.map((r) => el("tr", { "data-release": r.release_id },
    el("td", { class: "mono" }, r.release_id, r.current ? " " : "", r.current ? badge("current") : null),
    el("td", { class: "mono" }, r.run_id || ""),
    el("td", {}, short(r.created_at)),
    el("td", { class: "num" }, r.series ?? ""),
    el("td", { class: "num" }, r.rows ?? ""),
    el("td", { class: "mono" }, (r.content_sha256 || "").slice(0, 12)),
    el("td", {}, r.current ? "" : el("button", { class: "rollback-button", "data-release": r.release_id,
      onclick: () => rollback(pipeline, r.release_id) }, "Roll back to this…")))));
}

async function rollback(pipeline, release) {
  const reason = window.prompt(`Reason for rolling ${pipeline} back to ${release} (audit log):`);
  if (!reason) return;
  try {
    const out = await api(`/api/v1/pipelines/${enc(pipeline)}/rollback`, { method: "POST", body: { to: release, reason } });
    setStatus(`${pipeline}: ${out.release_id} is current (by ${out.actor})`);
  } catch (err) { setStatus(String(err.message), true); }
  await Promise.all([loadReleases(), loadOverview()]);
}

async function approve(runId) {
  const reason = window.prompt(`Reason for approving run ${runId} (audit log):`);
  if (!reason) return;
  try {
    const out = await api(`/api/v1/runs/${enc(runId)}/approve`, { method: "POST", body: { reason } });
    setStatus(`${out.pipeline}: ${out.release_id} published (by ${out.actor})`);
  } catch (err) { setStatus(String(err.message), true); }
  await Promise.all([loadReleases(), loadOverview()]);
}

// ------------------------------------------------------------------------- quality and hogs
async function loadQuality() {
  const pipeline = $("#quality-pipeline").value;
  if (!pipeline) return;
  const q = await api(`/api/v1/pipelines/${enc(pipeline)}/quality?limit=200`);
  $("#quality-info").textContent = q.store_readable
    ? `${q.quarantined_rows} rows quarantined` + (q.checks_run_id ? `; checks of run ${q.checks_run_id}` : "")
    : "the store is busy (another process is writing); try again in a moment";
  fill($("#quarantine-table tbody"), q.quarantine.map((r) =>
    el("tr", {}, el("td", {}, r.reason), el("td", { class: "num" }, r.rows))));
  const checks = (q.checks || []).slice().sort((a, b) => Number(a.passed) - Number(b.passed));
  fill($("#checks-table tbody"), checks.slice(0, 200).map((c) => el("tr", {},
    el("td", {}, c.check), el("td", { class: "mono" }, c.unique_id ?? "(run)"), el("td", {}, badge(c.severity)),
    el("td", {}, c.passed ? badge("ok") : badge("failed")), el("td", {}, c.sentence || c.detail || ""))));
}

function table(selector, rows, columns) {
  const t = $(selector);
  t.tHead.replaceChildren(el("tr", {}, ...columns.map(([label]) => el("th", {}, label))));
  fill(t.tBodies[0], rows.map((r) => el("tr", {}, ...columns.map(([, key, isNum]) =>
    el("td", isNum ? { class: "num" } : {}, r[key] ?? "")))));
}

async function loadHogs() {
  const h = await api(`/api/v1/hogs?since=${enc($("#hogs-since").value)}&by=${enc($("#hogs-by").value)}`);
  const cost = [["CPU s", "cpu_s", true], ["Peak MB", "peak_rss_mb", true], ["Runs", "runs", true]];
  table("#hogs-pipelines", h.pipelines, [["Pipeline", "pipeline"], ["Wall s", "wall_s", true], ...cost]);
  table("#hogs-stages", h.stages, [["Pipeline", "pipeline"], ["Stage", "stage"], ["Wall s", "wall_s", true], ...cost]);
  table("#hogs-models", h.models, [["Model", "model"], ["Pipeline", "pipeline"], ["Tasks", "tasks", true],
    ["Failures", "failures", true], ...cost]);
}

// ------------------------------------------------------------------------- wiring
const loaders = { overview: loadOverview, series: suggestSeries, incidents: loadIncidents,
  releases: loadReleases, quality: loadQuality, hogs: loadHogs };

async function run(fn) {
  try { await fn(); } catch (err) { setStatus(String(err.message), true); }
}

function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("active", s.id === "tab-" + name);
  run(loaders[name]);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#series-form").addEventListener("submit", (e) => run(() => showSeries(e)));
  $("#series-input").addEventListener("input", () => run(suggestSeries));
  $("#incident-state").addEventListener("change", () => run(loadIncidents));
  $("#releases-pipeline").addEventListener("change", () => run(loadReleases));
  $("#quality-pipeline").addEventListener("change", () => run(loadQuality));
  $("#hogs-since").addEventListener("change", () => run(loadHogs));
  $("#hogs-by").addEventListener("change", () => run(loadHogs));
  $("#approve-form").addEventListener("submit", (e) => { e.preventDefault(); run(() => approve($("#approve-run").value)); });
  run(loadOverview);
});
