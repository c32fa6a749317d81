// The fleet page: the device table and fleet figures live over SSE, and history charts (plain SVG).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const rows = new Map(); // device id -> its latest row from the server
let range = "hour";
let chartDevice = "all";
let clockOffset = 0; // the server's time minus this browser's, in seconds

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function fmtNumber(v) {
  return v === undefined || v === null ? "–" : String(v);
}

function serverNow() {
  return Date.now() / 1000 + clockOffset;
}

function lastSeenText(ts) {
  if (ts === null || ts === undefined) return "never";
  const age = Math.max(0, serverNow() - ts);
  const at = new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return `${at} (${fmtDuration(age)} ago)`;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.device = row.device;
  tr.className = row.status + (row.device === chartDevice ? " selected" : "");
  cell(tr, row.device, "device");
  const status = cell(tr, "");
  const badge = document.createElement("span");
  badge.className = `status ${row.status}`;
  badge.textContent = row.status;
  status.appendChild(badge);
  cell(tr, fmtNumber(row.count), "num count");
  cell(tr, fmtNumber(row.total), "num total");
  cell(tr, fmtNumber(row.in), "num");
  cell(tr, fmtNumber(row.out), "num");
  cell(tr, fmtDuration(row.avg_duration_s), "num");
  cell(tr, lastSeenText(row.last_seen), "last-seen");
  const alerts = cell(tr, "", "alerts");
  for (const a of row.alerts || []) {
    const tag = document.createElement("span");
    tag.className = `alert-tag ${a.type}`;
    tag.textContent = a.type;
    tag.title = a.value === null ? a.type : `${a.value} (limit ${a.threshold})`;
    alerts.appendChild(tag);
  }
  tr.addEventListener("click", () => selectDevice(row.device));
  return tr;
}

function placeRow(row) {
  const body = $("devices-body");
  const fresh = renderRow(row);
  const old = body.querySelector(`tr[data-device="${CSS.escape(row.device)}"]`);
  if (old) {
    old.replaceWith(fresh);
    return;
  }
  // New devices go in order of their ids.
  const after = [...body.children].find((tr) => tr.dataset.device > row.device);
  body.insertBefore(fresh, after || null);
}

function applyFleet(fleet, broker) {
  $("f-count").textContent = fmtNumber(fleet.count);
  $("f-total").textContent = fmtNumber(fleet.total);
  $("f-in").textContent = fmtNumber(fleet.in);
  $("f-out").textContent = fmtNumber(fleet.out);
  $("f-avg").textContent = fmtDuration(fleet.avg_duration_s);
  $("f-alerts").textContent = fmtNumber(fleet.open_alerts);
  $("f-devices").textContent = `${fleet.devices} devices: ${fleet.online} online, ${fleet.silent} silent, ${fleet.offline} offline`;
  $("online-text").textContent = `${fleet.online} of ${fleet.devices} online`;
  $("online-pill").className = "pill " + (fleet.devices && fleet.online === fleet.devices ? "ok" : fleet.devices ? "bad" : "");
  const live = broker.connected;
  $("live-pill").className = "pill " + (live ? "ok" : "bad");
  $("live-text").textContent = live ? "Live" : "Not live";
  $("stale-banner").hidden = live;
  if (!live) $("stale-text").textContent = "The fleet page cannot reach the central broker.";
  document.body.classList.toggle("stale", !live);
}

function apply(message, whole) {
  clockOffset = message.now - Date.now() / 1000;
  if (whole) {
    rows.clear();
    $("devices-body").replaceChildren();
  }
  for (const row of message.devices) {
    rows.set(row.device, row);
    placeRow(row);
  }
  $("devices-empty").hidden = rows.size > 0;
  applyFleet(message.fleet, message.broker);
}

function refreshAges() {
  for (const tr of $("devices-body").children) {
    const row = rows.get(tr.dataset.device);
    if (row) tr.querySelector(".last-seen").textContent = lastSeenText(row.last_seen);
  }
}

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart(data) {
  // People in view as a line, entries per minute as bars: the dashboard's chart, for a device or the fleet.
  const box = $("chart");
  const W = box.clientWidth || 800, H = box.clientHeight || 240;
  const pad = { l: 40, r: 40, t: 10, b: 24 };
  const pts = data.points || [];
  const known = pts.filter((p) => p.people !== null);
  $("chart-empty").hidden = known.length > 0;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": "People in view and entries per minute" });
  const maxP = niceMax(Math.max(1, ...known.map((p) => p.people)));
  const maxE = niceMax(Math.max(1, ...known.map((p) => p.entries)));
  const n = Math.max(1, pts.length);
  const x = (i) => pad.l + (i + 0.5) * (W - pad.l - pad.r) / n;
  const y = (v, max) => H - pad.b - v / max * (H - pad.t - pad.b);
  for (let k = 0; k <= 4; k++) {
    const gy = pad.t + k * (H - pad.t - pad.b) / 4;
    svg("line", { x1: pad.l, x2: W - pad.r, y1: gy, y2: gy, class: "grid-line" }, root);
    svg("text", { x: pad.l - 6, y: gy + 4, "text-anchor": "end", class: "axis" }, root).textContent = +(maxP * (1 - k / 4)).toFixed(1);
    svg("text", { x: W - pad.r + 6, y: gy + 4, class: "axis" }, root).textContent = +(maxE * (1 - k / 4)).toFixed(1);
  }
  const bw = Math.max(1, (W - pad.l - pad.r) / n * 0.6);
  pts.forEach((p, i) => {
    if (p.entries) svg("rect", { x: x(i) - bw / 2, y: y(p.entries, maxE), width: bw,
      height: H - pad.b - y(p.entries, maxE), class: "entries-bar", rx: 1.5 }, root);
  });
  const d = pts.map((p, i) => (p.people === null ? null : `${x(i).toFixed(1)},${y(p.people, maxP).toFixed(1)}`))
    .reduce((acc, pt) => acc + (pt === null ? " " : (acc.endsWith(" ") || !acc ? "M" : "L") + pt), "");
  svg("path", { d: d.trim() || "M0,0", class: "people-line" }, root);
  if (known.length === 1) {
    const i = pts.indexOf(known[0]);
    svg("circle", { cx: x(i), cy: y(known[0].people, maxP), r: 3, class: "people-dot" }, root);
  }
  for (let k = 0; k <= 6; k++) {
    const i = Math.min(pts.length - 1, Math.round(k * (pts.length - 1) / 6));
    if (!pts[i]) continue;
    const t = new Date(pts[i].ts * 1000);
    const label = range === "week" ? t.toLocaleDateString([], { weekday: "short", day: "numeric" }) :
      t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg("text", { x: x(i), y: H - 6, "text-anchor": "middle", class: "axis" }, root).textContent = label;
  }
  box.replaceChildren(root);
}

function historyQuery() {
  return `device=${encodeURIComponent(chartDevice)}&range=${range}`;
}

async function loadHistory() {
  $("chart-device").textContent = chartDevice === "all" ? "whole fleet" : chartDevice;
  $("csv-link").href = `/api/history.csv?${historyQuery()}`;
  try {
    const res = await fetch(`/api/history?${historyQuery()}`);
    if (res.ok) drawChart(await res.json());
  } catch (e) { /* try again on the next tick */ }
}

function selectDevice(device) {
  chartDevice = device;
  for (const tr of $("devices-body").children) tr.classList.toggle("selected", tr.dataset.device === device);
  $("show-all").classList.toggle("active", device === "all");
  loadHistory();
}

function connectEvents() {
  const source = new EventSource("/events");
  source.addEventListener("fleet", (e) => apply(JSON.parse(e.data), true));
  source.addEventListener("update", (e) => apply(JSON.parse(e.data), false));
  source.onerror = () => {
    $("live-pill").className = "pill bad";
    $("live-text").textContent = "Page unreachable";
    $("stale-banner").hidden = false;
    $("stale-text").textContent = "The connection to the fleet page was lost; reconnecting…";
    // A 401 (the session expired) ends EventSource for good: back to the login page.
    fetch("/api/devices").then((r) => { if (r.status === 401) location.href = "/login"; }).catch(() => {});
  };
}

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  refreshAges();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".tab[data-range]").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll(".tab[data-range]").forEach((t) => t.classList.toggle("active", t === tab));
    range = tab.dataset.range;
    loadHistory();
  }));
  $("show-all").addEventListener("click", () => selectDevice("all"));
  $("show-all").classList.add("active");
  tick();
  setInterval(tick, 1000);
  connectEvents();
  loadHistory();
  setInterval(loadHistory, 60000);
});
