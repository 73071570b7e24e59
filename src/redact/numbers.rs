//! Numeric detectors: US SSN, payment card, phone and IPv4, from *numeric clusters*.
//!
//! Input: plain (already unescaped) text. Output: [`Hit`]s. Instead of one regex per type, a
//! single byte pass cuts the text into clusters (digit groups joined by single ` .-/()`
//! separators: `(202) 825-1980`, `4111 1111 1111 1111`, `10.0.0.7`, `694-66-9779`) and each
//! cluster is classified by its group shape and a validator (SSN issuance rules, card issuer +
//! length + Luhn, phone group layouts, IPv4 parse). Every prefix ending at a group end is
//! tried, longest first, so a number followed by another number still matches.
//! Look-alikes fail a validator or the token-boundary test: UUID/hash fragments, card-shaped
//! ids failing Luhn, versions and OIDs (IPv4 shape after a version word or inside a longer
//! dotted run), timestamps, ISBNs and order numbers (no phone layout fits them).

use super::PiiType;
use super::engine::{GateHits, Hit, has, is_word, lower_before, next_char, prev_char, rfind};
use super::validate::{card_brand_ok, ipv4_ok, luhn, ssn_ok};

/// A run of digits joined by single separators, `[s, e)` in bytes.
#[derive(Clone, Copy)]
pub(super) struct Cluster {
    pub(super) s: usize,
    pub(super) e: usize,
}

/// Cut `text` into numeric clusters (see module docs), in order.
pub(super) fn clusters(text: &str) -> Vec<Cluster> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            // tight scan to the next digit (text is digit-dense: SWAR skipping rarely pays)
            i += 1;
            while i < b.len() && !b[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        let mut s = i;
        if s > 0 && matches!(b[s - 1], b'+' | b'(') {
            s -= 1;
        }
        let mut j = i;
        loop {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let d = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
            match b.get(j) {
                Some(b' ' | b'.' | b'-' | b'/') if d(j + 1) => j += 1,
                Some(b')') if b.get(j + 1) == Some(&b' ') && d(j + 2) => j += 2,
                Some(b')') if d(j + 1) => j += 1,
                Some(b' ') if b.get(j + 1) == Some(&b'(') && d(j + 2) => j += 2,
                _ => break,
            }
        }
        // Short bare numbers (counts, ports, ms) matter only as house numbers or IBAN tails:
        // keep them when a letter precedes or a word follows.
        let digits = b[i..j].iter().filter(|c| c.is_ascii_digit()).count();
        let keep = digits >= 4
            || (i > 0 && b[i - 1].is_ascii_alphabetic())
            || (i > 1
                && b[i - 1] == b' '
                && (b[i - 2].is_ascii_alphabetic() || b[i - 2] == b'.' || b[i - 2] >= 0x80))
            || matches!(b.get(j), Some(b' ' | b',' | b'/' | b'-'))
                && b.get(j + 1).is_some_and(|c| !c.is_ascii_digit())
            || b[i..j].contains(&b'.');
        if keep {
            out.push(Cluster { s, e: j });
        }
        i = j.max(i + 1);
    }
    out
}

/// Digit groups of a cluster, computed once (no allocation): group lengths, the byte offset
/// where each group ends, and all digits.
struct Shape {
    lens: [usize; 12],
    ends: [usize; 12],
    n: usize,
    digits: [u8; 48],
    nd: usize,
}

impl Shape {
    fn of(text: &str, c: Cluster) -> Shape {
        let mut sh = Shape {
            lens: [0; 12],
            ends: [0; 12],
            n: 0,
            digits: [0; 48],
            nd: 0,
        };
        let b = text.as_bytes();
        let mut in_group = false;
        for (k, &x) in b[c.s..c.e].iter().enumerate() {
            if x.is_ascii_digit() {
                if !in_group {
                    if sh.n == 12 {
                        break;
                    }
                    sh.n += 1;
                    in_group = true;
                }
                sh.lens[sh.n - 1] += 1;
                sh.ends[sh.n - 1] = c.s + k + 1;
                if sh.nd < 48 {
                    sh.digits[sh.nd] = x;
                    sh.nd += 1;
                }
            } else {
                in_group = false;
            }
        }
        sh
    }
}

/// Classify one numeric cluster: IPv4, SSN, card, phone, bare SSN (with context). Each
/// prefix of the cluster that ends at a group end is tried, longest first.
pub(super) fn classify(text: &str, c: Cluster, gates: &GateHits, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let first = b[c.s];
    let digits_start = if first.is_ascii_digit() { c.s } else { c.s + 1 };
    let n_digits = b[c.s..c.e].iter().filter(|x| x.is_ascii_digit()).count();
    let has_dot = b[c.s..c.e].contains(&b'.');
    if n_digits < 4 || (n_digits < 7 && !has_dot) {
        return;
    }
    // yyyy-mm-dd… (dates, timestamps) fits no classifier here: skip the work
    let head = &b[c.s..c.e.min(c.s + 8)];
    if head.len() == 8
        && head[4] == b'-'
        && head[7] == b'-'
        && head[..4].iter().all(u8::is_ascii_digit)
    {
        return;
    }
    let sh = Shape::of(text, c);
    for k in (1..=sh.n).rev() {
        let end = sh.ends[k - 1];
        let groups = &sh.lens[..k];
        let nd: usize = groups.iter().sum();
        let digits = &sh.digits[..nd.min(48)];
        let s = &text[c.s..end];
        let seps = || s.bytes().filter(|x| !x.is_ascii_digit());
        if k == 4 && has_dot && first.is_ascii_digit() && seps().all(|x| x == b'.') {
            if ipv4_at(text, c.s, end) {
                out.push(Hit::new(c.s, end, PiiType::IpAddress));
            }
            return;
        }
        if nd < 7 {
            return;
        }
        if groups == [3, 2, 4] && first.is_ascii_digit() {
            let sb = s.as_bytes();
            if sb[3] == sb[6]
                && matches!(sb[3], b'-' | b' ')
                && token_bounded(text, c.s, end)
                && ssn_ok(digits)
            {
                out.push(Hit::new(c.s, end, PiiType::UsSsn));
                return;
            }
        }
        if first.is_ascii_digit()
            && (13..=19).contains(&nd)
            && card_ok(s, groups, digits)
            && token_bounded(text, c.s, end)
        {
            out.push(Hit::new(c.s, end, PiiType::CreditCard));
            return;
        }
        if (7..=15).contains(&nd) && phone_ok(text, c.s, end, groups, digits) {
            out.push(Hit::new(c.s, end, PiiType::Phone));
            return;
        }
    }
    // nine bare digits after an SSN word
    let n = c.e - digits_start;
    if gates.ssn
        && n == 9
        && b[digits_start..c.e].iter().all(u8::is_ascii_digit)
        && ssn_ok(&b[digits_start..c.e])
        && token_bounded(text, digits_start, c.e)
    {
        let w = lower_before(text, digits_start, 24);
        let near = rfind(&w, "ssn").or_else(|| rfind(&w, "social security"));
        if near.is_some_and(|p| !w[p..].bytes().any(|x| x.is_ascii_digit())) {
            out.push(Hit::new(digits_start, c.e, PiiType::UsSsn));
        }
    }
}

fn ipv4_at(text: &str, s: usize, e: usize) -> bool {
    let p = prev_char(text, s);
    if is_word(p) || matches!(p, Some('.' | '-' | '@')) {
        return false;
    }
    let mut ac = text[e..].chars();
    let n1 = ac.next();
    if is_word(n1) || (matches!(n1, Some('.' | '-')) && is_word(ac.next())) {
        return false;
    }
    ipv4_ok(&text[s..e]) && !looks_like_version(text, s)
}

fn phone_ok(text: &str, s: usize, e: usize, groups: &[usize], digits: &[u8]) -> bool {
    let p = prev_char(text, s);
    if is_word(p)
        || matches!(p, Some('.' | '-' | '/' | '#' | '+' | '$' | '€' | '£' | ':'))
            && !text[s..].starts_with('+')
    {
        return false;
    }
    if !phone_shape_ok(&text[s..e], groups, digits, text, s) {
        return false;
    }
    let n = next_char(text, e);
    let digit_after = |k: usize| {
        text.get(k..)
            .and_then(|r| r.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    };
    !(is_word(n) || matches!(n, Some('.' | '-' | '/' | ':' | ',')) && digit_after(e + 1))
}

/// Neither side of `[s, e)` continues a word, number or identifier.
fn token_bounded(text: &str, s: usize, e: usize) -> bool {
    let p = prev_char(text, s);
    let n = next_char(text, e);
    let alnum_follows = text
        .get(e + 1..)
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let joined_before = is_word(p) || matches!(p, Some('-' | '.' | '/' | '#'));
    let joined_after = is_word(n) || (matches!(n, Some('-' | '.' | '/')) && alnum_follows);
    !joined_before && !joined_after
}

/// A valid card number: one separator kind; 4-digit groups, Amex 4-6-5 or Diners 4-6-4, or
/// no separators; issuer prefix and length; Luhn.
fn card_ok(s: &str, g: &[usize], d: &[u8]) -> bool {
    let mut kinds = s.bytes().filter(|c| !c.is_ascii_digit());
    let k0 = kinds.next();
    if k0.is_some_and(|k| !matches!(k, b' ' | b'-')) || kinds.any(|k| Some(k) != k0) {
        return false;
    }
    let layout_ok = g.len() == 1
        || g.iter().take(g.len() - 1).all(|&x| x == 4)
        || g == [4, 6, 5]
        || g == [4, 6, 4];
    layout_ok && card_brand_ok(d) && luhn(d)
}

/// Phone shapes: international (`+`/`00`), North American 3-3-4 (one separator kind,
/// optional leading `1`, optional parentheses), national trunk-prefixed `0…` (10–11 digits in
/// groups of 2+), or a bare 10-digit number right after a phone word.
fn phone_shape_ok(c: &str, g: &[usize], d: &[u8], text: &str, start: usize) -> bool {
    let n = d.len();
    let mut seps = c
        .bytes()
        .filter(|b| !b.is_ascii_digit() && !matches!(b, b'(' | b')' | b'+'));
    let s0 = seps.next();
    let one_kind = seps.all(|x| Some(x) == s0);
    let has = |x: u8| c.as_bytes().contains(&x);
    if has(b'/') || (has(b'.') && !(one_kind && s0 == Some(b'.'))) {
        return false;
    }
    if c.starts_with('+') {
        return (8..=15).contains(&n)
            && g.iter().all(|&x| x <= 12)
            && g.first().is_some_and(|&x| x <= 3 || g.len() == 1);
    }
    if c.starts_with("00") && g.len() >= 3 {
        return (10..=15).contains(&(n - 2)) && g.iter().skip(1).all(|&x| x <= 5);
    }
    let open = c.starts_with('(');
    if open && c.as_bytes().get(4) != Some(&b')') {
        return false;
    }
    let nanp = |a: &[u8]| a.first().is_some_and(|&x| x >= b'2');
    if g == [3, 3, 4] && (one_kind || open) && nanp(d) && nanp(&d[3..]) {
        return true;
    }
    if g == [1, 3, 3, 4] && d[0] == b'1' && (one_kind || c.contains('(')) && nanp(&d[1..]) {
        return true;
    }
    if d.first() == Some(&b'0')
        && (10..=11).contains(&n)
        && g.len() >= 2
        && g.iter().all(|&x| x >= 2)
        && !open
        && one_kind
    {
        return !has(b'-') || g.len() <= 3;
    }
    if g.len() == 1 && n == 10 && nanp(d) {
        let w = lower_before(text, start, 40);
        return [
            "phone", "tel", "cell", "mobile", "call", "sms", "whatsapp", "fax", "number",
        ]
        .iter()
        .any(|k| super::engine::has(&w, k));
    }
    false
}

/// IPv4-shaped version strings: `"version": "1.2.3.4"`, `build 1.2.3.4`, `Chrome/1.2.3.4`,
/// `image:1.2.3.4` tags, `rolled out svc 1.2.3.4`. An address word nearby (`ip`, `from`,
/// `host`, `addr`, ...) wins.
fn looks_like_version(text: &str, s: usize) -> bool {
    let full = lower_before(text, s, 32);
    // context is the current line only
    let w: &str = full.rfind('\n').map_or(&full, |nl| &full[nl + 1..]);
    let wb = w.as_bytes();
    // "ip" as a word or key part: client_ip, "ip":, ip=, IP:
    let ip_word = w.match_indices("ip").any(|(i, _)| {
        let before = i
            .checked_sub(1)
            .and_then(|k| wb.get(k))
            .is_none_or(|c| !c.is_ascii_alphabetic());
        let after = wb
            .get(i + 2)
            .is_none_or(|c| !c.is_ascii_alphabetic() || *c == b's');
        before && after
    });
    const ADDR: &[&str] = &[
        "addr",
        "host",
        "from ",
        "peer",
        "remote",
        "inet",
        "gw ",
        "gateway",
        "dns",
        "forwarded",
        "server",
        "listen",
        "connect",
        "proxy",
        "origin",
    ];
    if ip_word || ADDR.iter().any(|k| has(w, k)) {
        return false;
    }
    let p = prev_char(text, s);
    if p == Some('/') {
        return !w.ends_with("//");
    }
    if w.ends_with("==") || matches!(p, Some('^' | '~' | '@')) {
        return true;
    }
    if p == Some(':') && w.len() >= 2 && wb[wb.len() - 2].is_ascii_alphanumeric() {
        return true;
    }
    const VER: &[&str] = &[
        "version",
        "build",
        "release",
        "ver ",
        "rev ",
        "sdk",
        "v.",
        "(",
        "using",
        "with",
        "bump",
        "upgrade",
        "runtime",
        "agent",
        "rolled",
        "deploy",
        "image",
        "tag",
        "client ",
        "install",
        "oid",
        "collecting",
        "pip",
        "npm",
        "dependencies",
    ];
    VER.iter().any(|k| has(w, k))
}
