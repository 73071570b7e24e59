//! The event log's tamper-evident chain.
//!
//! Every log record has a `digest` (SHA-256 over its content) and a `link`:
//! `link[n] = HMAC-SHA256(chain_key, link[n-1] || n || digest[n])`. The digest is computed where
//! the event is received (in parallel); only the cheap link is computed by the single writer. The chain key is derived from
//! `AUDITTRAIL_SECRET_KEY`, so someone who can write the database but lacks the key cannot
//! recompute links after editing, inserting, deleting or reordering a record.
//!
//! Retention and erasure stay verifiable: erasure clears a record's body but keeps its digest
//! and link, and appends a chained *erasure receipt* naming the positions it cleared (a
//! missing body that no later receipt covers is tampering); retention removes a prefix after
//! recording the last removed link as the chain's new *base*. The base and the head checkpoint
//! are stored with a [`ChainKey::state_tag`], so they cannot be moved without the secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The link before the first record of a fresh log.
pub const GENESIS: Hash = [0; 32];

/// HMAC keys for links and for the chain's authenticated state, derived from the operator's
/// secret. Never logged.
///
/// Each holds its HMAC state already keyed (inner and outer pads absorbed), so a link costs
/// two SHA-256 compressions instead of four: links are computed one by one in the writer.
#[derive(Clone)]
pub struct ChainKey {
    links: Hmac<Sha256>,
    /// Tags on the chain's base and head checkpoint rows (see [`StateTag`]).
    state: Hmac<Sha256>,
    /// Links of the security audit log's own chain.
    audit: Hmac<Sha256>,
    /// Pseudonyms of erasure selectors (a receipt names its subject without the value).
    selector: Hmac<Sha256>,
    /// Digests of records' personal parts (record format v2).
    personal: PersonalKey,
}

/// Keys the digest of a record's personal part (record format v2): the digest that stays in
/// the log after an erasure cannot be used to test a guess of what was erased.
#[derive(Clone)]
pub struct PersonalKey {
    tag: Hmac<Sha256>,
    /// Pseudonyms of the personal values the redactor removed (the value index).
    values: Hmac<Sha256>,
}

impl std::fmt::Debug for PersonalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonalKey(..)")
    }
}

impl PersonalKey {
    /// The keyed digest of a record's personal part (its canonical JSON text).
    pub fn tag(&self, personal: &str) -> Hash {
        let mut mac = self.tag.clone();
        mac.update(personal.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The keyed pseudonym under which the value index lists a personal value the redactor
    /// removed (hex). Values are normalised first (trimmed, lower-cased, and for a value
    /// made of digits and phone punctuation only its digits), so `Jane@Example.org ` and
    /// `jane@example.org`, or `+1 (415) 555-0134` and `+14155550134`, are one subject.
    pub fn value_pseudonym(&self, value: &str) -> String {
        let mut mac = self.values.clone();
        mac.update(normalise_value(value).as_bytes());
        let d: Hash = mac.finalize().into_bytes().into();
        to_hex(&d)
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

/// Which piece of chain state a tag authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateTag {
    /// `chain_base`: the link before the first kept record, after a retention sweep.
    Base,
    /// `chain_head`: the last record's position and link, updated with every commit.
    Head,
}

fn derived(secret: &[u8], label: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(label);
    let key: Hash = mac.finalize().into_bytes().into();
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC accepts keys of any length")
}

impl ChainKey {
    /// Derives the chain keys; separate derivation labels keep them distinct from each other
    /// and from any other key made from the same secret (pseudonyms, sessions).
    pub fn derive(secret: &[u8]) -> Self {
        ChainKey {
            links: derived(secret, b"audittrail/event-chain/v1"),
            state: derived(secret, b"audittrail/chain-state/v1"),
            audit: derived(secret, b"audittrail/audit-chain/v1"),
            selector: derived(secret, b"audittrail/erasure-selector/v1"),
            personal: PersonalKey {
                tag: derived(secret, b"audittrail/record-personal/v1"),
                values: derived(secret, b"audittrail/value-index/v1"),
            },
        }
    }

    /// The key of records' personal-part digests.
    pub fn personal(&self) -> &PersonalKey {
        &self.personal
    }

    /// The link of the record at log position `seq`: covers the previous link (deletion,
    /// insertion), the position (reordering) and the content digest (edits).
    pub fn link(&self, prev: &Hash, seq: i64, digest: &Hash) -> Hash {
        let mut mac = self.links.clone();
        mac.update(prev);
        mac.update(&seq.to_be_bytes());
        mac.update(digest);
        mac.finalize().into_bytes().into()
    }

    /// Authenticates a (position, link) pair stored outside the records themselves, so that
    /// nobody without the secret can move the chain's base or roll its head checkpoint.
    pub fn state_tag(&self, what: StateTag, seq: i64, link: &Hash) -> Hash {
        let mut mac = self.state.clone();
        mac.update(match what {
            StateTag::Base => b"base",
            StateTag::Head => b"head",
        });
        mac.update(&seq.to_be_bytes());
        mac.update(link);
        mac.finalize().into_bytes().into()
    }

    /// A keyed pseudonym of an erasure selector's value (hex), so a receipt can name its subject
    /// without keeping it: the same value always gives the same pseudonym.
    pub fn selector_pseudonym(&self, field: &str, value: &str) -> String {
        let mut mac = self.selector.clone();
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
        mac.update(value.as_bytes());
        let d: Hash = mac.finalize().into_bytes().into();
        to_hex(&d)
    }

    /// See [`PersonalKey::value_pseudonym`].
    pub fn value_pseudonym(&self, value: &str) -> String {
        self.personal.value_pseudonym(value)
    }

    /// The link of the audit-log entry with id `id` (the audit log's own chain).
    pub fn audit_link(&self, prev: &Hash, id: i64, digest: &Hash) -> Hash {
        let mut mac = self.audit.clone();
        mac.update(prev);
        mac.update(&id.to_be_bytes());
        mac.update(digest);
        mac.finalize().into_bytes().into()
    }
}

/// What a record's digest covers: every stored column of content (its position is covered by
/// the link). Fields are length-prefixed so no two different records hash the same bytes.
pub struct RecordContent<'a> {
    pub project: &'a str,
    pub event_id: &'a str,
    pub record_type: &'a str,
    pub recorded_at: &'a str,
    pub body: &'a str,
}

pub fn digest(r: &RecordContent<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(b"audittrail/record/v1");
    for part in [r.project, r.event_id, r.record_type, r.recorded_at, r.body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// How the value index normalises a personal value (see [`ChainKey::value_pseudonym`]).
pub fn normalise_value(value: &str) -> String {
    let v = value.trim();
    let phone_like = v.chars().filter(char::is_ascii_digit).count() >= 6
        && v.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if phone_like {
        v.chars().filter(char::is_ascii_digit).collect()
    } else {
        v.to_lowercase()
    }
}

/// What a version-2 record's digest covers: the non-personal facts in full and the personal
/// part only through its keyed digest, so that erasing the personal part leaves a digest that
/// `verify` still checks against the facts.
pub struct RecordFacts<'a> {
    pub project: &'a str,
    pub event_id: &'a str,
    pub record_type: &'a str,
    pub recorded_at: &'a str,
    /// The canonical JSON of the body's non-personal fields.
    pub facts: &'a str,
    /// [`PersonalKey::tag`] of the canonical JSON of its personal fields.
    pub personal: &'a Hash,
}

pub fn digest_v2(r: &RecordFacts<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(b"audittrail/record/v2");
    for part in [r.project, r.event_id, r.record_type, r.recorded_at, r.facts] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(r.personal);
    h.finalize().into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub fn from_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    from_hex_vec(s)?.try_into().ok()
}

/// Hex of any even length to bytes.
pub fn from_hex_vec(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(body: &str) -> RecordContent<'_> {
        RecordContent {
            project: "default",
            event_id: "e",
            record_type: "span",
            recorded_at: "t",
            body,
        }
    }

    #[test]
    fn links_are_standard_hmac_sha256_of_the_derived_key() {
        // Computed independently with Python's hmac module: links in existing databases
        // must keep verifying whatever the implementation does internally.
        let digest: Hash = std::array::from_fn(|i| i as u8);
        let link = ChainKey::derive(b"secret").link(&GENESIS, 7, &digest);
        assert_eq!(
            to_hex(&link),
            "4ba8e1afdac593dcf292ca6bc6ca15b9853c4cabc412250c69f98adeaec72b93"
        );
    }

    #[test]
    fn links_depend_on_key_order_and_content() {
        let k = ChainKey::derive(b"secret");
        let d1 = digest(&content("a"));
        let d2 = digest(&content("b"));
        let l1 = k.link(&GENESIS, 1, &d1);
        let l2 = k.link(&l1, 2, &d2);
        assert_ne!(
            l2,
            k.link(&GENESIS, 2, &d2),
            "dropping a record changes the next link"
        );
        assert_ne!(
            l1,
            ChainKey::derive(b"other").link(&GENESIS, 1, &d1),
            "the key matters"
        );
        assert_ne!(d1, digest(&content("b")), "content matters");
        assert_ne!(l1, k.link(&GENESIS, 2, &d1), "position matters");
    }

    #[test]
    fn length_prefix_prevents_field_shifting() {
        let a = RecordContent {
            project: "ab",
            event_id: "c",
            record_type: "",
            recorded_at: "",
            body: "",
        };
        let b = RecordContent {
            project: "a",
            event_id: "bc",
            record_type: "",
            recorded_at: "",
            body: "",
        };
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn hex_round_trips() {
        let d = digest(&content("x"));
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_eq!(from_hex("zz"), None);
    }
}
