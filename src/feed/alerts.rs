//! Webhook alerts for violations, off the ingest path.
//!
//! A subscriber of the writer's committed groups takes the violations at or above
//! `AUDITTRAIL_ALERT_MIN_SEVERITY` into a bounded queue (`try_send`: a full queue drops the
//! alert and counts it, it never waits). One task posts each alert to every `AUDITTRAIL_ALERT_WEBHOOK_URLS` entry as Slack-compatible
//! JSON (`{"text": …}` plus the structured violation), with a 5 s timeout and up to 4 attempts
//! (backoff 0.5 s, 1 s, 2 s). A dead webhook therefore costs the alert task time, never ingest.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::rules::Severity;
use crate::store::violations::ViolationRow;

const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 4;

/// Where the writer sends violations worth alerting on. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AlertSink {
    tx: Option<mpsc::Sender<(String, ViolationRow)>>,
    min: Severity,
}

impl AlertSink {
    /// No webhooks configured.
    pub fn none() -> Self {
        AlertSink {
            tx: None,
            min: Severity::Critical,
        }
    }

    /// Starts the delivery task for `urls`.
    pub fn start(urls: Vec<String>, min: Severity) -> Self {
        if urls.is_empty() {
            return Self::none();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(urls, rx));
        AlertSink { tx: Some(tx), min }
    }

    /// Alerts on the violations of every group `writer` commits from now on.
    pub fn subscribe(self, writer: &crate::store::WriterHandle) {
        if self.tx.is_none() {
            return;
        }
        let mut committed = writer.subscribe();
        tokio::spawn(async move {
            loop {
                match committed.recv().await {
                    Ok(group) => {
                        for (project, v) in &group.violations {
                            self.offer(project, v);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        metrics::counter!("audittrail_alerts_dropped_total").increment(n);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    pub fn offer(&self, project: &str, v: &ViolationRow) {
        let Some(tx) = &self.tx else { return };
        let severity = v.severity.as_deref().and_then(Severity::parse);
        if v.outcome != "violation" || severity.is_none_or(|s| s < self.min) {
            return;
        }
        if tx.try_send((project.to_owned(), v.clone())).is_err() {
            metrics::counter!("audittrail_alerts_dropped_total").increment(1);
        }
    }
}

fn payload(project: &str, v: &ViolationRow) -> serde_json::Value {
    let sev = v.severity.as_deref().unwrap_or("?");
    json!({
        "text": format!(
            "[{}] {} in project {}: {} (trace {}, agent {})",
            sev.to_uppercase(),
            v.rule_id,
            project,
            v.message,
            v.trace_id.as_deref().unwrap_or("-"),
            v.agent.as_deref().unwrap_or("-")
        ),
        "audittrail": { "project": project, "violation": v },
    })
}

async fn deliver(urls: Vec<String>, mut rx: mpsc::Receiver<(String, ViolationRow)>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; alerts are disabled");
            return;
        }
    };
    while let Some((project, v)) = rx.recv().await {
        let body = payload(&project, &v);
        for url in &urls {
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=ATTEMPTS {
                match client.post(url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        metrics::counter!("audittrail_alerts_sent_total").increment(1);
                        break;
                    }
                    outcome => {
                        let why = match outcome {
                            Ok(r) => format!("HTTP {}", r.status()),
                            // The URL is a secret (Slack webhooks): keep it out of the log.
                            Err(e) => e.without_url().to_string(),
                        };
                        if attempt == ATTEMPTS {
                            metrics::counter!("audittrail_alerts_failed_total").increment(1);
                            tracing::warn!(rule = %v.rule_id, error = %why, "webhook alert failed after {ATTEMPTS} attempts");
                        } else {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                }
            }
        }
    }
}
