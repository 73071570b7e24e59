//! Keyword gates: one vectorised Aho-Corasick pass tells which context keywords a text
//! contains, so detectors that need one (birth dates, bare SSNs, secret assignments, bearer
//! tokens, cookies, AWS secrets, DSNs) are skipped when it is absent.
//!
//! Input: plain text. Output: [`GateHits`]. A gate may open needlessly (a superset test);
//! it never stays shut when its keyword is present in lower, Capitalised or (for the words
//! written so) UPPER case.

/// Which context keywords occur in a text: one case-insensitive Aho-Corasick pass, so that
/// detectors needing a keyword (birth dates, bare SSNs, secret assignments) are skipped
/// when it is absent.
pub(super) struct Gates {
    ac: aho_corasick::AhoCorasick,
    group: Vec<u8>,
}

/// Result of [`Gates::check`].
#[derive(Default)]
pub(super) struct GateHits {
    /// Byte offsets just after each birth word (`born`, `DOB`, ...).
    pub(super) birth_at: Vec<usize>,
    pub(super) ssn: bool,
    /// Byte offsets where each secret word (`pass`, `token`, `key`, ...) starts.
    pub(super) secret_at: Vec<usize>,
    pub(super) bearer: bool,
    pub(super) cookie: bool,
    pub(super) aws: bool,
    pub(super) dsn: bool,
    /// curl-style credentials (` -u `, `--user`).
    pub(super) curl: bool,
    /// An SQL `INSERT INTO` statement (column names give context to values).
    pub(super) sql_insert: bool,
}

/// Keyword stems and their group. Matched in lower and Capitalised case, and UPPER for the
/// words written that way (`DOB`, `SSN`, `AWS_SECRET_KEY`); explicit variants rather than a
/// case-insensitive automaton keep it under 64 patterns, small enough for the vectorised
/// Teddy searcher.
const GATE_WORDS: &[(&str, u8)] = &[
    ("born", 0),
    ("dob", 0),
    ("d.o.b", 0),
    ("birth", 0),
    ("geb", 0),
    ("né ", 0),
    ("nacid", 0),
    ("nato ", 0),
    ("nata ", 0),
    ("naiss", 0),
    ("nasci", 0),
    ("ssn", 1),
    ("social", 1),
    ("pass", 2),
    ("pwd", 2),
    ("secret", 2),
    ("token", 2),
    ("key", 2),
    ("credential", 2),
    ("bearer", 3),
    ("basic", 3),
    ("cookie", 4),
    ("aws", 5),
    ("://", 6),
    ("insert into", 7),
    (" -u ", 8),
    ("--user", 8),
];

impl Gates {
    pub(super) fn new() -> Self {
        let mut words: Vec<String> = Vec::new();
        let mut group = Vec::new();
        for (w, g) in GATE_WORDS {
            let mut cap = w.to_string();
            if let Some(f) = cap.get_mut(..1) {
                f.make_ascii_uppercase();
            }
            let upper = matches!(*g, 1 | 2 | 5 | 7) || *w == "dob";
            let variants = [
                Some(w.to_string()),
                Some(cap),
                upper.then(|| w.to_ascii_uppercase()),
            ];
            for v in variants.into_iter().flatten() {
                if !words.contains(&v) {
                    words.push(v);
                    group.push(*g);
                }
            }
        }
        let ac = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(&words)
            .expect("built-in gate words compile");
        Gates { ac, group }
    }

    pub(super) fn check(&self, text: &str) -> GateHits {
        let mut f = GateHits::default();
        for m in self.ac.find_iter(text) {
            match self.group.get(m.pattern().as_usize()) {
                Some(0) => f.birth_at.push(m.end()),
                Some(1) => f.ssn = true,
                Some(2) => f.secret_at.push(m.start()),
                Some(3) => f.bearer = true,
                Some(4) => f.cookie = true,
                Some(5) => f.aws = true,
                Some(6) => f.dsn = true,
                Some(7) => f.sql_insert = true,
                Some(8) => f.curl = true,
                _ => {}
            }
        }
        f
    }
}
