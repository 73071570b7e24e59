//! `audittrail copy --to postgres://…`: the whole log moves with its chain intact, an
//! interrupted copy resumes, and a database holding anything else is refused.

mod common;

use std::path::Path;

use common::{batch, binary, database_url_on, event, spawn_in};
use serde_json::json;

/// Runs the binary on the SQLite data directory `dir` with `args`.
fn on_sqlite(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = common::base_args(dir);
    all.remove(0);
    let i = all.iter().position(|a| a == "--database-url").unwrap();
    all[i + 1] = database_url_on(dir, false);
    std::process::Command::new(binary())
        .args(all)
        .args(args)
        .output()
        .unwrap()
}

/// `verify` against `url`: (records, head link).
fn verify(dir: &Path, url: &str) -> (String, String) {
    let mut all = common::base_args(dir);
    all.remove(0);
    let i = all.iter().position(|a| a == "--database-url").unwrap();
    all[i + 1] = url.to_owned();
    let out = std::process::Command::new(binary())
        .args(all)
        .arg("verify")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = text
        .split(" records verified")
        .next()
        .unwrap()
        .replace("ok: ", "");
    let link = text
        .split("head link ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    (records, link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_log_moves_to_postgres_with_the_same_chain() {
    // A SQLite log with spans, a violation, keys and audit entries.
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = database_url_on(dir.path(), false);
    let app = spawn_in(dir, &["--database-url", &sqlite_url]).await;
    let (status, agent) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "agent", "projects": ["default"], "permissions": ["traces:write", "traces:read"]}),
        )
        .await;
    assert_eq!(status, 201);
    let agent_key = agent["key"].as_str().unwrap().to_owned();
    for t in 0..20 {
        let mut events: Vec<_> = (0..25)
            .map(|i| {
                event(
                    &format!("copy-{t}"),
                    &format!("s{i}"),
                    "2026-11-22T10:00:00Z",
                )
            })
            .collect();
        events[0]["kind"] = json!("tool");
        events[0]["input"] = json!({"sql": "DELETE FROM orders"});
        events[1]["output"] = json!({"content": format!("mailed copy{t}@example.org")});
        assert_eq!(app.post_json("/api/v1/traces", &batch(events)).await.0, 202);
    }
    let (status, _) = app
        .client
        .put(app.url("/api/v1/projects/default/retention"))
        .json(&json!({"days": 365}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
    let (_, traces_before) = app.get("/api/v1/traces?limit=500").await;
    let (_, violations_before) = app.get("/api/v1/violations?limit=500").await;
    let dir = app.stop().await;

    // The target: an empty Postgres database.
    let target = tempfile::tempdir().unwrap();
    let pg_url = database_url_on(target.path(), true);
    let out = on_sqlite(dir.path(), &["copy", "--to", &pg_url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("copied"));
    let source = verify(dir.path(), &sqlite_url);
    assert_eq!(
        verify(target.path(), &pg_url),
        source,
        "same records, same head link"
    );

    // The copy holds something now: copying into it again is refused; into a non-empty other
    // database too.
    let other = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_url = database_url_on(other.path(), true);
    let app_other = spawn_in(other_dir, &["--database-url", &other_url]).await;
    app_other.stop().await;
    let out = on_sqlite(dir.path(), &["copy", "--to", &other_url]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty database"));

    // An interrupted copy (the tail not copied yet) resumes and ends with the same chain.
    common::db_sql_on(
        target.path(),
        true,
        "DELETE FROM events WHERE seq > 100; UPDATE copy_state SET finished_at = NULL",
    );
    let out = on_sqlite(dir.path(), &["copy", "--to", &pg_url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed"));
    assert_eq!(verify(target.path(), &pg_url), source);
    // The value index and the projects' limits came along (erasure by value works there).
    for sql in [
        "SELECT COUNT(*) FROM redacted_values",
        "SELECT project || ':' || days FROM project_retention",
    ] {
        assert_eq!(
            common::db_sql_on(target.path(), true, sql),
            common::db_sql_on(dir.path(), false, sql),
            "{sql}"
        );
    }
    assert_eq!(
        common::db_sql_on(target.path(), true, "SELECT COUNT(*) FROM redacted_values"),
        "20"
    );

    // A server on the copy answers as the original did, and the old keys work.
    std::fs::copy(
        dir.path().join("test-owner.key"),
        target.path().join("test-owner.key"),
    )
    .unwrap();
    let app = spawn_in(target, &["--database-url", &pg_url]).await;
    let (_, traces_after) = app.get("/api/v1/traces?limit=500").await;
    assert_eq!(traces_after, traces_before);
    let (_, violations_after) = app.get("/api/v1/violations?limit=500").await;
    assert_eq!(violations_after, violations_before);
    let resp = common::client_with_key(&agent_key)
        .get(app.url("/api/v1/traces/copy-3"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    app.stop().await;
}
