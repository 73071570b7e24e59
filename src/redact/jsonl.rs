//! JSONL mode (`audittrail redact --jsonl`): one `{"id","text"}` object per input line, one
//! `{"id","spans":[[start,end,"TYPE"],...],"redacted":"..."}` per output line, in order,
//! flushed after each line (so a caller can stream). `start`/`end` are Unicode code-point
//! offsets (end exclusive), converted from the engine's byte offsets.
//!
//! Failure policy: a malformed line yields `{"id":null,"error":"line N: ..."}` and processing
//! continues; blank lines are skipped; only I/O errors stop the run.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::{Detection, Redactor, TypeCounts};

#[derive(Deserialize)]
struct InLine {
    #[serde(default)]
    id: serde_json::Value,
    text: String,
}

#[derive(Serialize)]
struct OutLine<'a> {
    id: &'a serde_json::Value,
    spans: Vec<(usize, usize, &'static str)>,
    redacted: &'a str,
}

#[derive(Serialize)]
struct ErrLine {
    id: Option<()>,
    error: String,
}

/// Run the JSONL protocol from `input` to `output`.
pub fn run(input: impl BufRead, mut output: impl Write, r: &Redactor) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        buf.clear();
        match serde_json::from_str::<InLine>(&line) {
            Ok(rec) => {
                let found = r.detect(&rec.text);
                let mut counts = TypeCounts::new();
                let redacted = if found.is_empty() {
                    rec.text.clone()
                } else {
                    r.apply(&rec.text, &found, &mut counts)
                };
                let out = OutLine {
                    id: &rec.id,
                    spans: char_spans(&rec.text, &found),
                    redacted: &redacted,
                };
                serde_json::to_writer(&mut buf, &out).map_err(std::io::Error::other)?;
            }
            Err(e) => {
                let out = ErrLine {
                    id: None,
                    error: format!("line {}: {e}", n + 1),
                };
                serde_json::to_writer(&mut buf, &out).map_err(std::io::Error::other)?;
            }
        }
        buf.push(b'\n');
        output.write_all(&buf)?;
        output.flush()?;
    }
    Ok(())
}

/// Byte spans → code-point spans, in one pass over the text (spans are sorted).
pub fn char_spans(text: &str, found: &[Detection]) -> Vec<(usize, usize, &'static str)> {
    let mut marks: Vec<usize> = found.iter().flat_map(|d| [d.start, d.end]).collect();
    marks.sort_unstable();
    let mut conv = Vec::with_capacity(marks.len());
    let (mut chars, mut byte) = (0usize, 0usize);
    let mut it = text.char_indices().peekable();
    for m in &marks {
        while byte < *m {
            match it.next() {
                Some((_, c)) => {
                    byte += c.len_utf8();
                    chars += 1;
                }
                None => break,
            }
        }
        conv.push((*m, chars));
    }
    let lookup = |b: usize| {
        conv.binary_search_by_key(&b, |(x, _)| *x)
            .map_or(0, |i| conv[i].1)
    };
    found
        .iter()
        .map(|d| (lookup(d.start), lookup(d.end), d.kind.as_str()))
        .collect()
}
