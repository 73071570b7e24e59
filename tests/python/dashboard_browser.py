"""Drives the dashboard in headless Chromium (Debian's chromium + chromium-driver, Selenium).

Usage: dashboard_browser.py CONFIG_JSON

CONFIG_JSON names the server (`base`), keys (`owner`, `reader_a`: traces:read + rules:read on
project alpha, `writer`: traces:write on alpha and beta), the id of a trace stored in project
beta (`beta_trace`) and where screenshots go (`shots`). Prints one JSON line of observations on
the last line; the Rust test (tests/dashboard.rs) asserts them. Every step waits for what the
page shows, never for a fixed time, and gives up after a generous deadline.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

cfg = json.loads(sys.argv[1])
BASE = cfg["base"]
SHOTS = cfg["shots"]
os.makedirs(SHOTS, exist_ok=True)
RAW_EMAIL = "jane.roe@example.org"
out = {"screenshots": []}


def api(method, path, key, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("authorization", "Bearer " + key)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def post_trace(project, trace_id, agent="support-bot"):
    events = [
        {"trace_id": trace_id, "span_id": "root", "kind": "agent", "name": "<script>alert(1)</script>",
         "agent": agent, "session_id": "sess-" + trace_id, "start_time": "2026-11-27T10:00:00Z",
         "end_time": "2026-11-27T10:00:05Z", "status": "ok", "input": "help", "output": "done"},
        {"trace_id": trace_id, "span_id": "llm1", "parent_span_id": "root", "kind": "llm", "name": "chat",
         "agent": agent, "model": "gpt-4o", "start_time": "2026-11-27T10:00:01Z",
         "end_time": "2026-11-27T10:00:03Z", "status": "ok",
         "input": "My email is " + RAW_EMAIL + ", please reset my password", "output": "Sure",
         "usage": {"input_tokens": 120, "output_tokens": 30, "cost_usd": 0.0042}},
        {"trace_id": trace_id, "span_id": "tool1", "parent_span_id": "root", "kind": "tool",
         "name": "db.delete", "agent": agent, "start_time": "2026-11-27T10:00:03Z",
         "end_time": "2026-11-27T10:00:04Z", "status": "error",
         "input": {"sql": "DELETE FROM users"}, "output": "refused"},
    ]
    req = urllib.request.Request(BASE + "/api/v1/traces", data=json.dumps({"events": events}).encode())
    req.add_header("authorization", "Bearer " + cfg["writer"])
    req.add_header("content-type", "application/json")
    req.add_header("x-audittrail-project", project)
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status in (200, 202), r.status
    return time.time()


def shot(driver, name):
    path = os.path.join(SHOTS, name + ".png")
    # The whole page, not just the window.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(900, min(height + 40, 6000)))
    driver.save_screenshot(path)
    driver.set_window_size(1400, 900)
    out["screenshots"].append(path)


def wait(driver, cond, seconds=20):
    return WebDriverWait(driver, seconds).until(cond)


def sign_in(driver, key):
    driver.get(BASE + "/login")
    box = wait(driver, ec.presence_of_element_located((By.ID, "key")))
    box.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait(driver, lambda d: d.current_url.rstrip("/") == BASE)


def sign_out(driver):
    driver.get(BASE + "/")
    driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    wait(driver, lambda d: "/login" in d.current_url)


opts = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
          "--disable-gpu", "--lang=en-US"]:
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    # Without a session, / sends the browser to the sign-in page.
    driver.get(BASE + "/")
    wait(driver, lambda d: "/login" in d.current_url)
    out["anonymous_lands_on"] = driver.current_url.replace(BASE, "")
    shot(driver, "01-login")

    # A wrong key is refused on the page, not with a JSON error.
    box = driver.find_element(By.ID, "key")
    box.send_keys("sk-at-nope_nope")
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    err = wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
    out["wrong_key_message"] = err.text

    sign_in(driver, cfg["reader_a"])
    out["signed_in_title"] = driver.title
    cookie = driver.get_cookie("audittrail_session")
    out["cookie"] = {"httpOnly": cookie["httpOnly"], "sameSite": cookie.get("sameSite"),
                     "holds_key": cfg["reader_a"] in cookie["value"]}

    # Live: a trace posted after the page opened appears in it; beta's never does.
    driver.get(BASE + "/live")
    wait(driver, lambda d: d.find_element(By.ID, "conn").text.startswith("live"))
    beta_live = "beta-live-" + uuid.uuid4().hex[:8]
    post_trace("beta", beta_live)
    trace_a = "alpha-" + uuid.uuid4().hex[:8]
    acked = post_trace("alpha", trace_a)
    try:
        link = wait(driver, ec.presence_of_element_located(
            (By.CSS_SELECTOR, "#feed-rows a[href='/traces/%s']" % trace_a)))
        out["live_row_seen"] = True
        out["live_seconds"] = round(time.time() - acked, 3)
    except TimeoutException:
        out["live_row_seen"] = False
        link = None
    rows_text = driver.find_element(By.ID, "feed-rows").text
    out["beta_in_live"] = beta_live in rows_text
    out["live_has_violation_row"] = "bulk_delete_prevention" in rows_text
    shot(driver, "02-live")

    # Open the trace from the feed.
    if link is not None:
        link.click()
    else:
        driver.get(BASE + "/traces/" + trace_a)
    wait(driver, ec.presence_of_element_located((By.ID, "waterfall")))
    out["span_count"] = driver.find_element(By.ID, "span-count").text
    violated = driver.find_elements(By.CSS_SELECTOR, ".wf-row.violated")
    out["violated_spans"] = [r.find_element(By.CSS_SELECTOR, "a.open").text for r in violated]
    out["violation_rules_on_span"] = [
        s.text for r in violated for s in r.find_elements(By.CSS_SELECTOR, ".sev")]
    out["escaped_name_shown"] = any(
        a.text == "<script>alert(1)</script>" for a in driver.find_elements(By.CSS_SELECTOR, "a.open"))
    try:
        driver.switch_to.alert
        out["script_alert_ran"] = True
    except NoAlertPresentException:
        out["script_alert_ran"] = False
    shot(driver, "03-trace")

    # The LLM span's body loads on demand, redacted.
    chat = [a for a in driver.find_elements(By.CSS_SELECTOR, "a.open") if a.text == "chat"][0]
    chat.click()
    panel = wait(driver, ec.visibility_of_element_located((By.ID, "span-panel")))
    wait(driver, lambda d: "Input" in panel.text)
    out["panel_redacted"] = "[REDACTED:EMAIL]" in panel.text
    out["raw_email_in_panel"] = RAW_EMAIL in panel.text
    shot(driver, "04-span-panel")
    out["raw_email_in_page_source"] = RAW_EMAIL in driver.page_source

    # The list, violations, rules, session pages render for this key.
    driver.get(BASE + "/traces")
    listed = driver.find_element(By.ID, "traces").text
    out["alpha_in_list"] = trace_a in listed
    out["beta_in_list"] = beta_live in listed or cfg["beta_trace"] in listed
    shot(driver, "05-traces")
    driver.get(BASE + "/violations")
    out["violations_page_has_rule"] = "bulk_delete_prevention" in driver.find_element(By.ID, "violations").text
    shot(driver, "06-violations")
    driver.get(BASE + "/rules")
    out["rules_listed"] = len(driver.find_elements(By.CSS_SELECTOR, "article.rule"))
    shot(driver, "07-rules")
    driver.get(BASE + "/sessions/sess-" + trace_a)
    shot(driver, "08-session")
    driver.get(BASE + "/")
    shot(driver, "09-overview")

    # Project beta's trace is "not found" for a key of alpha, on every page.
    driver.get(BASE + "/traces/" + cfg["beta_trace"])
    out["beta_trace_page"] = driver.find_element(By.TAG_NAME, "h1").text
    driver.get(BASE + "/traces/" + cfg["beta_trace"] + "/spans/1")
    out["beta_span_page"] = driver.find_element(By.TAG_NAME, "h1").text
    driver.get(BASE + "/keys")
    out["keys_page_for_reader"] = driver.find_element(By.TAG_NAME, "h1").text
    sign_out(driver)
    out["after_sign_out"] = driver.current_url.replace(BASE, "")
    driver.get(BASE + "/traces")
    out["traces_after_sign_out"] = driver.current_url.replace(BASE, "")

    # Keys: the owner creates a key; its secret is shown once.
    sign_in(driver, cfg["owner"])
    driver.get(BASE + "/keys")
    form = driver.find_element(By.CSS_SELECTOR, "form.create-key")
    form.find_element(By.NAME, "name").send_keys("browser-made")
    projects = form.find_element(By.NAME, "projects")
    projects.clear()
    projects.send_keys("alpha")
    for box in form.find_elements(By.NAME, "permissions"):
        if box.get_attribute("value") == "traces:read":
            box.click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    secret = wait(driver, ec.presence_of_element_located((By.ID, "new-secret"))).text
    out["new_secret_prefix"] = secret[:6]
    shot(driver, "10-keys-secret-once")
    driver.get(BASE + "/keys")
    out["secret_after_reload"] = secret in driver.page_source
    out["new_key_listed"] = "browser-made" in driver.find_element(By.ID, "keys").text
    driver.get(BASE + "/audit")
    out["audit_has_login"] = "dashboard.login" in driver.find_element(By.ID, "audit").text
    shot(driver, "11-audit")
    sign_out(driver)

    # A revoked key's session is refused on the next click.
    sign_in(driver, secret)
    driver.get(BASE + "/traces")
    key_id = secret[len("sk-at-"):].split("_")[0]
    status, _ = api("DELETE", "/api/v1/keys/" + key_id, cfg["owner"])
    out["revoke_status"] = status
    driver.find_element(By.CSS_SELECTOR, "nav a[href='/violations']").click()
    wait(driver, lambda d: "/login" in d.current_url)
    out["after_revoke"] = driver.current_url.replace(BASE, "")
    out["after_revoke_message"] = driver.find_element(By.CSS_SELECTOR, "p.notice").text
    shot(driver, "12-revoked")

    # Errors are pages.
    driver.get(BASE + "/no-such-page")
    out["not_found_page"] = driver.find_element(By.TAG_NAME, "h1").text
finally:
    driver.quit()

print(json.dumps(out))
