// The zone editor of the camera page (review/routes/cameras.py). The zones are drawn as an SVG over
// the camera's picture in the picture's own pixels (viewBox = its width and height); every point is
// kept normalised (0..1) as in the site YAML. Click on the picture to add a point to the selected zone
// ("Add points" mode; a new zone starts in it), drag a point to move it, select a point and press
// Delete to remove it. Parameters come from the zone type's JSON Schema (the server's zone_fields).
// Check / Save / Download patch send the zones to the server, which validates them with the site
// schema (as `patrol check-config` does) and answers the problems per zone or the YAML diff.
(function () {
  "use strict";
  const dataEl = document.getElementById("editor-data");
  if (!dataEl) return;
  const data = JSON.parse(dataEl.textContent);
  const W = data.width, H = data.height;
  const SVG = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("zones-svg");
  const list = document.getElementById("zone-list");
  const form = document.getElementById("zone-form");
  const params = document.getElementById("zone-params");
  const zoneErrors = document.getElementById("zone-errors");
  const problems = document.getElementById("problems");
  const statusEl = document.getElementById("save-status");
  const diffEl = document.getElementById("zones-diff");
  const drawToggle = document.getElementById("draw-toggle");
  const zones = data.zones.map((z) => JSON.parse(JSON.stringify(z)));
  let selected = zones.length ? 0 : -1;
  let selectedPoint = -1;
  let drawing = false;
  let dragging = false;
  let errorsByZone = {};

  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const R = Math.max(W, H) / 110;

  function round(v) { return Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000; }

  function toNormalised(evt) {
    const pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    const p = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [round(p.x / W), round(p.y / H)];
  }

  function el(name, attrs) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    zones.forEach((z, i) => {
      const pts = (z.polygon || []).map(([x, y]) => `${x * W},${y * H}`).join(" ");
      const cls = `zone zone-${z.type}${i === selected ? " selected" : ""}${errorsByZone[i] ? " invalid" : ""}`;
      const shape = el(pts && (z.polygon || []).length > 2 ? "polygon" : "polyline",
                       { points: pts, class: cls, "data-index": i, "data-zone": z.id || "" });
      shape.addEventListener("pointerdown", (evt) => {
        if (drawing || i === selected) return;
        evt.stopPropagation();
        select(i);
      });
      svg.appendChild(shape);
      const first = (z.polygon || [])[0];
      if (first) {
        const label = el("text", { x: first[0] * W + R, y: first[1] * H - R, class: "zone-label" });
        label.textContent = z.id || "";
        svg.appendChild(label);
      }
    });
    const z = zones[selected];
    if (!z) return;
    (z.polygon || []).forEach(([x, y], j) => {
      const c = el("circle", { cx: x * W, cy: y * H, r: R, class: "vertex" + (j === selectedPoint ? " chosen" : ""),
                                "data-point": j });
      c.addEventListener("pointerdown", (evt) => {
        evt.stopPropagation();
        selectedPoint = j;
        dragging = true;
        svg.setPointerCapture(evt.pointerId);
        draw();
      });
      svg.appendChild(c);
    });
  }

  svg.addEventListener("pointerdown", (evt) => {
    const z = zones[selected];
    if (!drawing || !z) return;
    z.polygon = z.polygon || [];
    const at = selectedPoint >= 0 ? selectedPoint + 1 : z.polygon.length;
    z.polygon.splice(at, 0, toNormalised(evt));
    selectedPoint = at;
    changed();
  });
  svg.addEventListener("pointermove", (evt) => {
    const z = zones[selected];
    if (!dragging || !z || selectedPoint < 0) return;
    z.polygon[selectedPoint] = toNormalised(evt);
    draw();
  });
  svg.addEventListener("pointerup", () => { if (dragging) { dragging = false; changed(); } });

  function deletePoint() {
    const z = zones[selected];
    if (!z || selectedPoint < 0) return;
    z.polygon.splice(selectedPoint, 1);
    selectedPoint = Math.min(selectedPoint, z.polygon.length - 1);
    changed();
  }

  document.addEventListener("keydown", (evt) => {
    const t = evt.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (evt.key === "Delete" || evt.key === "Backspace") { evt.preventDefault(); deletePoint(); }
    if (evt.key === "Escape") setDrawing(false);
  });

  function setDrawing(on) {
    drawing = on;
    drawToggle.classList.toggle("on", on);
    drawToggle.setAttribute("aria-pressed", on ? "true" : "false");
    svg.classList.toggle("drawing", on);
  }
  drawToggle.addEventListener("click", () => setDrawing(!drawing));
  document.getElementById("delete-point").addEventListener("click", deletePoint);
  document.getElementById("delete-zone").addEventListener("click", () => {
    if (selected < 0) return;
    zones.splice(selected, 1);
    errorsByZone = {};
    select(zones.length ? 0 : -1);
    changed();
  });

  function fillTypes(select_, value) {
    select_.textContent = "";
    for (const name of Object.keys(data.types)) {
      const o = document.createElement("option");
      o.value = name; o.textContent = name; o.selected = name === value;
      select_.appendChild(o);
    }
  }
  fillTypes(document.getElementById("new-zone-type"), "no_parking");

  document.getElementById("add-zone").addEventListener("click", () => {
    const idInput = document.getElementById("new-zone-id");
    let id = idInput.value.trim();
    if (!id) { let n = zones.length + 1; while (zones.some((z) => z.id === `zone-${n}`)) n++; id = `zone-${n}`; }
    zones.push({ id: id, type: document.getElementById("new-zone-type").value, polygon: [] });
    idInput.value = "";
    select(zones.length - 1);
    setDrawing(true);
    changed();
  });

  const zoneType = document.getElementById("zone-type");
  zoneType.addEventListener("change", () => {
    const z = zones[selected];
    if (!z) return;
    z.type = zoneType.value;
    const known = new Set(["id", "type", "polygon", ...data.types[z.type].map((f) => f.name)]);
    for (const k of Object.keys(z)) if (!known.has(k)) delete z[k];
    showForm();
    changed();
  });

  function fieldInput(z, f) {
    const wrap = document.createElement("label");
    wrap.className = "param";
    wrap.textContent = f.name + " ";
    if (f.description) wrap.title = f.description;
    let input;
    const has = Object.prototype.hasOwnProperty.call(z, f.name);
    if (f.kind === "enum") {
      input = document.createElement("select");
      const blank = document.createElement("option");
      blank.value = ""; blank.textContent = f.default !== undefined ? `(${f.default})` : "";
      input.appendChild(blank);
      for (const v of f.options) {
        const o = document.createElement("option");
        o.value = v; o.textContent = v; o.selected = has && z[f.name] === v;
        input.appendChild(o);
      }
    } else if (f.kind === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = has ? !!z[f.name] : !!f.default;
    } else {
      input = document.createElement("input");
      input.type = f.kind === "json" ? "text" : "number";
      if (f.kind !== "json") input.step = "any";
      const v = has ? z[f.name] : undefined;
      input.value = v === undefined ? "" : (f.kind === "json" ? JSON.stringify(v) : String(v));
      if (f.default !== undefined) input.placeholder = f.kind === "json" ? JSON.stringify(f.default) : String(f.default);
    }
    input.name = f.name;
    input.dataset.field = f.name;
    input.addEventListener("change", () => {
      wrap.classList.remove("bad");
      if (f.kind === "boolean") { z[f.name] = input.checked; changed(); return; }
      const text = input.value.trim();
      if (text === "") { delete z[f.name]; changed(); return; }
      if (f.kind === "number" || f.kind === "integer") z[f.name] = Number(text);
      else if (f.kind === "enum") z[f.name] = text;
      else {
        try { z[f.name] = JSON.parse(text); } catch (e) { z[f.name] = text; }
      }
      changed();
    });
    wrap.appendChild(input);
    return wrap;
  }

  function showForm() {
    const z = zones[selected];
    form.hidden = !z;
    if (!z) return;
    document.getElementById("zone-form-title").textContent = z.id;
    fillTypes(zoneType, z.type);
    params.textContent = "";
    for (const f of data.types[z.type] || []) params.appendChild(fieldInput(z, f));
    showZoneErrors();
  }

  function showZoneErrors() {
    zoneErrors.textContent = "";
    for (const msg of errorsByZone[selected] || []) {
      const li = document.createElement("li");
      li.textContent = msg;
      zoneErrors.appendChild(li);
    }
  }

  function renderList() {
    list.textContent = "";
    zones.forEach((z, i) => {
      const li = document.createElement("li");
      li.className = (i === selected ? "selected " : "") + (errorsByZone[i] ? "invalid" : "");
      li.dataset.zone = z.id;
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = `${z.id} · ${z.type} · ${(z.polygon || []).length}`;
      b.addEventListener("click", () => select(i));
      li.appendChild(b);
      for (const msg of errorsByZone[i] || []) {
        const p = document.createElement("div");
        p.className = "error zone-error";
        p.textContent = msg;
        li.appendChild(p);
      }
      list.appendChild(li);
    });
  }

  function select(i) {
    selected = i;
    selectedPoint = -1;
    if (i < 0) setDrawing(false);
    showForm();
    renderList();
    draw();
  }

  function changed() {
    statusEl.textContent = "";
    renderList();
    draw();
  }

  function showProblems(body) {
    errorsByZone = {};
    for (const [k, msgs] of Object.entries(body.zones || {})) errorsByZone[Number(k)] = msgs;
    problems.textContent = "";
    for (const msg of body.problems || []) {
      const li = document.createElement("li");
      li.textContent = msg;
      problems.appendChild(li);
    }
    renderList();
    showZoneErrors();
    draw();
  }

  async function send(action) {
    statusEl.textContent = "…";
    const r = await fetch(data.save_url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": data.csrf },
      body: JSON.stringify({ zones: zones, action: action }),
    });
    if (action === "patch" && r.ok) {
      const blob = await r.blob();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `${data.camera}-zones.patch`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      statusEl.textContent = "Patch downloaded.";
      showProblems({});
      return;
    }
    let body;
    try { body = await r.json(); } catch (e) { body = { ok: false, problems: [`HTTP ${r.status}`] }; }
    if (!r.ok || !body.ok) {
      if (!body.zones && !body.problems) body.problems = [body.detail || `HTTP ${r.status}`];
      showProblems(body);
      statusEl.textContent = "Not saved: fix the problems marked above.";
      statusEl.className = "error";
      return;
    }
    showProblems({});
    statusEl.className = "ok";
    diffEl.hidden = !body.diff;
    diffEl.textContent = body.diff || "";
    if (body.written) statusEl.textContent = `Saved; the previous file is kept as ${body.backup}.`;
    else if (!body.diff) statusEl.textContent = "Valid; nothing changed.";
    else statusEl.textContent = "Valid; not saved yet (the diff is below).";
    statusEl.dataset.written = body.written ? "yes" : "no";
  }
  document.getElementById("check-zones").addEventListener("click", () => send("check"));
  document.getElementById("save-zones").addEventListener("click", () => send("save"));
  document.getElementById("patch-zones").addEventListener("click", () => send("patch"));

  select(selected);
})();
