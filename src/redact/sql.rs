//! SQL column context: values of `INSERT INTO t (cols…) VALUES (…), (…)` statements are
//! paired with their column names, so `'1999-07-04'` under `date_of_birth` or `'559712501'`
//! under `ssn` is judged like a JSON field with that key.
//!
//! Input: plain text. Output: calls `on_value(column, start, end)` for each literal (byte
//! range inside the quotes for strings). A tolerant scanner, not a SQL parser: anything it
//! does not recognise ends the statement quietly; work is bounded by the text length.

/// Walk every `INSERT INTO … (columns) VALUES (…)[, (…)]*` statement in `text`.
pub(super) fn insert_values(text: &str, mut on_value: impl FnMut(&str, usize, usize)) {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = find_ci(b, from, b"insert into") {
        from = p + 11;
        let Some(open) = b[from..].iter().position(|&c| c == b'(').map(|k| from + k) else {
            return;
        };
        if b[from..open].contains(&b'\n') && find_ci(&b[from..open], 0, b"values").is_some() {
            continue; // INSERT INTO t VALUES (...) without a column list: no names to use
        }
        let Some(close) = b[open..].iter().position(|&c| c == b')').map(|k| open + k) else {
            return;
        };
        let cols: Vec<&str> = text[open + 1..close]
            .split(',')
            .map(|c| {
                c.trim()
                    .trim_matches(|ch| ch == '`' || ch == '"' || ch == '[' || ch == ']')
            })
            .collect();
        let mut i = close + 1;
        skip_ws(b, &mut i);
        if find_ci(b, i, b"values") != Some(i) {
            continue;
        }
        i += 6;
        loop {
            skip_ws(b, &mut i);
            if b.get(i) != Some(&b'(') {
                break;
            }
            i += 1;
            let mut col = 0;
            loop {
                skip_ws(b, &mut i);
                let (s, e, next) = literal(b, i);
                if let Some(name) = cols.get(col)
                    && e > s
                {
                    on_value(name, s, e);
                }
                i = next;
                skip_ws(b, &mut i);
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        col += 1;
                    }
                    Some(b')') => {
                        i += 1;
                        break;
                    }
                    _ => return,
                }
            }
            skip_ws(b, &mut i);
            if b.get(i) == Some(&b',') {
                i += 1;
            } else {
                break;
            }
        }
        from = from.max(i);
    }
}

/// One literal at `i`: `'…'` (with `''` escapes) gives the inside; otherwise a bare token.
fn literal(b: &[u8], i: usize) -> (usize, usize, usize) {
    if b.get(i) == Some(&b'\'') {
        let mut k = i + 1;
        while k < b.len() {
            if b[k] == b'\'' {
                if b.get(k + 1) == Some(&b'\'') {
                    k += 2;
                    continue;
                }
                return (i + 1, k, k + 1);
            }
            k += 1;
        }
        return (i + 1, i + 1, b.len());
    }
    let mut k = i;
    while k < b.len() && !matches!(b[k], b',' | b')' | b'\n') {
        k += 1;
    }
    let mut e = k;
    while e > i && b[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    (i, e, k)
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

/// Case-insensitive search for an ASCII needle.
fn find_ci(h: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    h.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|k| from + k)
}
