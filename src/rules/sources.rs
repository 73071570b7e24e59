//! Which sources (URLs, document ids) a retrieval or search step returned.
//!
//! Input: one event. Output: new source strings appended to a trace's list.
//! A step counts as a source step when its kind is `retrieval`, or it is a `tool` whose
//! name mentions searching or fetching (see [`SEARCH_TOOL_WORDS`]). From its `output` we
//! take `url`/`id`/`source`/… fields of items in the usual result lists (`documents`,
//! `results`, …, or the output itself when it is a list), and every `http(s)://` URL in any
//! string inside the output.
//!
//! Invariants: no duplicates, first-seen order, at most `cap` entries, each at most
//! [`MAX_SOURCE_LEN`] bytes; the walk is depth- and count-bounded.
//! Failure policy: shapes that do not match are skipped silently.

use serde_json::Value;

/// Tool names containing one of these are treated as search/retrieval steps.
pub const SEARCH_TOOL_WORDS: [&str; 8] = [
    "search", "retriev", "browse", "fetch", "web", "lookup", "rag", "crawl",
];
/// Output fields that hold lists of retrieved items.
const LIST_FIELDS: [&str; 7] = [
    "documents",
    "results",
    "sources",
    "citations",
    "hits",
    "items",
    "docs",
];
/// Item fields that identify a source.
const ID_FIELDS: [&str; 8] = [
    "url",
    "id",
    "source",
    "link",
    "uri",
    "doc_id",
    "document_id",
    "href",
];
/// Longest source string kept.
pub const MAX_SOURCE_LEN: usize = 2048;
/// How deep and how many strings the URL scan visits.
const MAX_DEPTH: usize = 8;
const MAX_STRINGS: usize = 512;

fn is_source_step(event: &Value) -> bool {
    match event["kind"].as_str() {
        Some("retrieval") => true,
        Some("tool") => event["name"].as_str().is_some_and(|name| {
            let name = name.to_ascii_lowercase();
            SEARCH_TOOL_WORDS.iter().any(|w| name.contains(w))
        }),
        _ => false,
    }
}

/// Appends the sources of `event` (if it is a source step) to `out`.
pub(super) fn collect(event: &Value, out: &mut Vec<String>, cap: usize) {
    if !is_source_step(event) {
        return;
    }
    let output = &event["output"];
    let mut push = |s: &str| {
        let s = s.trim();
        if !s.is_empty()
            && s.len() <= MAX_SOURCE_LEN
            && out.len() < cap
            && !out.iter().any(|o| o == s)
        {
            out.push(s.to_owned());
        }
    };
    let lists = LIST_FIELDS.iter().filter_map(|f| output[*f].as_array());
    for items in lists.chain(output.as_array()) {
        for item in items {
            for field in ID_FIELDS {
                match &item[field] {
                    Value::String(s) => push(s),
                    Value::Number(n) => push(&n.to_string()),
                    _ => {}
                }
            }
        }
    }
    let mut budget = MAX_STRINGS;
    scan_urls(output, 0, &mut budget, &mut push);
}

fn scan_urls(value: &Value, depth: usize, budget: &mut usize, push: &mut impl FnMut(&str)) {
    if depth > MAX_DEPTH || *budget == 0 {
        return;
    }
    match value {
        Value::String(s) => {
            *budget -= 1;
            for url in urls_in(s) {
                push(url);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| scan_urls(v, depth + 1, budget, push)),
        Value::Object(fields) => fields
            .values()
            .for_each(|v| scan_urls(v, depth + 1, budget, push)),
        _ => {}
    }
}

/// Bytes that end a URL besides whitespace (`c.is_whitespace()` covers non-ASCII spaces).
const URL_STOP: &[u8] = b"\"'<>()[]{}|\\^`";

/// `http://` and `https://` URLs in free text, without trailing punctuation.
///
/// One vectorised search for `http` per URL (a prebuilt `memmem` finder), then a byte scan
/// to the URL's end: this runs over every string of every retrieval output, in the writer.
pub(super) fn urls_in(text: &str) -> impl Iterator<Item = &str> {
    static HTTP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("http"));
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            let start = at + HTTP.find(text.as_bytes().get(at..)?)?;
            let tail = &text[start..];
            if !(tail.starts_with("http://") || tail.starts_with("https://")) {
                at = start + 4;
                continue;
            }
            let end = tail
                .char_indices()
                .find(|&(_, c)| {
                    if c.is_ascii() {
                        c.is_ascii_whitespace() || c == '\u{0b}' || URL_STOP.contains(&(c as u8))
                    } else {
                        c.is_whitespace()
                    }
                })
                .map_or(tail.len(), |(i, _)| i);
            at = start + end;
            return Some(tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?']));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The straightforward definition `urls_in` must keep matching (stored sources feed
    /// `rules replay`, so the URLs found in old events must not change).
    fn reference(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let start = match (rest.find("http://"), rest.find("https://")) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(s) => s,
                    None => return out,
                },
            };
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| c.is_whitespace() || "\"'<>()[]{}|\\^`".contains(c))
                .unwrap_or(tail.len());
            rest = &tail[end..];
            out.push(tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?']));
        }
    }

    #[test]
    fn finds_urls_in_prose_and_json() {
        let text = "see https://a.example/x?q=1. and (http://b.example/y), \
                    httpx://no http:/no https://c.example/\u{a0}tail \"https://d.example/\"";
        assert_eq!(
            urls_in(text).collect::<Vec<_>>(),
            [
                "https://a.example/x?q=1",
                "http://b.example/y",
                "https://c.example/",
                "https://d.example/"
            ]
        );
        assert_eq!(urls_in(text).collect::<Vec<_>>(), reference(text));
    }

    proptest! {
        #[test]
        fn matches_the_reference_definition(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("http://".to_string()),
                    Just("https://".to_string()),
                    Just("http".to_string()),
                    Just("https:/".to_string()),
                    "[a-z./?=:,;!-]{0,6}",
                    prop::sample::select(vec![
                        " ", "\t", "\u{0b}", "\u{0c}", "\u{a0}", "\u{3000}", "\u{85}", "é", "\"",
                        "'", "<", ")", "]", "}", "|", "\\", "^", "`",
                    ])
                    .prop_map(str::to_string),
                ],
                0..24,
            )
        ) {
            let text = parts.concat();
            prop_assert_eq!(urls_in(&text).collect::<Vec<_>>(), reference(&text));
        }
    }
}
