//! The canonical trace event every door decodes into (the *normalize* stage's output).
//!
//! Input: untrusted JSON (`serde_json::Value`) from a door. Output: [`TraceEvent`], or a list
//! of [`FieldError`]s that name the path at fault (`events[1].start_time`) and never the value,
//! because a rejected value may itself be personal data.
//!
//! Invariants: ids are short printable tokens, times are RFC 3339 and `end_time >= start_time`,
//! token counts are non-negative integers, cost is finite and non-negative, every string is
//! within [`Limits`]. Nothing after this stage needs to re-check them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// What kind of step a span records. `Guard` is produced by the guard endpoint only; clients
/// cannot send it as a trace event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    Llm,
    Tool,
    Agent,
    Retrieval,
    Answer,
    Log,
    Guard,
}

impl SpanKind {
    pub const CLIENT_KINDS: &'static str = "llm, tool, agent, retrieval, answer, log";

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Llm => "llm",
            SpanKind::Tool => "tool",
            SpanKind::Agent => "agent",
            SpanKind::Retrieval => "retrieval",
            SpanKind::Answer => "answer",
            SpanKind::Log => "log",
            SpanKind::Guard => "guard",
        }
    }

    /// Kinds a client may send; `guard` is reserved for the guard endpoint.
    pub fn parse_client(s: &str) -> Option<Self> {
        Some(match s {
            "llm" => SpanKind::Llm,
            "tool" => SpanKind::Tool,
            "agent" => SpanKind::Agent,
            "retrieval" => SpanKind::Retrieval,
            "answer" => SpanKind::Answer,
            "log" => SpanKind::Log,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Error,
    Unset,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Unset => "unset",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// One step of an agent's run, as every door normalizes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceEvent {
    /// Client-chosen id; retries with the same id are stored once. Generated when absent.
    pub event_id: String,
    /// False when the server generated `event_id` (such ids cannot repeat).
    #[serde(skip)]
    pub id_from_client: bool,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub kind: SpanKind,
    pub name: String,
    pub agent: Option<String>,
    pub session_id: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub start_time: DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_time")]
    pub end_time: Option<DateTime<Utc>>,
    pub status: Status,
    pub model: Option<String>,
    pub input: Value,
    pub output: Value,
    pub usage: Usage,
    pub attributes: Map<String, Value>,
}

impl TraceEvent {
    pub fn duration_ms(&self) -> Option<f64> {
        self.end_time.map(|end| {
            (end - self.start_time)
                .num_microseconds()
                .unwrap_or(i64::MAX) as f64
                / 1000.0
        })
    }
}

/// Most tokens one event may report: the largest integer every JSON client represents exactly.
/// Totals saturate rather than overflow beyond what any sum of these can reach.
pub const MAX_TOKENS: u64 = (1 << 53) - 1;

/// Parses an RFC 3339 timestamp into UTC. Times outside the years 0001–9999 once in UTC are
/// refused: they would not keep the fixed-width form every stored time has (and sorts by).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, &'static str> {
    use chrono::Datelike;
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|_| "invalid RFC 3339 timestamp")?
        .with_timezone(&Utc);
    if !(1..=9999).contains(&t.year()) {
        return Err("out of range: years 0001 to 9999 (UTC)");
    }
    Ok(t)
}

/// Fixed-width UTC form, so stored times sort lexicographically.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

/// Size limits on one event. Documented in the README's limits table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest id (`trace_id`, `span_id`, `event_id`, ...), in bytes.
    pub max_id_len: usize,
    /// Longest short text field (`name`, `agent`, `model`, ...), in bytes.
    pub max_name_len: usize,
    /// Deepest nesting of `input`/`output`/`attributes`.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_id_len: 128,
            max_name_len: 512,
            max_depth: 32,
        }
    }
}

/// A validation failure at one path. The message never contains the offending value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Validates one native event. `path` is its position in the request (`events[3]`);
/// `new_id` supplies an event id when the client gave none.
pub fn parse_event(
    value: Value,
    path: &str,
    limits: &Limits,
    new_id: impl FnOnce() -> String,
) -> Result<TraceEvent, Vec<FieldError>> {
    let mut p = FieldReader {
        path,
        errors: Vec::new(),
        limits,
    };
    let Value::Object(mut obj) = value else {
        p.fail("", "must be a JSON object");
        return Err(p.errors);
    };
    let obj = &mut obj;
    for key in obj.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            // The key is client text and could be personal data: name its position only.
            p.fail("", "unknown field (allowed: event_id, trace_id, span_id, parent_span_id, kind, name, agent, session_id, start_time, end_time, status, model, input, output, usage, attributes)");
            break;
        }
    }
    let event_id = p.opt_id(obj, "event_id");
    let trace_id = p.req_id(obj, "trace_id");
    let span_id = p.req_id(obj, "span_id");
    let parent_span_id = p.opt_id(obj, "parent_span_id");
    let kind = match obj.get("kind") {
        None | Some(Value::Null) => {
            p.fail("kind", "is required");
            None
        }
        Some(Value::String(s)) => SpanKind::parse_client(s).or_else(|| {
            p.fail(
                "kind",
                &format!("must be one of {}", SpanKind::CLIENT_KINDS),
            );
            None
        }),
        Some(_) => {
            p.fail("kind", "must be a string");
            None
        }
    };
    let name = p.opt_text(obj, "name");
    let agent = p.opt_text(obj, "agent");
    let session_id = p.opt_id(obj, "session_id");
    let model = p.opt_text(obj, "model");
    let start_time = p.time(obj, "start_time", true);
    let end_time = p.time(obj, "end_time", false);
    if let (Some(s), Some(e)) = (start_time, end_time)
        && e < s
    {
        p.fail("end_time", "is before start_time");
    }
    let status = match obj.get("status") {
        None | Some(Value::Null) => Status::Unset,
        Some(Value::String(s)) => match s.as_str() {
            "ok" | "OK" | "success" => Status::Ok,
            "error" | "ERROR" => Status::Error,
            "unset" | "UNSET" => Status::Unset,
            _ => {
                p.fail("status", "must be one of ok, error, unset");
                Status::Unset
            }
        },
        Some(_) => {
            p.fail("status", "must be a string");
            Status::Unset
        }
    };
    let usage = p.usage(obj);
    let input = p.any(obj, "input");
    let output = p.any(obj, "output");
    let attributes = match obj.remove("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            if m.values().map(depth).max().unwrap_or(0) + 1 > limits.max_depth {
                p.fail(
                    "attributes",
                    &format!("nested deeper than {} levels", limits.max_depth),
                );
            }
            m
        }
        Some(_) => {
            p.fail("attributes", "must be an object");
            Map::new()
        }
    };
    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    let kind = kind.expect("kind is Some when no error was recorded");
    Ok(TraceEvent {
        id_from_client: event_id.is_some(),
        event_id: event_id.unwrap_or_else(new_id),
        trace_id: trace_id.expect("required id present when no error was recorded"),
        span_id: span_id.expect("required id present when no error was recorded"),
        parent_span_id,
        kind,
        name: name.unwrap_or_else(|| kind.as_str().to_owned()),
        agent,
        session_id,
        start_time: start_time.expect("required time present when no error was recorded"),
        end_time,
        status,
        model,
        input,
        output,
        usage,
        attributes,
    })
}

const KNOWN_FIELDS: &[&str] = &[
    "event_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "kind",
    "name",
    "agent",
    "session_id",
    "start_time",
    "end_time",
    "status",
    "model",
    "input",
    "output",
    "usage",
    "attributes",
];

struct FieldReader<'a> {
    path: &'a str,
    errors: Vec<FieldError>,
    limits: &'a Limits,
}

impl FieldReader<'_> {
    fn fail(&mut self, field: &str, message: &str) {
        let path = if field.is_empty() {
            self.path.to_owned()
        } else {
            format!("{}.{field}", self.path)
        };
        self.errors.push(FieldError {
            path,
            message: message.to_owned(),
        });
    }

    fn str_field(&mut self, obj: &Map<String, Value>, field: &str, max: usize) -> Option<String> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => {
                self.fail(field, "must not be empty");
                None
            }
            Some(Value::String(s)) if s.len() > max => {
                self.fail(field, &format!("longer than {max} bytes"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    fn opt_id(&mut self, obj: &Map<String, Value>, field: &str) -> Option<String> {
        let id = self.str_field(obj, field, self.limits.max_id_len)?;
        if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.fail(field, "must not contain whitespace or control characters");
            return None;
        }
        Some(id)
    }

    fn req_id(&mut self, obj: &Map<String, Value>, field: &str) -> Option<String> {
        if matches!(obj.get(field), None | Some(Value::Null)) {
            self.fail(field, "is required");
            return None;
        }
        self.opt_id(obj, field)
    }

    fn opt_text(&mut self, obj: &Map<String, Value>, field: &str) -> Option<String> {
        self.str_field(obj, field, self.limits.max_name_len)
    }

    fn time(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        required: bool,
    ) -> Option<DateTime<Utc>> {
        match obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => match parse_time(s) {
                Ok(t) => Some(t),
                Err(message) => {
                    self.fail(field, message);
                    None
                }
            },
            Some(_) => {
                self.fail(field, "must be an RFC 3339 timestamp string");
                None
            }
        }
    }

    fn usage(&mut self, obj: &Map<String, Value>) -> Usage {
        let mut usage = Usage::default();
        let Some(u) = obj.get("usage") else {
            return usage;
        };
        let u = match u {
            Value::Null => return usage,
            Value::Object(u) => u,
            _ => {
                self.fail("usage", "must be an object");
                return usage;
            }
        };
        for (key, slot) in [
            ("input_tokens", &mut usage.input_tokens),
            ("output_tokens", &mut usage.output_tokens),
        ] {
            match u.get(key) {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_u64() {
                    Some(n) if n <= MAX_TOKENS => *slot = n,
                    Some(_) => self.fail(
                        &format!("usage.{key}"),
                        "must be at most 9007199254740991 (2^53 - 1)",
                    ),
                    None => self.fail(&format!("usage.{key}"), "must be a non-negative integer"),
                },
            }
        }
        match u.get("cost_usd") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_f64() {
                Some(c) if c.is_finite() && c >= 0.0 => usage.cost_usd = c,
                _ => self.fail("usage.cost_usd", "must be a non-negative number"),
            },
        }
        if u.keys()
            .any(|k| !["input_tokens", "output_tokens", "cost_usd"].contains(&k.as_str()))
        {
            self.fail(
                "usage",
                "unknown field (allowed: input_tokens, output_tokens, cost_usd)",
            );
        }
        usage
    }

    fn any(&mut self, obj: &mut Map<String, Value>, field: &str) -> Value {
        let v = obj.remove(field).unwrap_or(Value::Null);
        self.depth_check(field, &v);
        v
    }

    fn depth_check(&mut self, field: &str, v: &Value) {
        if depth(v) > self.limits.max_depth {
            self.fail(
                field,
                &format!("nested deeper than {} levels", self.limits.max_depth),
            );
        }
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<TraceEvent, Vec<FieldError>> {
        parse_event(v, "events[0]", &Limits::default(), || "generated".into())
    }

    fn minimal() -> Value {
        json!({"trace_id": "t1", "span_id": "s1", "kind": "llm", "start_time": "2026-11-22T10:00:00Z"})
    }

    #[test]
    fn minimal_event_gets_defaults() {
        let e = parse(minimal()).expect("valid");
        assert_eq!(e.event_id, "generated");
        assert_eq!(e.name, "llm");
        assert_eq!(e.status, Status::Unset);
        assert_eq!(e.usage, Usage::default());
    }

    #[test]
    fn errors_name_the_path_not_the_value() {
        let mut v = minimal();
        v["start_time"] = json!("secret@example.com");
        v["usage"] = json!({"input_tokens": -3});
        let errs = parse(v).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            [
                "events[0].start_time: invalid RFC 3339 timestamp",
                "events[0].usage.input_tokens: must be a non-negative integer"
            ]
        );
        assert!(!format!("{errs:?}").contains("secret@example.com"));
    }

    #[test]
    fn rejects_missing_required_and_bad_kind() {
        let errs = parse(json!({"kind": "guard"})).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "events[0].trace_id",
                "events[0].span_id",
                "events[0].kind",
                "events[0].start_time"
            ]
        );
    }

    #[test]
    fn end_before_start_is_rejected() {
        let mut v = minimal();
        v["end_time"] = json!("2026-11-22T09:00:00Z");
        assert_eq!(parse(v).unwrap_err()[0].path, "events[0].end_time");
    }

    #[test]
    fn times_outside_years_1_to_9999_in_utc_are_refused() {
        for (t, ok) in [
            ("9999-12-31T23:59:59Z", true),
            ("0001-01-01T00:00:00Z", true),
            ("9999-12-31T23:59:59-23:59", false),
            ("0001-01-01T00:00:00+01:00", false),
        ] {
            let mut v = minimal();
            v["start_time"] = json!(t);
            match parse(v) {
                Ok(e) => {
                    assert!(ok, "{t} accepted");
                    assert_eq!(format_time(&e.start_time).len(), 27, "fixed width");
                }
                Err(errs) => {
                    assert!(!ok, "{t} refused: {errs:?}");
                    assert_eq!(errs[0].path, "events[0].start_time");
                    assert!(errs[0].message.contains("0001 to 9999"));
                }
            }
        }
    }

    #[test]
    fn token_counts_past_2_to_the_53_are_refused() {
        let mut v = minimal();
        v["usage"] = json!({"input_tokens": MAX_TOKENS, "output_tokens": 0});
        assert_eq!(parse(v).unwrap().usage.input_tokens, MAX_TOKENS);
        for n in [json!(MAX_TOKENS + 1), json!(u64::MAX), json!(1e300)] {
            let mut v = minimal();
            v["usage"] = json!({"output_tokens": n});
            assert_eq!(
                parse(v).unwrap_err()[0].path,
                "events[0].usage.output_tokens"
            );
        }
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        let mut v = minimal();
        v["input"] = deep;
        assert_eq!(parse(v).unwrap_err()[0].path, "events[0].input");
    }
}
