//! Escape-decoded view of a text, with a byte map back to the original.
//!
//! Agent traces often carry JSON that was serialised twice, so PII reaches the redactor as
//! `R\u00e9my`, `\"name\": \"Ann\"` or `Thanks,\nAnn`. Detectors run on a decoded copy
//! (`\uXXXX` incl. surrogate pairs, `\n \t \r \" \\ \/`; up to three nested levels) and every
//! span is mapped back to the original bytes, so the redaction covers the escaped form.
//!
//! Invariants: `map.len() == text.len() + 1`; `map` is non-decreasing; a decoded char boundary
//! maps to the start of the escape (or raw char) that produced it, and `map[text.len()]` is the
//! original length. Unknown or malformed escapes are copied through unchanged (never an error).

/// A decoded text plus, for each decoded byte, the original byte offset it came from.
pub(super) struct Decoded {
    pub(super) text: String,
    map: Vec<u32>,
}

impl Decoded {
    /// Original byte range for a decoded byte range.
    pub(super) fn to_original(&self, start: usize, end: usize) -> (usize, usize) {
        let get = |i: usize| self.map.get(i).copied().unwrap_or(0) as usize;
        (get(start), get(end))
    }
}

/// True when `s` holds a backslash escape that decoding would change.
pub(super) fn has_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(p) = b.get(from..).and_then(|r| memchr::memchr(b'\\', r)) {
        let i = from + p;
        if matches!(
            b.get(i + 1),
            Some(b'u' | b'n' | b't' | b'r' | b'"' | b'\\' | b'/')
        ) {
            return true;
        }
        from = i + 1;
    }
    false
}

/// Decode escapes, repeating for nested levels (at most 3). `None` when there is nothing to do
/// or the text is too large for 32-bit offsets.
pub(super) fn decode(s: &str) -> Option<Decoded> {
    if !has_escapes(s) || s.len() >= u32::MAX as usize {
        return None;
    }
    let mut cur = decode_once(s);
    for _ in 0..2 {
        if !has_escapes(&cur.text) {
            break;
        }
        let next = decode_once(&cur.text);
        let map = next
            .map
            .iter()
            .map(|&i| cur.map.get(i as usize).copied().unwrap_or(0))
            .collect();
        cur = Decoded {
            text: next.text,
            map,
        };
    }
    Some(cur)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let h = b.get(..4)?;
    let s = std::str::from_utf8(h).ok()?;
    u32::from_str_radix(s, 16).ok()
}

fn decode_once(s: &str) -> Decoded {
    let b = s.as_bytes();
    let mut text = String::with_capacity(s.len());
    let mut map = Vec::with_capacity(s.len() + 1);
    let mut i = 0;
    let push = |text: &mut String, map: &mut Vec<u32>, c: char, at: usize| {
        let before = text.len();
        text.push(c);
        map.extend(std::iter::repeat_n(at as u32, text.len() - before));
    };
    while i < b.len() {
        // copy the run up to the next backslash in bulk (raw bytes map one to one)
        let run = b[i..]
            .iter()
            .position(|&c| c == b'\\')
            .unwrap_or(b.len() - i);
        if run > 0 {
            text.push_str(&s[i..i + run]);
            map.extend((i..i + run).map(|k| k as u32));
            i += run;
            continue;
        }
        let (out, used) = match b.get(i + 1) {
            Some(b'n') => (Some('\n'), 2),
            Some(b't') => (Some('\t'), 2),
            Some(b'r') => (Some('\r'), 2),
            Some(b'"') => (Some('"'), 2),
            Some(b'\\') => (Some('\\'), 2),
            Some(b'/') => (Some('/'), 2),
            Some(b'u') => unicode_escape(b, i),
            _ => (None, 1),
        };
        match out {
            Some(ch) => push(&mut text, &mut map, ch, i),
            None => push(&mut text, &mut map, '\\', i),
        }
        i += used;
    }
    map.push(s.len() as u32);
    Decoded { text, map }
}

/// `\uXXXX` (with a following low surrogate when needed) starting at `i`.
fn unicode_escape(b: &[u8], i: usize) -> (Option<char>, usize) {
    let Some(hi) = b.get(i + 2..).and_then(hex4) else {
        return (None, 1);
    };
    if (0xD800..0xDC00).contains(&hi) {
        let lo = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
            .then(|| b.get(i + 8..).and_then(hex4))
            .flatten();
        if let Some(lo) = lo.filter(|l| (0xDC00..0xE000).contains(l)) {
            let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return (char::from_u32(cp), 12);
        }
        return (None, 1);
    }
    match char::from_u32(hi) {
        Some(c) => (Some(c), 6),
        None => (None, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_maps_back() {
        let s = r#"R\u00e9my \"x\" \ud83d\ude00 ok"#;
        let d = decode(s).expect("has escapes");
        assert_eq!(d.text, "Rémy \"x\" 😀 ok");
        let start = d.text.find("Rémy").unwrap_or(0);
        let (a, b) = d.to_original(start, start + "Rémy".len());
        assert_eq!(&s[a..b], r"R\u00e9my");
    }

    #[test]
    fn nested_levels_and_passthrough() {
        let s = r#"{\\\"name\\\": \\\"Ann\\\"} C:\Users"#;
        let d = decode(s).expect("has escapes");
        assert!(d.text.contains("\"name\": \"Ann\""), "{}", d.text);
        assert!(decode("plain text").is_none());
        let d = decode(r"bad \uZZZZ and \q").expect("has \\u");
        assert_eq!(d.text, r"bad \uZZZZ and \q");
    }
}
