//! Redactor tests: table-driven positives and negatives per type, the JSON and JSONL modes,
//! operator rules, pseudonyms, and the "no seeded PII survives" property test.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn redactor() -> Redactor {
    Redactor::new(RedactorConfig::default()).expect("default config builds")
}

/// One redactor for the property tests (building one compiles every automaton).
fn shared() -> &'static Redactor {
    static R: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    R.get_or_init(redactor)
}

fn found(r: &Redactor, text: &str) -> Vec<(String, PiiType)> {
    r.detect(text)
        .into_iter()
        .map(|d| (text[d.start..d.end].to_string(), d.kind))
        .collect()
}

/// (text, the exact substring that must be detected, its type)
const POSITIVE: &[(&str, &str, PiiType)] = &[
    (
        "mail jane.doe+x@mail.example.co.uk now",
        "jane.doe+x@mail.example.co.uk",
        PiiType::Email,
    ),
    (
        "GET /users?email=ann.lee%40example.com HTTP/1.1",
        "ann.lee%40example.com",
        PiiType::Email,
    ),
    (
        "call (415) 555-2671 today",
        "(415) 555-2671",
        PiiType::Phone,
    ),
    ("tel +44 20 7946 0958.", "+44 20 7946 0958", PiiType::Phone),
    (
        "reach me at 0044 20 7946 0474",
        "0044 20 7946 0474",
        PiiType::Phone,
    ),
    ("sms 06 12 34 56 78 ok", "06 12 34 56 78", PiiType::Phone),
    (
        "Tel: +49 (0)89 8509605",
        "+49 (0)89 8509605",
        PiiType::Phone,
    ),
    (
        "my cell is 3053329682, text first",
        "3053329682",
        PiiType::Phone,
    ),
    ("SSN 123-45-6789 on file", "123-45-6789", PiiType::UsSsn),
    ("ssn=123456789 score", "123456789", PiiType::UsSsn),
    (
        "card 4111 1111 1111 1111 exp",
        "4111 1111 1111 1111",
        PiiType::CreditCard,
    ),
    (
        "amex 3782-822463-10005",
        "3782-822463-10005",
        PiiType::CreditCard,
    ),
    (
        "iban DE89 3704 0044 0532 0130 00 thanks",
        "DE89 3704 0044 0532 0130 00",
        PiiType::Iban,
    ),
    (
        "to GB82WEST12345698765432.",
        "GB82WEST12345698765432",
        PiiType::Iban,
    ),
    (
        "from 73.164.44.7 port 22",
        "73.164.44.7",
        PiiType::IpAddress,
    ),
    ("client_ip=10.0.3.7", "10.0.3.7", PiiType::IpAddress),
    (
        "peer 2001:db8::3e16:b9d0:a255:7d25 port 1",
        "2001:db8::3e16:b9d0:a255:7d25",
        PiiType::IpAddress,
    ),
    (
        "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z ok",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        PiiType::ApiKey,
    ),
    (
        "aws AKIAIOSFODNN7EXAMPLE here",
        "AKIAIOSFODNN7EXAMPLE",
        PiiType::ApiKey,
    ),
    (
        "tok ghp_0123456789abcdefghijABCDEFGHIJ012345 x",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        PiiType::ApiKey,
    ),
    (
        "Authorization: Bearer abcDEF1234567890ghiJKL",
        "abcDEF1234567890ghiJKL",
        PiiType::ApiKey,
    ),
    (
        "DATABASE_URL=postgres://app:Tr0ub4dor!3@db.internal:5432/x",
        "Tr0ub4dor!3",
        PiiType::ApiKey,
    ),
    (
        "{\"password\": \"hunter2hunter2\"}",
        "hunter2hunter2",
        PiiType::ApiKey,
    ),
    (
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        PiiType::ApiKey,
    ),
    (
        "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==",
        "dXNlcjpwYXNzd29yZDEyMw==",
        PiiType::ApiKey,
    ),
    (
        "SECRET_KEY_BASE=9f8e7d6c5b4a3f2e1d0c",
        "9f8e7d6c5b4a3f2e1d0c",
        PiiType::ApiKey,
    ),
    (
        "curl -u admin:Dragon_32? http://x",
        "Dragon_32?",
        PiiType::ApiKey,
    ),
    (
        "call 1 (415) 555-2671 now",
        "1 (415) 555-2671",
        PiiType::Phone,
    ),
    ("Hi Daniel, thanks", "Daniel", PiiType::Person),
    (
        "forward to Jessica Rosales and cc",
        "Jessica Rosales",
        PiiType::Person,
    ),
    (
        "Name: Walker, Brenda / DOB",
        "Walker, Brenda",
        PiiType::Person,
    ),
    ("note to Dr. Okonkwo about it", "Okonkwo", PiiType::Person),
    (
        "{\"name\": \"Thibault Hébert\"}",
        "Thibault Hébert",
        PiiType::Person,
    ),
    (
        "ship to 742 Evergreen Terrace, Springfield",
        "742 Evergreen Terrace",
        PiiType::Address,
    ),
    (
        "Adresse: Hauptstraße 12, 10115 Berlin",
        "Hauptstraße 12",
        PiiType::Address,
    ),
    (
        "envoyer au 12, rue de la Paix",
        "12, rue de la Paix",
        PiiType::Address,
    ),
    (
        "spedire a Via Giuseppe Verdi, 15 Piano 2 entro lunedì",
        "Via Giuseppe Verdi, 15 Piano 2",
        PiiType::Address,
    ),
    (
        "enviar a la Calle de la Princesa 25, Madrid",
        "Calle de la Princesa 25",
        PiiType::Address,
    ),
    (
        "morada: Rua Augusta 100, Lisboa",
        "Rua Augusta 100",
        PiiType::Address,
    ),
    (
        "I was born on 24/06/1996, so",
        "24/06/1996",
        PiiType::DateOfBirth,
    ),
    ("DOB: March 5, 1990.", "March 5, 1990", PiiType::DateOfBirth),
    (
        "{\"dob\": \"1953-01-29\"}",
        "1953-01-29",
        PiiType::DateOfBirth,
    ),
];

/// Texts in which nothing at all may be detected.
const NEGATIVE: &[&str] = &[
    "request 71fff673-f6d5-42df-a152-38384be52488 done",
    "commit 25798cce0330d32c6840617a13deb43213822625",
    "trace_id=4cb3c1f4a44d5cdbc6e5aa61853b7b24 span_id=b475063043c91abc",
    "\"version\": \"2.12.9.36\"",
    "oid 1.3.6.1.4.1.311.21.7",
    "at 2024-10-26T04:14:34.373Z INFO start",
    "updated_at: 2022-12-26",
    "order ORD-2019-963116 and 108-8565432-2003779",
    "card 4111 1111 1111 1112 declined",
    "ISBN 978-0-4731-3315-3",
    "listening on 127.0.0.1:8080 and ::1 and 0.0.0.0",
    "fetched git@github.com:acme/repo.git",
    "installed lodash@4.17.21",
    "netmask 255.255.255.0",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    "ids cus_NffrFeUfNV2Hib call_l3nojGcvlZGxKJEROAZn toolu_uxD5sISV1ncGJSZh",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAGjV62SEX6OLSBZ",
    "I'm using Jenkins 6.5 with Julia, Ada and Kafka",
    "The alert task-score-f6712c1b48e2 fired",
    "batch 7045166165547159 closed",
    "Hello, Here's the screenshot",
    "arena 0x7ff571d1da14d grew",
    "{\"tokenizer\": \"cl100k_base\", \"max_tokens\": 4096, \"token_count\": 1200}",
    "pip install requests==2.31.0.1 and Collecting urllib3==1.26.18.2",
    "basic functionality works",
];

#[test]
fn positives_are_found() {
    let r = redactor();
    for (text, want, kind) in POSITIVE {
        let got = found(&r, text);
        assert!(
            got.iter().any(|(v, k)| v == want && k == kind),
            "{text:?}: expected {want:?} as {kind}, got {got:?}"
        );
    }
}

#[test]
fn negatives_are_left_alone() {
    let r = redactor();
    for text in NEGATIVE {
        assert_eq!(found(&r, text), vec![], "{text:?}");
    }
}

#[test]
fn escaped_text_is_redacted_in_its_escaped_form() {
    let r = redactor();
    let text = r#"{\"name\": \"R\u00e9my Rivi\u00e8re\", \"mail\": \"a.b\u0040example.com\"}"#;
    let got = found(&r, text);
    assert!(
        got.iter()
            .any(|(v, k)| v == r"R\u00e9my Rivi\u00e8re" && *k == PiiType::Person),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|(v, k)| v == r"a.b\u0040example.com" && *k == PiiType::Email),
        "{got:?}"
    );
}

#[test]
fn redact_str_labels_counts_and_borrows() {
    let r = redactor();
    let mut counts = TypeCounts::new();
    let out = r.redact_str("mail a@example.com or b@example.org", &mut counts);
    assert_eq!(out, "mail [REDACTED:EMAIL] or [REDACTED:EMAIL]");
    assert_eq!(counts.get("EMAIL"), Some(&2));
    let clean = r.redact_str("nothing here", &mut counts);
    assert!(matches!(clean, std::borrow::Cow::Borrowed(_)));
}

#[test]
fn pseudonyms_are_stable_and_keyed() {
    let cfg = |key: &[u8]| RedactorConfig {
        replacement: Replacement::Pseudonym { key: key.to_vec() },
        ..RedactorConfig::default()
    };
    let r = Redactor::new(cfg(b"k1")).expect("builds");
    let mut c = TypeCounts::new();
    let a = r.redact_str("a@example.com", &mut c).into_owned();
    let b = r.redact_str("x a@example.com", &mut c).into_owned();
    assert!(
        a.starts_with("[EMAIL:") && a.len() == "[EMAIL:]".len() + 12,
        "{a}"
    );
    assert!(b.ends_with(&a));
    let other = Redactor::new(cfg(b"k2")).expect("builds");
    assert_ne!(other.redact_str("a@example.com", &mut c), a);
    assert!(matches!(
        Redactor::new(cfg(b"")),
        Err(RedactError::EmptyKey)
    ));
}

#[test]
fn disabled_types_are_kept() {
    let r = Redactor::new(RedactorConfig {
        disabled_types: vec![PiiType::Email],
        ..RedactorConfig::default()
    })
    .expect("builds");
    assert_eq!(found(&r, "a@example.com 123-45-6789").len(), 1);
}

#[test]
fn custom_terms_parse_and_match() {
    let rules = "# comment\n\nterm PERSON Project Bluebird\npattern API_KEY acme_[a-z0-9]{8}\n";
    let extra = CustomTerms::parse(rules).expect("valid rules");
    let r = Redactor::new(RedactorConfig {
        extra,
        ..RedactorConfig::default()
    })
    .expect("builds");
    let got = found(&r, "see project bluebird with acme_1234abcd");
    assert_eq!(got.len(), 2, "{got:?}");
    let bad = "term NOPE x\npattern EMAIL (unclosed\nfrobnicate EMAIL x\nterm EMAIL\n";
    match CustomTerms::parse(bad) {
        Err(RedactError::InvalidRules(errs)) => {
            assert_eq!(errs.len(), 4, "{errs:?}");
            for (i, e) in errs.iter().enumerate() {
                assert!(e.starts_with(&format!("line {}:", i + 1)), "{e}");
            }
        }
        other => panic!("expected InvalidRules, got {other:?}"),
    }
}

#[test]
fn json_walks_keys_values_and_embedded_json() {
    let r = redactor();
    let mut v = json!({
        "messages": [{"role": "user", "content": "I'm Ann Lee, ann@example.com"}],
        "tool_calls": [{"function": {"arguments": "{\"ssn\": \"123456789\", \"note\": \"card 4111111111111111\"}"}}],
        "bob@example.com": {"dob": "1990-02-03", "phone_number": 4155552671_u64},
        "count": 3
    });
    let mut counts = TypeCounts::new();
    r.redact_json(&mut v, &mut counts).expect("shallow");
    let s = v.to_string();
    for secret in [
        "Ann Lee",
        "ann@example.com",
        "123456789",
        "4111111111111111",
        "bob@example.com",
        "1990-02-03",
        "4155552671",
    ] {
        assert!(!s.contains(secret), "{secret} leaked in {s}");
    }
    assert!(s.contains("\"count\":3"), "{s}");
    assert!(counts.values().sum::<u32>() >= 7, "{counts:?}");
}

#[test]
fn json_too_deep_fails_closed() {
    let r = redactor();
    let mut v = json!("x");
    for _ in 0..(MAX_DEPTH + 2) {
        v = json!([v]);
    }
    let mut counts = TypeCounts::new();
    assert!(matches!(
        r.redact_json(&mut v, &mut counts),
        Err(RedactError::TooDeep)
    ));
}

/// JSON text `depth` levels deep holding an e-mail address at the bottom.
fn nested_json_text(depth: usize) -> String {
    let mut s = "{\"email\": \"jane.roe@example.org\"}".to_owned();
    for _ in 1..depth {
        s = format!("[{s}]");
    }
    s
}

#[test]
fn embedded_json_past_the_depth_limit_fails_closed_at_every_depth() {
    let r = redactor();
    // Within the limit, personal data inside embedded JSON is redacted.
    let mut v = json!({"arguments": nested_json_text(MAX_DEPTH - 4)});
    let mut counts = TypeCounts::new();
    r.redact_json(&mut v, &mut counts)
        .expect("within the limit");
    assert!(!v.to_string().contains("jane.roe@example.org"), "{v}");
    assert_eq!(counts.get("EMAIL"), Some(&1));
    // Past it — below and above serde_json's own limit of 128 — the event is refused whole.
    for depth in [MAX_DEPTH + 2, 100, 127, 129, 200, 1000] {
        let mut v = json!({"arguments": nested_json_text(depth)});
        assert!(
            matches!(
                r.redact_json(&mut v, &mut TypeCounts::new()),
                Err(RedactError::TooDeep)
            ),
            "depth {depth}"
        );
    }
}

#[test]
fn jsonl_emits_code_point_spans_and_errors() {
    let r = redactor();
    let input = "{\"id\": \"a\", \"text\": \"héllo a@example.com\"}\nnot json\n\n{\"id\": 7, \"text\": \"clean\"}\n";
    let mut out = Vec::new();
    jsonl::run(input.as_bytes(), &mut out, &r).expect("io ok");
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["spans"], json!([[6, 19, "EMAIL"]]));
    assert_eq!(lines[0]["redacted"], "héllo [REDACTED:EMAIL]");
    assert_eq!(lines[1]["id"], serde_json::Value::Null);
    assert!(
        lines[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("line 2:"))
    );
    assert_eq!(lines[2]["id"], 7);
}

#[test]
fn types_round_trip_and_redactor_is_shareable() {
    for t in PiiType::ALL {
        assert_eq!(PiiType::parse(t.as_str()), Some(t));
    }
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Redactor>();
}

// ---- property test: no seeded PII survives ------------------------------------------------

fn luhn_complete(body: &str) -> String {
    let digits: Vec<u32> = body.bytes().map(|b| u32::from(b - b'0')).collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = *d;
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn iban_de(bban: &str) -> String {
    // check digits: 98 - (BBAN + "DE00" as digits) mod 97
    let rearranged = format!("{bban}131400");
    let rem = rearranged
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

/// One seeded PII value of every type, with a sentence that carries it.
fn seeded() -> impl Strategy<Value = Vec<(String, String)>> {
    let first = prop::sample::select(vec![
        "James", "Mary", "Robert", "Patricia", "Linda", "David",
    ]);
    let last = prop::sample::select(vec![
        "Johnson", "Williams", "Garcia", "Martinez", "Robinson",
    ]);
    (
        (
            "[a-z]{3,8}",
            "[a-z]{3,8}",
            prop::sample::select(vec!["com", "org", "io"]),
        ),
        (200u32..999, 200u32..999, 1000u32..9999),
        (100u32..665, 10u32..99, 1000u32..9999),
        "[0-9]{14}",
        "[0-9]{18}",
        (11u8..223, 0u8..255, 0u8..255, 1u8..254),
        "[A-Za-z]{16}[0-9]{6}[A-Za-z]{8}",
        (first, last),
        (
            1u32..9999,
            prop::sample::select(vec!["Oak", "Maple", "Cedar"]),
            prop::sample::select(vec!["Street", "Avenue", "Road"]),
        ),
        (1930u32..2005, 1u32..12, 1u32..28),
    )
        .prop_map(
            |(e, p, s, cc, bban, ip, key, (f, l), (num, street, kind), (y, m, d))| {
                let email = format!("{}.{}@example.{}", e.0, e.1, e.2);
                let phone = format!("({}) {}-{}", p.0, p.1, p.2);
                let ssn = format!("{:03}-{:02}-{:04}", s.0, s.1, s.2);
                let card = luhn_complete(&format!("4{cc}"));
                let iban = iban_de(&bban);
                let ipv4 = format!(
                    "{}.{}.{}.{}",
                    if ip.0 == 127 { 128 } else { ip.0 },
                    ip.1,
                    ip.2,
                    ip.3
                );
                let api = format!("sk-{key}");
                let person = format!("{f} {l}");
                let address = format!("{num} {street} {kind}");
                let dob = format!("{y}-{m:02}-{d:02}");
                vec![
                    (email.clone(), format!("contact {email} today")),
                    (phone.clone(), format!("call {phone} now")),
                    (ssn.clone(), format!("SSN {ssn}.")),
                    (card.clone(), format!("card {card} exp")),
                    (iban.clone(), format!("wire to {iban} please")),
                    (ipv4.clone(), format!("login from {ipv4} ok")),
                    (api.clone(), format!("key {api}")),
                    (person.clone(), format!("Dear {person}, hello")),
                    (address.clone(), format!("ship to {address}, Springfield")),
                    (dob.clone(), format!("patient born {dob}")),
                ]
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_seeded_pii_survives(items in seeded(), layout in 0u8..4) {
        let r = shared();
        let mut event = json!({"event": "agent.step", "messages": [], "meta": {}});
        for (i, (_, sentence)) in items.iter().enumerate() {
            match (layout + i as u8) % 4 {
                0 => event["messages"].as_array_mut().expect("array").push(json!({"role": "user", "content": sentence})),
                1 => event["meta"][format!("k{i}")] = json!(sentence),
                2 => event["meta"][format!("args{i}")] = json!(json!({"text": sentence}).to_string()),
                _ => event["meta"][sentence.clone()] = json!(i),
            }
        }
        let mut counts = TypeCounts::new();
        r.redact_json(&mut event, &mut counts).expect("shallow event");
        let out = event.to_string();
        for (value, _) in &items {
            prop_assert!(!out.contains(value.as_str()), "{value} survived in {out}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Any input: no panic, spans on char boundaries, sorted, disjoint, within the text.
    #[test]
    fn detect_never_panics_and_spans_are_well_formed(
        text in r#"([ -~]|[éü€😀橋\n\t]|\\u00e9|\\"|@|%40|::|[0-9]{1,4}[ .\-/]?){0,60}"#
    ) {
        let r = shared();
        let found = r.detect(&text);
        let mut last_end = 0;
        for d in &found {
            prop_assert!(d.start >= last_end && d.start < d.end && d.end <= text.len(), "{found:?}");
            prop_assert!(text.is_char_boundary(d.start) && text.is_char_boundary(d.end));
            last_end = d.end;
        }
        let mut counts = TypeCounts::new();
        let _ = r.redact_str(&text, &mut counts);
        let mut v = serde_json::Value::String(text.clone());
        prop_assert!(r.redact_json(&mut v, &mut counts).is_ok());
    }
}

#[test]
fn common_keys_skip_the_scan_only_when_the_configuration_finds_nothing_in_them() {
    let r = redactor();
    assert!(r.known_clean_key("role") && r.known_clean_key("content"));
    // An operator term that matches a common key name: the key is scanned and redacted
    // as before, whatever the list says.
    let extra =
        CustomTerms::parse("term PERSON content\npattern API_KEY ^rol[e]$\n").expect("valid rules");
    let r = Redactor::new(RedactorConfig {
        extra,
        ..RedactorConfig::default()
    })
    .expect("builds");
    assert!(!r.known_clean_key("content") && !r.known_clean_key("role"));
    assert!(r.known_clean_key("messages"));
    let mut event = serde_json::json!({"content": "x", "role": "y", "messages": []});
    let mut counts = TypeCounts::new();
    r.redact_json(&mut event, &mut counts).expect("redacts");
    let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
    assert!(
        !keys.iter().any(|k| *k == "content" || *k == "role"),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| *k == "messages"), "{keys:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Skipping the scan of keys found clean at build time changes no output: objects with
    /// common keys, PII-shaped keys and PII values redact the same with the memo and without.
    #[test]
    fn the_clean_key_memo_changes_no_redaction(
        entries in proptest::collection::vec(
            (
                proptest::prop_oneof![
                    proptest::sample::select(super::engine::COMMON_KEYS.to_vec()).prop_map(str::to_string),
                    proptest::sample::select(vec![
                        "ann.smith@example.com", "Dr. Maria Lopez", "4111 1111 1111 1111", "ssn",
                        "password", "dob", "+1 415 555 0100", "sk-proj-A1b2C3d4E5f6G7h8I9j0",
                    ]).prop_map(str::to_string),
                ],
                proptest::sample::select(vec![
                    "hello", "ann.smith@example.com", "1990-04-01", "hunter2hunter2",
                    "call +44 20 7946 0958", "Kind regards, Peter Jones", "10.2.3.4",
                ]),
            ),
            1..12,
        )
    ) {
        use proptest::prelude::*;
        static PLAIN: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
        let memo = shared();
        let plain = PLAIN.get_or_init(|| redactor().without_clean_keys());
        let mut inner = serde_json::Map::new();
        for (k, v) in &entries {
            inner.insert(k.clone(), serde_json::Value::String((*v).to_string()));
        }
        let event = serde_json::json!({"input": inner.clone(), "output": [inner]});
        let (mut a, mut b) = (event.clone(), event);
        let (mut ca, mut cb) = (TypeCounts::new(), TypeCounts::new());
        memo.redact_json(&mut a, &mut ca).expect("redacts");
        plain.redact_json(&mut b, &mut cb).expect("redacts");
        prop_assert_eq!(a, b);
        prop_assert_eq!(ca, cb);
        for (k, _) in &entries {
            prop_assert!(!memo.known_clean_key(k) || memo.detect(k).is_empty(), "{}", k);
        }
    }
}
