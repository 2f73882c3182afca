// The review page's behaviour, no framework, no inline script (the page's CSP forbids it):
// - queue: j/k move, Enter opens a row; the live part (counts, rows, pager) is polled and replaced when it
//   changed, so new incidents appear without a reload;
// - incident: c confirms, r rejects (asks for the reason first); Enter in the reason field never confirms
//   (after r it rejects with the reason typed); a reject without a reason is refused inline;
// - the clip: tracked boxes (boxes.json) drawn on a canvas over the video, in step with the frame shown.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  // ---- queue rows and keyboard
  var rows = [];
  var current = -1;
  function select(i) {
    if (!rows.length) return;
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("selected", k === current); });
    rows[current].scrollIntoView({ block: "nearest" });
  }
  function bindRows(keepId) {
    rows = Array.prototype.slice.call(document.querySelectorAll("#queue tr.row"));
    rows.forEach(function (r) {
      r.addEventListener("click", function (e) {
        if (!e.target.closest("a")) { window.location = r.dataset.href; }
      });
    });
    var k = 0;
    if (keepId) {
      rows.forEach(function (r, i) { if (r.dataset.id === keepId) { k = i; } });
    }
    current = rows.length ? k : -1;
    if (rows.length) {
      rows.forEach(function (r, i) { r.classList.toggle("selected", i === current); });
    }
  }
  bindRows(null);

  // ---- live queue: poll the rows, replace them when they changed
  var live = document.getElementById("queue-live");
  if (live && live.dataset.src) {
    var interval = parseInt(live.dataset.interval, 10) || 5000;
    var poll = function () {
      fetch(live.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected && r.url.indexOf("/login") >= 0) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (!html) return;
          var box = document.createElement("div");
          box.innerHTML = html;
          var fresh = box.querySelector(".live");
          var old = live.querySelector(".live");
          if (!fresh || (old && old.dataset.version === fresh.dataset.version)) return;
          var known = {};
          rows.forEach(function (r) { known[r.dataset.id] = true; });
          var keep = current >= 0 && rows[current] ? rows[current].dataset.id : null;
          live.replaceChildren(fresh);
          var arrived = 0;
          fresh.querySelectorAll("#queue tr.row").forEach(function (r) {
            if (!known[r.dataset.id]) { r.classList.add("new"); arrived += 1; }
          });
          bindRows(keep);
          var status = document.getElementById("live-status");
          if (status && arrived) { status.textContent = status.dataset.new; }
        })
        .catch(function () { /* offline for a moment: try again at the next tick */ });
    };
    window.setInterval(poll, interval);
  }

  // ---- verdict form
  var form = document.getElementById("verdict-form");
  var reason = document.getElementById("reason");
  var reasonError = document.getElementById("reason-error");
  function refuse() {
    reasonError.textContent = form.dataset.needReason;
    reasonError.hidden = false;
    reason.setAttribute("aria-invalid", "true");
    reason.dataset.pending = "reject";
    reason.focus();
  }
  function submit(verdict) {
    if (!form) return;
    if (verdict === "reject" && !reason.value.trim()) { refuse(); return; }
    form.requestSubmit(document.getElementById(verdict));
  }
  if (form) {
    form.addEventListener("submit", function (e) {
      var by = e.submitter;
      if (!by || (by.id !== "confirm" && by.id !== "reject")) { e.preventDefault(); return; }
      if (by.id === "reject" && !reason.value.trim()) { e.preventDefault(); refuse(); }
    });
    reason.addEventListener("keydown", function (e) {
      if (e.key === "Enter") {
        e.preventDefault(); // never the form's implicit submission: that would be a confirm
        if (reason.dataset.pending === "reject") { submit("reject"); }
      } else if (e.key === "Escape") {
        reason.blur();
      }
    });
    reason.addEventListener("input", function () {
      if (reason.value.trim()) { reasonError.hidden = true; reason.removeAttribute("aria-invalid"); }
    });
  }

  document.addEventListener("keydown", function (e) {
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    var link;
    if (e.key === "j") {
      if (rows.length) { select(current + 1); } else if ((link = document.getElementById("next"))) { window.location = link.href; }
    } else if (e.key === "k") {
      if (rows.length) { select(current - 1); } else if ((link = document.getElementById("prev"))) { window.location = link.href; }
    } else if (e.key === "Enter" && rows.length && current >= 0 && e.target.tagName !== "A" && e.target.tagName !== "BUTTON") {
      window.location = rows[current].dataset.href;
    } else if (e.key === "c" && form) {
      submit("confirm");
    } else if (e.key === "r" && form) {
      e.preventDefault();
      submit("reject");
    } else { return; }
  });

  // ---- tracked boxes over the clip
  var video = document.getElementById("clip");
  var canvas = document.getElementById("boxes");
  if (video && canvas && canvas.dataset.src) {
    var MAX_GAP = 2.0;   // s between two sightings of a track still drawn as one movement
    var HOLD = 0.6;      // s a box stays after its last sighting when the next frame lacks it
    var COLOURS = { car: "#ffcc00", truck: "#ff9900", bus: "#ff6600", motorcycle: "#ff3366", bicycle: "#ff66cc",
                    person: "#00e5ff" };
    var data = null;
    var show = document.getElementById("show-boxes");
    var ctx2d = canvas.getContext("2d");
    var at = function (t) {
      var f = data.frames, lo = 0, hi = f.length - 1, k = -1;
      while (lo <= hi) { var mid = (lo + hi) >> 1; if (f[mid].t <= t) { k = mid; lo = mid + 1; } else { hi = mid - 1; } }
      return k;
    };
    var boxesAt = function (t) {
      var k = at(t);
      if (k < 0) return [];
      var a = data.frames[k], b = data.frames[k + 1];
      var out = [];
      a.boxes.forEach(function (box) {
        var next = null;
        if (b && b.t - a.t <= MAX_GAP) {
          b.boxes.forEach(function (o) { if (o.track_id === box.track_id) { next = o; } });
        }
        if (next) {
          var w = (t - a.t) / (b.t - a.t);
          out.push({ box: box, xyxy: box.xyxy.map(function (v, i) { return v + (next.xyxy[i] - v) * w; }) });
        } else if (t - a.t <= HOLD) {
          out.push({ box: box, xyxy: box.xyxy });
        }
      });
      return out;
    };
    var draw = function (t) {
      if (!data) return;
      var w = video.videoWidth || data.frame_size[0], h = video.videoHeight || data.frame_size[1];
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      ctx2d.clearRect(0, 0, w, h);
      canvas.dataset.drawnAt = t.toFixed(3);
      if (show && !show.checked) { canvas.dataset.drawn = "0"; return; }
      var sx = w / data.frame_size[0], sy = h / data.frame_size[1];
      var shown = boxesAt(t);
      ctx2d.lineWidth = Math.max(2, Math.round(w / 320));
      ctx2d.font = Math.max(12, Math.round(w / 50)) + "px sans-serif";
      shown.forEach(function (s) {
        var c = COLOURS[s.box["class"]] || "#66ff66";
        var x1 = s.xyxy[0] * sx, y1 = s.xyxy[1] * sy, x2 = s.xyxy[2] * sx, y2 = s.xyxy[3] * sy;
        ctx2d.fillStyle = c + "40";
        ctx2d.fillRect(x1, y1, x2 - x1, y2 - y1);
        ctx2d.strokeStyle = c;
        ctx2d.strokeRect(x1, y1, x2 - x1, y2 - y1);
        var text = "#" + s.box.track_id + " " + s.box["class"] + " " + s.box.score.toFixed(2);
        ctx2d.fillStyle = c;
        ctx2d.fillRect(x1, Math.max(0, y1 - 18), ctx2d.measureText(text).width + 8, 18);
        ctx2d.fillStyle = "#000";
        ctx2d.fillText(text, x1 + 4, Math.max(14, y1 - 4));
      });
      canvas.dataset.drawn = String(shown.length);
    };
    var onFrame = function (now, meta) {
      draw(meta && typeof meta.mediaTime === "number" ? meta.mediaTime : video.currentTime);
      video.requestVideoFrameCallback(onFrame);
    };
    fetch(canvas.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) {
        if (!doc || !doc.frames) return;
        data = doc;
        canvas.dataset.frames = String(doc.frames.length);
        draw(video.currentTime);
        if (video.requestVideoFrameCallback) { video.requestVideoFrameCallback(onFrame); }
        else { video.addEventListener("timeupdate", function () { draw(video.currentTime); }); }
      });
    ["seeked", "loadeddata", "pause"].forEach(function (name) {
      video.addEventListener(name, function () { draw(video.currentTime); });
    });
    if (show) { show.addEventListener("change", function () { draw(video.currentTime); }); }
  }
})();
