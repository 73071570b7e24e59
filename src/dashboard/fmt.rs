//! How numbers and times read on the pages. Templates get ready-made strings.

/// `2026-11-27T10:01:02.123456Z` → `2026-11-27 10:01:02` (UTC, as stored).
pub fn time(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    let t = t.split('.').next().unwrap_or(t);
    t.replacen('T', " ", 1)
}

/// `1234.5` ms → `1.23 s`; under a second in ms.
pub fn duration_ms(ms: Option<f64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1.0 => format!("{ms:.2} ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) if ms < 60_000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) => format!("{:.1} min", ms / 60_000.0),
    }
}

/// Thousands separated: `12,345`.
pub fn count(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// US dollars with enough digits for per-call costs: `$0.0042`, `$12.30`.
pub fn cost(usd: f64) -> String {
    if usd == 0.0 {
        "$0".into()
    } else if usd < 0.01 {
        format!("${usd:.6}")
    } else if usd < 100.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// Percent-encodes a value for a URL path segment or query value.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form's `datetime-local` value (`2026-11-27T10:00`, taken as UTC) or an RFC 3339 time, as
/// RFC 3339; blank is `None`.
pub fn form_time(v: Option<&str>) -> Option<String> {
    let v = v.map(str::trim).filter(|v| !v.is_empty())?;
    Some(match v.len() {
        16 if !v.ends_with('Z') => format!("{v}:00Z"),
        19 if !v.ends_with('Z') => format!("{v}Z"),
        _ => v.to_owned(),
    })
}

/// A blank form field is no filter.
pub fn blank_none(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The URL of the next page of a list: its filters that are set, then `cursor`.
pub fn next_page_url(path: &str, filters: &[(&str, &Option<String>)], cursor: &str) -> String {
    let mut q: Vec<String> = filters
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", url(v))))
        .collect();
    q.push(format!("cursor={cursor}"));
    format!("{path}?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_well() {
        assert_eq!(time("2026-11-27T10:01:02.123456Z"), "2026-11-27 10:01:02");
        assert_eq!(duration_ms(Some(1234.5)), "1.23 s");
        assert_eq!(duration_ms(Some(12.0)), "12 ms");
        assert_eq!(duration_ms(None), "—");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(12), "12");
        assert_eq!(cost(0.0042), "$0.004200");
        assert_eq!(cost(12.3), "$12.3000");
        assert_eq!(url("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(
            form_time(Some("2026-11-27T10:00")).as_deref(),
            Some("2026-11-27T10:00:00Z")
        );
        assert_eq!(form_time(Some("  ")), None);
    }
}
