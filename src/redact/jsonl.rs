//! JSONL mode (`audittrail redact --jsonl`): one `{"id","text"}` object per input line, one
//! `{"id","spans":[[start,end,"TYPE"],...],"redacted":"..."}` per output line, in order.
//! `start`/`end` are Unicode code-point offsets (end exclusive), converted from the engine's
//! byte offsets.
//!
//! Streaming: output is buffered and flushed whenever the input has no more data ready, i.e.
//! before every read that could block, so a caller that waits for the answer to a line
//! always gets it, without paying one `write` per line on bulk input.
//!
//! Zero-copy: lines are parsed from the input buffer in place (the text is borrowed unless
//! it holds escapes) and the output line is written directly, escaping and replacing in one
//! pass, with no intermediate redacted string.
//!
//! Failure policy: a malformed line yields `{"id":null,"error":"line N: ..."}` and processing
//! continues; blank lines are skipped; only I/O errors stop the run.

use std::borrow::Cow;
use std::io::{BufRead, BufWriter, Write};

use serde::{Deserialize, Serialize};

use super::engine::{HI, LO, skip_chunks};
use super::{Detection, Redactor, replace};

#[derive(Deserialize)]
struct InLine<'a> {
    #[serde(default)]
    id: serde_json::Value,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Serialize)]
struct ErrLine {
    id: Option<()>,
    error: String,
}

/// Run the JSONL protocol from `input` to `output`.
pub fn run(mut input: impl BufRead, output: impl Write, r: &Redactor) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, output);
    let mut w = LineWriter::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut n = 0usize;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            if !pending.is_empty() {
                n += 1;
                w.line(r, n, &pending, &mut out)?;
            }
            break;
        }
        let len = chunk.len();
        let mut at = 0;
        while let Some(p) = memchr::memchr(b'\n', &chunk[at..]) {
            let end = at + p;
            n += 1;
            if pending.is_empty() {
                w.line(r, n, &chunk[at..end], &mut out)?;
            } else {
                pending.extend_from_slice(&chunk[at..end]);
                w.line(r, n, &pending, &mut out)?;
                pending.clear();
            }
            at = end + 1;
        }
        pending.extend_from_slice(&chunk[at..]);
        input.consume(len);
        // the next `fill_buf` may block: deliver every answer we have first
        out.flush()?;
    }
    out.flush()
}

/// Reused buffers for one output line.
#[derive(Default)]
struct LineWriter {
    buf: Vec<u8>,
    token: String,
}

impl LineWriter {
    fn line(
        &mut self,
        r: &Redactor,
        n: usize,
        raw: &[u8],
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.trim_ascii().is_empty()
            || std::str::from_utf8(raw).is_ok_and(|s| s.trim().is_empty())
        {
            return Ok(());
        }
        self.buf.clear();
        match serde_json::from_slice::<InLine>(raw) {
            Ok(rec) => {
                let text: &str = &rec.text;
                let found = r.detect(text);
                self.buf.extend_from_slice(b"{\"id\":");
                serde_json::to_writer(&mut self.buf, &rec.id).map_err(std::io::Error::other)?;
                self.buf.extend_from_slice(b",\"spans\":[");
                write_spans(text, &found, &mut self.buf);
                self.buf.extend_from_slice(b"],\"redacted\":\"");
                let mut at = 0;
                for d in &found {
                    let (Some(before), Some(value)) =
                        (text.get(at..d.start), text.get(d.start..d.end))
                    else {
                        continue;
                    };
                    escape_into(before, &mut self.buf);
                    self.token.clear();
                    replace::push_token(r.replacement(), d.kind, value, &mut self.token);
                    escape_into(&self.token, &mut self.buf);
                    at = d.end;
                }
                escape_into(text.get(at..).unwrap_or(""), &mut self.buf);
                self.buf.extend_from_slice(b"\"}");
            }
            Err(e) => {
                let err = ErrLine {
                    id: None,
                    error: format!("line {n}: {e}"),
                };
                serde_json::to_writer(&mut self.buf, &err).map_err(std::io::Error::other)?;
            }
        }
        self.buf.push(b'\n');
        out.write_all(&self.buf)
    }
}

/// `[start,end,"TYPE"],...` in code points.
fn write_spans(text: &str, found: &[Detection], buf: &mut Vec<u8>) {
    for (k, (s, e, t)) in char_spans(text, found).into_iter().enumerate() {
        if k > 0 {
            buf.push(b',');
        }
        buf.push(b'[');
        push_usize(s, buf);
        buf.push(b',');
        push_usize(e, buf);
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(t.as_bytes());
        buf.extend_from_slice(b"\"]");
    }
}

/// Decimal digits of `n`, without the formatting machinery (spans are most of a line's output).
fn push_usize(mut n: usize, buf: &mut Vec<u8>) {
    let mut tmp = [0u8; 20];
    let mut at = tmp.len();
    loop {
        at -= 1;
        tmp[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[at..]);
}

/// Bytes that must be escaped inside a JSON string.
const fn escape_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
}
static NEEDS_ESCAPE: [bool; 256] = escape_table();

/// Does any of the 8 bytes of `x` need escaping: a control byte, `"` or `\\`?
fn word_needs_escape(x: u64) -> bool {
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI != 0;
    // bytes below 0x20 (`hasless`; exact for "any byte" even when borrows ripple)
    x.wrapping_sub(LO * 0x20) & !x & HI != 0 || zero(x ^ (LO * 0x22)) || zero(x ^ (LO * 0x5c))
}

/// Append `s` as JSON string content (same escapes as `serde_json`), copying clean runs whole.
/// Clean 8-byte words are skipped without a per-byte table lookup.
fn escape_into(s: &str, buf: &mut Vec<u8>) {
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        // the next word needing an escape, or the unaligned tail
        i = skip_chunks(b, i, word_needs_escape);
        let end = (i + 8).min(b.len());
        for k in i..end {
            escape_byte(b, k, &mut start, buf);
        }
        i = end;
    }
    buf.extend_from_slice(&b[start..]);
}

/// If `b[i]` needs an escape: copy the clean run `b[start..i]`, then the escape.
#[inline(always)]
fn escape_byte(b: &[u8], i: usize, start: &mut usize, buf: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let c = b[i];
    if !NEEDS_ESCAPE[usize::from(c)] {
        return;
    }
    buf.extend_from_slice(&b[*start..i]);
    match c {
        b'"' => buf.extend_from_slice(b"\\\""),
        b'\\' => buf.extend_from_slice(b"\\\\"),
        b'\n' => buf.extend_from_slice(b"\\n"),
        b'\r' => buf.extend_from_slice(b"\\r"),
        b'\t' => buf.extend_from_slice(b"\\t"),
        0x08 => buf.extend_from_slice(b"\\b"),
        0x0c => buf.extend_from_slice(b"\\f"),
        _ => buf.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(c >> 4)],
            HEX[usize::from(c & 15)],
        ]),
    }
    *start = i + 1;
}

/// Byte spans → code-point spans, in one pass over the text (spans are sorted).
pub fn char_spans(text: &str, found: &[Detection]) -> Vec<(usize, usize, &'static str)> {
    if text.is_ascii() {
        return found
            .iter()
            .map(|d| (d.start, d.end, d.kind.as_str()))
            .collect();
    }
    let b = text.as_bytes();
    // code points in b[..i]: count the bytes that start a char
    let mut byte = 0usize;
    let mut chars = 0usize;
    let mut to_chars = |m: usize| {
        let m = m.min(b.len());
        if m >= byte {
            chars += b[byte..m].iter().filter(|&&c| (c as i8) >= -0x40).count();
        } else {
            chars -= b[m..byte].iter().filter(|&&c| (c as i8) >= -0x40).count();
        }
        byte = m;
        chars
    };
    found
        .iter()
        .map(|d| {
            let s = to_chars(d.start);
            let e = to_chars(d.end);
            (s, e, d.kind.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json_at_every_alignment() {
        // every byte that needs an escape, at every offset of an 8-byte word, among clean
        // ASCII and multi-byte text
        let mut specials: Vec<char> = (0u8..0x20).map(char::from).collect();
        specials.extend(['"', '\\', '/', 'é', '😀', '\u{7f}', ' ', '!', '#', '[', ']']);
        for c in &specials {
            for pad in 0..17 {
                let s = format!("{}{c}{}abc{c}", "x".repeat(pad), "é".repeat(pad % 3));
                let mut ours = Vec::new();
                escape_into(&s, &mut ours);
                let theirs = serde_json::to_string(&s).unwrap();
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    theirs[1..theirs.len() - 1],
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn span_offsets_are_plain_decimals() {
        for n in [0usize, 7, 10, 99, 100, 65_535, usize::MAX] {
            let mut buf = Vec::new();
            push_usize(n, &mut buf);
            assert_eq!(String::from_utf8(buf).unwrap(), n.to_string());
        }
    }
}
