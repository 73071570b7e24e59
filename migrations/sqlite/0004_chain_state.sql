-- Authenticated chain state and the audit log's own chain (see src/store/chain.rs).

-- The base row (written by a retention sweep) carries an HMAC tag over (seq, link) keyed from
-- AUDITTRAIL_SECRET_KEY, so that deleting a prefix and inserting a matching base is detected.
ALTER TABLE chain_base ADD COLUMN tag TEXT;

-- The head checkpoint: position and link of the last record, updated in the same transaction
-- as every commit, tagged like the base. `verify` requires the log to end exactly here, so a
-- record cut off the tail is detected even when the database file is copied on its own.
CREATE TABLE chain_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    link  TEXT NOT NULL,
    tag   TEXT NOT NULL
);

-- The audit log is chained like the events: digest = SHA-256 of the entry's fields, link =
-- HMAC(audit key, previous link || id || digest). The writer anchors the audit chain's head in
-- the event chain (an `audit_checkpoint` record) at least every minute. Entries written before
-- this migration have no digest or link and are reported as not covered.
ALTER TABLE audit_log ADD COLUMN digest TEXT;
ALTER TABLE audit_log ADD COLUMN link TEXT;

-- Erasure receipts and audit checkpoints are log records of their own (record_type
-- `erasure`, `audit_checkpoint`); system-wide records carry the project `*`, which no tenant
-- can use.
CREATE INDEX events_record_type ON events (record_type, seq) WHERE record_type NOT IN ('span', 'violation', 'guard', 'rule_error');
