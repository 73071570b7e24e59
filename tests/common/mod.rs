//! Shared test harness: the real server on 127.0.0.1:0 over a fresh data directory.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use audittrail::cli::Cli;
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// Sends the owner key on every request.
    pub client: reqwest::Client,
    pub owner_key: String,
    pub dir: tempfile::TempDir,
    /// The server's writer, for store-level operations that have no route yet. Dropped before
    /// shutdown: the writer stops once every handle is gone.
    writer: Option<audittrail::store::WriterHandle>,
    /// The server's store (for library calls that need it beside the writer).
    pub store: audittrail::store::Store,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub const TEST_SECRET: &str = "test-secret-key-0123456789abcdef0123456789";

/// Whether this run tests the Postgres backend (`AUDITTRAIL_TEST_BACKEND=postgres`, set by
/// `scripts/test.sh` for its second pass); otherwise SQLite.
pub fn postgres() -> bool {
    std::env::var("AUDITTRAIL_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The Postgres server the tests use (trust auth on the test machines).
fn pg_server() -> String {
    std::env::var("AUDITTRAIL_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The database of a data directory on Postgres: one per directory, named from its path under
/// the run's prefix, so runs and tests never share one (`scripts/test.sh` drops them after).
pub fn pg_database(dir: &Path) -> String {
    let prefix = std::env::var("AUDITTRAIL_TEST_PG_PREFIX").unwrap_or_else(|_| "at_test".into());
    // FNV-1a of the path: short, stable, collision-free enough for one run.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.display().to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}_{h:016x}")
}

/// Runs SQL with `psql` on `database` (`postgres` for server-wide statements).
fn psql(database: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("{}/{database}", pg_server()))
        .args(["-c", sql])
        .output()
        .expect("psql is installed (scripts/test.sh installs it)")
}

/// Creates the directory's Postgres database unless it exists.
fn ensure_pg_database(dir: &Path) -> String {
    let name = pg_database(dir);
    let out = psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("already exists"),
        "cannot create database {name} (is Postgres running?): {err}"
    );
    name
}

/// The `DATABASE_URL` of a data directory for the backend under test.
pub fn database_url(dir: &Path) -> String {
    database_url_on(dir, postgres())
}

/// The `DATABASE_URL` of a data directory on a given backend (parity and copy tests use both).
pub fn database_url_on(dir: &Path, postgres: bool) -> String {
    if postgres {
        format!("{}/{}", pg_server(), ensure_pg_database(dir))
    } else {
        format!("sqlite:///{}", dir.join("audittrail.db").display())
    }
}

/// Arguments that pin every setting a test depends on, so the caller's environment
/// (DATABASE_URL, AUDITTRAIL_*) cannot leak in.
pub fn base_args(dir: &Path) -> Vec<String> {
    vec![
        "audittrail".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--database-url".into(),
        database_url(dir),
        "--secret-key".into(),
        TEST_SECRET.into(),
        "--rules-dir".into(),
        rules_dir().display().to_string(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--environment".into(),
        "development".into(),
    ]
}

pub fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the server with extra flags (`["--writer-queue", "1"]`).
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    spawn_in(dir, extra).await
}

pub async fn spawn_in(dir: tempfile::TempDir, extra: &[&str]) -> TestApp {
    let mut args = base_args(dir.path());
    // A flag given in `extra` replaces the base one (flags and values alternate after argv[0]).
    for flag in extra.iter().filter(|a| a.starts_with("--")) {
        if let Some(i) = args.iter().position(|a| a == flag) {
            args.drain(i..i + 2);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("serve".into());
    let cli = Cli::try_parse_from(args).expect("valid test arguments");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = audittrail::server::build(cli.config)
        .await
        .expect("service builds");
    let writer = service.state.writer.clone();
    let store = service.state.store.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        service
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
    });
    let base = format!("http://{addr}");
    // A restarted test server keeps its owner key in the data directory.
    let saved = dir.path().join("test-owner.key");
    let owner_key = match std::fs::read_to_string(&saved) {
        Ok(k) => k,
        Err(_) => {
            let k = bootstrap(&base).await;
            std::fs::write(&saved, &k).expect("save test key");
            k
        }
    };
    TestApp {
        addr,
        client: client_with_key(&owner_key),
        owner_key,
        base,
        dir,
        writer: Some(writer),
        store,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// Status and body (JSON, or the raw text when it is not JSON).
pub async fn json_response(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A plain HTTP client (after installing the TLS provider reqwest needs).
pub fn client() -> reqwest::Client {
    audittrail::server::install_tls_provider();
    reqwest::Client::new()
}

/// Creates the owner key of a fresh server.
pub async fn bootstrap(base: &str) -> String {
    let resp = client()
        .post(format!("{base}/api/v1/keys/bootstrap"))
        .json(&json!({"name": "test-owner"}))
        .send()
        .await
        .expect("bootstrap request");
    assert_eq!(resp.status().as_u16(), 201, "bootstrap");
    let body: Value = resp.json().await.expect("bootstrap body");
    body["key"]
        .as_str()
        .expect("key in bootstrap response")
        .to_owned()
}

/// A client that sends `key` on every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header value"),
    );
    audittrail::server::install_tls_provider();
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("audittrail.db")
    }

    /// Runs SQL on this server's database behind its back (see [`db_sql`]).
    pub fn sql(&self, sql: &str) -> String {
        db_sql(self.dir.path(), sql)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        json_response(resp).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        json_response(resp).await
    }

    /// The whole response of a GET with the owner key plus `headers` (for header checks).
    pub async fn get_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("request")
    }

    /// The body of a GET as text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let resp = self.client.get(self.url(path)).send().await;
        resp.expect("request").text().await.expect("body")
    }

    /// The running server's writer (store-level operations without a route).
    pub fn writer(&self) -> &audittrail::store::WriterHandle {
        self.writer.as_ref().expect("the server is running")
    }

    /// Graceful shutdown; returns the data directory so a test can inspect or reopen it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.writer.take();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
        self.dir
    }
}

/// A valid native event.
pub fn event(trace: &str, span: &str, start: &str) -> Value {
    json!({
        "trace_id": trace, "span_id": span, "kind": "llm", "name": "chat",
        "agent": "support-bot", "session_id": "sess-1",
        "start_time": start, "end_time": start, "status": "ok", "model": "gpt-4o",
        "input": {"messages": [{"role": "user", "content": "hello"}]},
        "output": {"content": "hi there"},
        "usage": {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.001},
        "attributes": {"team": "support"}
    })
}

pub fn batch(events: Vec<Value>) -> Value {
    json!({ "events": events })
}

/// Path of the built binary, for tests that run it as a process.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_audittrail")
}

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The built binary serving `dir` on 127.0.0.1:`port`, output discarded (override as needed).
pub fn serve_command(dir: &Path, port: u16) -> std::process::Command {
    let mut args = base_args(dir);
    args.remove(0);
    let bind = args
        .iter()
        .position(|a| a == "--bind")
        .expect("base args bind")
        + 1;
    args[bind] = format!("127.0.0.1:{port}");
    let mut cmd = std::process::Command::new(binary());
    cmd.args(args)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// Waits until the server at `base` answers its health check.
pub async fn wait_ready(base: &str) {
    for _ in 0..200 {
        if client()
            .get(format!("{base}/api/v1/health"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("server at {base} did not start");
}

/// Runs the built binary with the test arguments for `dir` and then `args` (e.g. `verify`).
pub fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = base_args(dir);
    all.remove(0);
    all.extend(args.iter().map(|s| s.to_string()));
    std::process::Command::new(binary())
        .args(all)
        .output()
        .expect("run audittrail")
}

/// Runs SQL on the database of data directory `dir` as an attacker with write access to it
/// would — the `sqlite3` shell on the SQLite file, `psql` on Postgres — in one transaction,
/// panicking if it fails. Returns what a SELECT printed.
pub fn db_sql(dir: &Path, sql: &str) -> String {
    db_sql_on(dir, postgres(), sql)
}

/// [`db_sql`] on a given backend.
pub fn db_sql_on(dir: &Path, postgres: bool, sql: &str) -> String {
    if postgres {
        let out = psql(&pg_database(dir), &format!("BEGIN; {sql}; COMMIT;"));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // psql prints the command tags of BEGIN and COMMIT around the rows.
        return String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !matches!(*l, "BEGIN" | "COMMIT"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned();
    }
    sqlite3(&dir.join("audittrail.db"), sql)
}

/// Runs SQL on a database file with the `sqlite3` command-line shell (as an attacker with
/// write access to the file would), panicking if it fails.
pub fn sqlite3(db: &Path, sql: &str) -> String {
    // BEGIN IMMEDIATE takes the write lock first (waiting up to the timeout), so a server
    // committing meanwhile never makes the statement fail on a stale snapshot.
    let sql = if sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
        sql.to_owned()
    } else {
        format!("BEGIN IMMEDIATE; {sql}; COMMIT;")
    };
    let out = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(&sql)
        .output()
        .expect("the sqlite3 shell is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A copy of every file of `src` in a new temporary directory — and, on Postgres, of its
/// database (the server using it must be stopped).
pub fn copy_dir(src: &Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("dir entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dst.path().join(entry.file_name())).expect("copy");
        }
    }
    if postgres() {
        copy_database(src, dst.path());
    }
    dst
}

/// Copies only the database of `src` to the data directory `dst` (a restore of the database
/// alone): the SQLite file, or a Postgres database made from the other as a template.
pub fn copy_database(src: &Path, dst: &Path) {
    if postgres() {
        let (from, to) = (pg_database(src), pg_database(dst));
        let _ = psql("postgres", &format!("DROP DATABASE IF EXISTS \"{to}\""));
        let out = psql(
            "postgres",
            &format!("CREATE DATABASE \"{to}\" TEMPLATE \"{from}\""),
        );
        assert!(
            out.status.success(),
            "copy database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        std::fs::copy(src.join("audittrail.db"), dst.join("audittrail.db")).expect("copy");
    }
}
