//! Which top-level fields of its arguments a rule reads, from the rule's source text.
//!
//! Input: a rule file's source and the names of `check`'s parameters (`event`, `trace`).
//! Output, per parameter: the field names the rule reads as `param.field` /
//! `param?.field`, or `None` when it may read anything (the parameter used any other way: passed whole to a
//! function, indexed with `[..]`, called as a method, interpolated, reassigned, ...).
//!
//! Why: converting an event to Rhai costs about as much as parsing its JSON, and most
//! rules read a handful of small fields (`kind`, `usage`, `duration_ms`) while the bulky
//! ones (`input`, `output`) matter to one rule and one kind. Rules are then given a map
//! holding only the fields some applicable rule reads.
//!
//! Invariant (soundness): every field the rule can read is in the list. The scan skips only
//! what Rhai's lexer would: comments and literal text (the code inside a template's `${…}`
//! is scanned, so `${event.name}` counts). Any occurrence of the parameter's name that is
//! not a plain property read gives `None`, and so does source the scan cannot follow (a raw
//! string). Erring can only add fields or give `None`, which costs speed, not correctness.

/// Byte ranges `[start, end)` of the source.
type Ranges = Vec<(usize, usize)>;

/// Byte ranges of comments (`//`, nested `/* */`) and of literal text (`"…"`, `'…'` with
/// backslash escapes; backtick templates outside their `${…}` code), following Rhai's
/// string syntax. `None` at a `#` other than a map literal's `#{` (raw strings `#"…"#`,
/// a shebang line), which it does not follow.
fn lex(src: &str) -> Option<(Ranges, Ranges)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut text = Vec::new();
    // brace depth of each open `${`: `}` at depth 0 returns to the template
    let mut interp: Vec<usize> = Vec::new();
    let mut i = 0;
    // skip a quoted literal starting at `i` (the opening quote), honouring `\` escapes
    let quoted = |mut i: usize, q: u8| {
        i += 1;
        while i < b.len() && b[i] != q {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i + 1
    };
    // skip template text from `i` (just after a backtick or a closing `}`); returns the
    // position after the closing backtick, or after an opening `${` (then `true`)
    let template = |mut i: usize| {
        while i < b.len() {
            match b[i] {
                b'`' if b.get(i + 1) == Some(&b'`') => i += 2,
                b'`' => return (i + 1, false),
                b'\\' if b.get(i + 1) == Some(&b'$') => i += 2,
                b'$' if b.get(i + 1) == Some(&b'{') => return (i + 2, true),
                _ => i += 1,
            }
        }
        (i, false)
    };
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'/', Some(b'/')) => {
                // Rhai ends a line comment at `\r` as well as `\n`
                let e = memchr::memchr2(b'\n', b'\r', &b[i..]).map_or(b.len(), |p| i + p);
                out.push((i, e));
                i = e;
            }
            (b'/', Some(b'*')) => {
                let (s, mut depth) = (i, 0usize);
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push((s, i));
            }
            (b'"' | b'\'', _) => {
                let e = quoted(i, b[i]);
                text.push((i, e));
                i = e;
            }
            // raw strings (`#"…"#`), a shebang line, reserved `#`: not followed
            (b'#', next) if next != Some(&b'{') => return None,
            (b'`', _) => {
                let (e, code) = template(i + 1);
                text.push((i, e));
                i = e;
                if code {
                    interp.push(0);
                }
            }
            (b'{', _) => {
                if let Some(d) = interp.last_mut() {
                    *d += 1;
                }
                i += 1;
            }
            (b'}', _) => {
                i += 1;
                match interp.last_mut() {
                    Some(0) => {
                        interp.pop();
                        let (e, code) = template(i);
                        text.push((i, e));
                        i = e;
                        if code {
                            interp.push(0);
                        }
                    }
                    Some(d) => *d -= 1,
                    None => {}
                }
            }
            _ => i += 1,
        }
    }
    Some((out, text))
}

/// Fields read from each of `params` in `src`, sorted and deduplicated; `None` = the whole
/// value. Comments and literal text are skipped (see [`lex`]); `${…}` code in templates is
/// not. The source is lexed once for all the parameters.
pub(crate) fn fields_read<const N: usize>(
    src: &str,
    params: [&str; N],
) -> [Option<Vec<String>>; N] {
    match Scan::new(src) {
        Some(scan) => params.map(|p| scan.fields_read(p)),
        None => std::array::from_fn(|_| None),
    }
}

fn ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn in_any(ranges: &[(usize, usize)], at: usize) -> bool {
    ranges.iter().any(|&(o, c)| o <= at && at < c)
}

/// A rule's source with its comments, literal text and `fn` parameter lists located.
struct Scan<'a> {
    src: &'a str,
    comments: Ranges,
    literals: Ranges,
    /// Parameter lists of `fn name(a, b)`: they declare names rather than use them.
    headers: Ranges,
}

impl<'a> Scan<'a> {
    fn new(src: &'a str) -> Option<Self> {
        let (comments, literals) = lex(src)?;
        let mut scan = Scan {
            src,
            comments,
            literals,
            headers: Vec::new(),
        };
        let b = src.as_bytes();
        let mut at = 0;
        while let Some(p) = src.get(at..).and_then(|r| r.find("fn")) {
            let s = at + p;
            at = s + 2;
            if (s > 0 && ident(b[s - 1]))
                || !b.get(at).is_some_and(u8::is_ascii_whitespace)
                || in_any(&scan.comments, s)
                || in_any(&scan.literals, s)
            {
                continue;
            }
            let mut i = scan.skip_trivia(at);
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let i = scan.skip_trivia(i);
            if b.get(i) == Some(&b'(')
                && let Some(close) = src[i..].find(')')
            {
                scan.headers.push((i, i + close));
            }
        }
        Some(scan)
    }

    /// Whitespace and comments from `i` on: Rhai's lexer drops both between tokens.
    fn skip_trivia(&self, mut i: usize) -> usize {
        let b = self.src.as_bytes();
        loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            match self.comments.iter().find(|&&(o, _)| o == i) {
                Some(&(_, c)) => i = c,
                None => return i,
            }
        }
    }

    fn fields_read(&self, param: &str) -> Option<Vec<String>> {
        let (src, b) = (self.src, self.src.as_bytes());
        if param.is_empty() || !param.bytes().all(ident) {
            return None;
        }
        let mut fields: Vec<String> = Vec::new();
        let mut from = 0;
        while let Some(p) = src.get(from..).and_then(|r| r.find(param)) {
            let s = from + p;
            let e = s + param.len();
            from = e;
            if self.headers.iter().any(|&(o, c)| o < s && e <= c)
                || in_any(&self.comments, s)
                || in_any(&self.literals, s)
            {
                continue;
            }
            // a whole identifier only (`events`, `my_event` are other names); Rhai code has
            // no non-ASCII identifiers, but should one touch the name, assume the worst
            let before = s.checked_sub(1).map(|i| b[i]);
            let after = b.get(e).copied();
            if before.is_some_and(ident) || after.is_some_and(ident) {
                continue;
            }
            if before.is_some_and(|c| c >= 0x80) || after.is_some_and(|c| c >= 0x80) {
                return None;
            }
            // `param.field` or `param?.field`, then not a call `param.field(`
            let mut i = self.skip_trivia(e);
            if b.get(i) == Some(&b'?') {
                i += 1;
            }
            if b.get(i) != Some(&b'.') {
                return None;
            }
            let fs = self.skip_trivia(i + 1);
            let mut fe = fs;
            while fe < b.len() && ident(b[fe]) {
                fe += 1;
            }
            if fe == fs || b[fs].is_ascii_digit() || b.get(self.skip_trivia(fe)) == Some(&b'(') {
                return None;
            }
            let name = &src[fs..fe];
            if !fields.iter().any(|f| f == name) {
                fields.push(name.to_owned());
            }
        }
        fields.sort();
        Some(fields)
    }
}

/// The union of several rules' reads; `None` as soon as one rule may read anything.
pub(super) fn union<'a>(
    reads: impl IntoIterator<Item = Option<&'a [String]>>,
) -> Option<Vec<&'a str>> {
    let mut all: Vec<&str> = Vec::new();
    for r in reads {
        for f in r? {
            if !all.contains(&f.as_str()) {
                all.push(f);
            }
        }
    }
    Some(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(src: &str) -> Option<Vec<String>> {
        let [event] = fields_read(src, ["event"]);
        event
    }

    #[test]
    fn property_reads_are_collected() {
        let src = r#"
            fn check(event, trace) {
                if event.kind != "tool" { return; }
                let c = event?.usage?.cost_usd ?? 0.0;
                let n = event . name;
                #{ message: `${event.model} took ${event.duration_ms}` }
            }"#;
        assert_eq!(
            reads(src).unwrap(),
            ["duration_ms", "kind", "model", "name", "usage"]
        );
        // other identifiers that merely contain the name are not reads
        assert_eq!(
            reads("fn check(event, trace) { let events = 1; my_event.x; event.kind }").unwrap(),
            ["kind"]
        );
        // declarations are not uses, in any function's header
        assert_eq!(
            reads("fn helper(x, event) { event.input }\nfn  check( event ,trace ) { 1 }").unwrap(),
            ["input"]
        );
    }

    #[test]
    fn comments_are_skipped_but_never_code() {
        let src = "// the event that crosses the budget\n\
                   /* an event /* nested event */ still a comment: event */\n\
                   fn check(event, trace) {\n\
                   let u = \"https://x\"; let k = event.kind; // event\n\
                   let t = `a // ${event.name} ${ #{a: 1}.a } // ${event.model}`; event.input\n\
                   let c = '\\''; event.output /* event */ }";
        assert_eq!(
            reads(src).unwrap(),
            ["input", "kind", "model", "name", "output"]
        );
        // comments between the tokens, as Rhai's lexer drops them
        assert_eq!(
            reads("fn check(event, trace) { event /* a */ . /* b */ kind + event // c\n?.name }")
                .unwrap(),
            ["kind", "name"]
        );
        assert_eq!(
            reads("fn check(event, trace) { event.get /* key */ (\"status\") == 1 }"),
            None,
            "a method call, whatever comment sits before its `(`"
        );
        assert_eq!(
            reads("fn check(event, trace) { event.get // key\n(\"status\") == 1 }"),
            None
        );
        // a line comment ends at a bare `\r` (old Mac line endings), as in Rhai
        assert_eq!(
            reads("fn check(event, trace) { event.kind; // note\r if event.status == 1 {} }")
                .unwrap(),
            ["kind", "status"]
        );
        // prose in strings and templates is not code; template code is
        assert_eq!(
            reads("fn check(event, trace) { `the event ${event.kind} \"event\"` + \"event (\" }")
                .unwrap(),
            ["kind"]
        );
        assert_eq!(
            reads("#!/usr/bin/env rhai\nfn check(event, trace) { event.kind }"),
            None
        );
        // `fn name(` in a string is not a declaration: the bare use after it counts
        assert_eq!(
            reads("fn check(event, trace) { let s = \"fn x(\"; f(event) + 1; g(1) }"),
            None
        );
        // raw strings are not followed: the whole event
        assert_eq!(
            reads("fn check(event, trace) { let r = #\"x\"#; event.kind // event\n }"),
            None
        );
    }

    #[test]
    fn any_other_use_means_the_whole_value() {
        for body in [
            "helper(event)",
            "event[\"kind\"]",
            "event.keys()",
            "event.kind()",
            "`${event}`",
            "let e = event; e.kind",
            "type_of(event)",
            "\"kind\" in event",
            "event.0",
            "event.",
            "event?[\"kind\"]",
        ] {
            let src = format!("fn check(event, trace) {{ {body} }}");
            assert_eq!(reads(&src), None, "{body}");
        }
    }

    #[test]
    fn union_is_none_when_one_rule_reads_everything() {
        let a = ["kind".to_string(), "usage".to_string()];
        let b = ["kind".to_string(), "input".to_string()];
        assert_eq!(
            union([Some(&a[..]), Some(&b[..])]).unwrap(),
            ["kind", "usage", "input"]
        );
        assert_eq!(union([Some(&a[..]), None]), None);
    }
}
