//! The event log's tamper-evident chain.
//!
//! Every log record has a `digest` (SHA-256 over its content) and a `link`:
//! `link[n] = HMAC-SHA256(chain_key, link[n-1] || n || digest[n])`. The digest is computed where
//! the event is received (in parallel); only the cheap link is computed by the single writer. The chain key is derived from
//! `AUDITTRAIL_SECRET_KEY`, so someone who can write the database but lacks the key cannot
//! recompute links after editing, inserting, deleting or reordering a record.
//!
//! Retention and erasure stay verifiable: erasure clears a record's body but keeps its digest
//! and link (the chain still verifies; the record is reported as erased), and retention removes
//! a prefix after recording the last removed link as the chain's new *base*.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The link before the first record of a fresh log.
pub const GENESIS: Hash = [0; 32];

/// HMAC key for links, derived from the operator's secret. Never logged.
///
/// Holds the HMAC state already keyed (inner and outer pads absorbed), so each link costs
/// two SHA-256 compressions instead of four: links are computed one by one in the writer.
#[derive(Clone)]
pub struct ChainKey(Hmac<Sha256>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

impl ChainKey {
    /// Derives the chain key; a separate derivation label keeps it distinct from any other key
    /// made from the same secret (pseudonyms, sessions).
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .expect("HMAC accepts keys of any length");
        mac.update(b"audittrail/event-chain/v1");
        let key: Hash = mac.finalize().into_bytes().into();
        ChainKey(
            <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                .expect("HMAC accepts keys of any length"),
        )
    }

    /// The link of the record at log position `seq`: covers the previous link (deletion,
    /// insertion), the position (reordering) and the content digest (edits).
    pub fn link(&self, prev: &Hash, seq: i64, digest: &Hash) -> Hash {
        let mut mac = self.0.clone();
        mac.update(prev);
        mac.update(&seq.to_be_bytes());
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
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
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
