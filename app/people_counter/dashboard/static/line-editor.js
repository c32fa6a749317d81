// The counting line editor: drag the line's two ends over the live video, then save.
// Points are fractions of the frame, as counting.line; "in" is a crossing to the right of p1 -> p2
// (the arrow). GET /api/line gives the line in force and the session's CSRF token; POST saves.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const byId = (id) => document.getElementById(id);
  let line = null; // [[x1, y1], [x2, y2]] while editing
  let token = "";
  let dragging = -1;
  let svg = null;

  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    parent.appendChild(node);
    return node;
  }

  // Where the picture is inside the <img> (object-fit: contain leaves bars when the shapes differ).
  function pictureBox() {
    const img = byId("video");
    const nw = img.naturalWidth || 4, nh = img.naturalHeight || 3;
    const scale = Math.min(img.clientWidth / nw, img.clientHeight / nh);
    const width = nw * scale, height = nh * scale;
    return { left: img.offsetLeft + (img.clientWidth - width) / 2, top: img.offsetTop + (img.clientHeight - height) / 2,
      width, height };
  }

  function draw() {
    const box = pictureBox();
    Object.assign(svg.style, { left: `${box.left}px`, top: `${box.top}px`, width: `${box.width}px`,
      height: `${box.height}px` });
    svg.setAttribute("viewBox", `0 0 ${box.width} ${box.height}`);
    const [[x1, y1], [x2, y2]] = line.map(([x, y]) => [x * box.width, y * box.height]);
    const length = Math.hypot(x2 - x1, y2 - y1) || 1;
    // The "in" side: right of p1 -> p2 on screen (y down), along the normal (-dy, dx).
    const nx = -(y2 - y1) / length, ny = (x2 - x1) / length;
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
    svg.replaceChildren();
    el("line", { x1, y1, x2, y2, class: "edit-line" }, svg);
    el("line", { x1: mx, y1: my, x2: mx + nx * 34, y2: my + ny * 34, class: "edit-arrow" }, svg);
    el("text", { x: mx + nx * 48, y: my + ny * 48 + 5, "text-anchor": "middle", class: "edit-label" }, svg)
      .textContent = "in";
    [[x1, y1], [x2, y2]].forEach(([cx, cy], i) => {
      const handle = el("circle", { cx, cy, r: 11, class: "edit-handle", id: `line-end-${i + 1}` }, svg);
      handle.addEventListener("pointerdown", (event) => {
        dragging = i;
        svg.setPointerCapture(event.pointerId);
        event.preventDefault();
      });
    });
  }

  function move(event) {
    if (dragging < 0) return;
    const rect = svg.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    line[dragging] = [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
    draw();
  }

  function say(text, bad) {
    const msg = byId("line-msg");
    msg.textContent = text;
    msg.classList.toggle("bad", Boolean(bad));
  }

  function close() {
    line = null;
    dragging = -1;
    svg.setAttribute("hidden", "");
    byId("line-tools").hidden = true;
    byId("line-edit").hidden = false;
  }

  async function load() {
    const res = await fetch("/api/line", { cache: "no-store" });
    if (!res.ok) return null;
    return res.json();
  }

  async function open() {
    const current = await load();
    if (!current) { say("The line editor is not available.", true); return; }
    token = current.csrf_token;
    line = current.line.map((p) => [...p]);
    byId("line-edit").hidden = true;
    byId("line-tools").hidden = false;
    svg.removeAttribute("hidden");
    say(current.warnings.length ? current.warnings.join("; ") :
      current.source === "dashboard" ? "Drag the ends. This line was placed here." :
      "Drag the ends. This line comes from the counter's config.", current.warnings.length > 0);
    draw();
  }

  async function save() {
    const round = (v) => Math.round(v * 10000) / 10000;
    const body = JSON.stringify({ line: line.map(([x, y]) => [round(x), round(y)]) });
    try {
      // The page's Referrer-Policy (no-referrer) would send "Origin: null": same-origin sends ours.
      const res = await fetch("/api/line", { method: "POST", body, referrerPolicy: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": token } });
      const answer = await res.json();
      if (!res.ok) { say(answer.error || `HTTP ${res.status}`, true); return; }
      close();
      say("Line saved: the counter uses it within a second; counts are kept.", false);
    } catch (e) {
      say("The dashboard did not answer; the line is not saved.", true);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const wrap = document.querySelector(".video-wrap");
    svg = el("svg", { id: "line-editor", class: "line-editor", hidden: "" }, wrap);
    svg.addEventListener("pointermove", move);
    svg.addEventListener("pointerup", () => { dragging = -1; });
    byId("line-edit").addEventListener("click", open);
    byId("line-cancel").addEventListener("click", () => { close(); say("", false); });
    byId("line-swap").addEventListener("click", () => { line.reverse(); draw(); });
    byId("line-save").addEventListener("click", save);
    byId("video").addEventListener("load", () => { if (line) draw(); });
    window.addEventListener("resize", () => { if (line) draw(); });
    // The button shows only when the dashboard has a line editor configured.
    load().then((current) => { byId("line-edit").hidden = !current; }).catch(() => {});
  });
})();
