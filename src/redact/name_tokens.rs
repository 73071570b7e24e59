//! Tokeniser of the person-name detector: capitalised words, initials, name particles and
//! CJK runs, plus the small shape tests on them (contractions, titles, phrase ends).
//!
//! Input: plain text. Output: `(start, end, Tok)` byte ranges in order. One pass over the
//! bytes with an ASCII fast path; never panics (all slicing is at char boundaries).

use super::engine::{has_upper_or_utf8, skip_chunks};
use super::name_words::PARTICLES;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Tok {
    Cap,
    Initial,
    Particle,
    Cjk,
}

pub(super) fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF)
}

/// Right after a title: `Dr. Okonkwo`, `Mrs Patel`.
pub(super) fn titled(text: &str, s: usize) -> bool {
    let before = &text.as_bytes()[s.saturating_sub(6)..s];
    [
        &b"Mr. "[..],
        b"Mrs. ",
        b"Ms. ",
        b"Dr. ",
        b"Prof. ",
        b"Mr ",
        b"Mrs ",
        b"Ms ",
        b"Dr ",
    ]
    .iter()
    .any(|t| before.ends_with(t))
}

/// `Here's`, `I'm`, `Don't`: never names.
pub(super) fn contraction(w: &str) -> bool {
    [
        "'s", "'m", "'t", "'ll", "'re", "'ve", "'d", "’s", "’m", "’t",
    ]
    .iter()
    .any(|c| w.ends_with(c))
}

/// The word ends a phrase (`Hi Lilo,` / `Thanks Robin!` / end of text), as a name after a
/// greeting does.
pub(super) fn ends_phrase(text: &str, e: usize) -> bool {
    text[e..]
        .chars()
        .next()
        .is_none_or(|c| matches!(c, ',' | '!' | '.' | '\n' | '\r' | '"' | ':' | ')' | '?'))
}

/// Capitalised words, initials, particles and CJK runs, as (start, end, kind).
pub(super) fn tokens(text: &str) -> Vec<(usize, usize, Tok)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev_alnum = false;
    while i < b.len() {
        // jump over chunks with no capital and no non-ASCII byte, unless a particle could
        // follow the last token here
        if out.last().is_none_or(|t: &(usize, usize, Tok)| t.1 + 1 < i) {
            let j = skip_chunks(b, i, has_upper_or_utf8);
            if j > i {
                prev_alnum = b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_';
                i = j;
                if i >= b.len() {
                    break;
                }
            }
        }
        let c0 = b[i];
        if c0 < 0x80 {
            if c0.is_ascii_uppercase() && !prev_alnum {
                let e = word_end(text, i);
                push_word(text, i, e, &mut out);
                i = e.max(i + 1);
                prev_alnum = true;
                continue;
            }
            let after_token = out
                .last()
                .is_some_and(|t: &(usize, usize, Tok)| t.1 + 1 == i);
            if c0.is_ascii_lowercase() && !prev_alnum && after_token && b[i - 1] == b' ' {
                let e = word_end(text, i);
                if PARTICLES.contains(&&text[i..e]) {
                    out.push((i, e, Tok::Particle));
                }
                i = e.max(i + 1);
                prev_alnum = true;
                continue;
            }
            if c0.is_ascii_alphanumeric() || c0 == b'_' {
                // rest of an ordinary word or number: nothing starts inside it
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                prev_alnum = true;
                continue;
            }
            prev_alnum = false;
            i += 1;
            continue;
        }
        let Some(c) = text.get(i..).and_then(|r| r.chars().next()) else {
            i += 1;
            continue;
        };
        if is_cjk(c) && !prev_alnum {
            let mut e = i;
            for ch in text[i..].chars().take_while(|&ch| is_cjk(ch)) {
                e += ch.len_utf8();
            }
            out.push((i, e, Tok::Cjk));
            i = e;
            prev_alnum = true;
            continue;
        }
        if c.is_uppercase() && !prev_alnum {
            let e = word_end(text, i);
            push_word(text, i, e, &mut out);
            i = e.max(i + c.len_utf8());
            prev_alnum = true;
            continue;
        }
        prev_alnum = c.is_alphanumeric();
        i += c.len_utf8();
    }
    out
}

/// End of the letter run starting at `s` (letters, inner apostrophes and hyphens, a final `.`
/// for initials).
fn word_end(text: &str, s: usize) -> usize {
    let b = text.as_bytes();
    // ASCII fast path: plain letters up to a byte that is neither a letter nor a joiner
    let mut k = s;
    while k < b.len() && b[k].is_ascii_alphabetic() {
        k += 1;
    }
    if k == b.len() || (b[k] < 0x80 && !matches!(b[k], b'\'' | b'-')) {
        return k;
    }
    let mut e = s;
    let mut it = text[s..].char_indices().peekable();
    while let Some((k, c)) = it.next() {
        let next_is_letter = it.peek().is_some_and(|(_, n)| n.is_alphabetic());
        if c.is_alphabetic() || (matches!(c, '\'' | '’' | '-') && next_is_letter && k > 0) {
            e = s + k + c.len_utf8();
        } else {
            break;
        }
    }
    e
}

fn push_word(text: &str, s: usize, e: usize, out: &mut Vec<(usize, usize, Tok)>) {
    let w = &text[s..e];
    let next = text[e..].chars().next();
    let n_chars = w.chars().count();
    if n_chars == 1 && next == Some('.') {
        out.push((s, e + 1, Tok::Initial));
    } else if n_chars >= 2
        && w.chars().skip(1).any(char::is_lowercase)
        && !w.chars().skip(1).take(1).any(char::is_uppercase)
    {
        // Ann, O'Neil, McDonald, Karl-Hermann; not ALLCAPS, not CamelCase identifiers
        if next.is_none_or(|c| !(c.is_ascii_digit() || c == '_' || c == '(')) {
            out.push((s, e, Tok::Cap));
        }
    }
}
