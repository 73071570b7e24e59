//! Running totals per trace and per session: the `trace` argument every rule receives.
//!
//! Input: events (`serde_json::Value`, the pipeline's normalised shape) in log order.
//! Output: a [`TraceView`] per event — the trace's and the session's totals *including* that
//! event — which [`TraceView::to_rhai`] turns into the map rules read:
//! `#{span_count, input_tokens, output_tokens, tokens, cost_usd, kinds, redaction, sources,
//! session: #{span_count, tokens, cost_usd}}`.
//!
//! Invariants:
//! - [`RunningTotals::observe`] applies the event *before* returning the view, so a rule
//!   sees the event's own tokens and cost. [`RunningTotals::peek`] computes the same view
//!   without storing anything: guard requests (kind `"guard"`) must not move the totals.
//! - Memory is bounded: at most `max_traces` traces and `max_sessions` sessions are kept
//!   (least recently used are evicted in batches), and each trace keeps at most
//!   [`MAX_SOURCES`] sources, [`MAX_KINDS`] kinds and [`MAX_REDACTION_KEYS`] redaction keys.
//! - Events without a `trace_id` (or `session_id`) count as a trace (session) of their own.
//!
//! Failure policy: malformed fields (negative tokens, non-numeric cost, odd shapes) are
//! ignored, never an error: totals are best-effort context, not validation.

use std::collections::{BTreeMap, HashMap};

use rhai::{Array, Dynamic, Map};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sources;

/// Most distinct sources remembered per trace.
pub const MAX_SOURCES: usize = 256;
/// Most distinct span kinds counted per trace.
pub const MAX_KINDS: usize = 32;
/// Most distinct (place, PII type) redaction counters per trace.
pub const MAX_REDACTION_KEYS: usize = 64;

/// Totals of one trace, in log order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceTotals {
    pub span_count: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `input_tokens + output_tokens`, kept separately so fixtures can override it alone.
    pub tokens: u64,
    pub cost_usd: f64,
    /// Spans per kind, e.g. `{"llm": 3, "tool": 2}`.
    pub kinds: BTreeMap<String, u64>,
    /// PII found by the redactor, per place then type, e.g. `{"output": {"EMAIL": 1}}`.
    pub redaction: BTreeMap<String, BTreeMap<String, u64>>,
    /// URLs and document ids seen in retrieval/search outputs, first-seen order, no repeats.
    pub sources: Vec<String>,
}

/// Totals of one session (all traces sharing a `session_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionTotals {
    pub span_count: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

/// What a rule sees as `trace`: the trace totals plus the session totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceView {
    #[serde(flatten)]
    pub trace: TraceTotals,
    pub session: SessionTotals,
}

/// Token and cost figures of one event's `usage`, zero where absent or malformed.
fn usage(event: &Value) -> (u64, u64, f64) {
    let usage = &event["usage"];
    let count = |v: &Value| {
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    };
    let cost = usage["cost_usd"]
        .as_f64()
        .filter(|c| c.is_finite() && *c >= 0.0);
    (
        count(&usage["input_tokens"]).unwrap_or(0),
        count(&usage["output_tokens"]).unwrap_or(0),
        cost.unwrap_or(0.0),
    )
}

impl TraceTotals {
    /// Adds one event (its span, usage, kind, redaction counts and sources).
    pub fn apply(&mut self, event: &Value) {
        let (input, output, cost) = usage(event);
        self.span_count += 1;
        self.input_tokens = self.input_tokens.saturating_add(input);
        self.output_tokens = self.output_tokens.saturating_add(output);
        self.tokens = self.tokens.saturating_add(input.saturating_add(output));
        self.cost_usd += cost;
        let kind = event["kind"].as_str().unwrap_or("unknown");
        bump(&mut self.kinds, kind, 1, MAX_KINDS);
        if let Some(places) = event["redaction"].as_object() {
            for (place, counts) in places {
                let Some(counts) = counts.as_object() else {
                    continue;
                };
                for (pii, n) in counts {
                    let n = n.as_u64().unwrap_or(0);
                    let used: usize = self.redaction.values().map(BTreeMap::len).sum();
                    let room = used < MAX_REDACTION_KEYS;
                    if n == 0
                        || (!room
                            && !self
                                .redaction
                                .get(place)
                                .is_some_and(|m| m.contains_key(pii)))
                    {
                        continue;
                    }
                    let per_place = self.redaction.entry(place.clone()).or_default();
                    bump(per_place, pii, n, usize::MAX);
                }
            }
        }
        sources::collect(event, &mut self.sources, MAX_SOURCES);
    }
}

/// Adds `n` to `map[key]`, creating the key only while the map has fewer than `cap` keys.
fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64, cap: usize) {
    if let Some(v) = map.get_mut(key) {
        *v = v.saturating_add(n);
    } else if map.len() < cap {
        map.insert(key.to_owned(), n);
    }
}

impl SessionTotals {
    /// Adds one event's span, tokens and cost.
    pub fn apply(&mut self, event: &Value) {
        let (input, output, cost) = usage(event);
        self.span_count += 1;
        self.tokens = self.tokens.saturating_add(input.saturating_add(output));
        self.cost_usd += cost;
    }
}

fn int(n: u64) -> Dynamic {
    Dynamic::from_int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn counts(map: &BTreeMap<String, u64>) -> Dynamic {
    let mut out = Map::new();
    for (k, v) in map {
        out.insert(k.as_str().into(), int(*v));
    }
    Dynamic::from_map(out)
}

impl TraceView {
    /// The view as the read-only, shared Rhai map rules receive as `trace`.
    pub fn to_rhai(&self) -> Dynamic {
        self.to_rhai_fields(None)
    }

    /// [`TraceView::to_rhai`] with only the named fields (`None`: all): the rules in force
    /// read a few, and the kinds, redaction and sources maps cost allocations to build.
    pub fn to_rhai_fields(&self, fields: Option<&[&str]>) -> Dynamic {
        let want = |f: &str| fields.is_none_or(|l| l.contains(&f));
        let t = &self.trace;
        let mut m = Map::new();
        let mut put = |name: &str, value: &dyn Fn() -> Dynamic| {
            if want(name) {
                m.insert(name.into(), value());
            }
        };
        put("span_count", &|| int(t.span_count));
        put("input_tokens", &|| int(t.input_tokens));
        put("output_tokens", &|| int(t.output_tokens));
        put("tokens", &|| int(t.tokens));
        put("cost_usd", &|| Dynamic::from_float(t.cost_usd));
        put("kinds", &|| counts(&t.kinds));
        put("redaction", &|| {
            let mut redaction = Map::new();
            for (k, v) in &t.redaction {
                redaction.insert(k.as_str().into(), counts(v));
            }
            Dynamic::from_map(redaction)
        });
        put("sources", &|| {
            let sources = t
                .sources
                .iter()
                .map(|s| Dynamic::from(rhai::ImmutableString::from(s.as_str())));
            Dynamic::from_array(sources.collect::<Array>())
        });
        put("session", &|| {
            let s = &self.session;
            let mut session = Map::new();
            session.insert("span_count".into(), int(s.span_count));
            session.insert("tokens".into(), int(s.tokens));
            session.insert("cost_usd".into(), Dynamic::from_float(s.cost_usd));
            Dynamic::from_map(session)
        });
        Dynamic::from_map(m).into_read_only().into_shared()
    }
}

/// A stored total with the tick of its last use, for LRU eviction.
#[derive(Debug, Clone)]
struct Slot<T> {
    totals: T,
    last_used: u64,
}

/// Bounded LRU-ish map from `project\u{1f}id` to totals.
#[derive(Debug)]
struct Lru<T> {
    slots: HashMap<String, Slot<T>>,
    cap: usize,
}

impl<T: Default + Clone> Lru<T> {
    fn new(cap: usize) -> Self {
        Lru {
            slots: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Refreshes a held entry's tick; false when the key is not held.
    fn touch(&mut self, key: &str, tick: u64) -> bool {
        match self.slots.get_mut(key) {
            Some(slot) => {
                slot.last_used = tick;
                true
            }
            None => false,
        }
    }

    fn get(&self, key: &str) -> Option<&T> {
        self.slots.get(key).map(|s| &s.totals)
    }

    fn entry(&mut self, key: String, tick: u64) -> &mut T {
        if !self.slots.contains_key(&key) && self.slots.len() >= self.cap {
            self.evict_oldest();
        }
        let slot = self.slots.entry(key).or_insert_with(|| Slot {
            totals: T::default(),
            last_used: tick,
        });
        slot.last_used = tick;
        &mut slot.totals
    }

    /// Drops the least recently used eighth (at least one) so eviction is amortised.
    fn evict_oldest(&mut self) {
        let mut ticks: Vec<u64> = self.slots.values().map(|s| s.last_used).collect();
        let n = (ticks.len() / 8).max(1);
        let (_, cutoff, _) = ticks.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        self.slots.retain(|_, s| s.last_used > cutoff);
    }
}

fn key(event: &Value, field: &str) -> Option<String> {
    let id = event[field].as_str().filter(|s| !s.is_empty())?;
    let project = event["project"].as_str().unwrap_or("default");
    Some(format!("{project}\u{1f}{id}"))
}

/// Per-(project, trace) and per-(project, session) totals, kept by the pipeline's writer task.
#[derive(Debug)]
pub struct RunningTotals {
    traces: Lru<TraceTotals>,
    sessions: Lru<SessionTotals>,
    tick: u64,
}

impl Default for RunningTotals {
    /// 10 000 traces and 10 000 sessions.
    fn default() -> Self {
        RunningTotals::new(10_000, 10_000)
    }
}

impl RunningTotals {
    /// Keeps at most `max_traces` traces and `max_sessions` sessions (each at least 1).
    pub fn new(max_traces: usize, max_sessions: usize) -> Self {
        RunningTotals {
            traces: Lru::new(max_traces),
            sessions: Lru::new(max_sessions),
            tick: 0,
        }
    }

    /// Applies `event` to its trace and session totals and returns the updated view.
    pub fn observe(&mut self, event: &Value) -> TraceView {
        self.tick += 1;
        let trace = match key(event, "trace_id") {
            Some(k) => {
                let totals = self.traces.entry(k, self.tick);
                totals.apply(event);
                totals.clone()
            }
            None => fresh(event, TraceTotals::apply),
        };
        let session = match key(event, "session_id") {
            Some(k) => {
                let totals = self.sessions.entry(k, self.tick);
                totals.apply(event);
                totals.clone()
            }
            None => fresh(event, SessionTotals::apply),
        };
        TraceView { trace, session }
    }

    /// The view `observe` would return, without storing anything (for guard requests).
    pub fn peek(&self, event: &Value) -> TraceView {
        let mut trace = key(event, "trace_id")
            .and_then(|k| self.traces.get(&k).cloned())
            .unwrap_or_default();
        trace.apply(event);
        let mut session = key(event, "session_id")
            .and_then(|k| self.sessions.get(&k).cloned())
            .unwrap_or_default();
        session.apply(event);
        TraceView { trace, session }
    }

    /// Restores a trace's totals (e.g. from the store after a restart), replacing any held.
    pub fn seed_trace(&mut self, project: &str, trace_id: &str, totals: TraceTotals) {
        self.tick += 1;
        *self
            .traces
            .entry(format!("{project}\u{1f}{trace_id}"), self.tick) = totals;
    }

    /// Restores a session's totals, replacing any held.
    pub fn seed_session(&mut self, project: &str, session_id: &str, totals: SessionTotals) {
        self.tick += 1;
        *self
            .sessions
            .entry(format!("{project}\u{1f}{session_id}"), self.tick) = totals;
    }

    /// Forgets a finished trace, returning its totals.
    pub fn evict_trace(&mut self, project: &str, trace_id: &str) -> Option<TraceTotals> {
        let k = format!("{project}\u{1f}{trace_id}");
        self.traces.slots.remove(&k).map(|s| s.totals)
    }

    /// Forgets a session, returning its totals.
    pub fn evict_session(&mut self, project: &str, session_id: &str) -> Option<SessionTotals> {
        let k = format!("{project}\u{1f}{session_id}");
        self.sessions.slots.remove(&k).map(|s| s.totals)
    }

    /// Whether totals for this trace are held (a miss means: rebuild them from the log).
    pub fn knows_trace(&self, project: &str, trace_id: &str) -> bool {
        self.traces
            .slots
            .contains_key(&format!("{project}\u{1f}{trace_id}"))
    }

    /// Like [`Self::knows_trace`], and marks a held trace as just used, so totals a batch is
    /// about to read survive the evictions its own cache misses cause.
    pub fn touch_trace(&mut self, project: &str, trace_id: &str) -> bool {
        self.tick += 1;
        self.traces
            .touch(&format!("{project}\u{1f}{trace_id}"), self.tick)
    }

    /// Whether totals for this session are held, marking them as just used (see
    /// [`Self::touch_trace`]).
    pub fn touch_session(&mut self, project: &str, session_id: &str) -> bool {
        self.tick += 1;
        self.sessions
            .touch(&format!("{project}\u{1f}{session_id}"), self.tick)
    }

    /// Forgets everything (after a failed commit applied totals that were rolled back).
    pub fn clear(&mut self) {
        self.traces.slots.clear();
        self.sessions.slots.clear();
    }

    /// Number of traces currently held.
    pub fn trace_count(&self) -> usize {
        self.traces.slots.len()
    }

    /// Number of sessions currently held.
    pub fn session_count(&self) -> usize {
        self.sessions.slots.len()
    }
}

fn fresh<T: Default>(event: &Value, apply: fn(&mut T, &Value)) -> T {
    let mut t = T::default();
    apply(&mut t, event);
    t
}
