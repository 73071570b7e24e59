//! Validators: the checksums and shape rules that turn regex candidates into detections.
//!
//! Input: a candidate slice (and sometimes its surroundings). Output: yes/no, or the length of
//! the valid prefix. Pure functions with no allocation on the hot path; they never panic on any
//! input (all indexing is bounds-checked), so a hostile string cannot take the stage down.

/// Luhn checksum over ASCII digits (separators must already be stripped).
pub(super) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if v > 9 {
            return false;
        }
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Card brand plausibility: issuer prefix and a length that brand issues.
pub(super) fn card_brand_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| -> u32 {
        d.iter()
            .take(k)
            .fold(0u32, |a, b| a * 10 + u32::from(b.wrapping_sub(b'0')))
    };
    match d.first() {
        Some(b'4') => n == 13 || n == 16 || n == 19,
        Some(b'5') => n == 16 && (51..=55).contains(&p(2)),
        Some(b'2') => n == 16 && (2221..=2720).contains(&p(4)),
        Some(b'3') => match p(2) {
            34 | 37 => n == 15,
            36 | 38 | 39 => n == 14 || n == 16,
            30 => (n == 14 || n == 16) && (300..=305).contains(&p(3)),
            35 => n == 16 && (3528..=3589).contains(&p(4)),
            _ => false,
        },
        Some(b'6') => {
            (16..=19).contains(&n)
                && (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62)
        }
        _ => false,
    }
}

/// Registered IBAN length per country (ISO 13616 registry, common countries).
pub(super) fn iban_len(cc: &[u8]) -> Option<usize> {
    let cc = [
        cc.first()?.to_ascii_uppercase(),
        cc.get(1)?.to_ascii_uppercase(),
    ];
    Some(match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"CH" | b"CR" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        _ => return None,
    })
}

/// ISO 7064 mod-97 check of a compact IBAN (letters in either case).
pub(super) fn iban_mod97(iban: &[u8]) -> bool {
    if iban.len() < 15 {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head.iter()) {
        let c = c.to_ascii_uppercase();
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// US SSN issuance rules: area not 000/666/9xx, group not 00, serial not 0000.
pub(super) fn ssn_ok(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = &d[..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &d[3..5] != b"00" && &d[5..] != b"0000"
}

/// A public, routable-looking IPv4 or private address worth redacting (not loopback,
/// unspecified, broadcast or a netmask).
pub(super) fn ipv4_ok(s: &str) -> bool {
    let Ok(ip) = s.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let o = ip.octets();
    if ip.is_loopback() || ip.is_unspecified() || ip.is_broadcast() || o[0] == 0 {
        return false;
    }
    // Netmasks: contiguous leading ones.
    let v = u32::from(ip);
    if o[0] == 255 && v.leading_ones() + v.trailing_zeros() == 32 {
        return false;
    }
    true
}

/// An IPv6 address that identifies a host (not `::`, `::1`), written with enough hex to be
/// more than a C++ `a::b` path.
pub(super) fn ipv6_ok(s: &str) -> bool {
    let Ok(ip) = s.parse::<std::net::Ipv6Addr>() else {
        return false;
    };
    if ip.is_loopback() || ip.is_unspecified() {
        return false;
    }
    let groups = s.split(':').filter(|g| !g.is_empty()).count();
    let hex_digits = s.bytes().filter(u8::is_ascii_hexdigit).count();
    groups >= 3 && hex_digits >= 8 && s.bytes().any(|b| b.is_ascii_digit())
}

/// Calendar sanity for a (year, month, day) triple; birth years 1900..=2030.
pub(super) fn date_ok(y: u32, m: u32, d: u32) -> bool {
    (1900..=2030).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// ASCII digits of `s`, separators dropped.
pub(super) fn digits_of(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_byte_tests_match_naive() {
        use super::super::engine::{has_digit, has_upper_or_utf8};
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_le_bytes();
            assert_eq!(
                has_digit(seed),
                bytes.iter().any(u8::is_ascii_digit),
                "{bytes:?}"
            );
            let up = bytes.iter().any(|b| b.is_ascii_uppercase() || *b >= 0x80);
            assert_eq!(has_upper_or_utf8(seed), up, "{bytes:?}");
        }
        for s in [
            *b"abcdefgh",
            *b"0bcdefgh",
            *b"abcdefg9",
            *b"abcDefgh",
            *b"@[/:`{\x7f ",
        ] {
            let x = u64::from_le_bytes(s);
            assert_eq!(has_digit(x), s.iter().any(u8::is_ascii_digit));
            assert_eq!(
                has_upper_or_utf8(x),
                s.iter().any(|b| b.is_ascii_uppercase() || *b >= 0x80)
            );
        }
    }

    #[test]
    fn luhn_table() {
        for (s, ok) in [
            ("4111111111111111", true),
            ("4111111111111112", false),
            ("378282246310005", true),
            ("6011111111111117", true),
            ("0", true),
            ("12a4", false),
        ] {
            assert_eq!(luhn(s.as_bytes()), ok, "{s}");
        }
    }

    #[test]
    fn iban_table() {
        for (s, ok) in [
            ("GB82WEST12345698765432", true),
            ("gb82west12345698765432", true),
            ("DE89370400440532013000", true),
            ("DE89370400440532013001", false),
            ("XX00", false),
        ] {
            assert_eq!(iban_mod97(s.as_bytes()), ok, "{s}");
        }
        assert_eq!(iban_len(b"DE"), Some(22));
        assert_eq!(iban_len(b"ZZ"), None);
    }

    #[test]
    fn ip_and_ssn_table() {
        assert!(ipv4_ok("73.164.44.7"));
        assert!(ipv4_ok("10.0.0.5"));
        for s in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.0",
            "256.1.1.1",
            "1.2.3",
        ] {
            assert!(!ipv4_ok(s), "{s}");
        }
        assert!(ipv6_ok("2001:db8::3e16:b9d0"));
        assert!(!ipv6_ok("::1"));
        assert!(!ipv6_ok("::"));
        assert!(ssn_ok(b"694669779"));
        assert!(!ssn_ok(b"666123456"));
        assert!(!ssn_ok(b"123006789"));
        assert!(card_brand_ok(b"4111111111111111"));
        assert!(!card_brand_ok(b"7045166165547159"));
    }
}
