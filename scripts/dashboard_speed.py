"""Dashboard speed in a real browser (headless Chromium through Selenium), for docs/performance.md.

    .venv/bin/python scripts/dashboard_speed.py BASE_URL KEY BIG_TRACE_ID [MARKERS]

KEY needs traces:read and traces:write on the default project (the owner key will do).
Measures:
  1. the 10,000-span trace page: server time to first byte, DOMContentLoaded and first
     contentful paint, over 10 loads (Navigation and Paint Timing, as Chromium reports them);
  2. the live feed: MARKERS traces (default 200) are posted one by one while the /live page is
     open; for each, the time from the ingest acknowledgement to its row appearing in the page
     (a MutationObserver stamps arrivals with Date.now(); same machine clock as the poster).
Run the load generator beside it for the "under load" figure (see docs/performance.md).
Prints a JSON summary on the last line. A measurement, not a test: it asserts nothing.
"""

import json
import statistics
import sys
import time
import urllib.request
import uuid

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, key, big = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
markers = int(sys.argv[4]) if len(sys.argv) > 4 else 200


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))] if xs else None


opts = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"]:
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
out = {}
try:
    d.get(base + "/login")
    d.find_element(By.ID, "key").send_keys(key)
    d.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(d, 30).until(lambda x: x.current_url.rstrip("/") == base)

    ttfb, dcl, fcp = [], [], []
    for _ in range(10):
        d.get(base + "/traces/" + big)
        WebDriverWait(d, 30).until(lambda x: x.execute_script(
            "return performance.getEntriesByName('first-contentful-paint').length > 0"
            " && document.readyState === 'complete'"))
        nav = d.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
        paint = d.execute_script(
            "return performance.getEntriesByName('first-contentful-paint')[0].startTime")
        ttfb.append(nav["responseStart"] - nav["requestStart"])
        dcl.append(nav["domContentLoadedEventEnd"])
        fcp.append(paint)
    out["big_trace"] = {
        "server_ms_median": round(statistics.median(ttfb), 1), "server_ms_max": round(max(ttfb), 1),
        "dom_content_loaded_ms_median": round(statistics.median(dcl), 1),
        "first_contentful_paint_ms_median": round(statistics.median(fcp), 1),
        "first_contentful_paint_ms_max": round(max(fcp), 1),
    }

    def live_phase(agent_filter):
        d.get(base + "/live")
        WebDriverWait(d, 30).until(lambda x: x.find_element(By.ID, "conn").text.startswith("live"))
        if agent_filter:
            # As a user would: type the agent into the filter (the server then sends only it).
            box = d.find_element(By.ID, "f-agent")
            box.send_keys(agent_filter)
            d.execute_script("arguments[0].dispatchEvent(new Event('change', {bubbles: true}))", box)
            time.sleep(1)
        # Arrival = the page's live script received the record (its `live:records` event);
        # drawn = its row was added to the table (drawn four times a second).
        d.execute_script("""
            window.__arrivals = {}; window.__drawn = {};
            document.getElementById('live-filters').addEventListener('live:records', function (e) {
              var now = Date.now();
              e.detail.forEach(function (r) {
                if (!(r.trace_id in window.__arrivals)) window.__arrivals[r.trace_id] = now;
              });
            });
            new MutationObserver(function (ms) {
              var now = Date.now();
              ms.forEach(function (m) { m.addedNodes.forEach(function (n) {
                var a = n.querySelector && n.querySelector('a');
                if (a && !(a.textContent in window.__drawn)) window.__drawn[a.textContent] = now;
              }); });
            }).observe(document.getElementById('feed-rows'), { childList: true });
        """)
        acked = {}
        for i in range(markers):
            tid = "marker-" + uuid.uuid4().hex[:12]
            body = json.dumps({"events": [{"trace_id": tid, "span_id": "m", "kind": "log", "name": "marker",
                                           "agent": "speed-probe", "start_time": "2026-11-27T10:00:00Z"}]})
            req = urllib.request.Request(base + "/api/v1/traces", data=body.encode())
            req.add_header("authorization", "Bearer " + key)
            req.add_header("content-type", "application/json")
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            acked[tid] = time.time() * 1000
            time.sleep(0.1)
        time.sleep(3)
        arrivals = d.execute_script("return window.__arrivals")
        drawn = d.execute_script("return window.__drawn")
        lat = [arrivals[t] - a for t, a in acked.items() if t in arrivals]
        dlat = [drawn[t] - a for t, a in acked.items() if t in drawn]
        summary = lambda xs: {"n": len(xs), "p50_ms": round(pct(xs, 0.5), 1) if xs else None,
                              "p95_ms": round(pct(xs, 0.95), 1) if xs else None,
                              "max_ms": round(max(xs), 1) if xs else None}
        return {"markers": markers, "received": summary(lat), "drawn": summary(dlat),
                "rate_shown": d.find_element(By.ID, "rate").text}

    if markers:
        out["live_unfiltered"] = live_phase(None)
        out["live_agent_filter"] = live_phase("speed-probe")
finally:
    d.quit()
print(json.dumps(out))
