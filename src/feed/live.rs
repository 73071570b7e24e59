//! The live feed: committed records of a caller's projects, as the dashboard draws them.
//!
//! Each subscriber gets a task that reads the writer's committed stream, keeps the records in
//! its scope that pass its filter, and offers them to a bounded queue with `try_send`. The
//! writer never waits for a browser: when a queue is full the records are counted as missed,
//! and as soon as there is room the subscriber receives one `missed` message with the count and
//! the position to catch up from over HTTP (`records_after`).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::rules::Severity;
use crate::store::{Committed, WriterHandle};

/// Messages a subscriber may have queued before records are counted as missed.
pub const BUFFER: usize = 512;

/// One live message: the record's summary plus `type`, `project`, `seq` and `trace_id`.
pub fn message(
    seq: i64,
    project: &str,
    record_type: &str,
    trace_id: &str,
    summary: &Value,
) -> Value {
    let mut m = match summary {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    m.insert("type".into(), record_type.into());
    m.insert("project".into(), project.into());
    m.insert("seq".into(), seq.into());
    m.insert("trace_id".into(), trace_id.into());
    Value::Object(m)
}

/// What a subscriber asked to see. Empty fields admit everything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveFilter {
    /// Record types: `span`, `guard`, `violation`, `rule_error`.
    #[serde(default)]
    pub types: Vec<String>,
    pub agent: Option<String>,
    /// Span kind (`llm`, `tool`, …).
    pub kind: Option<String>,
    /// Violations at or above this severity (spans pass).
    pub severity: Option<String>,
    /// Span status (`ok`, `error`).
    pub status: Option<String>,
}

impl LiveFilter {
    /// Checks the values a client sent; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for t in &self.types {
            if !["span", "guard", "violation", "rule_error"].contains(&t.as_str()) {
                return Err("types: each must be span, guard, violation or rule_error".into());
            }
        }
        if let Some(s) = &self.severity
            && Severity::parse(s).is_none()
        {
            return Err("severity: must be info, warning, high or critical".into());
        }
        if let Some(s) = &self.status
            && s != "ok"
            && s != "error"
        {
            return Err("status: must be ok or error".into());
        }
        for (field, v) in [("agent", &self.agent), ("kind", &self.kind)] {
            if v.as_ref().is_some_and(|v| v.len() > 256) {
                return Err(format!("{field}: at most 256 bytes"));
            }
        }
        Ok(())
    }

    /// Whether a message passes.
    pub fn admits(&self, record_type: &str, summary: &Value) -> bool {
        if !self.types.is_empty() && !self.types.iter().any(|t| t == record_type) {
            return false;
        }
        let field = |k: &str| summary.get(k).and_then(Value::as_str);
        if let Some(a) = &self.agent
            && field("agent") != Some(a.as_str())
        {
            return false;
        }
        let is_outcome = record_type == "violation" || record_type == "rule_error";
        if !is_outcome {
            if let Some(k) = &self.kind
                && field("kind") != Some(k.as_str())
            {
                return false;
            }
            if let Some(s) = &self.status
                && field("status") != Some(s.as_str())
            {
                return false;
            }
        } else {
            if let Some(k) = &self.kind
                && field("event_kind") != Some(k.as_str())
            {
                return false;
            }
            if let Some(min) = self.severity.as_deref().and_then(Severity::parse) {
                let s = field("severity").and_then(Severity::parse);
                if s.is_none_or(|s| s < min) {
                    return false;
                }
            }
        }
        true
    }
}

/// The projects a subscriber may see: `None` for every tenant project.
pub type Scope = Option<Vec<String>>;

/// A live subscription: read messages from `messages`; change the filter with `set_filter`.
/// Dropping it stops its task.
pub struct Subscription {
    pub messages: mpsc::Receiver<Value>,
    filter: watch::Sender<LiveFilter>,
}

impl Subscription {
    pub fn set_filter(&self, f: LiveFilter) {
        let _ = self.filter.send(f);
    }
}

/// Subscribes to the records `writer` commits from now on, within `scope`.
pub fn subscribe(writer: &WriterHandle, scope: Scope) -> Subscription {
    let committed = writer.subscribe();
    let (tx, messages) = mpsc::channel(BUFFER);
    let (filter, filter_rx) = watch::channel(LiveFilter::default());
    tokio::spawn(forward(committed, scope, filter_rx, tx));
    Subscription { messages, filter }
}

struct Forwarder {
    tx: mpsc::Sender<Value>,
    /// Records not delivered since the last `missed` message.
    missed: u64,
    /// The last position delivered before the first record missed.
    delivered: i64,
}

enum Offer {
    Sent,
    Full,
    Closed,
}

impl Forwarder {
    fn try_send(&self, m: Value) -> Offer {
        match self.tx.try_send(m) {
            Ok(()) => Offer::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Offers one message; returns false once the subscriber is gone.
    fn offer(&mut self, seq: i64, m: Value) -> bool {
        if self.missed > 0 {
            let notice = json!({
                "type": "missed",
                "count": self.missed,
                "after_seq": self.delivered,
            });
            match self.try_send(notice) {
                Offer::Sent => self.missed = 0,
                Offer::Full => {
                    self.missed += 1;
                    return true;
                }
                Offer::Closed => return false,
            }
        }
        match self.try_send(m) {
            Offer::Sent => {
                self.delivered = seq;
                true
            }
            Offer::Full => {
                self.missed += 1;
                metrics::counter!("audittrail_live_missed_total").increment(1);
                true
            }
            Offer::Closed => false,
        }
    }
}

fn in_scope(scope: &Scope, project: &str) -> bool {
    match scope {
        None => project != crate::store::schema::SYSTEM_PROJECT,
        Some(ps) => ps.iter().any(|p| p == project),
    }
}

async fn forward(
    mut committed: broadcast::Receiver<std::sync::Arc<Committed>>,
    scope: Scope,
    mut filter_rx: watch::Receiver<LiveFilter>,
    tx: mpsc::Sender<Value>,
) {
    let mut f = Forwarder {
        tx,
        missed: 0,
        delivered: 0,
    };
    let mut filter = LiveFilter::default();
    loop {
        tokio::select! {
            changed = filter_rx.changed() => {
                if changed.is_err() {
                    return; // the subscription was dropped
                }
                filter = filter_rx.borrow_and_update().clone();
            }
            group = committed.recv() => match group {
                Ok(group) => {
                    for r in &group.records {
                        if !in_scope(&scope, &r.project) || !filter.admits(r.record_type, &r.summary) {
                            continue;
                        }
                        let m = message(r.seq, &r.project, r.record_type, &r.trace_id, &r.summary);
                        if !f.offer(r.seq, m) {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(groups)) => {
                    // This task fell behind the writer: at least that many groups are missed.
                    f.missed += groups;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = f.tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_admit_what_they_name() {
        let span = json!({ "agent": "a", "kind": "llm", "status": "error" });
        let v = json!({ "agent": "a", "severity": "high", "event_kind": "llm" });
        let all = LiveFilter::default();
        assert!(all.admits("span", &span) && all.admits("violation", &v));
        let f = LiveFilter {
            severity: Some("critical".into()),
            ..Default::default()
        };
        assert!(!f.admits("violation", &v));
        assert!(f.admits("span", &span), "severity filters violations only");
        let f = LiveFilter {
            agent: Some("b".into()),
            ..Default::default()
        };
        assert!(!f.admits("span", &span));
        let f = LiveFilter {
            types: vec!["violation".into()],
            status: Some("ok".into()),
            ..Default::default()
        };
        assert!(!f.admits("span", &span));
        assert!(f.admits("violation", &v));
        assert!(
            LiveFilter {
                severity: Some("loud".into()),
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .starts_with("severity:")
        );
    }

    #[tokio::test]
    async fn a_full_queue_counts_missed_records_and_says_where_to_catch_up() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut f = Forwarder {
            tx,
            missed: 0,
            delivered: 0,
        };
        for seq in 1..=5 {
            assert!(f.offer(seq, json!({ "seq": seq })));
        }
        // 1 and 2 fit; 3, 4, 5 are missed.
        assert_eq!(rx.recv().await.unwrap()["seq"], 1);
        assert_eq!(rx.recv().await.unwrap()["seq"], 2);
        assert!(f.offer(6, json!({ "seq": 6 })));
        let notice = rx.recv().await.unwrap();
        assert_eq!(notice["type"], "missed");
        assert_eq!(notice["count"], 3);
        assert_eq!(notice["after_seq"], 2);
        assert_eq!(rx.recv().await.unwrap()["seq"], 6);
        drop(rx);
        assert!(!f.offer(7, json!({})), "a closed subscriber stops the task");
    }
}
