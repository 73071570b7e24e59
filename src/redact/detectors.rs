//! Text-shaped structured detectors: email, IPv6, IBAN, and SSN-keyed values.
//!
//! Input: plain (already unescaped) text. Output: [`Hit`]s. Emails are expanded around each
//! `@` / URL-encoded `%40` found by memchr (scp-style `git@host:org/repo` remotes skipped);
//! IPv6 from runs of hex digits and colons around each `:` (parsed, loopback and unspecified
//! rejected); IBANs from a digit run right after two letters, collected to the country's
//! registered length (compact or in groups of four) and checked with mod-97.

use super::PiiType;
use super::engine::{Hit, is_word, next_char, prev_char};
use super::validate::{digits_of, iban_len, iban_mod97, ipv6_ok, ssn_ok};

/// A JSON value under an SSN-like key: the whole value, when it is nine valid digits.
pub(super) fn bare_ssn(text: &str, out: &mut Vec<Hit>) {
    let t = text.trim();
    let d = digits_of(t);
    if ssn_ok(&d) && t.len() <= 11 {
        let s = text.len() - text.trim_start().len();
        out.push(Hit::new(s, s + t.len(), PiiType::UsSsn));
    }
}

/// Emails around each `@` (or URL-encoded `%40`). `git@host:org/repo` remotes are skipped.
pub(super) fn emails(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let local_ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-');
    let dom_ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    let mut last_end = 0;
    // `@` and `%40` positions, via memchr-backed searches
    let mut seps: Vec<(usize, usize)> = memchr::memchr_iter(b'@', b).map(|i| (i, 1)).collect();
    if memchr::memchr(b'%', b).is_some() {
        seps.extend(memchr::memmem::find_iter(b, b"%40").map(|i| (i, 3)));
        seps.sort_unstable();
    }
    for (at, sep) in seps {
        if at < last_end {
            continue;
        }
        let mut s = at;
        while s > 0 && local_ok(b[s - 1]) {
            s -= 1;
        }
        while s < at && !b[s].is_ascii_alphanumeric() {
            s += 1;
        }
        let mut e = at + sep;
        while e < b.len() && dom_ok(b[e]) {
            e += 1;
        }
        while e > at + sep && !b[e - 1].is_ascii_alphanumeric() {
            e -= 1;
        }
        let domain = &text[at + sep..e];
        let tld = domain.rsplit('.').next().unwrap_or("");
        if s == at
            || !domain.contains('.')
            || tld.len() < 2
            || !tld.bytes().all(|c| c.is_ascii_alphabetic())
        {
            continue;
        }
        if text[s..at].eq_ignore_ascii_case("git")
            || (b.get(e) == Some(&b':') && b.get(e + 1).is_some_and(u8::is_ascii_alphabetic))
        {
            continue;
        }
        out.push(Hit::new(s, e, PiiType::Email));
        last_end = e;
    }
}

/// IPv6 addresses: maximal runs of hex digits and colons with at least two colons, found
/// by jumping from colon to colon (one vectorised `memchr` pass over the text).
pub(super) fn ipv6s(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let hexc = |c: u8| c.is_ascii_hexdigit() || c == b':';
    let mut from = 0;
    for p in memchr::memchr_iter(b':', b) {
        if p < from {
            continue;
        }
        let mut s = p;
        while s > 0 && hexc(b[s - 1]) {
            s -= 1;
        }
        let mut i = p;
        let mut colons = 0;
        while i < b.len() && hexc(b[i]) {
            colons += usize::from(b[i] == b':');
            i += 1;
        }
        from = i.max(p + 1);
        if colons < 2 || i - s < 6 {
            continue;
        }
        let mut e = i;
        while e > s && b[e - 1] == b':' && !(e >= 2 && b[e - 2] == b':') {
            e -= 1;
        }
        if is_word(prev_char(text, s)) || is_word(next_char(text, e)) {
            continue;
        }
        if ipv6_ok(&text[s..e]) {
            out.push(Hit::new(s, e, PiiType::IpAddress));
        }
    }
}

/// An IBAN starting two letters before the digit run at `d` (compact or in groups of four).
pub(super) fn iban_at(text: &str, d: usize, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    if d < 2
        || !b[d - 1].is_ascii_alphabetic()
        || !b[d - 2].is_ascii_alphabetic()
        || (d > 2 && b[d - 3].is_ascii_alphanumeric())
    {
        return;
    }
    let s = d - 2;
    let Some(want) = iban_len(&b[s..d]) else {
        return;
    };
    let mut compact = Vec::with_capacity(34);
    let (mut i, mut end) = (s, s);
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
