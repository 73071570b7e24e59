//! Structured detectors: email, IPv4/IPv6, US SSN, payment card, phone, IBAN.
//!
//! Input: plain (already unescaped) text. Output: [`Hit`]s pushed to a vector. Each detector
//! is a cheap byte gate (skip when its trigger byte is absent), one compiled regex that finds
//! candidates, and a validator (Luhn + issuer, mod-97 + country length, IP parse, SSN
//! issuance rules, phone group shapes, token boundaries). Look-alikes are rejected by the
//! validators: UUID/hash fragments fail the boundary test, card-shaped ids fail Luhn, versions
//! and OIDs fail the IPv4 boundary/context test, dates and order numbers fail phone shapes.

use regex::Regex;

use super::engine::{is_word, lower_before, next_char, prev_char, Hit};
use super::validate::{
    card_brand_ok, digit_groups, digits_of, iban_len, iban_mod97, ipv4_ok, ipv6_ok, luhn,
    ssn_ok,
};
use super::PiiType;

fn re(p: &str) -> Regex {
    Regex::new(p).expect("built-in detector regex compiles")
}

/// Compiled regexes of the structured detectors.
pub(super) struct Structured {
    email: Regex,
    ipv4: Regex,
    ipv6: Regex,
    ssn: Regex,
    card: Regex,
    phone: Regex,
    iban: Regex,
}

impl Structured {
    pub(super) fn new() -> Self {
        Structured {
            email: re(r"[A-Za-z0-9][A-Za-z0-9._+\-]*(?:@|%40)[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}"),
            ipv4: re(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"),
            ipv6: re(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"),
            ssn: re(r"[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}"),
            card: re(r"[0-9](?:[0-9]|[ \-][0-9]){12,22}"),
            phone: re(r"[+(]?[0-9][0-9 ().\-]{5,20}[0-9]"),
            iban: re(r"[A-Za-z]{2}[0-9]{2} ?[A-Za-z0-9]{4}"),
        }
    }

    pub(super) fn scan(&self, text: &str, out: &mut Vec<Hit>) {
        let b = text.as_bytes();
        if b.contains(&b'@') || text.contains("%40") {
            self.emails(text, out);
        }
        if b.contains(&b':') {
            self.ipv6s(text, out);
        }
        if !b.iter().any(u8::is_ascii_digit) {
            return;
        }
        if b.contains(&b'.') {
            self.ipv4s(text, out);
        }
        for m in self.ssn.find_iter(text) {
            let s = m.as_str().as_bytes();
            let consistent = s.get(3) == s.get(6);
            if consistent && token_bounded(text, m.start(), m.end()) && ssn_ok(&digits_of(m.as_str())) {
                out.push(Hit::new(m.start(), m.end(), PiiType::UsSsn));
            }
        }
        for m in self.card.find_iter(text) {
            if let Some(end) = card_prefix(m.as_str()) {
                if token_bounded(text, m.start(), m.start() + end) {
                    out.push(Hit::new(m.start(), m.start() + end, PiiType::CreditCard));
                }
            }
        }
        self.phones(text, out);
        self.ibans(text, out);
        bare_ssn(text, out);
    }

    fn emails(&self, text: &str, out: &mut Vec<Hit>) {
        for m in self.email.find_iter(text) {
            let s = m.as_str();
            // scp-style git remotes: git@host:org/repo.git
            if s.starts_with("git@") || s.starts_with("git%40") {
                continue;
            }
            if next_char(text, m.end()) == Some(':')
                && text.get(m.end() + 1..).and_then(|r| r.chars().next()).is_some_and(|c| c.is_alphanumeric())
            {
                continue;
            }
            out.push(Hit::new(m.start(), m.end(), PiiType::Email));
        }
    }

    fn ipv4s(&self, text: &str, out: &mut Vec<Hit>) {
        for m in self.ipv4.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            let p = prev_char(text, s);
            if is_word(p) || matches!(p, Some('.' | '-' | '@')) {
                continue;
            }
            let after = text.get(e..).unwrap_or("");
            let mut ac = after.chars();
            let n1 = ac.next();
            if is_word(n1) || (matches!(n1, Some('.' | '-')) && is_word(ac.next())) {
                continue;
            }
            if !ipv4_ok(m.as_str()) || looks_like_version(text, s) {
                continue;
            }
            out.push(Hit::new(s, e, PiiType::IpAddress));
        }
    }

    fn ipv6s(&self, text: &str, out: &mut Vec<Hit>) {
        for m in self.ipv6.find_iter(text) {
            let mut e = m.end();
            let mut cand = m.as_str();
            // a trailing ':' is punctuation ("from 2001:db8::1: refused"), not part of it
            while cand.ends_with(':') && !cand.ends_with("::") {
                cand = &cand[..cand.len() - 1];
                e -= 1;
            }
            if cand.len() < 6 || is_word(prev_char(text, m.start())) || is_word(next_char(text, e)) {
                continue;
            }
            if ipv6_ok(cand) {
                out.push(Hit::new(m.start(), e, PiiType::IpAddress));
            }
        }
    }

    fn phones(&self, text: &str, out: &mut Vec<Hit>) {
        for m in self.phone.find_iter(text) {
            let s = m.start();
            let p = prev_char(text, s);
            if is_word(p) || matches!(p, Some('.' | '-' | '/' | '#' | '+' | '$' | '€' | '£')) {
                continue;
            }
            let mut cand = m.as_str();
            // A match may run into a following number ("555 123 4567 2 times"): drop groups.
            loop {
                if phone_shape_ok(cand, text, s) {
                    let e = s + cand.len();
                    let n = next_char(text, e);
                    let bad_next = is_word(n)
                        || (matches!(n, Some('.' | '-' | '/' | ':' | ','))
                            && text.get(e + 1..).and_then(|r| r.chars().next()).is_some_and(|c| c.is_ascii_digit()));
                    if !bad_next {
                        out.push(Hit::new(s, e, PiiType::Phone));
                    }
                    break;
                }
                match cand.rfind(|c: char| !c.is_ascii_digit()) {
                    Some(i) if i > 0 => cand = cand[..i].trim_end_matches(|c: char| !c.is_ascii_digit() && c != ')'),
                    _ => break,
                }
                if cand.len() < 7 {
                    break;
                }
            }
        }
    }

    fn ibans(&self, text: &str, out: &mut Vec<Hit>) {
        for m in self.iban.find_iter(text) {
            let s = m.start();
            if is_word(prev_char(text, s)) {
                continue;
            }
            let b = text.as_bytes();
            let Some(want) = iban_len(&b[s..s + 2]) else {
                continue;
            };
            let mut compact = Vec::with_capacity(34);
            let mut i = s;
            let mut end = s;
            while i < b.len() && compact.len() < want {
                let c = b[i];
                if c.is_ascii_alphanumeric() {
                    compact.push(c);
                    end = i + 1;
                } else if !(c == b' ' && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)) {
                    break;
                }
                i += 1;
            }
            if compact.len() == want && !is_word(next_char(text, end)) && iban_mod97(&compact) {
                out.push(Hit::new(s, end, PiiType::Iban));
            }
        }
    }
}

/// Neither side of `[s, e)` continues a word, number or identifier.
fn token_bounded(text: &str, s: usize, e: usize) -> bool {
    let p = prev_char(text, s);
    let n = next_char(text, e);
    !is_word(p)
        && !is_word(n)
        && !matches!(p, Some('-' | '.' | '/' | '#'))
        && !(matches!(n, Some('-' | '.' | '/'))
            && text.get(e + 1..).and_then(|r| r.chars().next()).is_some_and(|c| c.is_ascii_alphanumeric()))
}

/// Length of the longest valid card number at the start of `s` (digits with one consistent
/// separator kind, in 4-digit groups or the Amex/Diners 4-6-5/4-6-4 layout).
fn card_prefix(s: &str) -> Option<usize> {
    let seps: Vec<(usize, u8)> = s.bytes().enumerate().filter(|(_, c)| !c.is_ascii_digit()).collect();
    let kinds_ok = seps.windows(2).all(|w| w[0].1 == w[1].1);
    if !kinds_ok {
        return None;
    }
    // candidate ends: the full match, then each separator position (shorter prefixes)
    let mut ends: Vec<usize> = vec![s.len()];
    ends.extend(seps.iter().rev().map(|(i, _)| *i));
    for end in ends {
        let part = &s[..end];
        let d = digits_of(part);
        if !(13..=19).contains(&d.len()) {
            continue;
        }
        let g = digit_groups(part);
        let layout_ok = g.len() == 1
            || g.iter().take(g.len() - 1).all(|&x| x == 4)
            || g == [4, 6, 5]
            || g == [4, 6, 4];
        if layout_ok && card_brand_ok(&d) && luhn(&d) {
            return Some(end);
        }
    }
    None
}

/// Phone number shapes: international (`+` or `00` prefix), North American (3-3-4 with one
/// separator kind, optional `1`, optional parentheses), national trunk-prefixed (`0…`,
/// 10–11 digits in groups of 2+), or a bare 10-digit number right after a phone word.
fn phone_shape_ok(c: &str, text: &str, start: usize) -> bool {
    let d = digits_of(c);
    let g = digit_groups(c);
    let n = d.len();
    let seps: Vec<u8> = c.bytes().filter(|b| !b.is_ascii_digit() && *b != b'(' && *b != b')' && *b != b'+').collect();
    let one_sep_kind = seps.windows(2).all(|w| w[0] == w[1] || w[0] == b' ' || w[1] == b' ');
    if c.contains('.') && !seps.iter().all(|&s| s == b'.') {
        return false;
    }
    if c.starts_with('+') {
        return (8..=15).contains(&n) && g.iter().all(|&x| x <= 12) && g.first().is_some_and(|&x| x <= 3 || g.len() == 1);
    }
    if c.starts_with("00") && g.len() >= 3 {
        return (10..=15).contains(&(n - 2)) && g.iter().skip(1).all(|&x| x <= 5);
    }
    let open = c.starts_with('(');
    if open && !c.get(4..5).is_some_and(|x| x == ")") {
        return false;
    }
    let nanp = |a: &[u8]| a.first().is_some_and(|&x| x >= b'2');
    if g == [3, 3, 4] && one_sep_kind && nanp(&d) && nanp(&d[3..]) {
        return true;
    }
    if g == [1, 3, 3, 4] && d[0] == b'1' && one_sep_kind && nanp(&d[1..]) {
        return true;
    }
    if d.first() == Some(&b'0') && (10..=11).contains(&n) && g.len() >= 2 && g.iter().all(|&x| x >= 2) && !open {
        return !c.contains('-') || g.len() <= 3;
    }
    if g.len() == 1 && n == 10 && nanp(&d) {
        let w = lower_before(text, start, 40);
        return PHONE_WORDS.iter().any(|k| w.contains(k));
    }
    false
}

const PHONE_WORDS: &[&str] = &[
    "phone", "tel", "cell", "mobile", "call", "sms", "whatsapp", "fax", "number", "contact",
];

/// Nine bare digits after an SSN word (`ssn=123456789`, `SSN 123456789`).
pub(super) fn bare_ssn(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i - s != 9 || !ssn_ok(&b[s..i]) || is_word(prev_char(text, s)) || is_word(next_char(text, i)) {
            continue;
        }
        let w = lower_before(text, s, 24);
        let near = w.rfind("ssn").or_else(|| w.rfind("social security"));
        if near.is_some_and(|p| !w[p..].bytes().any(|c| c.is_ascii_digit())) || s == 0 && text.len() == 9 {
            out.push(Hit::new(s, i, PiiType::UsSsn));
        }
    }
}

/// IPv4-shaped version strings: `Chrome/1.2.3.4`, `build 1.2.3.4`, `v1.2.3.4`, `(1.2.3.4)`
/// after a version word. Address words nearby ("ip", "from", "host") win.
fn looks_like_version(text: &str, s: usize) -> bool {
    let w = lower_before(text, s, 28);
    let tail: &str = w.rsplit(['\n', ',', ';', '|', '"']).next().unwrap_or("");
    if ["ip", "addr", "host", "from", "peer", "client", "server", "remote", "inet", "gw", "via", "dns", "forwarded", "to "]
        .iter()
        .any(|k| tail.contains(k))
    {
        return false;
    }
    if prev_char(text, s) == Some('/') {
        // product/1.2.3.4 (user agents) but not scheme://1.2.3.4
        return !w.ends_with("//");
    }
    ["version", "build", "release", "ver ", "rev ", "sdk", "v.", "(", "using", "with", "bump", "upgrade", "runtime", "agent"]
        .iter()
        .any(|k| tail.contains(k))
}
