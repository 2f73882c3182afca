// Keyboard triage: j/k next/previous, c confirm, r reject (asks for a reason first), Enter opens a row.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
  }
  var rows = Array.prototype.slice.call(document.querySelectorAll("#queue tr.row"));
  var current = rows.length ? 0 : -1;
  function select(i) {
    if (!rows.length) return;
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("selected", k === current); });
    rows[current].scrollIntoView({ block: "nearest" });
  }
  if (rows.length) select(0);
  rows.forEach(function (r, k) {
    r.addEventListener("click", function (e) { if (e.target.tagName !== "A") { window.location = r.dataset.href; } });
  });
  var form = document.getElementById("verdict-form");
  var reason = document.getElementById("reason");
  function submit(verdict) {
    if (!form) return;
    var button = document.getElementById(verdict);
    if (verdict === "reject" && !reason.value.trim()) {
      reason.focus();
      reason.placeholder = "type the reason, then press Enter to reject";
      reason.dataset.pending = "reject";
      return;
    }
    form.requestSubmit(button);
  }
  if (reason) {
    reason.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); submit(reason.dataset.pending === "reject" ? "reject" : "confirm"); }
      if (e.key === "Escape") { reason.blur(); }
    });
  }
  document.addEventListener("keydown", function (e) {
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    var link;
    if (e.key === "j") {
      if (rows.length) { select(current + 1); } else if ((link = document.getElementById("next"))) { window.location = link.href; }
    } else if (e.key === "k") {
      if (rows.length) { select(current - 1); } else if ((link = document.getElementById("prev"))) { window.location = link.href; }
    } else if (e.key === "Enter" && rows.length && current >= 0) {
      window.location = rows[current].dataset.href;
    } else if (e.key === "c") {
      submit("confirm");
    } else if (e.key === "r") {
      e.preventDefault();
      submit("reject");
    } else { return; }
  });
})();
