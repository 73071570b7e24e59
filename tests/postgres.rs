//! What only Postgres has: one writer per database (a second server waits as a standby and
//! takes over when the first dies), and a database restart under load (nothing acknowledged is
//! lost; what was not stored was answered 503, never 202). Real processes, real Postgres.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{batch, binary, client_with_key, database_url_on, event, free_port};
use serde_json::{Value, json};

/// `audittrail serve` on `url` at `port`, its log in `log`.
fn serve(dir: &Path, url: &str, port: u16, log: &Path) -> Child {
    let mut args = common::base_args(dir);
    args.remove(0);
    let i = args.iter().position(|a| a == "--database-url").unwrap();
    args[i + 1] = url.to_owned();
    let b = args.iter().position(|a| a == "--bind").unwrap();
    args[b + 1] = format!("127.0.0.1:{port}");
    Command::new(binary())
        .args(args)
        .arg("serve")
        .env("AUDITTRAIL_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn verify(dir: &Path, url: &str) -> std::process::Output {
    let mut args = common::base_args(dir);
    args.remove(0);
    let i = args.iter().position(|a| a == "--database-url").unwrap();
    args[i + 1] = url.to_owned();
    Command::new(binary())
        .args(args)
        .arg("verify")
        .output()
        .unwrap()
}

/// Posts batches of 10 events with client ids from `workers` tasks until `until`; returns the
/// ids acknowledged (202) and every status seen.
async fn load(
    base: String,
    key: String,
    workers: usize,
    until: Instant,
    tag: &'static str,
) -> (Vec<String>, Vec<u16>) {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (base, client) = (base.clone(), client_with_key(&key));
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut statuses) = (Vec::new(), Vec::new());
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let ids: Vec<String> = (0..10).map(|i| format!("{tag}-w{w}-b{n}-e{i}")).collect();
                let events = ids
                    .iter()
                    .map(|id| {
                        let mut e = event(&format!("{tag}-w{w}-b{n}"), id, "2026-11-22T10:00:00Z");
                        e["event_id"] = json!(id);
                        e
                    })
                    .collect();
                let resp = client
                    .post(format!("{base}/api/v1/traces"))
                    .timeout(Duration::from_secs(20))
                    .json(&batch(events))
                    .send()
                    .await;
                match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        if status == 202 {
                            acked.extend(ids);
                        } else if status == 503 {
                            assert!(r.headers().contains_key("retry-after"), "503 says when");
                        }
                        statuses.push(status);
                    }
                    Err(_) => statuses.push(0),
                }
                if statuses.last() != Some(&202) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            (acked, statuses)
        }));
    }
    let (mut acked, mut statuses) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, s) = t.await.unwrap();
        acked.extend(a);
        statuses.extend(s);
    }
    (acked, statuses)
}

async fn health(base: &str) -> Option<Value> {
    let resp = common::client()
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_never_fork_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url_on(dir.path(), true);
    let (p1, p2) = (free_port(), free_port());
    let (b1, b2) = (
        format!("http://127.0.0.1:{p1}"),
        format!("http://127.0.0.1:{p2}"),
    );
    let mut first = serve(dir.path(), &url, p1, &dir.path().join("first.log"));
    common::wait_ready(&b1).await;
    let mut second = serve(dir.path(), &url, p2, &dir.path().join("second.log"));
    common::wait_ready(&b2).await;
    let owner = common::bootstrap(&b1).await;

    // The second one is a standby: it says so, and refuses to write (503, nothing stored).
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(log.contains("standby"), "{log}");
    let h = health(&b2).await.unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    let (_, deep) = common::json_response(
        client_with_key(&owner)
            .get(format!("{b2}/api/v1/health/deep"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deep["store"]["standby"], true, "{deep}");
    let resp = client_with_key(&owner)
        .post(format!("{b2}/api/v1/traces"))
        .json(&batch(vec![event(
            "to-standby",
            "s",
            "2026-11-22T10:00:00Z",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "standby");

    // Load on the writer, then it dies (kill -9) mid-load.
    let until = Instant::now() + Duration::from_millis(1500);
    let load1 = tokio::spawn(load(b1.clone(), owner.clone(), 4, until, "one"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let (acked1, _) = load1.await.unwrap();
    assert!(acked1.len() > 50, "the first writer ran ({})", acked1.len());

    // The standby takes over within seconds.
    let started = Instant::now();
    loop {
        if health(&b2).await.is_some_and(|h| h["status"] == "ok") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no takeover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (acked2, statuses) = load(
        b2.clone(),
        owner.clone(),
        4,
        Instant::now() + Duration::from_millis(800),
        "two",
    )
    .await;
    assert!(!acked2.is_empty(), "the new writer writes: {statuses:?}");
    second.kill().unwrap();
    second.wait().unwrap();

    let out = verify(dir.path(), &url);
    assert!(
        out.status.success(),
        "one chain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: std::collections::HashSet<String> =
        common::db_sql_on(dir.path(), true, "SELECT event_id FROM events")
            .lines()
            .map(str::to_owned)
            .collect();
    let lost: Vec<_> = acked1
        .iter()
        .chain(&acked2)
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

/// A Postgres cluster of this test's own (so restarting it disturbs nobody), run as the
/// `postgres` user from Debian's binaries.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql package (scripts/test.sh installs it)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = std::env::temp_dir().join(format!("at-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pg = Self {
            dir,
            port: free_port(),
            bin,
        };
        pg.as_postgres(&["chown", "-R", "postgres", "."], true);
        let data = pg.dir.join("data");
        pg.as_postgres(
            &[
                pg.bin.join("initdb").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            false,
        );
        pg.pg_ctl("start");
        pg
    }

    fn as_postgres(&self, cmd: &[&str], as_root: bool) {
        let out = if as_root {
            Command::new(cmd[0])
                .args(&cmd[1..])
                .current_dir(&self.dir)
                .output()
        } else {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(cmd)
                .current_dir(&self.dir)
                .output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let mut cmd = vec![
            self.bin.join("pg_ctl").to_str().unwrap().to_owned(),
            "-D".into(),
            data.to_str().unwrap().to_owned(),
            "-w".into(),
            "-m".into(),
            "fast".into(),
            "-l".into(),
            self.dir.join("pg.log").to_str().unwrap().to_owned(),
            "-o".into(),
            opts,
            action.into(),
        ];
        if action == "stop" {
            cmd.truncate(6);
            cmd.push("stop".into());
        }
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        self.as_postgres(&refs, false);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_nothing_acknowledged() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), &pg.url(), port, &dir.path().join("server.log"));
    common::wait_ready(&base).await;
    let owner = common::bootstrap(&base).await;

    let until = Instant::now() + Duration::from_secs(8);
    let running = tokio::spawn(load(base.clone(), owner.clone(), 4, until, "restart"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.pg_ctl("stop");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.pg_ctl("start");
    let (acked, statuses) = running.await.unwrap();
    assert!(
        statuses.contains(&503),
        "the outage was answered 503: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [202, 503].contains(s)),
        "only 202 (stored) or 503 (not stored, retry): {statuses:?}"
    );
    assert!(statuses.ends_with(&[202]), "ingest recovered: {statuses:?}");
    server.kill().unwrap();
    server.wait().unwrap();

    let stored: std::collections::HashSet<String> = {
        let out = Command::new("psql")
            .args([
                "-X",
                "-At",
                "-d",
                &pg.url(),
                "-c",
                "SELECT event_id FROM events",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
    let out = verify(dir.path(), &pg.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
