//! The one place a sandboxed Rhai [`Engine`] is built, plus the JSON → Rhai conversion.
//!
//! Input: nothing (limits are the constants below). Output: an [`Engine`] that rule scripts
//! are compiled and run with, and [`to_rhai`], which turns a `serde_json::Value` into a
//! read-only, cheaply clonable [`Dynamic`].
//!
//! Invariants:
//! - The engine starts from [`Engine::new_raw`] and gets only side-effect-free packages:
//!   arithmetic, logic, strings, arrays, maps, maths, iterators and function pointers. The
//!   language-core package is left out on purpose: it carries `sleep`, `exit` and
//!   `parse_json`. There is no time package and no module resolver; the `eval` and `import`
//!   keywords are disabled so scripts using them fail to compile. `print`/`debug` do nothing.
//! - Every evaluation is bounded: operations, call depth, expression depth, string, array and
//!   map sizes, and a wall-clock deadline ([`EVAL_DEADLINE`]) checked from `on_progress`.
//! - A few generic helpers are native (see [`register_helpers`]): they only read their
//!   arguments (except `append_strings`, which appends to the script's own array), never
//!   touch the event, and are bounded by the sandbox's array and string limits.
//! - Values handed to scripts are read-only *and* shared (read-only first, then shared): a
//!   clone is an `Arc` bump, and any attempt to assign to or mutate them is a runtime error,
//!   so no rule can change what a later rule sees.
//!
//! Failure policy: building the engine cannot fail. Limit hits surface as ordinary Rhai
//! errors, which callers turn into `RuleOutcome::RuleError`.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    Array, Dynamic, Engine, FuncRegistration, ImmutableString, Map, Module, OptimizationLevel,
};
use serde_json::Value;

/// Most Rhai operations one rule evaluation may perform (a tight loop of ~200k ops takes a
/// few milliseconds; real rules use a few hundred).
pub const MAX_OPERATIONS: u64 = 200_000;
/// Deepest script function call nesting.
pub const MAX_CALL_LEVELS: usize = 32;
/// Deepest expression nesting at global level and inside functions.
pub const MAX_EXPR_DEPTH: usize = 64;
/// Largest string a script may build (bytes).
pub const MAX_STRING_SIZE: usize = 1024 * 1024;
/// Largest array a script may build.
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// Largest object map a script may build.
pub const MAX_MAP_SIZE: usize = 10_000;
/// Most variables in scope at once.
pub const MAX_VARIABLES: usize = 256;
/// Most functions one rule file may define.
pub const MAX_FUNCTIONS: usize = 64;
/// Wall-clock budget of one rule evaluation (one `check` call, or a file's top level at load).
pub const EVAL_DEADLINE: Duration = Duration::from_millis(50);

/// How often (in operations) the progress callback reads the clock; reading it on every
/// operation would cost more than the typical rule.
const CLOCK_EVERY_OPS: u64 = 256;

/// A rule file's top-level constants (values read-only and shared, so lookups are cheap).
pub(super) type Constants = Arc<Map>;

thread_local! {
    /// Deadline of the evaluation running on this thread; `None` when none is running.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Constants of the rule running on this thread, for the variable resolver.
    static CONSTANTS: RefCell<Option<Constants>> = const { RefCell::new(None) };
}

/// Arms the per-thread deadline (and the running rule's constants) for one evaluation and
/// disarms them when dropped, so an early-returning caller cannot leave stale state behind.
pub(super) struct EvalGuard(());

impl EvalGuard {
    pub(super) fn arm(constants: Option<Constants>) -> Self {
        DEADLINE.with(|d| d.set(Some(Instant::now() + EVAL_DEADLINE)));
        CONSTANTS.with(|c| *c.borrow_mut() = constants);
        EvalGuard(())
    }
}

impl Drop for EvalGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
        CONSTANTS.with(|c| *c.borrow_mut() = None);
    }
}

/// Value `on_progress` returns to stop a script; recognised in error messages.
pub(super) const DEADLINE_TOKEN: &str = "rule exceeded its wall-clock deadline";

/// Builds the sandboxed engine. Compilation uses no optimisation: the rule loader
/// re-optimises each AST once its constants are known (see `ruleset.rs`).
pub(super) fn sandboxed_engine() -> Engine {
    let mut engine = Engine::new_raw();
    // The packages are merged into one module: Rhai searches every global module for each
    // native call it has not cached yet (and a fresh evaluation has nothing cached), so one
    // module instead of nine makes every native call cheaper. Later packages override earlier
    // ones on a clash, as they would when registered one by one.
    let mut packages = Module::new();
    for package in [
        ArithmeticPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicIteratorPackage::new().as_shared_module(),
        BasicFnPackage::new().as_shared_module(),
    ] {
        packages.combine(Module::clone(&package));
    }
    packages.build_index();
    engine.register_global_module(packages.into());
    register_helpers(&mut engine);
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_variables(MAX_VARIABLES)
        .set_max_functions(MAX_FUNCTIONS)
        .set_max_modules(0)
        .set_optimization_level(OptimizationLevel::None);
    engine.on_progress(|ops| {
        if ops % CLOCK_EVERY_OPS != 0 {
            return None;
        }
        let expired = DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() >= at));
        expired.then(|| Dynamic::from(DEADLINE_TOKEN))
    });
    // Fallback for constants the optimiser could not propagate into helper functions
    // (`LIST[i]`, `MAP.method()`): names the parser could not bind to a local (index 0) are
    // looked up in the running rule's constants. Locals never reach the map lookup.
    // `on_var` is flagged `deprecated` only to mark it as a volatile API, not a removed one.
    #[allow(deprecated)]
    engine.on_var(|name, index, _| {
        if index != 0 {
            return Ok(None);
        }
        Ok(CONSTANTS.with(|c| c.borrow().as_ref().and_then(|m| m.get(name).cloned())))
    });
    engine
}

/// Generic helpers that rules would otherwise write as script loops (a script function call
/// costs about a microsecond; these are native and take their arguments by reference):
/// - `is_number(x)`, `is_string(x)`, `is_map(x)`, `is_array(x)`: `type_of(x)` tests without
///   building the type name;
/// - `text.contains_any(words)`: whether any string in `words` occurs in `text`;
/// - `map.lookup(key)`: `map[key]` when `key` is a string, else `()` (no error);
/// - `text.bracketed(max_len)`: the text inside each `[` … `]` pair (from each `[` to the
///   next `]` before another `[`) that is 1 to `max_len` characters long, in order;
/// - `list.append_strings(value, max_len, max_depth)`: appends every string inside `value`
///   (`value` itself at depth 0, map values and array items one level deeper, nothing deeper
///   than `max_depth`) in map-key order, stopping once `list` holds `max_len` items;
/// - `text_of(value, max_depth)`: a string as is; a map's values or an array's items (up to
///   `max_depth` levels down) as their text, each followed by a newline; anything else `""`.
fn register_helpers(engine: &mut Engine) {
    engine.register_fn("is_number", |x: Dynamic| x.is_int() || x.is_float());
    engine.register_fn("is_string", |x: Dynamic| x.is_string());
    engine.register_fn("is_map", |x: Dynamic| x.is_map());
    engine.register_fn("is_array", |x: Dynamic| x.is_array());
    engine.register_fn("contains_any", |text: &str, words: Array| {
        words.iter().any(|w| {
            w.read_lock::<ImmutableString>()
                .is_some_and(|w| text.contains(w.as_str()))
        })
    });
    // Not pure: it mutates its first argument, so Rhai must refuse it on read-only values
    // (functions registered with `register_fn` count as pure).
    FuncRegistration::new("append_strings")
        .with_purity(false)
        .register_into_engine(
            engine,
            |list: &mut Array, value: Dynamic, max_len: i64, max_depth: i64| {
                let max_len = usize::try_from(max_len).unwrap_or(0).min(MAX_ARRAY_SIZE);
                append_strings(list, &value, 0, max_depth, max_len);
            },
        );
    engine.register_fn("lookup", |map: &mut Map, key: Dynamic| {
        key.read_lock::<ImmutableString>()
            .and_then(|k| map.get(k.as_str()).cloned())
            .unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("bracketed", |text: &str, max_len: i64| {
        let max_len = usize::try_from(max_len).unwrap_or(0);
        text.split('[')
            .skip(1)
            .filter_map(|part| {
                let inner = &part[..part.find(']')?];
                let len = inner.chars().count();
                (1..=max_len)
                    .contains(&len)
                    .then(|| Dynamic::from(ImmutableString::from(inner)))
            })
            .collect::<Array>()
    });
    engine.register_fn(
        "text_of",
        |value: Dynamic, max_depth: i64| -> Result<ImmutableString, Box<rhai::EvalAltResult>> {
            if let Some(s) = value.read_lock::<ImmutableString>() {
                return Ok(s.clone());
            }
            let mut out = String::new();
            text_of(&value, 0, max_depth, &mut out)?;
            Ok(out.into())
        },
    );
}

fn append_strings(list: &mut Array, value: &Dynamic, depth: i64, max_depth: i64, max_len: usize) {
    if list.len() >= max_len || depth > max_depth {
        return;
    }
    if value.is_string() {
        list.push(value.clone());
    } else if let Some(map) = value.read_lock::<Map>() {
        for v in map.values() {
            append_strings(list, v, depth + 1, max_depth, max_len);
        }
    } else if let Some(items) = value.read_lock::<Array>() {
        for v in items.iter() {
            append_strings(list, v, depth + 1, max_depth, max_len);
        }
    }
}

fn text_of(
    value: &Dynamic,
    depth: i64,
    max_depth: i64,
    out: &mut String,
) -> Result<(), Box<rhai::EvalAltResult>> {
    if let Some(s) = value.read_lock::<ImmutableString>() {
        out.push_str(&s);
    } else if depth <= max_depth {
        if let Some(map) = value.read_lock::<Map>() {
            for v in map.values() {
                text_of(v, depth + 1, max_depth, out)?;
                out.push('\n');
            }
        } else if let Some(items) = value.read_lock::<Array>() {
            for v in items.iter() {
                text_of(v, depth + 1, max_depth, out)?;
                out.push('\n');
            }
        }
    }
    if out.len() > MAX_STRING_SIZE {
        return Err(rhai::EvalAltResult::ErrorDataTooLarge(
            "Length of string".into(),
            rhai::Position::NONE,
        )
        .into());
    }
    Ok(())
}

/// Converts JSON into a read-only, shared Rhai value (see the module invariants).
pub(super) fn to_rhai(value: &Value) -> Dynamic {
    convert(value).into_read_only().into_shared()
}

/// [`to_rhai`] of an object keeping only the named top-level fields (`None`: all of them);
/// values that are not objects are converted whole.
pub(super) fn to_rhai_fields(value: &Value, fields: Option<&[&str]>) -> Dynamic {
    let (Some(fields), Value::Object(all)) = (fields, value) else {
        return to_rhai(value);
    };
    let mut map = Map::new();
    for f in fields {
        if let Some(v) = all.get(*f) {
            map.insert((*f).into(), convert(v));
        }
    }
    Dynamic::from_map(map).into_read_only().into_shared()
}

/// Plain JSON → Rhai conversion: null → `()`, integers that fit → `i64`, other numbers →
/// `f64`, objects → maps. Hand-written because it is ~3× faster than going through serde.
pub(super) fn convert(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => n.as_f64().map_or(Dynamic::UNIT, Dynamic::from_float),
        },
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(items) => Dynamic::from_array(items.iter().map(convert).collect::<Array>()),
        Value::Object(fields) => {
            // Inserting one by one is cheaper than `collect` (which buffers and sorts) for
            // the small maps events are made of.
            let mut map = Map::new();
            for (k, v) in fields {
                map.insert(k.as_str().into(), convert(v));
            }
            Dynamic::from_map(map)
        }
    }
}
