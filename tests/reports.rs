//! Compliance reports as a compliance officer and an auditor use them: made through the API and
//! the CLI, read with poppler (`pdftotext`, `pdfinfo`, `pdftoppm`), re-checked with
//! `audittrail report verify`, and tried against an edited log and an edited file.
//!
//! Rendered pages are kept under `target/report-pages/` (one PNG per page per standard).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use audittrail::store::receipt::{EraseRequest, EraseSelector};
use common::{TestApp, batch, cli, copy_dir, db_sql, event, spawn_app, spawn_in};
use serde_json::{Value, json};

/// Personal values seeded into the traces; none may appear in any report.
const SEEDED: [&str; 4] = [
    "maria.lopez@example.com",
    "+1 415 555 0134",
    "123-45-6789",
    "4111 1111 1111 1111",
];

/// A log with 3 traces, 2 agents, 2 sessions, personal data in inputs and outputs, a critical
/// violation, a guard request answered `deny`, a key created and a failed authentication.
/// Returns the number of span events sent.
async fn seed(app: &TestApp) -> u64 {
    let mut events = Vec::new();
    for i in 0..8 {
        let mut e = event(
            "trace-a",
            &format!("a{i}"),
            &format!("2026-11-20T10:00:0{i}Z"),
        );
        e["input"] = json!({"messages": [{"role": "user",
            "content": format!("mail {} or call {}", SEEDED[0], SEEDED[1])}]});
        events.push(e);
    }
    for i in 0..6 {
        let mut e = event(
            "trace-b",
            &format!("b{i}"),
            &format!("2026-11-21T11:00:0{i}Z"),
        );
        e["agent"] = json!("billing-agent");
        e["session_id"] = json!("sess-2");
        e["output"] = json!({"content": format!("SSN {} card {}", SEEDED[2], SEEDED[3])});
        events.push(e);
    }
    assert_eq!(app.post_json("/api/v1/traces", &batch(events)).await.0, 202);
    let mut bad = event("trace-c", "drop", "2026-11-22T09:00:00Z");
    bad["kind"] = json!("tool");
    bad["name"] = json!("sql");
    bad["input"] = json!({"sql": "DELETE FROM customers"});
    let (status, resp) = app.post_json("/api/v1/traces", &batch(vec![bad])).await;
    assert_eq!(status, 202);
    assert_eq!(resp["violations"][0]["severity"], "critical", "{resp}");
    let (status, resp) = app
        .post_json(
            "/api/v1/evaluate",
            &json!({"kind": "tool", "name": "shell", "agent": "support-bot",
                    "input": {"command": "rm -rf /"}}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["decision"], "deny", "{resp}");
    let (status, _) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "reader", "projects": ["default"], "permissions": ["traces:read"]}),
        )
        .await;
    assert_eq!(status, 201);
    let anon = reqwest::Client::new()
        .get(app.url("/api/v1/traces"))
        .bearer_auth("at_not_a_real_key")
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    15
}

fn pages_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/report-pages");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `pdftotext -layout` of a PDF file.
fn pdftotext(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout", pdf.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) must be installed");
    assert!(
        out.status.success(),
        "pdftotext failed on {}",
        pdf.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pdf_pages(pdf: &Path) -> u32 {
    let out = Command::new("pdfinfo")
        .arg(pdf)
        .output()
        .expect("pdfinfo (poppler-utils) must be installed");
    assert!(out.status.success());
    let info = String::from_utf8(out.stdout).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("pdfinfo reports pages")
}

/// Renders every page to PNG with `pdftoppm` (which fails on a malformed page).
fn render_pages(pdf: &Path, prefix: &str) -> usize {
    for e in std::fs::read_dir(pages_dir()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{prefix}-")) && name.ends_with(".png") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let out_prefix = pages_dir().join(prefix);
    let out = Command::new("pdftoppm")
        .args([
            "-png",
            "-r",
            "60",
            pdf.to_str().unwrap(),
            out_prefix.to_str().unwrap(),
        ])
        .output()
        .expect("pdftoppm (poppler-utils) must be installed");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "pdftoppm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_dir(pages_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
        })
        .count()
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

async fn wait_done(app: &TestApp, status_url: &str) -> Value {
    for _ in 0..600 {
        let (code, v) = app.get(status_url).await;
        assert_eq!(code, 200, "{v}");
        match v["status"].as_str() {
            Some("done") => return v,
            Some("failed") | Some("cancelled") => panic!("report job ended: {v}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("report job did not finish in 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_the_api_state_the_logs_figures_and_verify() {
    let app = spawn_app().await;
    let events = seed(&app).await;
    let (_, traces) = app.get("/api/v1/traces?limit=50").await;
    let trace_count = traces["traces"].as_array().unwrap().len() as u64;
    let (_, violations) = app.get("/api/v1/violations?limit=100").await;
    let violation_count = violations["violations"].as_array().unwrap().len() as u64;
    assert!(violation_count >= 2, "{violations}");
    let from = "2026-01-01T00:00:00Z";
    // `to` in the future is cut at now.
    let to = "2099-01-01T00:00:00Z";

    let controls: [(&str, &[&str]); 4] = [
        (
            "soc2",
            &["CC6.1", "CC6.2", "CC6.3", "CC7.2", "CC7.3", "CC8.1"],
        ),
        ("gdpr", &["Art. 5(1)(c)", "Art. 17", "Art. 30", "Art. 32"]),
        (
            "hipaa",
            &["164.312(b)", "164.312(d)", "164.308(a)(4)", "164.312(e)"],
        ),
        ("eu-ai-act", &["Art. 12", "Art. 19"]),
    ];
    for (standard, ids) in controls {
        let (code, job) = app
            .post_json(
                "/api/v1/reports",
                &json!({"standard": standard, "from": from, "to": to}),
            )
            .await;
        assert_eq!(code, 202, "{job}");
        let done = wait_done(&app, job["status_url"].as_str().unwrap()).await;
        let r = &done["result"];
        let p = &r["populations"];
        assert_eq!(p["events"], events, "{r}");
        assert_eq!(p["traces"], trace_count, "{r}");
        assert_eq!(p["agents"], 2, "{r}");
        assert_eq!(p["sessions"], 2, "{r}");
        assert_eq!(p["violations"], violation_count, "{r}");
        assert_eq!(
            p["guard_decisions"],
            json!({"requests": 1, "allow": 0, "warn": 0, "deny": 1}),
            "{r}"
        );
        // Two values in each of 14 events.
        assert_eq!(p["pii_removed"], 28, "{r}");
        assert_eq!(r["chain_verified"], true);
        let head = r["head_link"].as_str().unwrap().to_owned();
        assert_eq!(head.len(), 64);
        assert!(r["cut_at"].as_str().unwrap() < "2099", "cut at now: {r}");

        let resp = app
            .client
            .get(app.url(done["pdf_url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["content-type"], "application/pdf");
        let bytes = resp.bytes().await.unwrap();
        let file = pages_dir().join(format!("{standard}.pdf"));
        std::fs::write(&file, &bytes).unwrap();

        let text = pdftotext(&file);
        let flat = squeeze(&text);
        assert!(flat.contains(&head), "{standard}: the head link is printed");
        for id in ids {
            assert!(text.contains(id), "{standard}: control {id} in\n{text}");
        }
        // The summary table's row: the label, then only the figure.
        let figure = |label: &str| -> String {
            text.lines()
                .find_map(|l| {
                    let rest = l.trim_start().strip_prefix(label)?;
                    let v = rest.trim();
                    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == ','))
                        .then(|| v.replace(',', ""))
                })
                .unwrap_or_else(|| panic!("{standard}: no figure {label:?} in\n{text}"))
        };
        if standard == "soc2" {
            assert_eq!(figure("Events (spans)"), events.to_string());
            assert_eq!(figure("Traces"), trace_count.to_string());
            assert_eq!(figure("Violations"), violation_count.to_string());
            assert_eq!(figure("Authentication failures"), "1");
            assert_eq!(figure("Keys created"), "1");
        }
        assert_eq!(figure("Events (spans)"), events.to_string(), "{standard}");
        assert_eq!(figure("Sessions"), "2", "{standard}");
        assert!(text.contains("Page 1 of"), "{standard}: page footers");
        let facts = String::from_utf8(
            audittrail::report::pdf::embedded_facts(&bytes).expect("facts are embedded"),
        )
        .unwrap();
        for value in SEEDED {
            assert!(
                !flat.contains(&squeeze(value)) && !facts.contains(value),
                "{standard}: a seeded personal value reached the report"
            );
        }
        let pages = pdf_pages(&file);
        assert!(pages >= 3, "{standard}: {pages} pages");
        assert_eq!(render_pages(&file, standard), pages as usize);

        // The auditor's check, against the live database.
        let out = cli(
            app.dir.path(),
            &["report", "verify", file.to_str().unwrap()],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{standard}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (code, list) = app.get("/api/v1/reports").await;
    assert_eq!(code, 200);
    assert_eq!(list["reports"].as_array().unwrap().len(), 4, "{list}");

    // Another project's key actions are not this project's security events: a key
    // administrator of `other` creates a key; a report made by a key of `default` alone counts
    // none of it (nor the owner's actions, which name no project).
    let (_, admin) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "other-admin", "projects": ["other"], "permissions": ["keys:admin"]}),
        )
        .await;
    let other_admin = common::client_with_key(admin["key"].as_str().unwrap());
    let resp = other_admin
        .post(app.url("/api/v1/keys"))
        .json(&json!({"name": "x", "projects": ["other"], "permissions": ["keys:admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let (_, officer) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "officer", "projects": ["default"],
                    "permissions": ["reports:create", "reports:read"]}),
        )
        .await;
    let officer = common::client_with_key(officer["key"].as_str().unwrap());
    let job: Value = officer
        .post(app.url("/api/v1/reports"))
        .json(&json!({"standard": "soc2", "from": from, "to": to}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status_url = app.url(job["status_url"].as_str().unwrap());
    let mut pdf_url = None;
    for _ in 0..600 {
        let v: Value = officer
            .get(&status_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "done" {
            pdf_url = Some(v["pdf_url"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bytes = officer
        .get(app.url(&pdf_url.expect("done within 60 s")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let file = pages_dir().join("project-key-soc2.pdf");
    std::fs::write(&file, &bytes).unwrap();
    let text = pdftotext(&file);
    let keys_created = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Keys created"))
        .expect("CC6 figures")
        .trim()
        .to_owned();
    assert_eq!(keys_created, "0", "no other project's key actions: {text}");

    // Validation names the field; another project's reader sees nothing.
    let (code, err) = app
        .post_json(
            "/api/v1/reports",
            &json!({"standard": "iso27001", "from": from, "to": to}),
        )
        .await;
    assert_eq!(code, 422, "{err}");
    assert!(err.to_string().contains("standard"), "{err}");
    let (code, err) = app
        .post_json(
            "/api/v1/reports",
            &json!({"standard": "soc2", "from": to, "to": from}),
        )
        .await;
    assert_eq!(code, 422, "{err}");
    let (code, other) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "other", "projects": ["other"], "permissions": ["reports:read"]}),
        )
        .await;
    assert_eq!(code, 201);
    let other = common::client_with_key(other["key"].as_str().unwrap());
    let id = list["reports"][0]["id"].as_str().unwrap();
    let resp = other
        .get(app.url(&format!("/api/v1/reports/{id}.pdf")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404, "another tenant's report");
    let resp = other.get(app.url("/api/v1/reports")).send().await.unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["reports"].as_array().unwrap().len(), 0);
    app.stop().await;
}

fn report_cli(dir: &Path, now: &str, out: &Path) -> std::process::Output {
    cli(
        dir,
        &[
            "report",
            "--standard",
            "gdpr",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2099-01-01T00:00:00Z",
            "--now",
            now,
            "--project",
            "default",
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

fn verify_report(dir: &Path, pdf: &Path) -> (Option<i32>, String) {
    let out = cli(dir, &["report", "verify", pdf.to_str().unwrap()]);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_counts_only_what_was_recorded_in_it_and_a_narrowed_range_is_caught() {
    let app = spawn_app().await;
    let early = (0..5)
        .map(|i| event("early", &format!("e{i}"), "2026-11-20T10:00:00Z"))
        .collect();
    assert_eq!(app.post_json("/api/v1/traces", &batch(early)).await.0, 202);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mid = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = (0..3)
        .map(|i| event("late", &format!("l{i}"), "2026-11-20T10:00:00Z"))
        .collect();
    assert_eq!(app.post_json("/api/v1/traces", &batch(late)).await.0, 202);
    let dir = app.stop().await;
    let work = tempfile::tempdir().unwrap();
    let part = work.path().join("part.pdf");
    let out = cli(
        dir.path(),
        &[
            "report",
            "--standard",
            "soc2",
            "--from",
            &mid,
            "--to",
            "2099-01-01T00:00:00Z",
            "--now",
            "2098-01-01T00:00:00Z",
            "--project",
            "default",
            "--out",
            part.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(": 3 events, 1 traces"),
        "only the late batch: {stdout}"
    );
    let (code, out) = verify_report(dir.path(), &part);
    assert_eq!(code, Some(0), "{out}");

    // The same figures and range, claimed for the whole year: the range no longer matches the
    // period, even though the file is a faithful rendering of its (forged) facts.
    let bytes = std::fs::read(&part).unwrap();
    let mut facts: audittrail::report::Facts =
        serde_json::from_slice(&audittrail::report::pdf::embedded_facts(&bytes).unwrap()).unwrap();
    facts.from = "2026-01-01T00:00:00.000000Z".into();
    let forged = work.path().join("forged.pdf");
    std::fs::write(&forged, audittrail::report::render(&facts)).unwrap();
    let (code, out) = verify_report(dir.path(), &forged);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("facts.log"), "{out}");

    // A figure edited and re-rendered is named.
    let mut facts: audittrail::report::Facts =
        serde_json::from_slice(&audittrail::report::pdf::embedded_facts(&bytes).unwrap()).unwrap();
    facts.figures.events = 2;
    std::fs::write(&forged, audittrail::report::render(&facts)).unwrap();
    let (code, out) = verify_report(dir.path(), &forged);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("facts.figures.events: the report says 2, the log gives 3"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_report_is_reproducible_and_verify_catches_edits_and_erasures() {
    let app = spawn_app().await;
    seed(&app).await;
    let dir = app.stop().await;
    // The report's clock, fixed: a moment after everything was recorded.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a.pdf"), work.path().join("b.pdf"));
    for f in [&a, &b] {
        let out = report_cli(dir.path(), &now, f);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&b).unwrap(),
        "same inputs, same clock: same bytes"
    );
    let (code, out) = verify_report(dir.path(), &a);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("OK"), "{out}");

    // An edited file (one byte inside a page's content) no longer matches.
    let mut edited = bytes.clone();
    let at = edited
        .windows(7)
        .position(|w| w == b"stream\n")
        .expect("a content stream")
        + 40;
    edited[at] ^= 0x20;
    let e = work.path().join("edited.pdf");
    std::fs::write(&e, &edited).unwrap();
    let (code, out) = verify_report(dir.path(), &e);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("edited"), "{out}");

    // An edited record: the log no longer gives the report's figures.
    let tampered = copy_dir(dir.path());
    db_sql(
        tampered.path(),
        "UPDATE events SET body = replace(body, 'billing-agent', 'other-agent') \
         WHERE seq = (SELECT MAX(seq) FROM events WHERE record_type = 'span' AND body LIKE '%billing-agent%')",
    );
    let (code, out) = verify_report(tampered.path(), &a);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("MISMATCH"), "{out}");

    // An erasure after the report: said plainly, exit 3.
    let app = spawn_in(copy_dir(dir.path()), &[]).await;
    app.writer()
        .erase(EraseRequest {
            project: "default".into(),
            selector: EraseSelector::TraceId("trace-b".into()),
            reason: "data subject request".into(),
            requested_by: "test".into(),
        })
        .await
        .expect("erasure commits");
    let erased = app.stop().await;
    let (code, out) = verify_report(erased.path(), &a);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("erased"), "{out}");
}
