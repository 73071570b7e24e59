//! Date-of-birth detector: a calendar date in a birth-date context.
//!
//! Input: plain text (or a JSON value whose key says "date of birth"). Output: `DATE_OF_BIRTH`
//! [`Hit`]s. Dates are found in ISO, slash/dot/dash numeric and written-month forms, then
//! kept only when a birth word (`born`, `DOB`, `d.o.b.`, `date of birth`, `birthday`,
//! `geboren`, `né le`, …) precedes them closely with no other number in between. Timestamps,
//! log dates, `created_at` values and other non-birth dates are therefore left alone.

use regex::Regex;

use super::PiiType;
use super::engine::{Hit, has, is_word, lower_before, next_char, prev_char, rfind};
use super::validate::date_ok;

pub(super) struct Dates {
    date: Regex,
}

const MONTHS: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\\.?";

const BIRTH_WORDS: &[&str] = &[
    "born",
    "dob",
    "d.o.b",
    "birth",
    "geboren",
    "geb.",
    "né le",
    "née le",
    "nacido",
    "nato il",
    "nata il",
    "fecha de nacimiento",
    "date de naissance",
    "data di nascita",
];

/// Is this (lower-cased) JSON key a birth-date field?
pub(super) fn is_dob_key(k: &str) -> bool {
    k == "dob" || has(k, "birth") || k.ends_with("_dob") || k.starts_with("dob_")
}

impl Dates {
    pub(super) fn new() -> Self {
        let p = format!(
            r"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|[0-9]{{1,2}}[/.\-][0-9]{{1,2}}[/.\-](?:[0-9]{{4}}|[0-9]{{2}})|{m} [0-9]{{1,2}}(?:st|nd|rd|th)?,? [0-9]{{4}}|[0-9]{{1,2}}(?:st|nd|rd|th)?\.? {m},? [0-9]{{4}}",
            m = MONTHS
        );
        Dates {
            date: Regex::new(&p).expect("built-in date regex compiles"),
        }
    }

    /// Dates preceded by a birth word: the first date within 48 bytes after each birth word
    /// (`birth_at` holds the byte offsets just after them), with no other digit in between.
    pub(super) fn scan(&self, text: &str, birth_at: &[usize], out: &mut Vec<Hit>) {
        for &from in birth_at {
            let mut lim = text.len().min(from + 64);
            while !text.is_char_boundary(lim) {
                lim -= 1;
            }
            let Some(window) = text.get(from..lim) else {
                continue;
            };
            let Some(first_digit) = window.find(|c: char| c.is_ascii_digit()) else {
                continue;
            };
            if first_digit > 48 {
                continue;
            }
            // a written month may precede the first digit ("born March 5, 1990")
            let Some(m) = self.date.find(window) else {
                continue;
            };
            let (s, e) = (from + m.start(), from + m.end());
            let digit_before = window[..m.start()].bytes().any(|c| c.is_ascii_digit());
            if !digit_before
                && bounded(text, s, e)
                && valid(m.as_str())
                && birth_context(&lower_before(text, s, 48))
            {
                out.push(Hit::new(s, e, PiiType::DateOfBirth));
            }
        }
    }

    /// The value of a birth-date field: any valid date in it is a birth date.
    pub(super) fn scan_as_dob(&self, text: &str, out: &mut Vec<Hit>) {
        for m in self.date.find_iter(text) {
            if bounded(text, m.start(), m.end()) && valid(m.as_str()) {
                out.push(Hit::new(m.start(), m.end(), PiiType::DateOfBirth));
            }
        }
    }
}

/// A birth word in `before` with no digit between it and the date.
pub(super) fn birth_context(before: &str) -> bool {
    let pos = BIRTH_WORDS
        .iter()
        .filter_map(|w| rfind(before, w).map(|p| p + w.len()))
        .max();
    pos.is_some_and(|p| !before[p..].bytes().any(|c| c.is_ascii_digit()))
}

fn bounded(text: &str, s: usize, e: usize) -> bool {
    let p = prev_char(text, s);
    let n = next_char(text, e);
    if is_word(p) || matches!(p, Some('.' | '/' | '-' | ':')) {
        return false;
    }
    // 2024-01-02T10:00 and 2024-01-02 10:00:00 are timestamps
    let after = text.get(e..).unwrap_or("");
    let ts = after.starts_with('T')
        || after.get(..3).is_some_and(|a| {
            a.as_bytes()[0] == b' '
                && a.as_bytes()[1].is_ascii_digit()
                && a.as_bytes()[2].is_ascii_digit()
                && after.as_bytes().get(3) == Some(&b':')
        });
    let digit_follows = text
        .get(e + 1..)
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_digit());
    let runs_on = is_word(n) || matches!(n, Some('/' | '-')) || (n == Some('.') && digit_follows);
    !ts && !runs_on
}

/// Calendar check for the numeric forms; written-month forms are checked by the regex.
fn valid(s: &str) -> bool {
    let nums: Vec<u32> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|x| !x.is_empty())
        .filter_map(|x| x.parse().ok())
        .collect();
    let year = |y: u32| if y < 100 { 1900 + y } else { y };
    match nums.as_slice() {
        [y, m, d] if *y >= 1000 => date_ok(*y, *m, *d),
        [a, b, y] if s.bytes().next().is_some_and(|c| c.is_ascii_digit()) => {
            date_ok(year(*y), *a, *b) || date_ok(year(*y), *b, *a)
        }
        [d, y] => (1..=31).contains(d) && (1900..=2030).contains(y),
        _ => false,
    }
}
