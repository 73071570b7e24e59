//! The trust promises, tried as an adversary would: a lesser key against stronger keys, and
//! someone with write access to the database (edits made with the `sqlite3` shell, or `psql`
//! on Postgres, while the server is stopped) against `audittrail verify`.

mod common;

use std::path::Path;

use audittrail::store::receipt::{EraseRequest, EraseSelector};
use common::{
    TestApp, batch, cli, client_with_key, copy_dir, db_sql, event, json_response, spawn_app,
};
use serde_json::{Value, json};

async fn create_key(app: &TestApp, client: &reqwest::Client, spec: Value) -> (u16, Value) {
    json_response(
        client
            .post(app.url("/api/v1/keys"))
            .json(&spec)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post(client: &reqwest::Client, url: String) -> (u16, Value) {
    json_response(client.post(url).send().await.unwrap()).await
}

async fn delete(client: &reqwest::Client, url: String) -> (u16, Value) {
    json_response(client.delete(url).send().await.unwrap()).await
}

fn key_of(body: &Value) -> (String, reqwest::Client) {
    (
        body["id"].as_str().unwrap().to_owned(),
        client_with_key(body["key"].as_str().unwrap()),
    )
}

#[tokio::test]
async fn a_key_administrator_cannot_take_over_stronger_keys() {
    let app = spawn_app().await;
    let (_, keys) = app.get("/api/v1/keys").await;
    let owner_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();

    // A keys:admin key for every project: inside the owner's projects, so refusals are 403.
    let (status, body) = create_key(
        &app,
        &app.client,
        json!({"name": "keys-admin", "projects": ["*"], "permissions": ["keys:admin"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (admin_id, admin) = key_of(&body);
    for (method, path) in [
        ("POST", format!("/api/v1/keys/{owner_id}/rotate")),
        ("DELETE", format!("/api/v1/keys/{owner_id}")),
    ] {
        let (status, body) = match method {
            "POST" => post(&admin, app.url(&path)).await,
            _ => delete(&admin, app.url(&path)).await,
        };
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("owner key"),
            "{body}"
        );
        assert!(body.get("key").is_none(), "no secret is handed out");
    }
    // The owner key still works, unchanged.
    assert_eq!(app.get("/api/v1/keys").await.0, 200);

    // A second admin:all key and a writer key hold what keys:admin lacks: 403 naming it.
    let (_, second) = create_key(
        &app,
        &app.client,
        json!({"name": "second-admin", "projects": ["*"], "permissions": ["admin:all"]}),
    )
    .await;
    let (second_id, second_client) = key_of(&second);
    let (_, writer) = create_key(
        &app,
        &app.client,
        json!({"name": "writer", "projects": ["*"], "permissions": ["traces:write"]}),
    )
    .await;
    let writer_id = writer["id"].as_str().unwrap().to_owned();
    for (target, missing) in [(&second_id, "admin:all"), (&writer_id, "traces:write")] {
        let (status, body) = post(&admin, app.url(&format!("/api/v1/keys/{target}/rotate"))).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains(missing),
            "403 names {missing}: {body}"
        );
    }
    // A key within its rights it may rotate.
    let (_, lesser) = create_key(
        &app,
        &admin,
        json!({"name": "lesser", "projects": ["p"], "permissions": ["keys:admin"]}),
    )
    .await;
    let lesser_id = lesser["id"].as_str().unwrap().to_owned();
    let (status, body) = post(&admin, app.url(&format!("/api/v1/keys/{lesser_id}/rotate"))).await;
    assert_eq!(status, 200, "{body}");
    // It lists only the keys within its rights.
    let (_, listed) = json_response(admin.get(app.url("/api/v1/keys")).send().await.unwrap()).await;
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&lesser_id.as_str()) && ids.contains(&admin_id.as_str()));
    for hidden in [&owner_id, &second_id, &writer_id] {
        assert!(
            !ids.contains(&hidden.as_str()),
            "{hidden} is hidden: {ids:?}"
        );
    }
    // A project-scoped administrator does not even see keys outside its projects: 404.
    let (status, _) = post(
        &client_with_key(body["key"].as_str().unwrap()),
        app.url(&format!("/api/v1/keys/{owner_id}/rotate")),
    )
    .await;
    assert_eq!(status, 404);

    // Another admin:all key cannot touch the owner key either; the owner can.
    let (status, body) = post(
        &second_client,
        app.url(&format!("/api/v1/keys/{owner_id}/rotate")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = app
        .post_json(&format!("/api/v1/keys/{owner_id}/rotate"), &json!({}))
        .await;
    assert_eq!(status, 200, "the owner rotates itself: {body}");
    let owner = client_with_key(body["key"].as_str().unwrap());

    // The last active admin:all key cannot be revoked.
    let (status, body) = delete(&owner, app.url(&format!("/api/v1/keys/{second_id}"))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = delete(&owner, app.url(&format!("/api/v1/keys/{owner_id}"))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "last_admin_key");
    assert_eq!(
        json_response(owner.get(app.url("/api/v1/keys")).send().await.unwrap())
            .await
            .0,
        200,
        "the owner key still works"
    );

    // Every refusal is in the audit log as denied.
    let (_, audit) = json_response(
        owner
            .get(app.url("/api/v1/audit?event_type=authorization&result=denied"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let denied: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["resource"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for expected in [
        ("keys.rotate", owner_id.as_str()),
        ("keys.revoke", owner_id.as_str()),
        ("keys.rotate", second_id.as_str()),
        ("keys.rotate", writer_id.as_str()),
    ] {
        assert!(denied.contains(&expected), "{expected:?} in {denied:?}");
    }
    drop(owner);
    app.stop().await;
}

#[tokio::test]
async fn a_key_cannot_grant_projects_permissions_or_a_lifetime_beyond_its_own() {
    let app = spawn_app().await;
    let (status, body) = create_key(
        &app,
        &app.client,
        json!({"name": "expiring-admin", "projects": ["p"], "permissions": ["keys:admin", "traces:read"], "expires_in": "1d"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, admin) = key_of(&body);
    let spec = |extra: Value| {
        let mut s = json!({"name": "child", "projects": ["p"], "permissions": ["traces:read"]});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let cases = [
        (json!({}), 403, "outlives"),
        (json!({"expires_in": "2d"}), 403, "outlives"),
        (
            json!({"projects": ["p", "q"], "expires_in": "1h"}),
            404,
            "no such project",
        ),
        (
            json!({"projects": ["*"], "expires_in": "1h"}),
            404,
            "no such project",
        ),
        (
            json!({"permissions": ["traces:read", "traces:write"], "expires_in": "1h"}),
            403,
            "traces:write",
        ),
    ];
    for (extra, status, detail) in cases {
        let (got, body) = create_key(&app, &admin, spec(extra.clone())).await;
        assert_eq!(got, status, "{extra}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(detail),
            "{extra}: {body}"
        );
    }
    let (status, body) = create_key(&app, &admin, spec(json!({"expires_in": "12h"}))).await;
    assert_eq!(status, 201, "a shorter life is fine: {body}");
    app.stop().await;
}

/// A stopped server's data directory holding spans, a critical violation and audit entries.
async fn log_with_a_violation() -> (tempfile::TempDir, i64) {
    let app = spawn_app().await;
    let events = (0..5)
        .map(|i| event("t1", &format!("s{i}"), &format!("2026-11-22T10:00:0{i}Z")))
        .collect();
    assert_eq!(app.post_json("/api/v1/traces", &batch(events)).await.0, 202);
    let mut bad = event("t2", "drop", "2026-11-22T10:01:00Z");
    bad["kind"] = json!("tool");
    bad["input"] = json!({"sql": "DELETE FROM customers"});
    let (status, resp) = app.post_json("/api/v1/traces", &batch(vec![bad])).await;
    assert_eq!(status, 202);
    assert_eq!(resp["violations"][0]["severity"], "critical", "{resp}");
    let violation_seq = resp["violations"][0]["seq"].as_i64().unwrap();
    (app.stop().await, violation_seq)
}

fn verify(dir: &Path) -> (Option<i32>, String, String) {
    let out = cli(dir, &["verify"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn verify_refuses_a_body_deleted_without_an_erasure_receipt() {
    let (dir, violation_seq) = log_with_a_violation().await;
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 erased record(s)"), "{out}");

    let copy = copy_dir(dir.path());
    db_sql(
        copy.path(),
        &format!("UPDATE events SET body = NULL WHERE seq = {violation_seq}"),
    );
    let (code, _, err) = verify(copy.path());
    assert_eq!(
        code,
        Some(2),
        "deleting the critical violation's body: {err}"
    );
    assert!(
        err.contains(&format!("record seq {violation_seq}"))
            && err.contains("no later erasure receipt"),
        "{err}"
    );
}

#[tokio::test]
async fn an_erasure_is_a_receipt_in_the_log_that_verify_accepts_and_checks() {
    let (dir, _) = log_with_a_violation().await;
    let app = common::spawn_in(dir, &[]).await;
    let erased = app
        .writer()
        .erase(EraseRequest {
            project: "default".into(),
            selector: EraseSelector::TraceId("t1".into()),
            reason: "data subject request #42".into(),
            requested_by: "test".into(),
        })
        .await
        .expect("erasure commits");
    assert_eq!(
        erased.receipt.seqs,
        vec![1, 2, 3, 4, 5],
        "the five spans of t1"
    );
    assert_eq!(erased.receipt.selector_field, "trace_id");
    let pseudonym = erased.receipt.selector_pseudonym.clone().unwrap();
    assert!(!pseudonym.contains("t1") && pseudonym.len() == 64);
    let receipt_seq = erased.receipt_seq;
    let dir = app.stop().await;
    let stored = db_sql(
        dir.path(),
        &format!("SELECT body FROM events WHERE seq = {receipt_seq}"),
    );
    assert!(stored.contains("data subject request #42"), "{stored}");
    // Format v2: the bodies keep their facts and lose their personal part.
    assert_eq!(
        db_sql(
            dir.path(),
            "SELECT COUNT(*) FROM events WHERE body LIKE '%\"erased\":{\"personal_digest\"%' AND body NOT LIKE '%hello%'"
        ),
        "5"
    );
    assert_eq!(
        db_sql(dir.path(), "SELECT COUNT(*) FROM events WHERE body IS NULL"),
        "0"
    );
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("5 erased record(s), each covered by one of 1 erasure receipt(s)"),
        "{out}"
    );

    // Another missing body is still tampering, receipt or not.
    let copy = copy_dir(dir.path());
    db_sql(copy.path(), "UPDATE events SET body = NULL WHERE seq = 6");
    let (code, _, err) = verify(copy.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("record seq 6"), "{err}");

    // Stretching the receipt to cover it is an edit of the receipt.
    let copy = copy_dir(dir.path());
    db_sql(
        copy.path(),
        &format!(
            "UPDATE events SET body = NULL WHERE seq = 6; \
             UPDATE events SET body = replace(body, '[1,2,3,4,5]', '[1,2,3,4,5,6]') WHERE seq = {receipt_seq}"
        ),
    );
    let (code, _, err) = verify(copy.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("record seq 6") || err.contains(&format!("record seq {receipt_seq}")),
        "{err}"
    );

    // A receipt inserted by hand (copied from the real one) does not chain.
    let copy = copy_dir(dir.path());
    db_sql(
        copy.path(),
        &format!(
            "UPDATE events SET body = NULL WHERE seq = 6; \
             INSERT INTO events (seq, project, event_id, record_type, trace_id, event_time, recorded_at, body, digest, link) \
             SELECT (SELECT MAX(seq) + 1 FROM events), project, 'forged-receipt', record_type, trace_id, event_time, recorded_at, \
                    replace(body, '[1,2,3,4,5]', '[6]'), digest, link FROM events WHERE seq = {receipt_seq}"
        ),
    );
    let (code, _, err) = verify(copy.path());
    assert_eq!(code, Some(2), "{err}");
}

#[tokio::test]
async fn verify_refuses_a_forged_chain_base() {
    let (dir, _) = log_with_a_violation().await;
    for (what, tag) in [("no tag", "NULL"), ("a made-up tag", "link")] {
        let copy = copy_dir(dir.path());
        db_sql(
            copy.path(),
            &format!(
                "INSERT INTO chain_base (id, seq, link, tag) SELECT 1, seq, link, {tag} FROM events WHERE seq = 3; \
                 DELETE FROM events WHERE seq <= 3"
            ),
        );
        let (code, _, err) = verify(copy.path());
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(err.contains("chain base (seq 3)"), "{what}: {err}");
    }
}

#[tokio::test]
async fn the_database_file_alone_verifies_and_detects_a_cut_tail() {
    let (dir, _) = log_with_a_violation().await;
    // Restore only the database file into an empty data directory.
    let restored = tempfile::tempdir().unwrap();
    common::copy_database(dir.path(), restored.path());
    let (code, out, err) = verify(restored.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("head checkpoint: present and matching"),
        "{out}"
    );

    let last = db_sql(restored.path(), "SELECT MAX(seq) FROM events");
    db_sql(
        restored.path(),
        &format!("DELETE FROM events WHERE seq = {last}"),
    );
    let (code, _, err) = verify(restored.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("removed from the tail"), "{err}");
}

#[tokio::test]
async fn a_database_restored_beside_a_newer_checkpoint_file_is_not_called_tampered() {
    if common::postgres() {
        // The checkpoint file beside the database exists only for SQLite.
        return;
    }
    let (dir, _) = log_with_a_violation().await;
    let backup = copy_dir(dir.path());
    let app = common::spawn_in(dir, &[]).await;
    let more = (0..3)
        .map(|i| event("t3", &format!("s{i}"), "2026-11-22T11:00:00Z"))
        .collect();
    assert_eq!(app.post_json("/api/v1/traces", &batch(more)).await.0, 202);
    let dir = app.stop().await;
    // The old database goes back beside the newer checkpoint file (the stopped server left
    // no -wal or -shm file behind; a restore removes stale ones).
    for stale in ["audittrail.db-wal", "audittrail.db-shm"] {
        assert!(
            !dir.path().join(stale).exists(),
            "{stale} left after a clean stop"
        );
    }
    std::fs::copy(
        backup.path().join("audittrail.db"),
        dir.path().join("audittrail.db"),
    )
    .unwrap();
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("note: the checkpoint file"), "{out}");
}

#[tokio::test]
async fn verify_detects_edits_to_the_security_audit_log() {
    let app = spawn_app().await;
    // Audit entries: the bootstrap, key creations and some failed authentications.
    for i in 0..3 {
        let (status, _) = app
            .post_json(
                "/api/v1/keys",
                &json!({"name": format!("k{i}"), "projects": ["p"], "permissions": ["traces:read"]}),
            )
            .await;
        assert_eq!(status, 201);
        let (status, _) = json_response(
            client_with_key("sk-at-nope")
                .get(app.url("/api/v1/traces"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401);
    }
    let dir = app.stop().await;
    let (code, out, err) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("audit log: 7 entries chained"), "{out}");

    // The triggers are no protection against someone holding the file: drop them, then edit.
    let unprotect = if common::postgres() {
        "DROP TRIGGER audit_log_append_only ON audit_log;"
    } else {
        "DROP TRIGGER audit_log_append_only_update; DROP TRIGGER audit_log_append_only_delete;"
    };
    let cases = [
        (
            "an entry deleted",
            "DELETE FROM audit_log WHERE id = 3",
            "audit entries 3..=3 are missing",
        ),
        (
            "an entry edited",
            "UPDATE audit_log SET operation = 'keys.list' WHERE id = 4",
            "audit entry 4: content does not match",
        ),
        (
            "the tail cut",
            "DELETE FROM audit_log WHERE id = 7",
            "removed from its tail",
        ),
    ];
    for (what, sql, expected) in cases {
        let copy = copy_dir(dir.path());
        db_sql(copy.path(), &format!("{unprotect} {sql}"));
        let (code, _, err) = verify(copy.path());
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(
            err.contains(expected),
            "{what}: expected `{expected}` in {err}"
        );
    }
}
