//! The work of an erasure inside the writer's transaction: find the records a selector names,
//! replace their bodies by the erased form (facts kept, personal part gone; see `personal`),
//! clear the personal columns of the log and its projections, and rebuild the summaries of the
//! traces they belong to exactly as `replay` would. The writer appends the receipt in the same
//! transaction.

use std::collections::BTreeSet;

use sea_query::{Expr, ExprTrait, Order, Query};

use super::StoreError;
use super::chain::{self, ChainKey};
use super::db::Exec;
use super::personal::{self, Form, Header};
use super::projection::{self, TraceBatch};
use super::receipt::{EraseRequest, EraseSelector};
use super::schema::{Events, RedactedValues, Traces, Violations};

/// Positions read or updated per statement.
const CHUNK: usize = 500;

/// The positions an erasure selects: the project's span, guard and rule-outcome records that
/// still hold a personal part, and the rule outcomes those spans caused.
pub async fn select(
    db: &mut Exec<'_>,
    request: &EraseRequest,
    key: &ChainKey,
) -> Result<Vec<i64>, StoreError> {
    let mut q = Query::select();
    q.column(Events::Seq)
        .from(Events::Table)
        .and_where(Expr::col(Events::Project).eq(request.project.as_str()))
        .and_where(Expr::col(Events::Body).is_not_null())
        .and_where(Expr::col(Events::RecordType).is_in([
            "span",
            "guard",
            "violation",
            "rule_error",
        ]));
    let mut found = Vec::new();
    match &request.selector {
        EraseSelector::Seqs(list) => {
            for chunk in list.chunks(CHUNK) {
                let mut q = q.clone();
                q.and_where(Expr::col(Events::Seq).is_in(chunk.iter().copied()));
                for row in db.fetch_all(&q).await? {
                    found.push(row.int("seq")?);
                }
            }
        }
        EraseSelector::Value(v) => {
            let pseudonym = key.value_pseudonym(v);
            let index = Query::select()
                .column(RedactedValues::Seq)
                .from(RedactedValues::Table)
                .and_where(Expr::col(RedactedValues::Project).eq(request.project.as_str()))
                .and_where(Expr::col(RedactedValues::Pseudonym).eq(pseudonym))
                .to_owned();
            let mut listed = Vec::new();
            for row in db.fetch_all(&index).await? {
                listed.push(row.int("seq")?);
            }
            for chunk in listed.chunks(CHUNK) {
                let mut q = q.clone();
                q.and_where(Expr::col(Events::Seq).is_in(chunk.iter().copied()));
                for row in db.fetch_all(&q).await? {
                    found.push(row.int("seq")?);
                }
            }
        }
        EraseSelector::TraceId(v) | EraseSelector::SessionId(v) | EraseSelector::Agent(v) => {
            let column = match &request.selector {
                EraseSelector::TraceId(_) => Events::TraceId,
                EraseSelector::SessionId(_) => Events::SessionId,
                _ => Events::Agent,
            };
            q.and_where(Expr::col(column).eq(v.as_str()));
            for row in db.fetch_all(&q).await? {
                found.push(row.int("seq")?);
            }
        }
    }
    // The rule outcomes of the selected records (older outcome records carry no session).
    let causes = found.clone();
    for chunk in causes.chunks(CHUNK) {
        let q = Query::select()
            .column(Violations::Seq)
            .from(Violations::Table)
            .and_where(Expr::col(Violations::EventSeq).is_in(chunk.iter().copied()))
            .to_owned();
        for row in db.fetch_all(&q).await? {
            found.push(row.int("seq")?);
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Erases the personal part of the records at `seqs` (already-erased ones are skipped) and
/// brings the projections in line. Returns the positions it erased, ascending.
pub async fn clear(
    db: &mut Exec<'_>,
    key: &ChainKey,
    seqs: &[i64],
) -> Result<Vec<i64>, StoreError> {
    let mut erased = Vec::new();
    let mut traces: BTreeSet<(String, String)> = BTreeSet::new();
    for chunk in seqs.chunks(CHUNK) {
        let q = Query::select()
            .columns([
                Events::Seq,
                Events::Project,
                Events::EventId,
                Events::RecordType,
                Events::TraceId,
                Events::RecordedAt,
                Events::Body,
                Events::Digest,
            ])
            .from(Events::Table)
            .and_where(Expr::col(Events::Seq).is_in(chunk.iter().copied()))
            .and_where(Expr::col(Events::Body).is_not_null())
            .to_owned();
        let rows = db.fetch_all(&q).await?;
        let mut updates: Vec<(i64, Option<String>)> = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = row.int("seq")?;
            let body = row.text("body")?;
            if personal::is_erased(&body) {
                continue;
            }
            let (project, event_id, record_type, recorded_at) = (
                row.text("project")?,
                row.text("event_id")?,
                row.text("record_type")?,
                row.text("recorded_at")?,
            );
            let header = Header {
                project: &project,
                event_id: &event_id,
                record_type: &record_type,
                recorded_at: &recorded_at,
            };
            let stored = chain::from_hex(&row.text("digest")?).unwrap_or(chain::GENESIS);
            let new_body = match personal::check(&header, &body, &stored, key.personal()) {
                Some(Form::V2) => personal::erased(&record_type, &body, key.personal()),
                // Format v1 (or a body that no longer matches its digest): nothing of it can
                // be kept apart from the personal part, so the whole body goes.
                _ => {
                    tracing::info!(
                        seq,
                        "erasing a record of format v1 (or one that does not verify): its whole body is cleared"
                    );
                    None
                }
            };
            if record_type == "span" {
                traces.insert((project, row.text("trace_id")?));
            }
            updates.push((seq, new_body));
            erased.push(seq);
        }
        for (seq, body) in updates {
            db.execute(
                &Query::update()
                    .table(Events::Table)
                    .values([
                        (Events::Body, body.into()),
                        (Events::SessionId, Option::<String>::None.into()),
                        (Events::Agent, Option::<String>::None.into()),
                    ])
                    .and_where(Expr::col(Events::Seq).eq(seq))
                    .to_owned(),
            )
            .await?;
        }
    }
    for chunk in erased.chunks(CHUNK) {
        db.execute(
            &Query::update()
                .table(Violations::Table)
                .values([
                    (Violations::Agent, Option::<String>::None.into()),
                    (Violations::SessionId, Option::<String>::None.into()),
                    (Violations::Message, String::new().into()),
                ])
                .and_where(Expr::col(Violations::Seq).is_in(chunk.iter().copied()))
                .to_owned(),
        )
        .await?;
        db.execute(
            &Query::delete()
                .from_table(RedactedValues::Table)
                .and_where(Expr::col(RedactedValues::Seq).is_in(chunk.iter().copied()))
                .to_owned(),
        )
        .await?;
    }
    rebuild_traces(db, &traces).await?;
    Ok(erased)
}

/// Rebuilds the summary rows of `traces` from their stored spans, in log order, as `replay`
/// does (a trace left with no readable span loses its row, as in a replay).
async fn rebuild_traces(
    db: &mut Exec<'_>,
    traces: &BTreeSet<(String, String)>,
) -> Result<(), StoreError> {
    let mut by_project: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (project, trace) in traces {
        by_project.entry(project).or_default().push(trace);
    }
    let carried = super::sweep::carried_projections(db).await?;
    for (project, ids) in by_project {
        for chunk in ids.chunks(CHUNK) {
            db.execute(
                &Query::delete()
                    .from_table(Traces::Table)
                    .and_where(Expr::col(Traces::Project).eq(project))
                    .and_where(Expr::col(Traces::TraceId).is_in(chunk.iter().copied()))
                    .to_owned(),
            )
            .await?;
            let q = Query::select()
                .columns([Events::Seq, Events::Body])
                .from(Events::Table)
                .and_where(Expr::col(Events::Project).eq(project))
                .and_where(Expr::col(Events::TraceId).is_in(chunk.iter().copied()))
                .and_where(Expr::col(Events::RecordType).eq("span"))
                .and_where(Expr::col(Events::Body).is_not_null())
                .order_by(Events::TraceId, Order::Asc)
                .order_by(Events::Seq, Order::Asc)
                .to_owned();
            let mut batch = TraceBatch::default();
            // A trace straddling the base after a sweep starts from what the sweep carried.
            for (p, trace_id, row) in &carried {
                if p == project && chunk.contains(&trace_id.as_str()) {
                    batch.add(project, trace_id.clone(), row.clone());
                }
            }
            for row in db.fetch_all(&q).await? {
                let seq = row.int("seq")?;
                let body = super::parse_body(seq, &row.text("body")?)?;
                if let Some((trace_id, facts)) = projection::span_facts(seq, &body) {
                    batch.add(project, trace_id, facts);
                }
            }
            if !batch.is_empty() {
                batch.write(db).await?;
            }
        }
    }
    Ok(())
}
