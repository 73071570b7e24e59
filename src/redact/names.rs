//! Person-name detector: census dictionaries plus context.
//!
//! Input: plain text, or the value of a name-like JSON field. Output: `PERSON` [`Hit`]s.
//! The text is scanned once for capitalised tokens (`Ann`, `O'Neil`, `Karl-Hermann`, initials
//! `B.`, particles `van der`, CJK runs); runs of tokens separated by single spaces are
//! candidate names. A candidate is a person when
//! - a name context precedes it: `Name:`, a name-like key (`"holder": "`), a greeting or
//!   sign-off (`Hi`, `Dear`, `Kind regards,`), `my name is`, a title (`Mr.`, `Dr.`); or
//! - it starts with a dictionary first name and has a second capitalised word, or ends in a
//!   dictionary surname; or
//! - it is `Last, First` with both parts in the dictionaries.
//!
//! Tech names that are also first names (Jenkins, Julia, Ada, Kafka) and common capitalised
//! words (Team, Customer, Monday) never count as names on their own.

use std::hash::BuildHasherDefault;

use super::name_tokens::{Tok, contraction, ends_phrase, titled, tokens};
use super::name_words::{COMMON, FIRST_NAMES, Fnv, SURNAMES, TECH, TRIGGERS};

use super::PiiType;
use super::engine::{Hit, has, lower_before};

const FIRST: u8 = 1;
const LAST: u8 = 2;
const TECHW: u8 = 4;
const COMMONW: u8 = 8;

pub(super) struct Names {
    /// One lookup per token: FIRST | LAST | TECHW | COMMONW bits.
    class: std::collections::HashMap<&'static str, u8, BuildHasherDefault<Fnv>>,
    /// Trigger phrases keyed by their last word (one lookup per candidate).
    triggers: std::collections::HashMap<&'static str, Vec<&'static str>, BuildHasherDefault<Fnv>>,
}

/// Is this (lower-cased) JSON key one whose value is a person's name?
pub(super) fn is_person_key(k: &str) -> bool {
    let k = k.trim_matches('"');
    k == "name"
        || k.ends_with("_name")
            && !has(k, "user")
            && !has(k, "file")
            && !has(k, "host")
            && !has(k, "service")
            && !has(k, "model")
            && !has(k, "tool")
            && !has(k, "bucket")
            && !has(k, "table")
            && !has(k, "app")
            && !has(k, "company")
            && !has(k, "org")
        || [
            "fullname",
            "holder",
            "beneficiary",
            "counterparty",
            "author",
            "patient",
            "customer",
            "assignee",
            "recipient",
            "passenger",
            "employee",
            "contact_name",
        ]
        .contains(&k)
}

impl Names {
    pub(super) fn new() -> Self {
        let mut class = std::collections::HashMap::default();
        let lists: [(Vec<&'static str>, u8); 4] = [
            (FIRST_NAMES.lines().map(str::trim).collect(), FIRST),
            (SURNAMES.lines().map(str::trim).collect(), LAST),
            (TECH.to_vec(), TECHW),
            (COMMON.to_vec(), COMMONW),
        ];
        for (words, bit) in lists {
            for w in words.into_iter().filter(|w| !w.is_empty()) {
                *class.entry(w).or_insert(0) |= bit;
            }
        }
        let mut triggers: std::collections::HashMap<
            &'static str,
            Vec<&'static str>,
            BuildHasherDefault<Fnv>,
        > = std::collections::HashMap::default();
        for t in TRIGGERS {
            let last = t.rsplit(' ').next().unwrap_or(t);
            triggers.entry(last).or_default().push(t);
        }
        Names { class, triggers }
    }

    pub(super) fn scan(&self, text: &str, out: &mut Vec<Hit>) {
        self.scan_inner(text, false, out);
    }

    /// The value of a name-like field: a leading name is a person even without context.
    pub(super) fn scan_value(&self, text: &str, out: &mut Vec<Hit>) {
        self.scan_inner(text, true, out);
    }

    fn class(&self, w: &str) -> u8 {
        self.class.get(w).copied().unwrap_or(0)
    }

    fn scan_inner(&self, text: &str, field: bool, out: &mut Vec<Hit>) {
        let toks = tokens(text);
        let classes: Vec<u8> = toks
            .iter()
            .map(|t| {
                if t.2 == Tok::Cap {
                    self.class(&text[t.0..t.1])
                } else {
                    0
                }
            })
            .collect();
        let mut i = 0;
        while i < toks.len() {
            let (s0, e0, k0) = toks[i];
            if k0 != Tok::Cap && k0 != Tok::Cjk {
                i += 1;
                continue;
            }
            let c0 = classes[i];
            if c0 & COMMONW != 0 {
                i += 1;
                continue;
            }
            // extend over single-space-separated tokens, at most 4 words
            let mut j = i + 1;
            while j < toks.len() && j - i < 4 && text.get(toks[j - 1].1..toks[j].0) == Some(" ") {
                if classes[j] & COMMONW != 0 {
                    break;
                }
                j += 1;
            }
            while j > i + 1 && toks[j - 1].2 != Tok::Cap && toks[j - 1].2 != Tok::Cjk {
                j -= 1;
            }
            let el = toks[j - 1].1;
            let cl = classes[j - 1];
            let n = j - i;
            // Last, First (with both in the dictionaries, or after a name context)
            if let Some(&(s1, e1, Tok::Cap)) = toks.get(i + 1) {
                let pair = text.get(e0..s1) == Some(", ")
                    && !text[e1..].starts_with(" and ")
                    && !text[e1..].starts_with(", ");
                let known = c0 & LAST != 0 && classes[i + 1] & FIRST != 0;
                if pair
                    && classes[i + 1] & COMMONW == 0
                    && (known || (field && s0 == 0) || self.triggered(text, s0))
                {
                    out.push(Hit::new(s0, e1, PiiType::Person));
                    i += 2;
                    continue;
                }
            }
            let is_tech = c0 & TECHW != 0;
            let dict = k0 == Tok::Cap
                && !is_tech
                && n >= 2
                && (c0 & FIRST != 0 || cl & LAST != 0 && e0 - s0 > 2);
            let accept = dict || {
                let strong = (field && s0 == 0) || self.triggered(text, s0);
                if is_tech {
                    n >= 2 && cl & LAST != 0
                } else if n == 1 && k0 == Tok::Cap {
                    // a lone word after "Hello," must look like a name, not "Here's" or "Wire"
                    strong
                        && !contraction(&text[s0..e0])
                        && (c0 & FIRST != 0 || ends_phrase(text, e0) || titled(text, s0))
                } else {
                    strong
                }
            };
            if accept {
                out.push(Hit::new(s0, el, PiiType::Person));
                i = j;
                continue;
            }
            i += 1;
        }
    }

    /// A name context word right before byte `s`.
    fn triggered(&self, text: &str, s: usize) -> bool {
        // cheap check first: the byte before the trimmed context must end a trigger word
        let b = text.as_bytes();
        let mut k = s;
        while k > 0
            && matches!(
                b[k - 1],
                b' ' | b'\t'
                    | b'\n'
                    | b'\r'
                    | b':'
                    | b'"'
                    | b'\''
                    | b'|'
                    | b'*'
                    | b'='
                    | b'('
                    | b'['
                    | b'{'
                    | b','
                    | b'-'
                    | b'>'
                    | b'`'
            )
        {
            k -= 1;
        }
        if k == 0 || !(b[k - 1].is_ascii_alphabetic() || b[k - 1] == b'.') || s - k > 12 {
            return false;
        }
        let before = lower_before(text, k, 24);
        let t = before.as_str();
        let tb = t.as_bytes();
        let mut ws = tb.len();
        while ws > 0
            && (tb[ws - 1].is_ascii_alphanumeric() || matches!(tb[ws - 1], b'_' | b'.' | b'\''))
        {
            ws -= 1;
        }
        let Some(phrases) = self.triggers.get(&t[ws..]) else {
            return false;
        };
        phrases.iter().any(|w| {
            t.ends_with(w) && {
                let p = t.len() - w.len();
                p == 0 || !tb[p - 1].is_ascii_alphanumeric()
            }
        })
    }
}
