//! The live feed across nodes: the worker publishes each committed group on `<prefix>.live`
//! (plain NATS, not the stream: a dashboard that misses one catches up from the log), and every
//! ingest node relays what it receives to its own subscribers, which filter by tenant as on one
//! node.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Cluster;
use crate::store::schema::RecordType;
use crate::store::violations::ViolationRow;
use crate::store::{Committed, CommittedRecord, WriterHandle};

#[derive(Serialize, Deserialize)]
struct WireRecord {
    seq: i64,
    project: String,
    record_type: String,
    trace_id: String,
    summary: Value,
}

#[derive(Serialize, Deserialize)]
struct WireGroup {
    records: Vec<WireRecord>,
    violations: Vec<(String, ViolationRow)>,
}

fn to_wire(group: &Committed) -> WireGroup {
    WireGroup {
        records: group
            .records
            .iter()
            .map(|r| WireRecord {
                seq: r.seq,
                project: r.project.clone(),
                record_type: r.record_type.to_owned(),
                trace_id: r.trace_id.clone(),
                summary: r.summary.clone(),
            })
            .collect(),
        violations: group.violations.clone(),
    }
}

fn from_wire(group: WireGroup) -> Committed {
    Committed {
        records: group
            .records
            .into_iter()
            .filter_map(|r| {
                Some(CommittedRecord {
                    seq: r.seq,
                    project: r.project,
                    record_type: RecordType::from_name(&r.record_type)?.as_str(),
                    trace_id: r.trace_id,
                    summary: r.summary,
                })
            })
            .collect(),
        violations: group.violations,
    }
}

/// Worker: publishes every group its writer commits.
pub fn publish_committed(cluster: Cluster, writer: &WriterHandle) -> tokio::task::JoinHandle<()> {
    let mut groups = writer.subscribe();
    tokio::spawn(async move {
        let subject = cluster.cfg.live_subject();
        loop {
            match groups.recv().await {
                Ok(group) => {
                    let payload =
                        serde_json::to_vec(&to_wire(&group)).expect("a committed group serialises");
                    if cluster
                        .client
                        .publish(subject.clone(), payload.into())
                        .await
                        .is_err()
                    {
                        metrics::counter!("audittrail_live_relay_dropped_total").increment(1);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("audittrail_live_relay_dropped_total").increment(n);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// Ingest node: relays the worker's committed groups to this node's subscribers.
pub async fn relay(
    cluster: &Cluster,
    writer: WriterHandle,
) -> Result<tokio::task::JoinHandle<()>, super::ClusterError> {
    let mut sub = cluster
        .client
        .subscribe(cluster.cfg.live_subject())
        .await
        .map_err(|e| super::ClusterError::Nats(e.to_string()))?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            match serde_json::from_slice::<WireGroup>(&msg.payload) {
                Ok(group) => writer.relay(from_wire(group)),
                Err(e) => {
                    tracing::warn!(error = %e, "ignored a live-feed message that is not a committed group")
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_survives_the_trip() {
        let group = Committed {
            records: vec![CommittedRecord {
                seq: 7,
                project: "p".into(),
                record_type: "violation",
                trace_id: "t".into(),
                summary: serde_json::json!({"rule_id": "r"}),
            }],
            violations: Vec::new(),
        };
        let text = serde_json::to_vec(&to_wire(&group)).unwrap();
        let back = from_wire(serde_json::from_slice(&text).unwrap());
        assert_eq!(back.records.len(), 1);
        assert_eq!(back.records[0].record_type, "violation");
        assert_eq!(back.records[0].seq, 7);
    }
}
