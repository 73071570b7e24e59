//! Credential detectors: vendor API keys, JWTs, PEM/OpenSSH private keys, passwords in DSNs,
//! `.env`/JSON/YAML assignments, bearer tokens and session cookies, AWS secret keys.
//!
//! Input: plain text. Output: [`Hit`]s of type `API_KEY`, covering only the secret (not the
//! key name, not `Bearer `, not the DSN user). Vendor keys are found by their documented
//! prefixes in one alternation regex (the regex engine's literal prefilter makes it cheap);
//! public look-alikes are not matched: `pk_` publishable keys, provider object ids
//! (`cus_…`, `call_…`, `toolu_…`), public keys and certificates, `task-…` ids (the `sk-`
//! prefix must start a token and the body must mix letters and digits).

use regex::Regex;

use super::PiiType;
use super::engine::{GateHits, Hit, has, is_word, prev_char};

fn re(p: &str) -> Regex {
    Regex::new(p).expect("built-in secret regex compiles")
}

pub(super) struct Secrets {
    prefixed: Regex,
    assignment: Regex,
    curl: Regex,
    bearer: Regex,
    cookie: Regex,
}

/// Is this (lower-cased) key name one whose value is a credential?
pub(super) fn is_secret_key(k: &str) -> bool {
    let k = k.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    #[rustfmt::skip]
    const SECRET: &[&str] = &[
        "password", "passwd", "passphrase", "secret", "token", "api_key", "apikey", "api-key",
        "access_key", "private_key", "credential",
    ];
    // Keys that describe a secret rather than hold it: ids, names, counts, limits, ...
    #[rustfmt::skip]
    const META: &[&str] = &[
        "id", "name", "type", "url", "uri", "path", "file", "count", "len", "length", "_at", "ttl",
        "expiry", "expires", "expires_in", "version", "enabled", "tokens", "limit", "usage",
        "header", "field", "hint", "policy", "prefix", "format", "method", "endpoint", "mode",
    ];
    let secretish = SECRET.iter().any(|w| has(k, w))
        || ["pwd", "pass"].contains(&k)
        || k.ends_with("_pwd")
        || k.ends_with("-pwd");
    let meta = META.iter().any(|m| k.ends_with(m))
        || has(k, "max_")
        || has(k, "tokeniz")
        || k.starts_with("num_");
    secretish && !meta
}

/// A value that is a real secret rather than a placeholder, reference or flag.
pub(super) fn plausible_secret_value(v: &str) -> bool {
    let v = v.trim();
    if !(4..=512).contains(&v.len()) || v.contains("[REDACTED") || v.starts_with('[') {
        return false;
    }
    let l = v.to_ascii_lowercase();
    const PLACEHOLDERS: &[&str] = &[
        "null",
        "none",
        "true",
        "false",
        "redacted",
        "undefined",
        "string",
        "example",
    ];
    if PLACEHOLDERS.contains(&l.as_str()) {
        return false;
    }
    let first = v.chars().next().unwrap_or(' ');
    if matches!(first, '$' | '<' | '{' | '%' | '*')
        || v.chars().all(|c| c == v.chars().next().unwrap_or(c))
    {
        return false;
    }
    !v.contains(' ') || v.len() > 24
}

impl Secrets {
    pub(super) fn new() -> Self {
        Secrets {
            prefixed: re(concat!(
                r"sk-(?:proj-|ant-(?:api|admin)[0-9]{2}-|svcacct-)?[A-Za-z0-9_\-]{20,}",
                r"|(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}",
                r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{20,}",
                r"|xox[abposre]-[A-Za-z0-9\-]{10,}",
                r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{20,}",
                r"|AIza[A-Za-z0-9_\-]{30,}|npm_[A-Za-z0-9]{30,}|hf_[A-Za-z0-9]{30,}",
                r"|eyJ[A-Za-z0-9_\-]{10,}(?:\.[A-Za-z0-9_\-]{4,}){0,2}",
                r"|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
            )),
            // anchored: tried only where the keyword gate saw a secret word
            assignment: re(
                r#"(?i)^(?:pass|pwd|secret|token|key|credential)[A-Za-z0-9_\-]*["']?[ \t]*(?:=>|=|:)[ \t]*["']?[^\s"'&,;<>]+"#,
            ),
            curl: re(r#"(?:\s-u|--user)[ =]['"]?[^\s:'"@/]{1,64}:[^\s'"]{1,128}"#),
            bearer: re(r"(?i)(?:bearer|basic)[ \t]+[A-Za-z0-9._~+/\-]{8,}=*"),
            cookie: re(r#"(?i)cookie:[ \t]*[A-Za-z0-9_\-]+=[^\s;"]{16,}"#),
        }
    }

    pub(super) fn scan(&self, text: &str, gates: &GateHits, out: &mut Vec<Hit>) {
        for m in self.prefixed.find_iter(text) {
            let (s, mut e) = (m.start(), m.end());
            let p = prev_char(text, s);
            if is_word(p) || p == Some('-') {
                continue;
            }
            let body = m.as_str();
            if body.starts_with("-----BEGIN") {
                e = pem_end(text, e);
            } else if body.starts_with("sk-") && !mixed(&body[3..]) {
                continue;
            }
            out.push(Hit::new(s, e, PiiType::ApiKey));
        }
        // Run unanchored, this regex made the engine search backwards from every `:` and `=`
        // of a JSON text; anchored at the gate's secret words it only reads candidates.
        let mut done = 0;
        for &at in &gates.secret_at {
            if at < done {
                continue;
            }
            let Some(m) = text.get(at..).and_then(|t| self.assignment.find(t)) else {
                continue;
            };
            let (ms, me) = (at + m.start(), at + m.end());
            done = me;
            // the key runs back to the start of its identifier (`AWS_SECRET_ACCESS_KEY`)
            let bytes = text.as_bytes();
            let mut ks = ms;
            while ks > 0
                && (bytes[ks - 1].is_ascii_alphanumeric()
                    || matches!(bytes[ks - 1], b'_' | b'.' | b'-'))
            {
                ks -= 1;
            }
            let body = &text[ms..me];
            let Some(sep) = body.find(['=', ':']) else {
                continue;
            };
            let key = &text[ks..ms + sep];
            let vstart = body[sep..]
                .find(|c: char| !matches!(c, '=' | ':' | '>' | ' ' | '\t' | '"' | '\''))
                .map_or(body.len(), |i| sep + i);
            let value = &body[vstart..];
            if is_secret_key(&key.to_ascii_lowercase())
                && plausible_secret_value(value)
                && !value.starts_with("Bearer")
            {
                out.push(Hit::new(ms + vstart, me, PiiType::ApiKey));
            }
        }
        if gates.dsn {
            url_passwords(text, out);
        }
        if gates.curl {
            for m in self.curl.find_iter(text) {
                // curl `-u user:PASS`
                let body = m.as_str();
                if let Some(c) = body.get(4..).and_then(|r| r.find(':')) {
                    let (vs, ve) = (m.start() + 4 + c + 1, m.end());
                    if ve > vs {
                        out.push(Hit::new(vs, ve, PiiType::ApiKey));
                    }
                }
            }
        }
        if gates.bearer {
            for m in self.bearer.find_iter(text) {
                // `Bearer <token>` (16+ chars) or `Basic <base64 user:pass>`
                let body = m.as_str();
                let basic = body.as_bytes()[0].eq_ignore_ascii_case(&b'b')
                    && body.as_bytes()[1].eq_ignore_ascii_case(&b'a');
                let v = body[if basic { 5 } else { 6 }..].trim_start();
                if mixed(v) && (v.len() >= 16 || basic) && !is_word(prev_char(text, m.start())) {
                    out.push(Hit::new(m.end() - v.len(), m.end(), PiiType::ApiKey));
                }
            }
        }
        if gates.cookie {
            for m in self.cookie.find_iter(text) {
                let body = m.as_str();
                if let Some(eq) = body.find('=')
                    && mixed(&body[eq + 1..])
                {
                    out.push(Hit::new(m.start() + eq + 1, m.end(), PiiType::ApiKey));
                }
            }
        }
        if gates.aws {
            aws_secrets(text, out);
        }
    }
}

/// `scheme://user:PASS@`: the password of a URL with credentials (the whole
/// `[^\s/"'<>]{1,128}` run up to the last `@` in reach, as a greedy regex would take).
fn url_passwords(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let user_ok = |c: u8| !(c.is_ascii_whitespace() || b":/@\"'<>".contains(&c));
    let pass_ok = |c: u8| !(c.is_ascii_whitespace() || b"/\"'<>".contains(&c));
    let mut from = 0;
    while let Some(p) = find_from(b, from, b"://") {
        let us = p + 3;
        from = us;
        let mut i = us;
        while i < b.len() && i - us < 65 && user_ok(b[i]) {
            i += 1;
        }
        if i == us || i - us > 64 || b.get(i) != Some(&b':') {
            continue;
        }
        let ps = i + 1;
        let mut k = ps;
        let mut last_at = None;
        while k < b.len() && k - ps <= 128 && pass_ok(b[k]) {
            if b[k] == b'@' && k > ps {
                last_at = Some(k);
            }
            k += 1;
        }
        if let Some(at) = last_at {
            out.push(Hit::new(ps, at, PiiType::ApiKey));
            from = at + 1;
        }
    }
}

/// First index >= `from` where `needle` starts.
fn find_from(h: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= h.len() {
        let p = h[i..h.len() + 1 - needle.len()]
            .iter()
            .position(|&c| c == first)?;
        let at = i + p;
        if &h[at..at + needle.len()] == needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// AWS secret access keys: a run of exactly 40 `[A-Za-z0-9/+]` chars, standing alone, mixing
/// upper case, lower case and digits, not hex.
fn aws_secrets(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let class = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let edge = |c: Option<char>| is_word(c) || matches!(c, Some('/' | '+' | '='));
    let mut i = 0;
    while i < b.len() {
        if !class(b[i]) {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && class(b[i]) {
            i += 1;
        }
        if i - s != 40 {
            continue;
        }
        let v = &b[s..i];
        if !edge(prev_char(text, s))
            && !edge(text.get(i..).and_then(|r| r.chars().next()))
            && v.iter().any(u8::is_ascii_digit)
            && !v.iter().all(u8::is_ascii_hexdigit)
            && v.iter().any(u8::is_ascii_uppercase)
            && v.iter().any(u8::is_ascii_lowercase)
        {
            out.push(Hit::new(s, i, PiiType::ApiKey));
        }
    }
}

/// Letters and digits both present: real keys are random, `sk-learn-tutorial` is not.
fn mixed(s: &str) -> bool {
    s.bytes().any(|c| c.is_ascii_digit()) && s.bytes().any(|c| c.is_ascii_alphabetic())
}

/// End of a PEM private-key block that started before `from`: after its `-----END … KEY-----`
/// line, or, when truncated, after the run of base64 lines.
fn pem_end(text: &str, from: usize) -> usize {
    let rest = text.get(from..).unwrap_or("");
    let limit = rest.len().min(16 * 1024);
    let window = rest.get(..limit).unwrap_or(rest);
    if let Some(p) = window.find("-----END ")
        && let Some(q) = window[p + 9..].find("-----")
    {
        return from + p + 9 + q + 5;
    }
    let run = window
        .bytes()
        .take_while(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'+' | b'/' | b'=' | b'\n' | b'\r' | b' ' | b'\\' | b':' | b'-' | b','
                )
        })
        .count();
    let mut end = from + run;
    while end > from
        && text
            .as_bytes()
            .get(end - 1)
            .is_some_and(|c| !c.is_ascii_alphanumeric() && *c != b'=')
    {
        end -= 1;
    }
    end
}
