//! The whole stack from the shipped files: `docker compose up -d --build` (Dockerfile,
//! docker-compose.yml, nginx.conf) on a real Docker engine, then ingest through nginx, the
//! hardening of the container, data surviving `down`/`up`, `backup.sh`, and the restore drill.
//!
//! Nothing can be pulled from a registry here: `scripts/docker_base_images.sh` (run by
//! scripts/test.sh) makes the base images offline, and they are passed in through the image
//! variables the compose file documents. Each run uses its own compose project name.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{batch, event, free_port};
use serde_json::Value;

struct Stack {
    project: String,
    env: Vec<(String, String)>,
    repo: PathBuf,
    _secrets: tempfile::TempDir,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(&self.repo)
            .args(["-p", &self.project, "-f", "docker-compose.yml"])
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output()
            .expect("docker-compose (Debian's package; scripts/test.sh installs it)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn api_container(&self) -> String {
        self.ok(&["ps", "-q", "api"])
    }

    fn wait_healthy(&self) {
        let started = Instant::now();
        loop {
            let id = self.api_container();
            let out = Command::new("docker")
                .args(["inspect", "-f", "{{.State.Health.Status}}", &id])
                .output()
                .unwrap();
            let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if status == "healthy" {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "api not healthy ({status}): {}",
                String::from_utf8_lossy(&self.compose(&["logs", "--tail", "50", "api"]).stdout)
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans"]);
    }
}

/// Removes a file when dropped (the prebuilt binary copied into the build context).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn wait_http(url: &str) {
    for _ in 0..120 {
        if let Ok(r) = common::client().get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{url} did not answer");
}

fn docker_up() {
    let out = Command::new("docker").arg("info").output();
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "a Docker engine must run (scripts/docker_base_images.sh starts one)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_compose_up_serves_behind_nginx_keeps_data_and_restores_backups() {
    docker_up();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let secrets = tempfile::tempdir().unwrap();
    // The secret file as the README says: mode 0400, owned by the image's uid 10001.
    let key_file = secrets.path().join("audittrail_secret_key");
    std::fs::write(
        secrets.path().join("k"),
        "compose-test-secret-0123456789abcdef0123456789",
    )
    .unwrap();
    let st = Command::new("install")
        .args(["-m", "0400", "-o", "10001"])
        .arg(secrets.path().join("k"))
        .arg(&key_file)
        .status()
        .unwrap();
    assert!(st.success());
    // scripts/test.sh has just built the release binary from this tree: the image takes it
    // instead of compiling again (AUDITTRAIL_COMPOSE_FROM_SOURCE=1 builds from source, as a
    // user's `docker compose up --build` does).
    let prebuilt = repo.join("deploy/prebuilt/audittrail");
    let release = repo.join("target/release/audittrail");
    let _prebuilt_guard =
        if std::env::var_os("AUDITTRAIL_COMPOSE_FROM_SOURCE").is_none() && release.exists() {
            std::fs::copy(&release, &prebuilt).unwrap();
            Some(RemoveOnDrop(prebuilt))
        } else {
            None
        };
    let pg_pw = secrets.path().join("postgres_password");
    std::fs::write(&pg_pw, "unused").unwrap();
    let http_port = free_port();
    let image = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
    let stack = Stack {
        project: format!("attest{}x{}", std::process::id(), http_port),
        env: vec![
            (
                "RUST_IMAGE".into(),
                image("RUST_IMAGE", "audittrail-local/rust:bookworm"),
            ),
            (
                "RUNTIME_IMAGE".into(),
                image("RUNTIME_IMAGE", "audittrail-local/debian:bookworm-slim"),
            ),
            (
                "NGINX_IMAGE".into(),
                image("NGINX_IMAGE", "audittrail-local/nginx:bookworm"),
            ),
            ("CARGO_NET_OFFLINE".into(), "true".into()),
            ("BUILD_NETWORK".into(), "host".into()),
            // A stable tag: the next run reuses the image's layers (dependencies compiled once).
            ("AUDITTRAIL_IMAGE".into(), "audittrail-test:compose".into()),
            ("HTTP_PORT".into(), http_port.to_string()),
            ("HTTPS_PORT".into(), free_port().to_string()),
            (
                "AUDITTRAIL_SECRET_KEY_HOST_FILE".into(),
                key_file.display().to_string(),
            ),
            (
                "POSTGRES_PASSWORD_HOST_FILE".into(),
                pg_pw.display().to_string(),
            ),
            (
                "AUDITTRAIL_CORS_ORIGINS".into(),
                r#"["https://audit.example.com"]"#.into(),
            ),
        ],
        repo: repo.clone(),
        _secrets: secrets,
    };
    stack.ok(&["up", "-d", "--build"]);
    stack.wait_healthy();
    let base = format!("http://127.0.0.1:{http_port}");
    wait_http(&format!("{base}/api/v1/health")).await;

    // Through nginx: bootstrap, ingest, read back.
    let owner = common::bootstrap(&base).await;
    let client = common::client_with_key(&owner);
    let post = |trace: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client
                .post(format!("{base}/api/v1/traces"))
                .json(&batch(vec![event(trace, "s", "2026-11-22T10:00:00Z")]))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(post("compose-before").await, 202);
    let health: Value = common::client()
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["status"], "ok",
        "production settings and six rules: {health}"
    );

    // The container runs as uid 10001, its rules and root filesystem are read-only.
    assert_eq!(stack.ok(&["exec", "-T", "api", "id", "-u"]), "10001");
    let write_rules = stack.compose(&[
        "exec",
        "-T",
        "api",
        "sh",
        "-c",
        "echo x > /app/rules/x.rhai",
    ]);
    assert!(
        !write_rules.status.success(),
        "/app/rules must be read-only"
    );
    let write_root = stack.compose(&["exec", "-T", "api", "sh", "-c", "echo x > /usr/local/bin/x"]);
    assert!(
        !write_root.status.success(),
        "the root filesystem must be read-only"
    );

    // Data survives `down` and `up` (the named volume).
    stack.ok(&["down"]);
    stack.ok(&["up", "-d"]);
    stack.wait_healthy();
    wait_http(&format!("{base}/api/v1/health")).await;
    let r = client
        .get(format!("{base}/api/v1/traces/compose-before"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "the trace and the owner key survived"
    );

    // backup.sh in compose mode.
    let backups = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("backup.sh"))
        .env("BACKUP_DIR", backups.path())
        .env(
            "COMPOSE",
            format!("docker-compose -p {} -f docker-compose.yml", stack.project),
        );
    for (k, v) in &stack.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "backup.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backup = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("backup_")
        })
        .expect("a backup file");
    assert!(backups.path().join("audittrail_backup.prom").exists());

    // Written after the backup: gone after the restore.
    assert_eq!(post("compose-after").await, 202);

    // The restore drill: stop, restore, start, verify, the backup's content.
    stack.ok(&["stop", "api"]);
    let mount = format!("{}:/backups:ro", backups.path().display());
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    let chmod = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(backups.path())
        .status()
        .unwrap();
    assert!(chmod.success());
    stack.ok(&[
        "run",
        "--rm",
        "-T",
        "-v",
        &mount,
        "api",
        "restore",
        &format!("/backups/{name}"),
    ]);
    stack.ok(&["start", "api"]);
    stack.wait_healthy();
    wait_http(&format!("{base}/api/v1/health")).await;
    let verify = stack.ok(&["exec", "-T", "api", "audittrail", "verify"]);
    assert!(verify.contains("records verified"), "{verify}");
    for (trace, status) in [("compose-before", 200), ("compose-after", 404)] {
        let r = client
            .get(format!("{base}/api/v1/traces/{trace}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{trace}");
    }
    drop(stack);
}
