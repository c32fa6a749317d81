// The dashboard page: live figures over SSE, the MJPEG video, history charts (plain SVG), alerts, health.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
let range = "hour";
let videoWasOn = false;
let alertsShown = 0;

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

function fmtTime(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function setFigure(id, value) {
  const el = $(id);
  const text = value === undefined || value === null ? "–" : String(value);
  if (el.textContent !== text) {
    el.textContent = text;
    el.classList.add("flash");
    setTimeout(() => el.classList.remove("flash"), 500);
  }
}

function setHealth(id, text, level) {
  const el = $(id);
  el.textContent = text;
  el.className = level || "";
}

function applySnapshot(snap) {
  const st = snap.state || {};
  const has = Object.keys(st).length > 0;
  $("device-id").textContent = snap.device_id || "";
  document.title = has ? `${st.count} in view · People counter` : "People counter";

  setFigure("count", has ? st.count : null);
  setFigure("total", has ? st.total : null);
  setFigure("in", has ? st.in : null);
  setFigure("out", has ? st.out : null);
  $("avg").textContent = has ? fmtDuration(st.avg_duration_s) : "–";
  $("updated").textContent = has && snap.state_age_s !== null ? `updated ${fmtTime(st.ts)}` : "waiting for the counter";

  // Live / stale: the state must be fresh AND the broker link up.
  const live = snap.fresh && snap.broker.connected;
  const pill = $("live-pill");
  pill.className = "pill " + (live ? "ok" : "bad");
  $("live-text").textContent = live ? "Live" : "Not live";
  document.body.classList.toggle("stale", !live);
  const banner = $("stale-banner");
  banner.hidden = live;
  if (!live) {
    let why;
    if (!snap.broker.connected) why = "The dashboard cannot reach the MQTT broker.";
    else if (!has) why = "No figures from the counter yet.";
    else if (snap.available === "offline") why = "The counter is offline.";
    else why = "The counter has stopped reporting.";
    const age = snap.state_age_s;
    $("stale-text").textContent = has && age !== null ? `${why} Last update ${fmtDuration(age)} ago.` : why;
  }

  // Privacy blur: carried in the counter's state as privacy_blur.
  const privacy = $("privacy-pill");
  if (typeof st.privacy_blur === "boolean") {
    privacy.className = "pill " + (st.privacy_blur ? "privacy-on" : "privacy-off");
    $("privacy-text").textContent = st.privacy_blur ? "Privacy blur on" : "Privacy blur off";
  } else {
    privacy.className = "pill";
    $("privacy-text").textContent = "Privacy blur unknown";
  }

  // Health panel.
  setHealth("h-counter", snap.available === "online" ? (snap.fresh ? "online" : "silent") : snap.available,
    snap.available === "online" && snap.fresh ? "ok" : "bad");
  const input = st.input || "–";
  setHealth("h-input", input, input === "ok" ? "ok" : input === "reconnecting" ? "warn" : has ? "bad" : "");
  setHealth("h-fps", has ? `${Number(st.fps).toFixed(1)} fps` : "–", "");
  setHealth("h-inference", has ? `${Number(st.inference_ms).toFixed(1)} ms` : "–", "");
  setHealth("h-broker", snap.broker.connected ? "connected" : "disconnected", snap.broker.connected ? "ok" : "bad");
  setHealth("h-dropped", has ? String(st.dropped_frames) : "–", has && st.dropped_frames > 0 ? "warn" : "");
  setHealth("h-uptime", has ? fmtDuration(st.uptime_s) : "–", "");

  setHealth("h-privacy", typeof st.privacy_blur === "boolean" ? (st.privacy_blur ? "on" : "off") : "–",
    st.privacy_blur === true ? "ok" : st.privacy_blur === false ? "warn" : "");
  const enc = snap.encoder || {};
  setHealth("h-viewers", enc.viewers === undefined ? "–" : String(enc.viewers), "");
  const encLevel = enc.state === "running" ? "ok" : enc.state === "waiting" ? "warn" : "bad";
  const encText = enc.state === "running" ? `${Number(enc.fps).toFixed(0)} fps` :
    enc.state === "waiting" ? "waiting" : enc.state || "–";
  setHealth("h-encoder", encText, encLevel);
  $("video-meta").textContent = enc.video ? `${enc.size} · ${Number(enc.fps).toFixed(0)} fps · ${enc.viewers} watching` : "";
  setVideo(Boolean(enc.video), enc.state);
}

function setVideo(on, encoderState) {
  $("video-off").hidden = on;
  if (!on) {
    $("video-off-text").textContent =
      encoderState === "waiting" ? "The encoder is waiting for frames from the counter. Figures stay live." :
      "The video encoder is not running. Figures stay live.";
  }
  // When video comes back, reconnect the stream in case the old connection has ended.
  if (on && !videoWasOn) startVideo();
  videoWasOn = on;
}

function startVideo() {
  $("video").src = `/video.mjpg?t=${Date.now()}`;
}

function alertText(a) {
  if (a.type === "occupancy") return `${a.value} people in view (limit ${a.threshold})`;
  if (a.type === "loitering") return `A person stayed ${fmtDuration(a.value)} (limit ${fmtDuration(a.threshold)})`;
  return `${a.type}: ${a.value}`;
}

function addAlert(a, isNew) {
  const li = document.createElement("li");
  li.className = `alert ${a.type}` + (isNew ? " new" : "");
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = a.type;
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = alertText(a);
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = fmtTime(a.ts);
  li.append(badge, what, when);
  const list = $("alerts-list");
  if (isNew) list.prepend(li); else list.append(li);
  while (list.children.length > 30) list.lastChild.remove();
  alertsShown = list.children.length;
  $("alerts-empty").hidden = alertsShown > 0;
  $("alerts-count").textContent = alertsShown ? `${alertsShown} recent` : "";
  if (isNew) toast(alertText(a));
}

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

async function loadAlerts() {
  try {
    const res = await fetch("/api/alerts");
    if (!res.ok) return;
    const alerts = await res.json();
    $("alerts-list").replaceChildren();
    alerts.forEach((a) => addAlert(a, false));
    $("alerts-empty").hidden = alerts.length > 0;
  } catch (e) { /* the SSE handler shows connection trouble */ }
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
  const box = $("chart");
  const W = box.clientWidth || 800, H = box.clientHeight || 240;
  const pad = { l: 36, r: 36, t: 10, b: 24 };
  const pts = data.points || [];
  const withData = pts.filter((p) => p.people !== null);
  $("chart-empty").hidden = withData.length > 0;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": "People in view and entries per minute" });
  const maxP = niceMax(Math.max(1, ...withData.map((p) => p.people)));
  const maxE = niceMax(Math.max(1, ...withData.map((p) => p.entries)));
  const n = Math.max(1, pts.length);
  const x = (i) => pad.l + (i + 0.5) * (W - pad.l - pad.r) / n;
  const yP = (v) => H - pad.b - v / maxP * (H - pad.t - pad.b);
  const yE = (v) => H - pad.b - v / maxE * (H - pad.t - pad.b);
  for (let k = 0; k <= 4; k++) {
    const y = pad.t + k * (H - pad.t - pad.b) / 4;
    svg("line", { x1: pad.l, x2: W - pad.r, y1: y, y2: y, class: "grid-line" }, root);
    svg("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end", class: "axis" }, root).textContent =
      +(maxP * (1 - k / 4)).toFixed(1);
    svg("text", { x: W - pad.r + 6, y: y + 4, "text-anchor": "start", class: "axis" }, root).textContent =
      +(maxE * (1 - k / 4)).toFixed(1);
  }
  const bw = Math.max(1, (W - pad.l - pad.r) / n * 0.6);
  pts.forEach((p, i) => {
    if (p.entries) svg("rect", { x: x(i) - bw / 2, y: yE(p.entries), width: bw, height: H - pad.b - yE(p.entries),
      class: "entries-bar", rx: 1.5 }, root);
  });
  // People in view: a line with a soft area, broken where there is no data.
  let segment = [];
  const flush = () => {
    if (segment.length) {
      const d = segment.map(([i, v], k) => `${k ? "L" : "M"}${x(i).toFixed(1)},${yP(v).toFixed(1)}`).join("");
      const first = segment[0][0], last = segment[segment.length - 1][0];
      svg("path", { d: `${d}L${x(last).toFixed(1)},${H - pad.b}L${x(first).toFixed(1)},${H - pad.b}Z`,
        class: "people-area" }, root);
      svg("path", { d, class: "people-line" }, root);
      if (segment.length === 1) {
        // A lone minute has no line to draw: mark it with a dot.
        svg("circle", { cx: x(first), cy: yP(segment[0][1]), r: 3, class: "people-dot" }, root);
      }
    }
    segment = [];
  };
  pts.forEach((p, i) => { if (p.people === null) flush(); else segment.push([i, p.people]); });
  flush();
  const ticks = 6;
  for (let k = 0; k <= ticks; k++) {
    const i = Math.min(pts.length - 1, Math.round(k * (pts.length - 1) / ticks));
    if (!pts[i]) continue;
    const d = new Date(pts[i].ts * 1000);
    const label = range === "week" ? d.toLocaleDateString([], { weekday: "short", day: "numeric" }) :
      d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg("text", { x: x(i), y: H - 6, "text-anchor": "middle", class: "axis" }, root).textContent = label;
  }
  box.replaceChildren(root);
}

function summariseHour(data) {
  // The hero card's side figures, from the last hour's per-minute history.
  const pts = (data.points || []).filter((p) => p.people !== null);
  if (!pts.length) return;
  const perMinute = data.bucket_s / 60;
  $("hour-entries").textContent = String(Math.round(pts.reduce((s, p) => s + p.entries * perMinute, 0)));
  $("hour-peak").textContent = String(Math.max(...pts.map((p) => p.people_max ?? p.people)));
  $("hour-avg").textContent = (pts.reduce((s, p) => s + p.people, 0) / pts.length).toFixed(1);
}

async function loadHistory() {
  try {
    const res = await fetch(`/api/history?range=${range}`);
    if (res.ok) {
      const data = await res.json();
      drawChart(data);
      if (range === "hour") summariseHour(data);
      else {
        const hour = await fetch("/api/history?range=hour");
        if (hour.ok) summariseHour(await hour.json());
      }
    }
  } catch (e) { /* try again on the next tick */ }
}

function connectEvents() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("alert", (e) => addAlert(JSON.parse(e.data), true));
  source.onerror = () => {
    // The dashboard may have restarted: its video connection is gone too, so reopen it
    // as soon as a snapshot says video is playing again.
    videoWasOn = false;
    $("live-pill").className = "pill bad";
    $("live-text").textContent = "Dashboard unreachable";
    $("stale-banner").hidden = false;
    $("stale-text").textContent = "The connection to the dashboard was lost; reconnecting…";
    // A 401 (the session expired) ends EventSource for good: back to the login page.
    fetch("/api/state").then((r) => { if (r.status === 401) location.href = "/login"; }).catch(() => {});
  };
}

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
    range = tab.dataset.range;
    $("csv-link").href = `/api/history.csv?range=${range}`;
    loadHistory();
  }));
  $("video").addEventListener("error", () => { videoWasOn = false; });
  tick();
  setInterval(tick, 10000);
  connectEvents();
  loadAlerts();
  loadHistory();
  setInterval(loadHistory, 60000);
  window.addEventListener("resize", () => loadHistory());
});
