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

use std::collections::HashSet;

use super::engine::{lower_before, Hit};
use super::PiiType;

const FIRST_NAMES: &str = include_str!("data/first_names.txt");
const SURNAMES: &str = include_str!("data/surnames.txt");

/// Words that name software, not people, in agent traces.
const TECH: &[&str] = &[
    "Jenkins", "Julia", "Ada", "Kafka", "Celery", "Dart", "Sinatra", "Sentry", "Maven", "Bazel",
    "Grafana", "Vera", "Hadoop", "Lorenz", "Ansible", "Hudson", "Phoenix", "Django", "Prometheus",
    "Pascal", "Kotlin", "Elixir", "Jasmine", "Sidekiq", "Cassandra", "Ruby", "Mocha", "Python",
    "Rust", "Swift", "Docker", "Redis", "Flask", "Rails", "Spark", "Kibana", "Scala", "Perl",
    "Haskell", "Erlang", "Nginx", "Apache", "React", "Angular", "Vue", "Svelte", "Ember",
    "Laravel", "Alpine", "Debian", "Ubuntu", "Fedora", "Hugo", "Jekyll", "Gatsby", "Apollo",
    "Hermes", "Athena", "Minerva", "Iris", "Nova", "Aurora", "Jest", "Chef", "Puppet", "Salt",
    "Vagrant", "Consul", "Nomad", "Vault", "Envoy", "Kong", "Istio", "Linkerd", "Helm", "Flux",
    "Argo", "Tekton", "Travis", "Circle", "Drone", "Gitlab", "Github", "Jira", "Confluence",
    "Slack", "Zoom", "Teams", "Stripe", "Plaid", "Twilio", "Claude", "Gemini", "Llama", "Mistral",
];

/// Capitalised words that start sentences, greet or label, and are not names.
const COMMON: &[&str] = &[
    "Hi", "Hello", "Hey", "Dear", "Thanks", "Thank", "Regards", "Best", "Kind", "Cheers",
    "Sincerely", "Name", "Customer", "Team", "All", "Everyone", "There", "Sir", "Madam",
    "World", "Support", "Mr", "Ms", "Mrs", "Dr", "Prof", "The", "This", "That", "Please", "Can",
    "Could", "Would", "Will", "Our", "Your", "My", "We", "You", "They", "He", "She", "It", "If",
    "When", "What", "Why", "How", "Who", "And", "But", "Or", "For", "From", "To", "In", "On",
    "At", "By", "With", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
    "Sunday", "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December", "Street", "Avenue", "Road", "Account",
    "Holder", "Patient", "Client", "User", "Admin", "Manager", "Sign", "Ship", "Forward",
    "Note", "Verified", "Created", "Error", "Warning", "Info", "Debug", "Observation",
    "Thought", "Action", "Input", "Question", "Answer", "Final", "Summary", "Ticket", "Order",
    "Refund", "Invoice", "Payment", "Card", "Phone", "Email", "Address", "Date", "Birth",
    "Good", "Morning", "Afternoon", "Evening", "Quick", "Urgent", "Just", "Also", "Yes", "No",
    "Sorry", "Ok", "Okay", "Great", "Sure", "Here", "Contact", "Legal", "Bank", "Inc", "Ltd",
    "Corp", "Group", "Company", "Service", "Services", "Global", "International", "University",
    "Hospital", "Foods", "Logistics", "Solutions", "Systems", "Technologies", "Partners",
];

/// Preceding words (lower-case, trailing `:"'|*=` etc. stripped) that introduce a name.
const TRIGGERS: &[&str] = &[
    "name", "full_name", "fullname", "first_name", "last_name", "display_name", "holder",
    "holder_name", "account holder", "beneficiary", "counterparty", "author", "patient",
    "customer", "contact", "assignee", "recipient", "passenger", "employee", "landlord",
    "tenant", "legal name", "my name is", "name is", "i'm", "i am", "this is", "dear", "hi",
    "hello", "hey", "regards", "thanks", "thank you", "best", "cheers", "sincerely",
    "sign it", "signed", "attn", "mr.", "mrs.", "ms.", "dr.", "prof.", "mr", "mrs", "ms", "dr",
    "new hire", "manager", "verified", "created for", "noted", "note to", "forward this to",
    "cc", "emergency contact", "pt", "owner", "applicant", "guest", "member", "traveler",
    "insured", "spouse", "witness", "to:", "ship it to", "kyc: verified",
];

const PARTICLES: &[&str] = &[
    "van", "der", "den", "de", "da", "von", "di", "del", "della", "la", "le", "du", "dos",
    "das", "ten", "ter", "bin", "al",
];

#[derive(Clone, Copy, PartialEq)]
enum Tok {
    Cap,
    Initial,
    Particle,
    Cjk,
}

pub(super) struct Names {
    first: HashSet<&'static str>,
    last: HashSet<&'static str>,
    tech: HashSet<&'static str>,
    common: HashSet<&'static str>,
}

/// Is this (lower-cased) JSON key one whose value is a person's name?
pub(super) fn is_person_key(k: &str) -> bool {
    let k = k.trim_matches('"');
    k == "name" || k.ends_with("_name") && !k.contains("user") && !k.contains("file") && !k.contains("host") && !k.contains("service") && !k.contains("model") && !k.contains("tool") && !k.contains("bucket") && !k.contains("table") && !k.contains("app") && !k.contains("company") && !k.contains("org")
        || ["fullname", "holder", "beneficiary", "counterparty", "author", "patient", "customer", "assignee", "recipient", "passenger", "employee", "contact_name"].contains(&k)
}

impl Names {
    pub(super) fn new() -> Self {
        let set = |s: &'static str| s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        Names {
            first: set(FIRST_NAMES),
            last: set(SURNAMES),
            tech: TECH.iter().copied().collect(),
            common: COMMON.iter().copied().collect(),
        }
    }

    pub(super) fn scan(&self, text: &str, out: &mut Vec<Hit>) {
        self.scan_inner(text, false, out);
    }

    /// The value of a name-like field: a leading name is a person even without context.
    pub(super) fn scan_value(&self, text: &str, out: &mut Vec<Hit>) {
        self.scan_inner(text, true, out);
    }

    fn scan_inner(&self, text: &str, field: bool, out: &mut Vec<Hit>) {
        let toks = tokens(text);
        let mut i = 0;
        while i < toks.len() {
            let (s0, e0, k0) = toks[i];
            if k0 != Tok::Cap && k0 != Tok::Cjk {
                i += 1;
                continue;
            }
            let w0 = &text[s0..e0];
            if self.common.contains(w0) {
                i += 1;
                continue;
            }
            // extend over single-space-separated tokens, at most 4 words
            let mut j = i + 1;
            while j < toks.len() && j - i < 4 && text.get(toks[j - 1].1..toks[j].0) == Some(" ") {
                let w = &text[toks[j].0..toks[j].1];
                if self.common.contains(w) || self.tech.contains(w) {
                    break;
                }
                j += 1;
            }
            while j > i + 1 && toks[j - 1].2 != Tok::Cap && toks[j - 1].2 != Tok::Cjk {
                j -= 1;
            }
            let (sl, el, _) = toks[j - 1];
            let wl = &text[sl..el];
            let n = j - i;
            let strong = (field && s0 == 0) || self.triggered(text, s0);
            let is_tech = self.tech.contains(w0);
            let accept = if k0 == Tok::Cjk {
                strong
            } else if is_tech {
                n >= 2 && self.last.contains(wl)
            } else if strong {
                true
            } else {
                n >= 2 && (self.first.contains(w0) || self.last.contains(wl) && w0.len() > 2)
            };
            if accept {
                out.push(Hit::new(s0, el, PiiType::Person));
                i = j;
                continue;
            }
            // Last, First
            if let Some(&(s1, e1, Tok::Cap)) = toks.get(i + 1) {
                if text.get(e0..s1) == Some(", ") && self.last.contains(w0) && self.first.contains(&text[s1..e1]) {
                    out.push(Hit::new(s0, e1, PiiType::Person));
                    i += 2;
                    continue;
                }
            }
            i += 1;
        }
    }

    /// A name context word right before byte `s`.
    fn triggered(&self, text: &str, s: usize) -> bool {
        let before = lower_before(text, s, 40);
        let t = before.trim_end_matches([' ', '\t', '\n', '\r', ':', '"', '\'', '|', '*', '=', '(', '[', '{', ',', '-', '>', '`']);
        TRIGGERS.iter().any(|w| {
            t.ends_with(w) && {
                let p = t.len() - w.len();
                p == 0 || !t.as_bytes()[p - 1].is_ascii_alphanumeric()
            }
        })
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF)
}

/// Capitalised words, initials, particles and CJK runs, as (start, end, kind).
fn tokens(text: &str) -> Vec<(usize, usize, Tok)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev_alnum = false;
    while i < b.len() {
        let c0 = b[i];
        if c0 < 0x80 {
            if c0.is_ascii_uppercase() && !prev_alnum {
                let e = word_end(text, i);
                push_word(text, i, e, &mut out);
                i = e.max(i + 1);
                prev_alnum = true;
                continue;
            }
            if c0.is_ascii_lowercase() && !prev_alnum && i > 0 && b[i - 1] == b' ' {
                let e = word_end(text, i);
                if PARTICLES.contains(&&text[i..e]) && out.last().is_some_and(|t: &(usize, usize, Tok)| t.1 + 1 == i) {
                    out.push((i, e, Tok::Particle));
                }
                i = e.max(i + 1);
                prev_alnum = true;
                continue;
            }
            prev_alnum = c0.is_ascii_alphanumeric() || c0 == b'_';
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
    } else if n_chars >= 2 && w.chars().skip(1).any(char::is_lowercase) && !w.chars().skip(1).take(1).any(char::is_uppercase) {
        // Ann, O'Neil, McDonald, Karl-Hermann; not ALLCAPS, not CamelCase identifiers
        if next.is_none_or(|c| !(c.is_ascii_digit() || c == '_' || c == '(')) {
            out.push((s, e, Tok::Cap));
        }
    }
}
