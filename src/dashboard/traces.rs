//! Traces: the list (the API's filters, cursor pages), one trace (span tree and waterfall,
//! violations on their spans, tokens and cost), one span's redacted body (loaded when opened),
//! and a session's traces in order.
//!
//! Large traces stay fast: spans are read as outlines (input and output are skipped by the
//! parser, never built), the tree is laid out once, and the page draws [`PAGE_ROWS`] rows of
//! it at a time in tree order. Span bodies are fetched only when a span is opened.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::{PageError, render};
use super::fmt;
use super::viewer::{Chrome, Viewer};
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::params::QueryErrors;
use crate::store::query::{self, Cursor, SpanOutline, TraceFilter, TraceStatus, TraceSummary};
use crate::store::violations::{self, ViolationFilter, ViolationRow};

/// Rows of the span tree drawn per page.
pub const PAGE_ROWS: usize = 500;
/// Spans read for one trace view.
pub const MAX_SPANS: u64 = 50_000;
/// Indentation levels the stylesheet draws (deeper spans indent no further).
const MAX_INDENT: usize = 24;

/// One row of the traces list.
pub struct TraceRow {
    pub url: String,
    pub trace_id: String,
    pub start: String,
    pub agent: String,
    pub session_id: String,
    pub session_url: String,
    pub spans: String,
    pub errors: i64,
    pub tokens: String,
    pub cost: String,
    pub duration: String,
    pub status: &'static str,
}

fn duration_between(start: &str, end: Option<&str>) -> Option<f64> {
    let s = DateTime::parse_from_rfc3339(start).ok()?;
    let e = DateTime::parse_from_rfc3339(end?).ok()?;
    Some((e - s).num_microseconds()? as f64 / 1000.0)
}

impl TraceRow {
    fn from(t: &TraceSummary) -> TraceRow {
        TraceRow {
            url: format!("/traces/{}", fmt::url(&t.trace_id)),
            trace_id: t.trace_id.clone(),
            start: fmt::time(&t.start_time),
            agent: t.agent.clone().unwrap_or_default(),
            session_url: t
                .session_id
                .as_deref()
                .map(|s| format!("/sessions/{}", fmt::url(s)))
                .unwrap_or_default(),
            session_id: t.session_id.clone().unwrap_or_default(),
            spans: fmt::count(t.span_count),
            errors: t.error_count,
            tokens: fmt::count(t.total_tokens),
            cost: fmt::cost(t.cost_usd),
            duration: fmt::duration_ms(duration_between(&t.start_time, t.end_time.as_deref())),
            status: t.status,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    agent: Option<String>,
    session_id: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    has_violations: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "traces.html")]
struct TracesPage {
    chrome: Chrome,
    rows: Vec<TraceRow>,
    next_url: Option<String>,
    agent: String,
    session_id: String,
    status: String,
    from: String,
    to: String,
    has_violations: String,
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListParams>,
) -> Result<Response, PageError> {
    let project = viewer.project(Permission::TracesRead, "dashboard.traces")?;
    let agent = fmt::blank_none(p.agent);
    let session_id = fmt::blank_none(p.session_id);
    let status_text = fmt::blank_none(p.status);
    let has_text = fmt::blank_none(p.has_violations);
    let from_text = fmt::form_time(p.from.as_deref());
    let to_text = fmt::form_time(p.to.as_deref());
    let mut errors = QueryErrors::default();
    let status = match status_text.as_deref() {
        None => None,
        Some("ok") => Some(TraceStatus::Ok),
        Some("error") => Some(TraceStatus::Error),
        Some(_) => {
            errors.push("status", "must be ok or error");
            None
        }
    };
    let has_violations = match has_text.as_deref() {
        None => None,
        Some("yes") | Some("true") => Some(true),
        Some("no") | Some("false") => Some(false),
        Some(_) => {
            errors.push("has_violations", "must be yes or no");
            None
        }
    };
    let from = errors.time("from", from_text.as_deref());
    let to = errors.time("to", to_text.as_deref());
    let cursor = errors.cursor(p.cursor.as_deref(), Cursor::decode);
    errors.finish()?;
    let redaction = &state.pipeline.redaction;
    let filter = TraceFilter {
        agent: agent.as_deref().map(|a| redaction.lookup_text("agent", a)),
        session_id: session_id
            .as_deref()
            .map(|s| redaction.lookup_id("session_id", s)),
        status,
        from,
        to,
        has_violations,
    };
    let (items, next) =
        query::list_traces(&state.store, &project, &filter, cursor.as_ref(), 50).await?;
    let query_of = |cursor: &str| {
        fmt::next_page_url(
            "/traces",
            &[
                ("agent", &agent),
                ("session_id", &session_id),
                ("status", &status_text),
                ("from", &from_text),
                ("to", &to_text),
                ("has_violations", &has_text),
            ],
            cursor,
        )
    };
    let page = TracesPage {
        chrome: viewer.chrome(&state, "traces", "/traces").await,
        rows: items.iter().map(TraceRow::from).collect(),
        next_url: next.map(|c| query_of(&c.encode())),
        agent: agent.unwrap_or_default(),
        session_id: session_id.unwrap_or_default(),
        status: status_text.unwrap_or_default(),
        from: from_text
            .map(|t| t.trim_end_matches('Z').to_owned())
            .unwrap_or_default(),
        to: to_text
            .map(|t| t.trim_end_matches('Z').to_owned())
            .unwrap_or_default(),
        has_violations: has_text.unwrap_or_default(),
    };
    render(&page)
}

/// One row of the span tree.
pub struct SpanRow {
    pub seq: i64,
    pub depth: usize,
    pub indent: usize,
    pub children: usize,
    pub name: String,
    pub kind: String,
    pub is_error: bool,
    pub agent: String,
    pub model: String,
    pub duration: String,
    pub tokens: String,
    pub cost: String,
    /// Bar position and width in a 0..1000 wide timeline.
    pub bar_x: String,
    pub bar_w: String,
    pub violations: Vec<ViolationMark>,
    pub url: String,
}

pub struct ViolationMark {
    pub rule_id: String,
    pub severity: String,
    pub message: String,
}

/// The tree in drawing order: (index into `spans`, depth), children after their parent in
/// start order. Spans whose parent is missing are roots; spans caught in a parent cycle are
/// drawn as roots after the rest, so every span appears exactly once.
pub fn layout(spans: &[SpanOutline]) -> Vec<(usize, usize)> {
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        by_id.entry(s.span_id.as_str()).or_insert(i);
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s
            .parent_span_id
            .as_deref()
            .and_then(|p| by_id.get(p))
            .filter(|&&p| p != i)
        {
            Some(&p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let walk = |root: usize, order: &mut Vec<(usize, usize)>, seen: &mut Vec<bool>| {
        let mut stack = vec![(root, 0usize)];
        while let Some((i, depth)) = stack.pop() {
            if seen[i] {
                continue;
            }
            seen[i] = true;
            order.push((i, depth));
            for &c in children[i].iter().rev() {
                stack.push((c, depth + 1));
            }
        }
    };
    for &r in &roots {
        walk(r, &mut order, &mut seen);
    }
    for i in 0..spans.len() {
        if !seen[i] {
            walk(i, &mut order, &mut seen);
        }
    }
    order
}

/// How many spans each drawn row has below it (its subtree, without itself). In drawing
/// order a row's parent is the nearest earlier row one level up, so one stack does it.
fn subtree_sizes(order: &[(usize, usize)]) -> Vec<usize> {
    let mut sizes = vec![0; order.len()];
    let mut open: Vec<usize> = Vec::new();
    let close = |open: &mut Vec<usize>, sizes: &mut Vec<usize>| {
        if let Some(top) = open.pop() {
            let total = sizes[top] + 1;
            if let Some(&parent) = open.last() {
                sizes[parent] += total;
            }
        }
    };
    for (row, &(_, depth)) in order.iter().enumerate() {
        while open.last().is_some_and(|&r| order[r].1 >= depth) {
            close(&mut open, &mut sizes);
        }
        open.push(row);
    }
    while !open.is_empty() {
        close(&mut open, &mut sizes);
    }
    sizes
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailParams {
    page: Option<String>,
    at: Option<String>,
}

#[derive(Template)]
#[template(path = "trace.html")]
struct TracePage {
    chrome: Chrome,
    trace_id: String,
    summary: TraceRow,
    input_tokens: String,
    output_tokens: String,
    span_total: String,
    truncated: bool,
    violations: Vec<(ViolationRow, String)>,
    errors: Vec<(String, String)>,
    rows: Vec<SpanRow>,
    first_row: usize,
    last_row: usize,
    prev_url: Option<String>,
    next_url: Option<String>,
    time_axis: Vec<(String, String)>,
}

fn micros(t: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}

pub async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(trace_id): Path<String>,
    Query(p): Query<DetailParams>,
) -> Result<Response, PageError> {
    let project = viewer.project(Permission::TracesRead, "dashboard.trace")?;
    let stored_id = state.pipeline.redaction.lookup_id("trace_id", &trace_id);
    let mut errors = QueryErrors::default();
    let page_no = match p.page.as_deref().map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n - 1),
        Some(_) => {
            errors.push("page", "must be a page number from 1");
            None
        }
    };
    let at = match p.at.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            errors.push("at", "must be a span's log position");
            None
        }
    };
    errors.finish()?;
    let Some((summary, _)) = query::get_trace(&state.store, &project, &stored_id, 0).await? else {
        return Err(PageError::not_found("No trace with this id."));
    };
    let spans = query::span_outlines(&state.store, &project, &stored_id, MAX_SPANS).await?;
    let (found, _) = violations::list(
        &state.store,
        &project,
        &ViolationFilter {
            trace_id: Some(stored_id.clone()),
            ..Default::default()
        },
        None,
        1000,
    )
    .await?;
    let mut on_span: HashMap<i64, Vec<&ViolationRow>> = HashMap::new();
    for v in &found {
        on_span.entry(v.event_seq).or_default().push(v);
    }
    let order = layout(&spans);
    let sizes = subtree_sizes(&order);
    // The timeline runs from the first start to the last end.
    let starts: Vec<Option<i64>> = spans.iter().map(|s| micros(&s.start_time)).collect();
    let t0 = starts.iter().flatten().min().copied().unwrap_or(0);
    let t1 = spans
        .iter()
        .zip(&starts)
        .filter_map(|(s, st)| {
            let end = s.end_time.as_deref().and_then(micros);
            end.or(*st)
        })
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let span = (t1 - t0) as f64;
    let total_pages = order.len().div_ceil(PAGE_ROWS).max(1);
    let page_no = match (at, page_no) {
        (Some(seq), _) => order
            .iter()
            .position(|&(i, _)| spans[i].seq == seq)
            .map(|row| row / PAGE_ROWS)
            .unwrap_or(0),
        (None, Some(n)) => n.min(total_pages - 1),
        (None, None) => 0,
    };
    let first = page_no * PAGE_ROWS;
    let last = (first + PAGE_ROWS).min(order.len());
    let trace_url = format!("/traces/{}", fmt::url(&trace_id));
    let rows = order[first..last]
        .iter()
        .zip(&sizes[first..last])
        .map(|(&(i, depth), &children)| {
            let s = &spans[i];
            let start = starts[i].unwrap_or(t0);
            let end = s
                .end_time
                .as_deref()
                .and_then(micros)
                .unwrap_or(start)
                .max(start);
            let x = (start - t0) as f64 / span * 1000.0;
            let w = ((end - start) as f64 / span * 1000.0)
                .max(2.0)
                .min(1000.0 - x + 2.0);
            SpanRow {
                seq: s.seq,
                depth,
                indent: depth.min(MAX_INDENT),
                children,
                name: s.name.clone(),
                kind: s.kind.clone(),
                is_error: s.status == "error",
                agent: s.agent.clone().unwrap_or_default(),
                model: s.model.clone().unwrap_or_default(),
                duration: fmt::duration_ms(
                    s.duration_ms
                        .or(Some((end - start) as f64 / 1000.0).filter(|_| s.end_time.is_some())),
                ),
                tokens: fmt::count(
                    s.usage.input_tokens.saturating_add(s.usage.output_tokens) as i64
                ),
                cost: fmt::cost(s.usage.cost_usd),
                bar_x: format!("{x:.1}"),
                bar_w: format!("{w:.1}"),
                violations: on_span
                    .get(&s.seq)
                    .map(|vs| {
                        vs.iter()
                            .map(|v| ViolationMark {
                                rule_id: v.rule_id.clone(),
                                severity: v.severity.clone().unwrap_or_default(),
                                message: v.message.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                url: format!("{trace_url}/spans/{}", s.seq),
            }
        })
        .collect();
    let page_url = |n: usize| format!("{trace_url}?page={}", n + 1);
    let errors_list = order
        .iter()
        .filter(|&&(i, _)| spans[i].status == "error")
        .take(50)
        .map(|&(i, _)| {
            (
                spans[i].name.clone(),
                format!("{trace_url}?at={}#s{}", spans[i].seq, spans[i].seq),
            )
        })
        .collect();
    let time_axis = (0..=4)
        .map(|k| {
            (
                format!("{}", k * 250),
                fmt::duration_ms(Some(span / 1000.0 * k as f64 / 4.0)),
            )
        })
        .collect();
    let page = TracePage {
        chrome: viewer.chrome(&state, "traces", &trace_url).await,
        input_tokens: fmt::count(summary.input_tokens),
        output_tokens: fmt::count(summary.output_tokens),
        span_total: fmt::count(summary.span_count),
        truncated: summary.span_count as u64 > MAX_SPANS,
        summary: TraceRow::from(&summary),
        trace_id,
        violations: found
            .iter()
            .filter(|v| v.outcome == "violation")
            .map(|v| {
                (
                    v.clone(),
                    format!("{trace_url}?at={}#s{}", v.event_seq, v.event_seq),
                )
            })
            .collect(),
        errors: errors_list,
        rows,
        first_row: first + 1,
        last_row: last,
        prev_url: (page_no > 0).then(|| page_url(page_no - 1)),
        next_url: (last < order.len()).then(|| page_url(page_no + 1)),
        time_axis,
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "span_body.html")]
struct SpanBody {
    name: String,
    kind: String,
    status: String,
    fields: Vec<(&'static str, String)>,
    input: String,
    output: String,
    attributes: String,
    violations: Vec<ViolationRow>,
}

#[derive(Template)]
#[template(path = "span.html")]
struct SpanPage {
    chrome: Chrome,
    trace_url: String,
    trace_id: String,
    body: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SpanParams {
    fragment: Option<String>,
}

fn pretty(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

pub async fn span(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((trace_id, seq)): Path<(String, String)>,
    Query(p): Query<SpanParams>,
) -> Result<Response, PageError> {
    let project = viewer.project(Permission::TracesRead, "dashboard.span")?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| PageError::bad_request("seq: must be a span's log position"))?;
    let stored_id = state.pipeline.redaction.lookup_id("trace_id", &trace_id);
    let Some(body) = query::span_record(&state.store, &project, &stored_id, seq).await? else {
        return Err(PageError::not_found("No such span in this trace."));
    };
    let (found, _) = violations::list(
        &state.store,
        &project,
        &ViolationFilter {
            trace_id: Some(stored_id),
            ..Default::default()
        },
        None,
        1000,
    )
    .await?;
    let text = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let usage = body.get("usage");
    let num = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    let fields = vec![
        ("Span id", text("span_id")),
        ("Parent", text("parent_span_id")),
        ("Agent", text("agent")),
        ("Session", text("session_id")),
        ("Model", text("model")),
        ("Started", fmt::time(&text("start_time"))),
        ("Ended", fmt::time(&text("end_time"))),
        (
            "Duration",
            fmt::duration_ms(body.get("duration_ms").and_then(|v| v.as_f64())),
        ),
        ("Input tokens", fmt::count(num("input_tokens") as i64)),
        ("Output tokens", fmt::count(num("output_tokens") as i64)),
        ("Cost", fmt::cost(num("cost_usd"))),
        ("Event id", text("event_id")),
        ("Log position", seq.to_string()),
    ];
    let span_body = SpanBody {
        name: text("name"),
        kind: text("kind"),
        status: text("status"),
        fields: fields.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        input: pretty(body.get("input")),
        output: pretty(body.get("output")),
        attributes: match body.get("attributes") {
            Some(serde_json::Value::Object(m)) if m.is_empty() => String::new(),
            other => pretty(other),
        },
        violations: found.into_iter().filter(|v| v.event_seq == seq).collect(),
    };
    if p.fragment.as_deref() == Some("1") {
        return render(&span_body);
    }
    let trace_url = format!("/traces/{}", fmt::url(&trace_id));
    let page = SpanPage {
        chrome: viewer.chrome(&state, "traces", &trace_url).await,
        body: span_body.render().map_err(PageError::internal)?,
        trace_url: format!("{trace_url}?at={seq}#s{seq}"),
        trace_id,
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    chrome: Chrome,
    session_id: String,
    rows: Vec<TraceRow>,
    traces: String,
    spans: String,
    errors: String,
    tokens: String,
    cost: String,
    more: bool,
}

/// Traces shown for one session.
const SESSION_TRACES: u64 = 500;

pub async fn session(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(session_id): Path<String>,
) -> Result<Response, PageError> {
    let project = viewer.project(Permission::TracesRead, "dashboard.session")?;
    let stored = state
        .pipeline
        .redaction
        .lookup_id("session_id", &session_id);
    let filter = TraceFilter {
        session_id: Some(stored),
        ..Default::default()
    };
    let (mut items, next) =
        query::list_traces(&state.store, &project, &filter, None, SESSION_TRACES).await?;
    if items.is_empty() {
        return Err(PageError::not_found("No traces in this session."));
    }
    items.reverse();
    let sum = |f: fn(&TraceSummary) -> i64| items.iter().map(f).fold(0i64, i64::saturating_add);
    let page = SessionPage {
        chrome: viewer
            .chrome(
                &state,
                "traces",
                &format!("/sessions/{}", fmt::url(&session_id)),
            )
            .await,
        traces: fmt::count(items.len() as i64),
        spans: fmt::count(sum(|t| t.span_count)),
        errors: fmt::count(sum(|t| t.error_count)),
        tokens: fmt::count(sum(|t| t.total_tokens)),
        cost: fmt::cost(items.iter().map(|t| t.cost_usd).sum()),
        rows: items.iter().map(TraceRow::from).collect(),
        more: next.is_some(),
        session_id,
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outline(id: &str, parent: Option<&str>) -> SpanOutline {
        SpanOutline {
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn layout_puts_children_under_parents_and_survives_cycles() {
        let spans = vec![
            outline("root", None),
            outline("b", Some("root")),
            outline("c", Some("b")),
            outline("d", Some("root")),
            outline("orphan", Some("missing")),
            outline("x", Some("y")),
            outline("y", Some("x")),
            outline("self", Some("self")),
        ];
        let order = layout(&spans);
        let ids: Vec<(&str, usize)> = order
            .iter()
            .map(|&(i, d)| (spans[i].span_id.as_str(), d))
            .collect();
        assert_eq!(
            &ids[..5],
            &[("root", 0), ("b", 1), ("c", 2), ("d", 1), ("orphan", 0)]
        );
        assert_eq!(order.len(), spans.len(), "every span drawn exactly once");
        assert!(ids.contains(&("self", 0)));
        assert_eq!(subtree_sizes(&order)[..5], [3, 1, 0, 0, 0]);
    }

    #[test]
    fn a_deep_chain_lays_out_without_recursion() {
        let mut spans = vec![outline("s0", None)];
        for i in 1..100_000 {
            spans.push(outline(&format!("s{i}"), Some(&format!("s{}", i - 1))));
        }
        let order = layout(&spans);
        assert_eq!(order.last().unwrap().1, 99_999);
        assert_eq!(subtree_sizes(&order)[0], 99_999);
    }
}
