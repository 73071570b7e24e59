//! Loading, validating and evaluating a directory of `*.rhai` rules.
//!
//! Input: a directory of rule files (or `(id, source)` pairs). Output: a [`RuleSet`] —
//! compiled, validated rules sharing one sandboxed engine — whose [`RuleSet::evaluate`]
//! turns an event plus its [`TraceView`] into [`RuleOutcome`]s.
//!
//! Rule contract: a file defines `const DESCRIPTION = "…";`, `const SEVERITY = "…";` (info,
//! warning, high, critical), any threshold constants, and `fn check(event, trace)` returning
//! `()` or `#{severity?: "…", message?: "…"}`. An optional `const KINDS = ["tool", "guard"];`
//! names the event kinds the rule applies to: for any other kind `check` is not called at all
//! (and an event no rule applies to is never converted to Rhai). Without `KINDS` a rule sees
//! every event.
//!
//! How constants reach functions (Rhai functions are pure and cannot see globals): at load,
//! the file's top level runs once in a [`Scope`]; its constants are collected and the AST is
//! re-optimised with them, which propagates them into every function body (Rhai's "global
//! constants" pattern). Propagation cannot reach a constant used as the target of an index or
//! a method call (`MAP[k]`, `LIST.len()`), so the engine's variable resolver also serves the
//! running rule's constants by name. Top-level statements never run again after load.
//!
//! Invariants: rules run in file-name order; each `check` gets its own deadline and
//! operation budget; the event is converted to Rhai once per evaluation and shared read-only.
//! Failure policy: loading reports *every* problem in every file, each with file, line and
//! column where known. At evaluation, errors and limit hits become `RuleOutcome::RuleError`
//! for that rule only — never a panic, never a skipped later rule.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{
    AST, CallFnOptions, Dynamic, Engine, EvalAltResult, OptimizationLevel, Position, Scope,
};
use serde_json::Value;

use super::context::TraceView;
use super::engine::{self, Constants, EvalGuard};
use super::reads;
use super::{RuleOutcome, Severity};

/// One problem with one rule file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), location(*line, *column))]
pub struct RuleLoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl RuleLoadError {
    fn new(file: &Path, pos: Position, message: impl Into<String>) -> Self {
        RuleLoadError {
            file: file.to_owned(),
            line: pos.line(),
            column: pos.position(),
            message: message.into(),
        }
    }
}

/// A compiled, validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    id: String,
    description: String,
    severity: Severity,
    path: PathBuf,
    /// SHA-256 of the source this rule was compiled from (what a report names as in force,
    /// even after a broken edit on disk was rejected).
    source_digest: [u8; 32],
    ast: AST,
    /// The file's top-level constants, visible to every function through the resolver.
    constants: Constants,
    /// `const KINDS`: the event kinds `check` is called for; `None` = every kind.
    kinds: Option<Vec<String>>,
    /// Top-level fields `check` can read of the event and of the trace view (`None`: any),
    /// found in the source by [`reads::fields_read`]; only these are converted to Rhai.
    event_reads: Option<Vec<String>>,
    trace_reads: Option<Vec<String>>,
}

impl Rule {
    /// The event kinds the rule applies to (`const KINDS`); `None` = every kind.
    pub fn kinds(&self) -> Option<&[String]> {
        self.kinds.as_deref()
    }

    /// Whether `check` runs for an event of this kind (`None`: the event has no kind).
    fn applies_to(&self, kind: Option<&str>) -> bool {
        match (&self.kinds, kind) {
            (None, _) => true,
            (Some(kinds), Some(k)) => kinds.iter().any(|x| x == k),
            (Some(_), None) => false,
        }
    }

    /// The file stem, e.g. `cost_guard`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The file's `DESCRIPTION`.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The file's `SEVERITY`: the default for its violations.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// Where the rule was loaded from.
    /// SHA-256 of the source the rule was compiled from.
    pub fn source_digest(&self) -> &[u8; 32] {
        &self.source_digest
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The event and trace fields `check` can read, as found in its source (`None`: any,
    /// so the whole value is converted for it); see [`reads`].
    pub fn reads(&self) -> (Option<&[String]>, Option<&[String]>) {
        (self.event_reads.as_deref(), self.trace_reads.as_deref())
    }
}

/// Compiled rules plus the sandboxed engine that runs them. `Send + Sync`; share via `Arc`.
pub struct RuleSet {
    engine: Engine,
    rules: Vec<Rule>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// The same set without the named rules (ablation: "what if rule X were off?").
    pub fn without(mut self, ids: &[String]) -> RuleSet {
        self.rules.retain(|r| !ids.iter().any(|id| id == r.id()));
        self
    }

    /// Compiles every `*.rhai` file in `dir` (not recursive), in file-name order. Any problem
    /// in any file fails the whole set (`rules check`, ablation candidates).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, Vec<RuleLoadError>> {
        let (sources, errors) = read_dir_sources(dir.as_ref())?;
        Self::build(sources, errors)
    }

    /// Compiles every file of `dir` on its own: good files are in the returned set, every
    /// problem is returned beside it. A file that fails keeps its version in `previous` (same
    /// path), so one broken edit never switches off a rule that was protecting anything; a
    /// directory that cannot be read at all keeps `previous` whole.
    pub fn load_dir_per_file(
        dir: impl AsRef<Path>,
        previous: Option<&RuleSet>,
    ) -> (RuleSet, Vec<RuleLoadError>) {
        let kept =
            |previous: Option<&RuleSet>| previous.map(|p| p.rules.clone()).unwrap_or_default();
        let (sources, mut errors) = match read_dir_sources(dir.as_ref()) {
            Ok(found) => found,
            Err(errors) => {
                return (
                    RuleSet {
                        engine: engine::sandboxed_engine(),
                        rules: kept(previous),
                    },
                    errors,
                );
            }
        };
        // Files that could not be read keep their previous version too.
        let mut rules: Vec<Rule> = errors
            .iter()
            .filter_map(|e| previous?.rules.iter().find(|r| r.path == e.file).cloned())
            .collect();
        let engine = engine::sandboxed_engine();
        for (path, src) in sources {
            match compile_rule(&engine, &path, &src) {
                Ok(rule) => rules.push(rule),
                Err(mut e) => {
                    errors.append(&mut e);
                    if let Some(old) =
                        previous.and_then(|p| p.rules.iter().find(|r| r.path == path))
                    {
                        rules.push(old.clone());
                    }
                }
            }
        }
        rules.sort_by(|a, b| a.path.cmp(&b.path));
        (RuleSet { engine, rules }, errors)
    }

    /// Compiles rules from `(path, source)` pairs; the id is the path's file stem.
    pub fn from_sources<P, S>(
        sources: impl IntoIterator<Item = (P, S)>,
    ) -> Result<RuleSet, Vec<RuleLoadError>>
    where
        P: Into<PathBuf>,
        S: Into<String>,
    {
        let sources = sources
            .into_iter()
            .map(|(p, s)| (p.into(), s.into()))
            .collect();
        Self::build(sources, Vec::new())
    }

    fn build(
        sources: Vec<(PathBuf, String)>,
        mut errors: Vec<RuleLoadError>,
    ) -> Result<RuleSet, Vec<RuleLoadError>> {
        let engine = engine::sandboxed_engine();
        let mut rules: Vec<Rule> = Vec::new();
        for (path, src) in sources {
            match compile_rule(&engine, &path, &src) {
                Ok(rule) if rules.iter().any(|r| r.id == rule.id) => {
                    errors.push(RuleLoadError::new(
                        &path,
                        Position::NONE,
                        format!("duplicate rule id `{}`", rule.id),
                    ));
                }
                Ok(rule) => rules.push(rule),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(RuleSet { engine, rules })
        } else {
            Err(errors)
        }
    }

    /// The loaded rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Runs every rule's `check(event, trace)`; returns violations and rule errors only.
    pub fn evaluate(&self, event: &Value, trace: &TraceView) -> Vec<RuleOutcome> {
        let kind = event_kind(event);
        let mut applicable = self.rules.iter().filter(|r| r.applies_to(kind)).peekable();
        if applicable.peek().is_none() {
            return Vec::new();
        }
        let event_reads = reads::union(applicable.clone().map(|r| r.event_reads.as_deref()));
        let trace_reads = reads::union(applicable.clone().map(|r| r.trace_reads.as_deref()));
        let event = engine::to_rhai_fields(event, event_reads.as_deref());
        let trace = trace.to_rhai_fields(trace_reads.as_deref());
        applicable
            .filter_map(|rule| self.run(rule, &event, &trace))
            .collect()
    }

    /// Runs one rule by id; `None` if it does not exist or did not fire.
    pub fn evaluate_rule(
        &self,
        rule_id: &str,
        event: &Value,
        trace: &TraceView,
    ) -> Option<RuleOutcome> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.id == rule_id && r.applies_to(event_kind(event)))?;
        let event = engine::to_rhai_fields(
            event,
            reads::union([rule.event_reads.as_deref()]).as_deref(),
        );
        let trace = trace.to_rhai_fields(reads::union([rule.trace_reads.as_deref()]).as_deref());
        self.run(rule, &event, &trace)
    }

    fn run(&self, rule: &Rule, event: &Dynamic, trace: &Dynamic) -> Option<RuleOutcome> {
        let mut scope = Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let result = {
            let _guard = EvalGuard::arm(Some(Arc::clone(&rule.constants)));
            self.engine.call_fn_with_options::<Dynamic>(
                options,
                &mut scope,
                &rule.ast,
                "check",
                (event.clone(), trace.clone()),
            )
        };
        match result {
            Ok(value) => interpret(rule, value),
            Err(e) => Some(RuleOutcome::RuleError {
                rule_id: rule.id.clone(),
                message: describe(&e),
            }),
        }
    }
}

/// Rule files and their sources.
type Sources = Vec<(PathBuf, String)>;

/// The `*.rhai` files of `dir` (not recursive) in file-name order, with their sources, and a
/// problem for each file that could not be read. `Err` when the directory itself cannot.
fn read_dir_sources(dir: &Path) -> Result<(Sources, Vec<RuleLoadError>), Vec<RuleLoadError>> {
    let unreadable = |e: std::io::Error| {
        vec![RuleLoadError::new(
            dir,
            Position::NONE,
            format!("cannot read rules directory: {e}"),
        )]
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|e| e == "rhai") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut errors = Vec::new();
    let mut sources = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(src) => sources.push((path, src)),
            Err(e) => errors.push(RuleLoadError::new(
                &path,
                Position::NONE,
                format!("cannot read: {e}"),
            )),
        }
    }
    Ok((sources, errors))
}

fn event_kind(event: &Value) -> Option<&str> {
    event.get("kind").and_then(Value::as_str)
}

/// Turns `check`'s return value into an outcome (`None` = did not fire).
fn interpret(rule: &Rule, value: Dynamic) -> Option<RuleOutcome> {
    let error = |message: String| {
        Some(RuleOutcome::RuleError {
            rule_id: rule.id.clone(),
            message,
        })
    };
    if value.is_unit() {
        return None;
    }
    let Some(map) = value.read_lock::<rhai::Map>() else {
        return error(format!(
            "check returned {}; expected () or a map",
            value.type_name()
        ));
    };
    let severity = match map.get("severity") {
        None => rule.severity,
        Some(s) => match s
            .clone()
            .into_immutable_string()
            .ok()
            .and_then(|s| Severity::parse(&s))
        {
            Some(sev) => sev,
            None => return error(format!("check returned invalid severity {s}")),
        },
    };
    let message = match map.get("message") {
        None => rule.description.clone(),
        Some(m) if m.is_string() => m.to_string(),
        Some(m) => {
            return error(format!(
                "check returned a non-string message ({})",
                m.type_name()
            ));
        }
    };
    Some(RuleOutcome::Violation {
        rule_id: rule.id.clone(),
        severity,
        message,
    })
}

/// Error text for a failed evaluation; limit hits are named plainly.
fn describe(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorTerminated(..) => {
            format!(
                "{} ({} ms)",
                engine::DEADLINE_TOKEN,
                engine::EVAL_DEADLINE.as_millis()
            )
        }
        EvalAltResult::ErrorTooManyOperations(pos) => {
            format!(
                "rule exceeded {} operations at {pos}",
                engine::MAX_OPERATIONS
            )
        }
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => describe(inner),
        other => other.to_string(),
    }
}

fn compile_rule(engine: &Engine, path: &Path, src: &str) -> Result<Rule, Vec<RuleLoadError>> {
    let id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let err = |pos: Position, msg: String| vec![RuleLoadError::new(path, pos, msg)];
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(err(
            Position::NONE,
            "rule file name must be [A-Za-z0-9_-]+.rhai".into(),
        ));
    }
    let mut ast = engine.compile(src).map_err(|e| err(e.1, e.0.to_string()))?;
    ast.set_source(id.as_str());
    let mut top = Scope::new();
    {
        let _guard = EvalGuard::arm(None);
        engine
            .run_ast_with_scope(&mut top, &ast)
            .map_err(|e| err(e.position(), describe(&e)))?;
    }
    let mut errors = Vec::new();
    let mut constants = Scope::new();
    for (name, is_constant, value) in top.iter() {
        if is_constant {
            // Maps and arrays are shared: the optimiser propagates constants into function
            // bodies, and a propagated plain map would be deep-copied on every use.
            let value = if value.is_map() || value.is_array() {
                value.into_read_only().into_shared()
            } else {
                value
            };
            constants.push_constant_dynamic(name.to_owned(), value);
        } else {
            let msg = format!("top-level `let {name}` is invisible to functions; use `const`");
            errors.push(RuleLoadError::new(path, Position::NONE, msg));
        }
    }
    let text = |name: &str| constants.get_value::<rhai::ImmutableString>(name);
    let description = text("DESCRIPTION")
        .map(|s| s.to_string())
        .filter(|s| !s.trim().is_empty());
    if description.is_none() {
        errors.push(RuleLoadError::new(
            path,
            Position::NONE,
            "missing `const DESCRIPTION = \"…\";` (non-empty string)",
        ));
    }
    let severity = text("SEVERITY").and_then(|s| Severity::parse(&s));
    if severity.is_none() {
        let msg = "missing or invalid `const SEVERITY` (one of info, warning, high, critical)";
        errors.push(RuleLoadError::new(path, Position::NONE, msg));
    }
    let kinds = match constants.get("KINDS") {
        None => None,
        Some(v) => {
            let list = v.clone().into_typed_array::<rhai::ImmutableString>().ok();
            match list.filter(|l| !l.is_empty()) {
                Some(l) => Some(l.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                None => {
                    let msg = "`const KINDS` must be a non-empty array of event kinds (strings)";
                    errors.push(RuleLoadError::new(path, Position::NONE, msg));
                    None
                }
            }
        }
    };
    let check = ast
        .iter_functions()
        .find(|f| f.name == "check" && f.params.len() == 2);
    let [event_reads, trace_reads] = match &check {
        Some(f) => reads::fields_read(src, [f.params[0], f.params[1]]),
        None => [None, None],
    };
    if check.is_none() {
        errors.push(RuleLoadError::new(
            path,
            Position::NONE,
            "missing `fn check(event, trace)`",
        ));
    }
    let (Some(description), Some(severity), true) = (description, severity, errors.is_empty())
    else {
        return Err(errors);
    };
    let mut ast = engine.optimize_ast(&constants, ast, OptimizationLevel::Simple);
    ast.clear_statements();
    let constants = constants
        .iter()
        .map(|(name, _, value)| (name.into(), value.into_read_only().into_shared()))
        .collect::<rhai::Map>();
    Ok(Rule {
        id,
        description,
        severity,
        path: path.to_owned(),
        source_digest: {
            use sha2::{Digest, Sha256};
            Sha256::digest(src.as_bytes()).into()
        },
        ast,
        constants: Arc::new(constants),
        kinds,
        event_reads,
        trace_reads,
    })
}
