//! Unit tests of the rules stage: default rules via their fixtures, sandbox limits,
//! isolation between rules, load-error reporting, determinism and the totals.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// Path of the shipped rules.
fn default_rules_dir() -> PathBuf {
    rules_dir()
}

const HEADER: &str = "const DESCRIPTION = \"test rule\";\nconst SEVERITY = \"high\";\n";

fn one_rule(body: &str) -> RuleSet {
    RuleSet::from_sources([("t.rhai", format!("{HEADER}{body}"))]).expect("test rule compiles")
}

fn llm_event() -> Value {
    json!({"event_id": "e1", "project": "default", "trace_id": "t1", "span_id": "s1",
           "kind": "llm", "name": "chat", "session_id": "sess", "duration_ms": 1200.0,
           "status": "ok", "model": "gpt-4o", "input": "hi", "output": "hello",
           "usage": {"input_tokens": 10, "output_tokens": 20, "cost_usd": 0.001}})
}

fn only_error(outcomes: &[RuleOutcome]) -> &str {
    match outcomes {
        [RuleOutcome::RuleError { message, .. }] => message,
        other => panic!("expected one rule error, got {other:?}"),
    }
}

#[test]
fn default_rules_pass_their_fixtures() {
    let report = run_fixtures(default_rules_dir());
    assert!(report.is_success(), "{report}");
    assert!(report.passed() >= 12, "{report}");
    let rules = RuleSet::load_dir(default_rules_dir()).expect("default rules load");
    let ids: Vec<&str> = rules.rules().iter().map(Rule::id).collect();
    assert_eq!(
        ids,
        [
            "bulk_delete_prevention",
            "cite_sources",
            "cost_guard",
            "latency_slo",
            "pii_guard",
            "token_budget"
        ]
    );
}

/// Evaluates `rules` on the LLM event and asserts a limit stopped it well under a second.
fn evaluate_quickly(rules: &RuleSet) -> Vec<RuleOutcome> {
    let started = Instant::now();
    let outcomes = rules.evaluate(&llm_event(), &TraceView::default());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    outcomes
}

#[test]
fn infinite_loop_is_stopped_quickly() {
    let rules = one_rule("fn check(event, trace) { loop {} }");
    let outcomes = evaluate_quickly(&rules);
    let msg = only_error(&outcomes);
    assert!(
        msg.contains("operations") || msg.contains("deadline"),
        "{msg}"
    );
}

#[test]
fn huge_string_is_stopped_quickly() {
    let rules = one_rule(
        "fn check(event, trace) { let s = \"x\"; while s.len() < 100_000_000 { s += s; } s.len() }",
    );
    let outcomes = evaluate_quickly(&rules);
    assert!(
        only_error(&outcomes).to_lowercase().contains("string"),
        "{outcomes:?}"
    );
}

#[test]
fn wall_clock_deadline_stops_slow_rules() {
    // Few operations, each expensive: only the deadline can stop this within the op budget.
    let rules = one_rule(
        "fn check(event, trace) { let s = \"ab\"; s.pad(900000, \"c\"); let n = 0;
           for i in 0..50000 { n += s.index_of(\"zz\"); } n }",
    );
    let started = Instant::now();
    let outcomes = rules.evaluate(&llm_event(), &TraceView::default());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "took {:?}",
        started.elapsed()
    );
    assert!(only_error(&outcomes).contains("deadline"), "{outcomes:?}");
}

#[test]
fn rules_cannot_mutate_the_event_or_trace_for_later_rules() {
    let writer = format!("{HEADER}fn check(event, trace) {{ event.kind = \"tool\"; }}");
    let remover = format!("{HEADER}fn check(event, trace) {{ event.remove(\"kind\"); }}");
    let trace_writer = format!("{HEADER}fn check(event, trace) {{ trace.kinds.llm = 99; }}");
    let reader = format!(
        "{HEADER}fn check(event, trace) {{ #{{message: event.kind + \"/\" + trace.kinds.llm}} }}"
    );
    let rules = RuleSet::from_sources([
        ("a_writer.rhai", writer),
        ("b_remover.rhai", remover),
        ("c_trace.rhai", trace_writer),
        ("d_reader.rhai", reader),
    ])
    .expect("compiles");
    let view = RunningTotals::default().observe(&llm_event());
    let outcomes = rules.evaluate(&llm_event(), &view);
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    for o in &outcomes[..3] {
        assert!(
            matches!(o, RuleOutcome::RuleError { .. }),
            "mutation must be refused: {o:?}"
        );
    }
    assert_eq!(
        outcomes[3],
        RuleOutcome::Violation {
            rule_id: "d_reader".into(),
            severity: Severity::High,
            message: "llm/1".into()
        }
    );
}

#[test]
fn broken_files_report_every_error_with_position() {
    let errors = RuleSet::from_sources([
        (
            "bad.rhai",
            format!("{HEADER}fn check(event, trace) {{\n  let x = ;\n}}"),
        ),
        ("no_check.rhai", HEADER.to_string()),
        ("no_meta.rhai", "fn check(event, trace) { }".to_string()),
    ])
    .expect_err("must fail");
    let bad = errors
        .iter()
        .find(|e| e.file.ends_with("bad.rhai"))
        .expect("bad.rhai reported");
    assert_eq!((bad.line, bad.column.is_some()), (Some(4), true), "{bad}");
    assert!(bad.to_string().starts_with("bad.rhai:4:"), "{bad}");
    assert!(
        errors
            .iter()
            .any(|e| e.file.ends_with("no_check.rhai") && e.message.contains("check"))
    );
    let meta: Vec<_> = errors
        .iter()
        .filter(|e| e.file.ends_with("no_meta.rhai"))
        .collect();
    assert_eq!(
        meta.len(),
        2,
        "DESCRIPTION and SEVERITY both reported: {meta:?}"
    );
}

#[test]
fn load_dir_reports_files_on_disk() {
    let dir = std::env::temp_dir().join(format!("audittrail-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("ok.rhai"),
        format!("{HEADER}fn check(event, trace) {{ }}"),
    )
    .expect("write");
    std::fs::write(
        dir.join("broken.rhai"),
        "const DESCRIPTION = \"x\";\nfn check(e, t) { ( }",
    )
    .expect("write");
    let result = RuleSet::load_dir(&dir);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    let errors = result.expect_err("broken file");
    assert_eq!(errors[0].file, dir.join("broken.rhai"));
    assert_eq!(errors[0].line, Some(2));
}

#[test]
fn eval_and_import_are_unavailable() {
    let eval = RuleSet::from_sources([(
        "e.rhai",
        format!("{HEADER}fn check(event, trace) {{ eval(\"1\") }}"),
    )]);
    assert!(eval.is_err(), "eval must not compile");
    let import = RuleSet::from_sources([(
        "i.rhai",
        format!("import \"x\" as x;\n{HEADER}fn check(event, trace) {{}}"),
    )]);
    assert!(import.is_err(), "import must not compile");
    let sleep = one_rule("fn check(event, trace) { sleep(1); }");
    only_error(&sleep.evaluate(&llm_event(), &TraceView::default()));
}

#[test]
fn constants_reach_check_and_helper_functions() {
    let rules = one_rule(
        "const LIMIT = 5;\nconst WORDS = [\"chat\", \"x\"];\nconst SLO = #{llm: 1000};
         fn over(n) { n > LIMIT }
         fn known(name) { name in WORDS && contains(WORDS, name) }
         fn slo(kind) { if WORDS.len() == 2 { SLO[kind] } }
         fn check(event, trace) {
             if over(trace.tokens) && known(event.name) && WORDS.contains(\"x\") && slo(event.kind) == 1000 {
                 #{message: `limit ${LIMIT}`}
             }
         }",
    );
    let view = RunningTotals::default().observe(&llm_event());
    let outcomes = rules.evaluate(&llm_event(), &view);
    assert_eq!(
        outcomes,
        [RuleOutcome::Violation {
            rule_id: "t".into(),
            severity: Severity::High,
            message: "limit 5".into()
        }]
    );
}

#[test]
fn bad_return_values_become_rule_errors() {
    for body in [
        "fn check(event, trace) { 42 }",
        "fn check(event, trace) { #{severity: \"urgent\"} }",
    ] {
        only_error(&one_rule(body).evaluate(&llm_event(), &TraceView::default()));
    }
    let default =
        one_rule("fn check(event, trace) { #{} }").evaluate(&llm_event(), &TraceView::default());
    assert_eq!(
        default,
        [RuleOutcome::Violation {
            rule_id: "t".into(),
            severity: Severity::High,
            message: "test rule".into()
        }]
    );
}

#[test]
fn evaluation_is_deterministic() {
    let rules = RuleSet::load_dir(default_rules_dir()).expect("default rules load");
    let mut totals = RunningTotals::default();
    let event = json!({"kind": "tool", "name": "sql", "trace_id": "t", "input": {"sql": "DELETE FROM users"},
                       "usage": {"cost_usd": 9.0, "input_tokens": 300000}, "duration_ms": 99999});
    let view = totals.observe(&event);
    let first = rules.evaluate(&event, &view);
    assert!(first.len() >= 3, "{first:?}");
    for _ in 0..20 {
        assert_eq!(rules.evaluate(&event, &view), first);
    }
}

#[test]
fn totals_accumulate_and_guards_do_not_move_them() {
    let mut totals = RunningTotals::new(2, 2);
    let e = llm_event();
    totals.observe(&e);
    let view = totals.observe(&e);
    assert_eq!(
        (
            view.trace.span_count,
            view.trace.tokens,
            view.session.tokens
        ),
        (2, 60, 60)
    );
    assert_eq!(view.trace.kinds.get("llm"), Some(&2));
    let guard =
        json!({"kind": "guard", "trace_id": "t1", "session_id": "sess", "project": "default"});
    assert_eq!(totals.peek(&guard).trace.span_count, 3);
    assert_eq!(
        totals.peek(&guard).trace.span_count,
        3,
        "peek stores nothing"
    );
    for t in ["a", "b", "c"] {
        totals.observe(&json!({"trace_id": t, "kind": "llm"}));
    }
    assert!(totals.trace_count() <= 2, "bounded");
}

#[test]
fn retrieval_sources_are_collected() {
    let mut totals = RunningTotals::default();
    totals.observe(
        &json!({"trace_id": "t", "kind": "retrieval", "output": {"documents": [
        {"id": "doc-1", "url": "https://a.example/x"}, {"source": "kb-7"}]}}),
    );
    let view = totals.observe(
        &json!({"trace_id": "t", "kind": "tool", "name": "web_search",
        "output": "see https://b.example/page, and (https://c.example)."}),
    );
    assert_eq!(
        view.trace.sources,
        [
            "https://a.example/x",
            "doc-1",
            "kb-7",
            "https://b.example/page",
            "https://c.example"
        ]
    );
}

#[test]
fn decision_follows_the_worst_severity() {
    let v = |severity| RuleOutcome::Violation {
        rule_id: "r".into(),
        severity,
        message: String::new(),
    };
    let err = RuleOutcome::RuleError {
        rule_id: "r".into(),
        message: String::new(),
    };
    assert_eq!(decision(&[]), Decision::Allow);
    assert_eq!(decision(&[v(Severity::Info), err.clone()]), Decision::Allow);
    assert_eq!(decision(&[v(Severity::Warning)]), Decision::Warn);
    assert_eq!(
        decision(&[v(Severity::High), v(Severity::Critical)]),
        Decision::Deny
    );
    assert_eq!(Severity::parse(" Critical "), Some(Severity::Critical));
    assert!(Severity::Info < Severity::Warning && Severity::High < Severity::Critical);
}

#[test]
fn ruleset_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
}

#[test]
fn native_helpers_behave_like_the_script_versions() {
    let rules = one_rule(
        "fn check(event, trace) {
             let texts = [];
             texts.append_strings(event.input, 3, 2);
             let deep = [];
             deep.append_strings([[[\"x\"]]], 10, 2);
             let text = text_of(event.output, 1);
             let ok = texts == [\"a\", \"c\", \"d\"] && deep == []
                 && text == \"hi\\n\\n\\n\" && text_of(5, 4) == \"\"
                 && \"drop table\".contains_any([\"x\", \"drop\"]) && !\"ok\".contains_any([\"no\", 1])
                 && is_number(1) && is_number(1.5) && !is_number(\"1\")
                 && is_string(event.kind) && is_map(event.input) && is_array(event.input.list);
             if !ok { return #{message: `${texts} ${deep} ${text}`}; }
         }",
    );
    let event = json!({"kind": "tool", "input": {"list": ["a", ["b", ["z"]]], "s": "c", "t": "d"},
                       "output": {"a": "hi", "b": {"c": {"d": "too deep"}}}});
    assert_eq!(rules.evaluate(&event, &TraceView::default()), []);
    // `append_strings` mutates its target, so it must be refused on the read-only event.
    let writer = format!(
        "{HEADER}fn check(event, trace) {{ event.input.list.append_strings(\"x\", 9, 9); }}"
    );
    let reader =
        format!("{HEADER}fn check(event, trace) {{ #{{message: `${{event.input.list}}`}} }}");
    let rules = RuleSet::from_sources([("a.rhai", writer), ("b.rhai", reader)]).unwrap();
    let outcomes = rules.evaluate(&event, &TraceView::default());
    assert!(
        matches!(&outcomes[0], RuleOutcome::RuleError { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], RuleOutcome::Violation { message, .. } if !message.contains('x')),
        "{outcomes:?}"
    );
}

#[test]
fn kinds_limits_which_events_a_rule_sees() {
    let set = one_rule(
        "const KINDS = [\"tool\", \"guard\"];\nfn check(event, trace) { #{ message: `saw ${event.kind}` } }",
    );
    assert_eq!(
        set.rules()[0].kinds(),
        Some(&["tool".to_owned(), "guard".to_owned()][..])
    );
    let view = TraceView::default();
    assert!(
        set.evaluate(&llm_event(), &view).is_empty(),
        "llm is not in KINDS"
    );
    let mut tool = llm_event();
    tool["kind"] = json!("tool");
    match set.evaluate(&tool, &view).as_slice() {
        [RuleOutcome::Violation { message, .. }] => assert_eq!(message, "saw tool"),
        other => panic!("expected the rule to fire on a tool call, got {other:?}"),
    }
    let mut no_kind = llm_event();
    no_kind.as_object_mut().map(|m| m.remove("kind"));
    assert!(set.evaluate(&no_kind, &view).is_empty());
    // without KINDS a rule sees every kind
    let all = one_rule("fn check(event, trace) { #{ message: \"x\" } }");
    assert_eq!(all.rules()[0].kinds(), None);
    assert_eq!(all.evaluate(&llm_event(), &view).len(), 1);
}

#[test]
fn invalid_kinds_is_a_load_error() {
    for bad in [
        "const KINDS = \"tool\";",
        "const KINDS = [];",
        "const KINDS = [1, 2];",
    ] {
        let errs = RuleSet::from_sources([(
            "t.rhai",
            format!("{HEADER}{bad}\nfn check(event, trace) {{}}"),
        )])
        .expect_err(bad);
        assert!(
            errs.iter().any(|e| e.message.contains("KINDS")),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn touched_totals_survive_the_next_eviction() {
    // The writer touches every held trace of a batch before seeding the missing ones; the
    // seeding evicts the oldest eighth, which must not include what was just touched.
    let mut totals = RunningTotals::new(8, 8);
    for t in 0..8 {
        totals.seed_trace("p", &format!("t{t}"), TraceTotals::default());
    }
    assert!(totals.touch_trace("p", "t0"));
    assert!(!totals.touch_trace("p", "missing"), "touch never creates");
    totals.seed_trace("p", "t8", TraceTotals::default());
    assert!(totals.knows_trace("p", "t0"), "the touched trace was kept");
    assert!(
        !totals.knows_trace("p", "t1"),
        "the least recently used went"
    );
    assert!(totals.knows_trace("p", "t8"));
}

#[test]
fn rules_see_every_field_they_read_and_the_shipped_ones_read_few() {
    // Each rule gets a map with the fields some applicable rule reads: a rule that reads
    // `input` sees it next to one that reads only `kind`, and a rule that looks at the
    // event as a whole sees every field.
    let rules = RuleSet::from_sources([
        (
            "a.rhai",
            format!("{HEADER}fn check(event, trace) {{ if event.kind == \"x\" {{ #{{}} }} }}"),
        ),
        (
            "b.rhai",
            format!(
                "{HEADER}fn check(event, trace) {{ #{{ message: `${{event.input}} ${{trace.tokens}}` }} }}"
            ),
        ),
        (
            "c.rhai",
            format!(
                "{HEADER}fn check(e, t) {{ #{{ message: `${{e.keys().len()}} ${{t.keys().len()}}` }} }}"
            ),
        ),
    ])
    .expect("rules compile");
    let messages: Vec<String> = rules
        .evaluate(&llm_event(), &TraceView::default())
        .into_iter()
        .map(|o| match o {
            RuleOutcome::Violation { message, .. } => message,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let fields = llm_event().as_object().unwrap().len();
    assert_eq!(messages, ["hi 0".to_string(), format!("{fields} 9")]);

    let shipped = RuleSet::load_dir(default_rules_dir()).expect("default rules load");
    for rule in shipped.rules() {
        let (Some(event), Some(trace)) = rule.reads() else {
            panic!(
                "{} reads the whole event or trace: {:?}",
                rule.id(),
                rule.reads()
            );
        };
        assert!(
            !event.is_empty() && event.len() <= 8,
            "{}: {event:?}",
            rule.id()
        );
        assert!(trace.len() <= 2, "{}: {trace:?}", rule.id());
    }
}
