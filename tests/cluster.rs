//! Cluster mode end to end: a real nats-server with JetStream (one per test, on its own port
//! and store directory, so it can be killed and restarted), the real Postgres, and the built
//! binary as ingest nodes (`serve` with `--nats-url`) and workers (`worker`), all on loopback.
//!
//! The checks after each scenario are the guarantees the README's "Scaling out" states: every
//! acknowledged event is in Postgres exactly once, the chain verifies, and the stored
//! violations are those a single-node replay of the log produces (an ablation run with the
//! unchanged rules reports no difference).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TEST_SECRET, binary, client, client_with_key, free_port, rules_dir};
use serde_json::{Value, json};

/// One scenario at a time: the fault test restarts the machine's Postgres.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Restarts the machine's Postgres (`pg_ctlcluster … restart`, fast mode: connections cut).
fn restart_postgres() {
    let clusters = Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .expect("pg_lsclusters (Debian's postgresql-common)");
    let text = String::from_utf8_lossy(&clusters.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("5432"))
        .expect("a Postgres cluster on port 5432");
    let mut f = line.split_whitespace();
    let (version, name) = (f.next().expect("version"), f.next().expect("name"));
    let out = Command::new("pg_ctlcluster")
        .args([version, name, "restart", "-m", "fast"])
        .output()
        .expect("pg_ctlcluster");
    assert!(
        out.status.success(),
        "restarting Postgres: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A nats-server with JetStream that the test owns.
struct Nats {
    port: u16,
    store: PathBuf,
    log: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Nats {
    /// With extra server configuration (`max_payload: 32768`).
    fn start_with(dir: &Path, extra: &str) -> Nats {
        let config = dir.join("nats.conf");
        std::fs::write(&config, extra).expect("nats config");
        let mut n = Nats {
            port: free_port(),
            store: dir.join("nats-store"),
            log: dir.join("nats.log"),
            config,
            child: None,
        };
        n.launch();
        n
    }

    fn launch(&mut self) {
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.config)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(["-l"])
            .arg(&self.log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, then the same server again on the same port and store.
    fn restart(&mut self) {
        kill9(self.child.as_mut().expect("running"));
        std::thread::sleep(Duration::from_millis(500));
        self.launch();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            kill9(c);
        }
    }
}

fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// One AuditTrail process (ingest node or worker).
struct Proc {
    port: u16,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill9(&mut self.child);
    }
}

/// Everything one scenario runs.
struct Setup {
    dir: tempfile::TempDir,
    database_url: String,
    nats: Nats,
    stream: String,
    prefix: String,
    max_bytes: u64,
    started: AtomicUsize,
}

impl Setup {
    fn new(max_bytes: u64) -> Setup {
        Self::with_nats(max_bytes, "")
    }

    fn with_nats(max_bytes: u64, nats_config: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = common::database_url_on(dir.path(), true);
        let nats = Nats::start_with(dir.path(), nats_config);
        let tag = format!("{}_{}", std::process::id(), free_port());
        Setup {
            database_url,
            nats,
            stream: format!("AT_TEST_{tag}"),
            prefix: format!("attest.{tag}"),
            max_bytes,
            started: AtomicUsize::new(0),
            dir,
        }
    }

    fn args(&self) -> Vec<String> {
        [
            "--data-dir",
            &self.dir.path().display().to_string(),
            "--database-url",
            &self.database_url,
            "--secret-key",
            TEST_SECRET,
            "--rules-dir",
            &rules_dir().display().to_string(),
            "--environment",
            "development",
            "--nats-url",
            &self.nats.url(),
            "--nats-stream",
            &self.stream,
            "--nats-subject-prefix",
            &self.prefix,
            "--nats-max-bytes",
            &self.max_bytes.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn spawn(&self, command: &str, bind_flag: &str) -> Proc {
        let port = free_port();
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let log = std::fs::File::create(self.dir.path().join(format!("{command}-{n}.log")))
            .expect("log file");
        let child = Command::new(binary())
            .args(self.args())
            .args([bind_flag, &format!("127.0.0.1:{port}")])
            .arg(command)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run audittrail");
        Proc { port, child }
    }

    fn ingest_node(&self) -> Proc {
        self.spawn("serve", "--bind")
    }

    fn worker(&self) -> Proc {
        self.spawn("worker", "--worker-bind")
    }

    /// Runs `audittrail verify` on the cluster's database.
    fn verify(&self) -> std::process::Output {
        Command::new(binary())
            .args(self.args())
            .arg("verify")
            .output()
            .expect("run audittrail verify")
    }

    fn sql(&self, sql: &str) -> String {
        common::db_sql_on(self.dir.path(), true, sql)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("dir").flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("\n--- {} (last lines)\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

async fn wait_http(port: u16) {
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = c
            .get(format!("http://127.0.0.1:{port}/api/v1/health"))
            .send()
            .await
            && r.status().as_u16() != 404
        {
            return;
        }
        assert!(Instant::now() < deadline, "process on {port} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health(port: u16) -> Option<Value> {
    let r = client()
        .get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// The worker that holds the writer lock, once one does.
async fn active_worker(workers: &[Proc]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, w) in workers.iter().enumerate() {
            if let Some(h) = health(w.port).await
                && h["active"] == true
                && h["reading"] == true
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no worker became active");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Events of one batch: client-chosen ids (so a retry is recognised), traces that span many
/// batches and clients (so the rules' running totals cross nodes), tokens that cross the
/// token budget, answers without sources (`cite_sources`).
fn batch(client: usize, n: usize) -> (Vec<String>, Value) {
    let mut ids = Vec::new();
    let events: Vec<Value> = (0..5)
        .map(|j| {
            let id = format!("c{client}-b{n}-e{j}");
            ids.push(id.clone());
            let trace = format!("trace-{:02}", (n + j) % 12);
            let mut e = audittrail::loadgen::sample_event(&trace, n * 5 + j);
            e["event_id"] = json!(id);
            e["span_id"] = json!(format!("span-{id}"));
            e["session_id"] = json!(format!("sess-{}", n % 3));
            if e.get("usage").is_some() {
                e["usage"]["input_tokens"] = json!(40_000);
            }
            e
        })
        .collect();
    (ids, json!({ "events": events }))
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    acked: Vec<String>,
    statuses: BTreeMap<u16, usize>,
    /// 503s without Retry-After, 5xx other than 503, 202s without every id.
    wrong: Vec<String>,
}

/// `clients` SDK-like senders over the node ports (round robin, next node on a connection
/// error), each retrying a batch until it is acknowledged, until `stop` is set.
async fn load(
    ports: Arc<Mutex<Vec<u16>>>,
    key: String,
    clients: usize,
    stop: Arc<AtomicBool>,
    max_batches: usize,
) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (ports, key, stop, seen) = (ports.clone(), key.clone(), stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let http = client_with_key(&key);
            let mut turn = c;
            for n in 0..max_batches {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (ids, body) = batch(c, n);
                loop {
                    let port = {
                        let p = ports.lock().unwrap();
                        p[turn % p.len()]
                    };
                    turn += 1;
                    let sent = http
                        .post(format!("http://127.0.0.1:{port}/api/v1/traces"))
                        .json(&body)
                        .timeout(Duration::from_secs(20))
                        .send()
                        .await;
                    let Ok(resp) = sent else {
                        // The node is down (or the request was cut): the batch was not
                        // acknowledged; send it again elsewhere.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().contains_key("retry-after");
                    let answer: Value = resp.json().await.unwrap_or(Value::Null);
                    let done = {
                        let mut s = seen.lock().unwrap();
                        *s.statuses.entry(status).or_default() += 1;
                        match status {
                            202 => {
                                if answer["event_ids"] != json!(ids)
                                    || answer["evaluation"] != "pending"
                                {
                                    s.wrong.push(format!("202 answer {answer}"));
                                }
                                s.acked.extend(ids.iter().cloned());
                                true
                            }
                            503 if retry_after => false,
                            _ => {
                                s.wrong.push(format!("{status} {answer}"));
                                false
                            }
                        }
                    };
                    if done {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    Arc::try_unwrap(seen)
        .ok()
        .expect("tasks ended")
        .into_inner()
        .unwrap()
}

/// Waits until the stream is empty and the log stops growing.
async fn drained(setup: &Setup, worker_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        let h = health(worker_port).await.unwrap_or(Value::Null);
        let head = setup.sql("SELECT COALESCE(MAX(seq), 0) FROM events");
        if h["cluster"]["lag_messages"] == 0 && h["cluster"]["ack_pending"] == 0 && head == last {
            return;
        }
        last = head;
        assert!(
            Instant::now() < deadline,
            "the worker did not drain the stream: {h}{}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

/// The three checks: exactly once, chain, violations = replay.
async fn check_log(setup: &Setup, node_port: u16, key: &str, acked: &[String]) {
    let acked_set: HashSet<&String> = acked.iter().collect();
    assert_eq!(
        acked_set.len(),
        acked.len(),
        "a batch was acknowledged twice"
    );
    let stored = setup.sql("SELECT event_id FROM events WHERE record_type = 'span' ORDER BY seq");
    let stored: Vec<&str> = stored.lines().collect();
    let stored_set: HashSet<&str> = stored.iter().copied().collect();
    assert_eq!(
        stored_set.len(),
        stored.len(),
        "an event is stored twice{}",
        setup.logs()
    );
    let missing: Vec<&&String> = acked_set
        .iter()
        .filter(|id| !stored_set.contains(id.as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged events missing from Postgres (of {}): {missing:?}{}",
        acked.len(),
        setup.logs()
    );
    let verify = setup.verify();
    assert!(
        verify.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verify.stderr),
        String::from_utf8_lossy(&verify.stdout)
    );
    let violations: usize = setup
        .sql("SELECT COUNT(*) FROM events WHERE record_type = 'violation'")
        .parse()
        .expect("count");
    assert!(violations > 0, "the load should make rules fire");
    // A single-node replay of the log with the same rules: an ablation with no change.
    let http = client_with_key(key);
    let base = format!("http://127.0.0.1:{node_port}");
    let started: Value = http
        .post(format!("{base}/api/v1/ablation"))
        .json(&json!({}))
        .send()
        .await
        .expect("ablation")
        .json()
        .await
        .expect("ablation body");
    let url = format!(
        "{base}{}",
        started["status_url"].as_str().expect("status url")
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = http
            .get(&url)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if v["status"] == "done" || v["status"] == "finished" || v.get("identical").is_some() {
            assert_eq!(
                v["identical"], true,
                "replay differs from the stored violations: {v}"
            );
            break;
        }
        assert!(v["status"] != "failed", "ablation failed: {v}");
        assert!(Instant::now() < deadline, "ablation did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn bootstrap(port: u16) -> String {
    common::bootstrap(&format!("http://127.0.0.1:{port}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_two_nodes_and_two_workers_store_every_acknowledged_event_once_through_faults() {
    let _serial = SERIAL.lock().await;
    let mut setup = Setup::new(256 << 20);
    let mut nodes = [setup.ingest_node(), setup.ingest_node()];
    let mut workers = vec![setup.worker(), setup.worker()];
    for p in nodes.iter().chain(workers.iter()) {
        wait_http(p.port).await;
    }
    let key = bootstrap(nodes[0].port).await;
    let ports = Arc::new(Mutex::new(nodes.iter().map(|n| n.port).collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load(ports.clone(), key.clone(), 4, stop.clone(), 100_000));
    let pause = || tokio::time::sleep(Duration::from_secs(3));

    pause().await;
    // 1. kill -9 of the active worker; the standby takes over; a new standby joins.
    let active = active_worker(&workers).await;
    kill9(&mut workers[active].child);
    workers.remove(active);
    let took_over = Instant::now();
    active_worker(&workers).await;
    let takeover = took_over.elapsed();
    workers.push(setup.worker());
    pause().await;

    // 2. kill -9 of an ingest node (clients move to the other); then it comes back.
    kill9(&mut nodes[0].child);
    pause().await;
    let replacement = setup.ingest_node();
    wait_http(replacement.port).await;
    ports.lock().unwrap()[0] = replacement.port;
    nodes[0] = replacement;
    pause().await;

    // 3. NATS restarts (kill -9: its store on disk is what survives).
    setup.nats.restart();
    pause().await;
    pause().await;

    // 4. Postgres restarts (connections cut): workers reconnect, ingest keeps acknowledging.
    tokio::task::spawn_blocking(restart_postgres)
        .await
        .expect("restart");
    pause().await;
    pause().await;

    stop.store(true, Ordering::Relaxed);
    let seen = load_task.await.expect("load");
    assert!(
        seen.wrong.is_empty(),
        "clients saw: {:?}",
        &seen.wrong[..seen.wrong.len().min(5)]
    );
    assert!(
        seen.acked.len() >= 500,
        "too little load: {:?}",
        seen.statuses
    );
    let active = active_worker(&workers).await;
    drained(&setup, workers[active].port).await;
    check_log(&setup, nodes[1].port, &key, &seen.acked).await;
    assert!(
        takeover < Duration::from_secs(15),
        "the standby took {takeover:?} to take over"
    );
    eprintln!(
        "cluster faults: {} events acknowledged, statuses {:?}, takeover {:?}",
        seen.acked.len(),
        seen.statuses,
        takeover
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_with_no_worker_ingest_acknowledges_until_the_stream_is_full_then_answers_503() {
    let _serial = SERIAL.lock().await;
    let setup = Setup::new(1 << 20);
    let node = setup.ingest_node();
    wait_http(node.port).await;
    let key = bootstrap(node.port).await;
    let http = client_with_key(&key);
    let url = format!("http://127.0.0.1:{}/api/v1/traces", node.port);
    let mut acked = Vec::new();
    let mut full = None;
    for n in 0..2000 {
        let (ids, body) = batch(0, n);
        let resp = http.post(&url).json(&body).send().await.expect("post");
        match resp.status().as_u16() {
            202 => acked.extend(ids),
            503 => {
                assert!(
                    resp.headers().contains_key("retry-after"),
                    "503 without Retry-After"
                );
                full = Some(resp.json::<Value>().await.expect("problem"));
                break;
            }
            s => panic!("unexpected {s}: {}", resp.text().await.unwrap_or_default()),
        }
    }
    let full = full.expect("a 1 MiB stream fills up");
    assert_eq!(full["code"], "stream_full", "{full}");
    assert!(
        acked.len() > 50,
        "the stream absorbed only {} events",
        acked.len()
    );
    // The lag is visible on the node: its health and its metrics.
    let h = health(node.port).await.expect("health");
    assert_eq!(h["role"], "ingest");
    assert!(
        h["cluster"]["lag_messages"].as_u64().unwrap_or(0) > 0,
        "{h}"
    );
    assert_eq!(h["status"], "degraded", "{h}");
    let metrics = http
        .get(format!("http://127.0.0.1:{}/metrics", node.port))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("audittrail_nats_lag_messages"),
        "lag not exported"
    );
    assert!(
        metrics.contains("audittrail_nats_publish_ack_seconds"),
        "publish-ack latency not exported"
    );

    // A worker starts: the backlog is stored, every acknowledged event once.
    let worker = setup.worker();
    wait_http(worker.port).await;
    drained(&setup, worker.port).await;
    let stored: usize = setup
        .sql("SELECT COUNT(*) FROM events WHERE record_type = 'span'")
        .parse()
        .expect("count");
    assert_eq!(stored, acked.len(), "{}", setup.logs());
    let worker_metrics = client()
        .get(format!("http://127.0.0.1:{}/metrics", worker.port))
        .send()
        .await
        .expect("worker metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "audittrail_cluster_end_to_end_seconds_bucket",
        "audittrail_nats_lag_messages",
        "audittrail_process_cpu_seconds",
    ] {
        assert!(worker_metrics.contains(name), "the worker exports {name}");
    }
    let resp = http
        .post(&url)
        .json(&batch(0, 5000).1)
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.status().as_u16(),
        202,
        "ingest resumes once the stream drained"
    );
}

#[test]
fn cluster_mode_refuses_sqlite_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .args(["--data-dir", &dir.path().display().to_string()])
        .args([
            "--database-url",
            &format!("sqlite:///{}/x.db", dir.path().display()),
        ])
        .args(["--nats-url", "nats://127.0.0.1:1"])
        .arg("serve")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AUDITTRAIL_NATS_URL") && err.contains("Postgres"),
        "{err}"
    );
}

/// A live socket on `port` with `key`; the hello message is read.
async fn live_socket(
    port: u16,
    key: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{port}/ws/live")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("live socket opens");
    let hello = ws.next().await.expect("hello").expect("socket");
    assert!(hello.to_text().unwrap_or_default().contains("hello"));
    ws
}

/// Span records of `trace` that arrive on `ws` within `wait`.
async fn spans_of(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    trace: &str,
    wait: Duration,
) -> usize {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + wait;
    let mut found = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Ok(v) = serde_json::from_str::<Value>(m.to_text().unwrap_or_default()) else {
            continue;
        };
        let records = if v["type"] == "batch" {
            v["records"].as_array().cloned().unwrap_or_default()
        } else {
            vec![v]
        };
        found += records
            .iter()
            .filter(|r| r["type"] == "span" && r["trace_id"] == trace)
            .count();
        if found > 0 {
            break;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_the_live_feed_crosses_nodes_scoped_to_the_callers_projects() {
    let _serial = SERIAL.lock().await;
    let setup = Setup::new(64 << 20);
    let (a, b, worker) = (setup.ingest_node(), setup.ingest_node(), setup.worker());
    for p in [&a, &b, &worker] {
        wait_http(p.port).await;
    }
    let owner = bootstrap(a.port).await;
    let admin = client_with_key(&owner);
    let mut keys = Vec::new();
    for (name, project) in [("alpha-reader", "alpha"), ("beta-reader", "beta")] {
        let resp: Value = admin
            .post(format!("http://127.0.0.1:{}/api/v1/keys", a.port))
            .json(&json!({ "name": name, "projects": [project], "permissions": ["traces:read"] }))
            .send()
            .await
            .expect("create key")
            .json()
            .await
            .expect("key");
        keys.push(resp["key"].as_str().expect("key").to_owned());
    }
    // Watching node B; the batch goes to node A.
    let mut alpha = live_socket(b.port, &keys[0]).await;
    let mut beta = live_socket(b.port, &keys[1]).await;
    let (_, mut body) = batch(9, 0);
    for e in body["events"].as_array_mut().expect("events") {
        e["trace_id"] = json!("live-trace");
    }
    let resp = admin
        .post(format!("http://127.0.0.1:{}/api/v1/traces", a.port))
        .header("x-audittrail-project", "alpha")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    assert!(
        spans_of(&mut alpha, "live-trace", Duration::from_secs(20)).await > 0,
        "alpha's reader on node B saw the span stored from node A{}",
        setup.logs()
    );
    assert_eq!(
        spans_of(&mut beta, "live-trace", Duration::from_secs(2)).await,
        0,
        "beta's reader must not see alpha's records"
    );

    // Guard mode answers on the node, synchronously; the request is stored by the worker.
    let verdict: Value = admin
        .post(format!("http://127.0.0.1:{}/api/v1/evaluate", b.port))
        .header("x-audittrail-project", "alpha")
        .json(
            &json!({ "trace_id": "guarded", "kind": "tool", "name": "sql",
                       "input": { "sql": "DELETE FROM users" } }),
        )
        .send()
        .await
        .expect("evaluate")
        .json()
        .await
        .expect("verdict");
    assert_eq!(verdict["decision"], "deny", "{verdict}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup
        .sql("SELECT COUNT(*) FROM events WHERE record_type = 'guard' AND trace_id = 'guarded'")
        != "1"
    {
        assert!(
            Instant::now() < deadline,
            "the guard request was not stored{}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_a_batch_larger_than_one_nats_message_is_413_not_an_endless_503() {
    let _serial = SERIAL.lock().await;
    let setup = Setup::with_nats(64 << 20, "max_payload: 32768\n");
    let node = setup.ingest_node();
    wait_http(node.port).await;
    let key = bootstrap(node.port).await;
    let http = client_with_key(&key);
    let url = format!("http://127.0.0.1:{}/api/v1/traces", node.port);
    // Small batches fit (compressed); one of random text does not.
    let resp = http
        .post(&url)
        .json(&batch(0, 0).1)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    let noise = |n: usize| {
        (0..n)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (_, mut big) = batch(0, 1);
    for e in big["events"].as_array_mut().expect("events") {
        e["output"] = json!({ "content": noise(400) });
    }
    let resp = http.post(&url).json(&big).send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let problem: Value = resp.json().await.expect("problem");
    assert_eq!(problem["code"], "batch_too_large_for_nats", "{problem}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_a_reset_stream_is_refused_not_taken_for_stored_batches() {
    let _serial = SERIAL.lock().await;
    let setup = Setup::new(64 << 20);
    let node = setup.ingest_node();
    let worker = setup.worker();
    wait_http(node.port).await;
    wait_http(worker.port).await;
    let key = bootstrap(node.port).await;
    let http = client_with_key(&key);
    let url = format!("http://127.0.0.1:{}/api/v1/traces", node.port);
    for n in 0..5 {
        let resp = http
            .post(&url)
            .json(&batch(1, n).1)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 202);
    }
    drained(&setup, worker.port).await;
    // Someone deletes the stream; a restarted node creates it again, numbering from 1.
    let nats = async_nats::connect(setup.nats.url()).await.expect("nats");
    async_nats::jetstream::new(nats)
        .delete_stream(&setup.stream)
        .await
        .expect("delete stream");
    drop(node);
    let node = setup.ingest_node();
    wait_http(node.port).await;
    let url = format!("http://127.0.0.1:{}/api/v1/traces", node.port);
    let resp = http
        .post(&url)
        .json(&batch(2, 0).1)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202, "the stream absorbs it");
    // The worker does not take the new message 1 for a stored one: it stops reading.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = setup.sql("SELECT COUNT(*) FROM events WHERE event_id LIKE 'c2-%'");
    assert_eq!(
        stored, "0",
        "nothing of the new stream is skipped or stored"
    );
    let h = health(worker.port).await.expect("health");
    assert_eq!(
        h["cluster"]["lag_messages"], 1,
        "the batch waits in the stream: {h}"
    );
    let log = std::fs::read_to_string(setup.dir.path().join("worker-1.log")).unwrap_or_default();
    assert!(log.contains("the stream was reset"), "{}", setup.logs());
    // The operator resets the position: the waiting batch is stored.
    setup.sql(&format!(
        "DELETE FROM stream_progress WHERE stream = '{}'",
        setup.stream
    ));
    drained(&setup, worker.port).await;
    let stored = setup.sql("SELECT COUNT(*) FROM events WHERE event_id LIKE 'c2-%'");
    assert_eq!(stored, "5", "{}", setup.logs());
}
