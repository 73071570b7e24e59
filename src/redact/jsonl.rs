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
        while let Some(p) = chunk[at..].iter().position(|&c| c == b'\n') {
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
        let _ = write!(buf, "[{s},{e},\"{t}\"]");
    }
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

/// Append `s` as JSON string content (same escapes as `serde_json`), copying clean runs whole.
fn escape_into(s: &str, buf: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if !NEEDS_ESCAPE[usize::from(c)] {
            continue;
        }
        buf.extend_from_slice(&b[start..i]);
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
        start = i + 1;
    }
    buf.extend_from_slice(&b[start..]);
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
