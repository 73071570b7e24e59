// The live feed: follows /ws/live, reconnects with backoff, catches up over HTTP after a gap.
// Rows are built with textContent only (never innerHTML): every value is shown as text.
(function () {
  "use strict";
  var form = document.getElementById("live-filters");
  var rows = document.getElementById("feed-rows");
  var conn = document.getElementById("conn");
  var rateEl = document.getElementById("rate");
  var pauseBtn = document.getElementById("pause");
  if (!form || !rows) return;

  var MAX_ROWS = 500;
  var lastSeq = parseInt(form.getAttribute("data-after-seq"), 10) || 0;
  var shown = new Set();
  var paused = false, pending = [], pendingDropped = 0;
  var ws = null, backoff = 1000;
  // Records per second over the last five seconds, one bucket per second.
  var buckets = [0, 0, 0, 0, 0], bucket = 0;
  // Records waiting to be drawn: drawn together four times a second, at most DRAW_MAX of the
  // newest, so a stream of thousands a second costs the page what a slow one does (the rate
  // says how many arrive; filters narrow the stream to what one can read).
  var DRAW_EVERY = 250, DRAW_MAX = 100;
  var queue = [], drawing = false;

  Array.prototype.forEach.call(rows.querySelectorAll("tr"), function (tr) {
    var n = parseInt(tr.firstElementChild.textContent, 10);
    if (n) shown.add(n);
  });

  function status(text, cls) {
    conn.textContent = text;
    conn.className = "status " + (cls || "");
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function badge(td, cls, text) {
    td.textContent = "";
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    td.appendChild(s);
  }

  function row(m) {
    var outcome = m.type === "violation" || m.type === "rule_error";
    var tr = document.createElement("tr");
    tr.className = "t-" + m.type + " fresh";
    tr.setAttribute("data-seq", m.seq);
    cell(tr, m.seq, "num");
    cell(tr, m.project);
    cell(tr, m.type);
    cell(tr, outcome ? m.rule_id : m.name);
    cell(tr, m.agent);
    var st = cell(tr, "");
    if (outcome && m.severity) badge(st, "sev sev-" + m.severity, m.severity);
    else if (outcome) badge(st, "bad", m.outcome || "rule_error");
    else if (m.status) badge(st, "st-" + m.status, m.status);
    var td = cell(tr, "");
    if (m.trace_id) {
      var a = document.createElement("a");
      a.href = "/traces/" + encodeURIComponent(m.trace_id) + (outcome && m.event_seq ? "?at=" + m.event_seq + "#s" + m.event_seq : "");
      a.textContent = m.trace_id;
      td.appendChild(a);
    }
    return tr;
  }

  function draw() {
    drawing = false;
    var batch = queue.length > DRAW_MAX ? queue.slice(queue.length - DRAW_MAX) : queue;
    queue = [];
    var frag = document.createDocumentFragment();
    for (var i = batch.length - 1; i >= 0; i--) {
      var m = batch[i];
      if (shown.has(m.seq)) continue;
      shown.add(m.seq);
      frag.appendChild(row(m));
    }
    rows.insertBefore(frag, rows.firstChild);
    while (rows.children.length > MAX_ROWS) {
      var last = rows.lastElementChild;
      shown.delete(parseInt(last.getAttribute("data-seq") || last.firstElementChild.textContent, 10));
      rows.removeChild(last);
    }
  }

  function show(m) {
    queue.push(m);
    if (queue.length > 4 * DRAW_MAX) queue.splice(0, queue.length - DRAW_MAX);
    if (!drawing) {
      drawing = true;
      setTimeout(draw, DRAW_EVERY);
    }
  }

  // Other scripts (and the speed measurement) may listen: `live:records` on the form, with
  // each frame's records as they arrive.
  function announce(list) {
    form.dispatchEvent(new CustomEvent("live:records", { detail: list }));
  }

  var current = {};

  function accept(m) {
    if (typeof m.seq !== "number") return;
    // Records sent before a new filter reached the server are held to it here.
    if (!matches(m, current)) return;
    if (m.seq > lastSeq) lastSeq = m.seq;
    buckets[bucket]++;
    if (paused) {
      pending.push(m);
      if (pending.length > MAX_ROWS) { pending.shift(); pendingDropped++; }
      pauseBtn.textContent = "Resume (" + (pending.length + pendingDropped) + " new)";
      return;
    }
    show(m);
  }

  function filter() {
    var f = {};
    ["agent", "kind", "severity", "status"].forEach(function (k) {
      var v = document.getElementById("f-" + k).value.trim();
      if (v) f[k] = v;
    });
    var t = document.getElementById("f-types").value;
    if (t) f.types = t === "violation" ? ["violation", "rule_error"] : [t];
    return f;
  }

  function sendFilter() {
    current = filter();
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ filter: current }));
  }

  function matches(m, f) {
    if (f.types && f.types.indexOf(m.type) < 0) return false;
    if (f.agent && m.agent !== f.agent) return false;
    var outcome = m.type === "violation" || m.type === "rule_error";
    if (f.kind && (outcome ? m.event_kind : m.kind) !== f.kind) return false;
    if (!outcome && f.status && m.status !== f.status) return false;
    if (outcome && f.severity) {
      var order = ["info", "warning", "high", "critical"];
      if (order.indexOf(m.severity) < order.indexOf(f.severity)) return false;
    }
    return true;
  }

  // Fetches what the socket did not deliver, oldest first, a few pages at most.
  function catchUp(after, pages) {
    return fetch("/api/v1/live?after_seq=" + after + "&limit=500", { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { location.href = "/login?reason=none"; throw new Error("signed out"); }
        if (!r.ok) throw new Error("catch-up failed: " + r.status);
        return r.json();
      })
      .then(function (body) {
        var f = filter();
        body.records.forEach(function (m) { if (matches(m, f)) accept(m); });
        if (body.more && pages > 1) return catchUp(body.after_seq, pages - 1);
        if (body.more) status("live · some records skipped; see Traces for all of them", "on");
      });
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(proto + location.host + "/ws/live");
    status("connecting…");
    ws.onopen = function () { backoff = 1000; sendFilter(); };
    function handle(m) {
      if (m.type === "hello") {
        status("live", "on");
        pauseBtn.disabled = false;
        if (lastSeq > 0 && m.head_seq > lastSeq) catchUp(lastSeq, 4).catch(function () {});
        else if (lastSeq === 0) lastSeq = m.head_seq;
      } else if (m.type === "missed") {
        // A short gap is fetched; a long one (a stream faster than this page) is said.
        if (m.count <= 2000) catchUp(m.after_seq, 4).catch(function () {});
        else status("live · " + m.count + " records went by too fast to show; filter, or see Traces", "on");
      } else if (m.type === "error") {
        status("filter refused: " + m.detail, "off");
      } else if (m.type !== "filter") {
        accept(m);
      }
    }
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      // A batch may carry notices (missed, error) among the records: each is handled alike.
      var list = m.type === "batch" && Array.isArray(m.records) ? m.records : [m];
      announce(list.filter(function (r) { return typeof r.seq === "number"; }));
      list.forEach(handle);
    };
    ws.onclose = function () {
      ws = null;
      var wait = Math.min(backoff, 30000) * (0.75 + Math.random() * 0.5);
      status("disconnected; reconnecting in " + Math.round(wait / 1000) + " s", "off");
      setTimeout(connect, wait);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  setInterval(function () {
    var total = buckets.reduce(function (a, b) { return a + b; }, 0);
    rateEl.textContent = (total / 5).toFixed(1) + " records/s";
    bucket = (bucket + 1) % buckets.length;
    buckets[bucket] = 0;
  }, 1000);

  pauseBtn.addEventListener("click", function () {
    paused = !paused;
    if (!paused) {
      pending.forEach(show);
      pending = [];
      pendingDropped = 0;
      pauseBtn.textContent = "Pause";
    } else {
      pauseBtn.textContent = "Resume";
    }
  });

  form.addEventListener("change", function () {
    rows.textContent = "";
    shown.clear();
    sendFilter();
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); });

  connect();
})();
