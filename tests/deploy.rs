//! The deployment files as operators use them: the alert rules pass promtool and name only
//! series that exist; backups are consistent while the server writes and restore to the same
//! chain; a second server on the same SQLite file is refused.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{batch, binary, event, free_port};
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `audittrail_*` name in `text`.
fn series(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("audittrail_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if end > start + "audittrail_".len() {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// All source text of the application.
fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
}

#[test]
fn alert_rules_pass_promtool_and_name_only_series_that_exist() {
    let rules = repo().join("deploy/prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut exported = String::new();
    sources(&repo().join("src"), &mut exported);
    let app: BTreeSet<String> = series(&exported)
        .into_iter()
        .filter(|s| exported.contains(&format!("\"{s}\"")))
        .collect();
    let backup = series(&std::fs::read_to_string(repo().join("backup.sh")).unwrap());
    let named = series(&std::fs::read_to_string(&rules).unwrap());
    assert!(named.len() >= 15, "{named:?}");
    for s in &named {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| s.strip_suffix(suffix))
            .unwrap_or(s);
        assert!(
            app.contains(base) || backup.contains(base),
            "the alert rules name {s}, which neither the application nor backup.sh writes"
        );
    }
}

fn run(dir: &Path, url: &str, args: &[&str]) -> std::process::Output {
    let mut all = common::base_args(dir);
    all.remove(0);
    let i = all.iter().position(|a| a == "--database-url").unwrap();
    all[i + 1] = url.to_owned();
    Command::new(binary())
        .args(all)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (records, head link) from `verify`.
fn verified(dir: &Path, url: &str) -> (String, String) {
    let out = run(dir, url, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        t.split(" records verified")
            .next()
            .unwrap()
            .replace("ok: ", ""),
        t.split("head link ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_under_load_verify_and_restore_to_the_same_chain() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::database_url(dir.path());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = common::serve_command(dir.path(), port).spawn().unwrap();
    common::wait_ready(&base).await;
    let client = common::client_with_key(&common::bootstrap(&base).await);

    // Writers keep going while the backup is taken.
    let until = Instant::now() + Duration::from_secs(3);
    let mut writers = Vec::new();
    for w in 0..3 {
        let (client, base) = (client.clone(), base.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let events = (0..20)
                    .map(|i| {
                        event(
                            &format!("bk-{w}-{n}"),
                            &format!("s{i}"),
                            "2026-11-22T10:00:00Z",
                        )
                    })
                    .collect();
                let r = client
                    .post(format!("{base}/api/v1/traces"))
                    .json(&batch(events))
                    .send()
                    .await;
                assert_eq!(r.unwrap().status().as_u16(), 202);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let backups = tempfile::tempdir().unwrap();
    let ext = if common::postgres() { "pgdump" } else { "db" };
    let file = backups.path().join(format!("backup.{ext}"));
    let out = run(dir.path(), &url, &["backup", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("records verified"));
    let again = run(dir.path(), &url, &["backup", file.to_str().unwrap()]);
    assert!(!again.status.success(), "a backup never overwrites a file");
    for w in writers {
        w.await.unwrap();
    }
    if !common::postgres() {
        // One self-contained file: no -wal or -shm beside it, and it passes integrity_check.
        for side in ["-wal", "-shm"] {
            assert!(!Path::new(&format!("{}{side}", file.display())).exists());
        }
        assert_eq!(common::sqlite3(&file, "PRAGMA integrity_check"), "ok");
    }
    // The backup's own content: what was committed when it was taken.
    let backup_line = String::from_utf8_lossy(&out.stdout).into_owned();
    let backup_records = backup_line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(" records")
        .next()
        .unwrap()
        .to_owned();

    // A second server on the same SQLite file is refused (it would fork the chain).
    if !common::postgres() {
        let second = run(dir.path(), &url, &["serve"]);
        assert!(!second.status.success());
        assert!(
            text(&second).contains("another AuditTrail server is running"),
            "{}",
            text(&second)
        );
    }

    // The restore drill: stop, restore (refused while the server runs), start, verify, counts.
    if !common::postgres() {
        let refused = run(dir.path(), &url, &["restore", file.to_str().unwrap()]);
        assert!(!refused.status.success());
        assert!(
            text(&refused).contains("stop it before restoring"),
            "{}",
            text(&refused)
        );
    }
    std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    server.wait().unwrap();
    let restore_dir = tempfile::tempdir().unwrap();
    let restore_url = common::database_url(restore_dir.path());
    let out = run(
        restore_dir.path(),
        &restore_url,
        &["restore", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (records, _) = verified(restore_dir.path(), &restore_url);
    assert_eq!(
        records, backup_records,
        "the restore holds exactly the backup"
    );
    // The restored database serves: start it and read.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut restored = common::serve_command(restore_dir.path(), port)
        .spawn()
        .unwrap();
    common::wait_ready(&base).await;
    let resp = client
        .get(format!("{base}/api/v1/traces/bk-0-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client
        .post(format!("{base}/api/v1/traces"))
        .json(&json!({"events": [event("after-restore", "s", "2026-11-22T10:00:00Z")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    restored.kill().unwrap();
    restored.wait().unwrap();
    assert!(
        run(restore_dir.path(), &restore_url, &["verify"])
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_sh_in_local_mode_writes_the_backup_and_the_prometheus_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::database_url(dir.path());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = common::serve_command(dir.path(), port).spawn().unwrap();
    common::wait_ready(&base).await;
    let client = common::client_with_key(&common::bootstrap(&base).await);
    let r = client
        .post(format!("{base}/api/v1/traces"))
        .json(&batch(vec![event("sh", "s", "2026-11-22T10:00:00Z")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let backups = tempfile::tempdir().unwrap();
    // An old backup to prune, and one that is recent enough to keep.
    let old = backups.path().join("backup_20200101_000000.db");
    std::fs::write(&old, b"old").unwrap();
    Command::new("touch")
        .args(["-d", "40 days ago"])
        .arg(&old)
        .status()
        .unwrap();
    let recent = backups.path().join("backup_recent.db");
    std::fs::write(&recent, b"recent").unwrap();
    let mut env_args = common::base_args(dir.path());
    env_args.remove(0);
    let i = env_args.iter().position(|a| a == "--database-url").unwrap();
    env_args[i + 1] = url.clone();
    // A tiny wrapper so backup.sh runs the test binary with the test's arguments.
    let wrapper = backups.path().join("audittrail-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} {} \"$@\"\n",
            binary(),
            env_args
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let out = Command::new("bash")
        .arg(repo().join("backup.sh"))
        .env("BACKUP_MODE", "local")
        .env("BACKUP_DIR", backups.path())
        .env("AUDITTRAIL_BIN", &wrapper)
        .env(
            "BACKUP_EXT",
            if common::postgres() { "pgdump" } else { "db" },
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let files: Vec<String> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.contains(&"backup_20200101_000000.db".to_owned()),
        "pruned: {files:?}"
    );
    assert!(
        files.contains(&"backup_recent.db".to_owned()),
        "kept: {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("backup_2") && !f.starts_with("backup_2020")),
        "{files:?}"
    );
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".tmp") || f.ends_with(".partial")),
        "{files:?}"
    );
    let prom = std::fs::read_to_string(backups.path().join("audittrail_backup.prom")).unwrap();
    let stamp: u64 = prom
        .lines()
        .find_map(|l| l.strip_prefix("audittrail_backup_last_success_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - stamp < 120, "{prom}");

    // A failing backup exits non-zero and leaves the success record alone.
    let before = std::fs::read_to_string(backups.path().join("audittrail_backup.prom")).unwrap();
    let out = Command::new("bash")
        .arg(repo().join("backup.sh"))
        .env("BACKUP_MODE", "local")
        .env("BACKUP_DIR", backups.path())
        .env("AUDITTRAIL_BIN", "/bin/false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(backups.path().join("audittrail_backup.prom")).unwrap(),
        before
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
