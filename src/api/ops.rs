//! Operations routes: `GET /api/v1/health`, `GET /api/v1/instance`, `GET /metrics`.
//!
//! Health is computed from real checks: a read on the store's reader pool and the writer's
//! last commit result. `error` (503) when the store cannot be read or written; `degraded`
//! (200) when it can but something needs the operator (no rules loaded, rule errors, the
//! write queue nearly full, redaction switched off).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::error::ApiError;

pub use crate::VERSION;

/// Routes that need a key.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health/deep", get(health_deep))
        .route("/metrics", get(prometheus))
}

/// Public routes, outside the rate limits (load balancers poll them).
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/instance", get(instance))
}

/// The process-wide Prometheus recorder, installed on first use (tests start many apps in one
/// process; a recorder can only be installed once).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static, non-empty bucket list")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// Facts behind the health status, shared with the deep health check.
pub struct HealthFacts {
    /// Another server holds the writer lock (Postgres): this one serves reads only.
    pub standby: bool,
    pub db_readable: bool,
    pub writer_healthy: bool,
    pub rules_loaded: usize,
    pub rule_errors: usize,
    pub queue_nearly_full: bool,
    pub redaction_enabled: bool,
    /// Cluster mode (an ingest node): NATS and the stream's lag.
    pub cluster: Option<crate::cluster::ClusterFacts>,
}

impl HealthFacts {
    pub async fn gather(state: &AppState) -> Self {
        HealthFacts {
            standby: state.writer.status.standby(),
            db_readable: state.store.ping().await,
            writer_healthy: state.writer.status.healthy(),
            rules_loaded: state.rules.current().rules().len(),
            rule_errors: state.rules.problems().len(),
            queue_nearly_full: state.appender.queue_nearly_full(),
            redaction_enabled: state.pipeline.redaction.enabled(),
            cluster: match &state.cluster {
                Some(c) => Some(crate::cluster::ClusterFacts::gather(c).await),
                None => None,
            },
        }
    }

    pub fn status(&self) -> &'static str {
        if let Some(c) = &self.cluster {
            // An ingest node writes to NATS, not to the database (its writer is a standby by
            // design); without NATS it cannot acknowledge anything.
            return if !(self.db_readable && c.nats_connected) {
                "error"
            } else if c.nearly_full()
                || self.rules_loaded == 0
                || self.rule_errors > 0
                || !self.redaction_enabled
            {
                "degraded"
            } else {
                "ok"
            };
        }
        if !(self.db_readable && self.writer_healthy) {
            "error"
        } else if self.standby
            || self.rules_loaded == 0
            || self.rule_errors > 0
            || self.queue_nearly_full
            || !self.redaction_enabled
        {
            "degraded"
        } else {
            "ok"
        }
    }
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let facts = HealthFacts::gather(&state).await;
    let status = facts.status();
    let code = if status == "error" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(match &facts.cluster {
            None => json!({
                "status": status,
                "db_connected": facts.db_readable && facts.writer_healthy,
                "rules_loaded": facts.rules_loaded,
                "version": VERSION,
            }),
            Some(cluster) => json!({
                "status": status,
                "role": "ingest",
                "db_connected": facts.db_readable,
                "rules_loaded": facts.rules_loaded,
                "version": VERSION,
                "cluster": cluster,
            }),
        }),
    )
}

/// Everything behind the status: the store (a real write through the writer and a read back),
/// the rules with every load problem, redaction and the writer queue.
async fn health_deep(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    principal.authorize(Permission::SystemHealth, "health.deep")?;
    let mut facts = HealthFacts::gather(&state).await;
    let probe = state.writer.probe().await;
    facts.writer_healthy &= probe.is_ok();
    let status = facts.status();
    let code = if status == "error" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let rules = state.rules.current();
    Ok((
        code,
        Json(json!({
            "status": status,
            "version": VERSION,
            "store": {
                "readable": facts.db_readable,
                "writable": facts.writer_healthy,
                "write_probe": probe.err().unwrap_or_else(|| "ok".into()),
                "backend": state.store.backend().name(),
                "database": state.store.describe(),
                "standby": state.writer.status.standby(),
                "head_seq": state.writer.status.head_seq(),
                "queue_free": state.appender.queue_free(),
            },
            "rules": {
                "loaded": rules.rules().iter().map(|r| r.id()).collect::<Vec<_>>(),
                "problems": state.rules.problems(),
                "runtime_errors": state.rules.last_errors(),
            },
            "redaction": { "enabled": facts.redaction_enabled },
        })),
    ))
}

async fn instance(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "version": VERSION,
        "connected_agents": state.connected_agents.load(std::sync::atomic::Ordering::Relaxed),
        "rule_count": state.rules.current().rules().len(),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

async fn prometheus(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    principal.authorize(Permission::SystemMetrics, "metrics")?;
    record_process_usage();
    // What the alert rules (deploy/prometheus/alerts.yml) read besides the counters.
    let facts = HealthFacts::gather(&state).await;
    metrics::gauge!("audittrail_health_status").set(match facts.status() {
        "ok" => 0.0,
        "degraded" => 1.0,
        _ => 2.0,
    });
    // An ingest node's writer is passive by design, not a standby waiting to take over.
    metrics::gauge!("audittrail_writer_standby").set(f64::from(u8::from(
        facts.standby && facts.cluster.is_none(),
    )));
    metrics::gauge!("audittrail_writer_queue_capacity").set(state.appender.queue_capacity() as f64);
    metrics::gauge!("audittrail_writer_queue_depth")
        .set((state.appender.queue_capacity() - state.appender.queue_free()) as f64);
    let (open, idle, max) = state.store.pool_gauges();
    metrics::gauge!("audittrail_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("audittrail_db_pool_connections", "state" => "in_use")
        .set(open.saturating_sub(idle as u32) as f64);
    metrics::gauge!("audittrail_db_pool_max").set(f64::from(max));
    state.metrics.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}

/// Linux's fixed unit for `/proc/<pid>/stat` CPU times (`USER_HZ`, 100 on every mainstream
/// architecture; reading it at run time would need `sysconf`, i.e. `unsafe`).
const USER_HZ: f64 = 100.0;

/// Sets `audittrail_process_cpu_seconds` (user + system, all threads) and
/// `audittrail_process_resident_bytes` from `/proc/self`. The load generator reads the first
/// to report the server's CPU per event, which varies far less than events/s on a shared
/// machine. Elsewhere than Linux the gauges are simply absent.
pub fn record_process_usage() {
    if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| process_cpu_seconds(&stat))
    {
        metrics::gauge!("audittrail_process_cpu_seconds").set(cpu);
    }
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| resident_bytes(&status))
    {
        metrics::gauge!("audittrail_process_resident_bytes").set(rss as f64);
    }
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn process_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// `VmRSS` of a `/proc/<pid>/status` file, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod process_tests {
    use super::*;

    #[test]
    fn cpu_and_memory_are_read_from_proc_lines() {
        let stat =
            "4242 (tokio (worker) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(process_cpu_seconds(stat), Some(3.25));
        assert_eq!(process_cpu_seconds("garbage"), None);
        let status = "Name:\taudittrail\nVmPeak:\t  99 kB\nVmRSS:\t   5120 kB\n";
        assert_eq!(resident_bytes(status), Some(5 * 1024 * 1024));
        // The real file of this process parses (the tests run on Linux).
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(process_cpu_seconds(&own).is_some());
    }
}
