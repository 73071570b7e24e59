// The trace view: collapse and expand subtrees, open a span's redacted body in a side panel
// (fetched when opened, never before). Without this script the links open the span's page.
(function () {
  "use strict";
  var wf = document.getElementById("waterfall");
  var panel = document.getElementById("span-panel");
  if (!wf || !panel) return;
  var rows = Array.prototype.slice.call(wf.querySelectorAll(".wf-row"));
  var index = new Map();
  rows.forEach(function (r, i) { index.set(r, i); });

  function depth(r) { return parseInt(r.getAttribute("data-depth"), 10); }

  // Rows below `r` in the drawn order, until one at its depth or above.
  function subtree(r, fn) {
    var d = depth(r);
    for (var i = index.get(r) + 1; i < rows.length && depth(rows[i]) > d; i++) fn(rows[i]);
  }

  function setOpen(r, open) {
    var b = r.querySelector(".toggle");
    if (!b) return;
    b.setAttribute("aria-expanded", open ? "true" : "false");
    b.textContent = open ? "−" : "+";
    var closedBelow = -1;
    subtree(r, function (x) {
      if (!open) { x.hidden = true; return; }
      // Re-open only what is not inside a still-collapsed subtree.
      if (closedBelow >= 0 && depth(x) > closedBelow) { x.hidden = true; return; }
      closedBelow = -1;
      x.hidden = false;
      var t = x.querySelector(".toggle");
      if (t && t.getAttribute("aria-expanded") === "false") closedBelow = depth(x);
    });
  }

  // Big traces start with deep levels folded so the first screen is the outline.
  if (rows.length > 200) {
    rows.forEach(function (r) { if (depth(r) === 2 && r.querySelector(".toggle")) setOpen(r, false); });
  }

  wf.addEventListener("click", function (e) {
    var t = e.target;
    if (t.classList.contains("toggle")) {
      var r = t.closest(".wf-row");
      setOpen(r, t.getAttribute("aria-expanded") !== "true");
      return;
    }
    if (t.classList.contains("open")) {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      open(t.closest(".wf-row"), t.getAttribute("href"));
    }
  });

  function open(row, href) {
    rows.forEach(function (r) { r.classList.remove("selected"); });
    row.classList.add("selected");
    panel.hidden = false;
    panel.textContent = "Loading…";
    fetch(href + "?fragment=1", { credentials: "same-origin" })
      .then(function (r) {
        if (r.redirected || r.status === 401) { location.href = "/login?reason=none"; throw new Error("signed out"); }
        if (!r.ok) throw new Error("the span could not be loaded (" + r.status + ")");
        return r.text();
      })
      .then(function (html) {
        // The fragment is rendered by the server's templates, which escape every value.
        var doc = new DOMParser().parseFromString(html, "text/html");
        panel.textContent = "";
        var close = document.createElement("button");
        close.type = "button";
        close.className = "close";
        close.textContent = "Close";
        close.addEventListener("click", function () { panel.hidden = true; row.classList.remove("selected"); });
        panel.appendChild(close);
        var full = document.createElement("a");
        full.href = href;
        full.textContent = "Open as a page";
        panel.appendChild(full);
        Array.prototype.forEach.call(doc.body.childNodes, function (n) { panel.appendChild(document.importNode(n, true)); });
      })
      .catch(function (err) { panel.textContent = err.message; });
  }

  document.addEventListener("keydown", function (e) { if (e.key === "Escape") panel.hidden = true; });
})();
