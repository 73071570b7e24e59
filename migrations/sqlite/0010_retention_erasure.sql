-- Erasure finds a span's rule outcomes through their cause.
CREATE INDEX IF NOT EXISTS violations_event_seq ON violations (event_seq);

-- Keyed pseudonyms (HMAC with a key derived from the secret, never the value) of the personal
-- values the redactor removed from each record, so an erasure by value finds its records.
CREATE TABLE IF NOT EXISTS redacted_values (
    project   TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (project, pseudonym, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS redacted_values_seq ON redacted_values (seq);

-- A project's own, shorter retention (days); its older records are erased, not removed.
CREATE TABLE IF NOT EXISTS project_retention (
    project    TEXT PRIMARY KEY,
    days       INTEGER NOT NULL,
    -- The position up to which this limit has already erased the project's records.
    erased_through BIGINT NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Running totals of traces and sessions that straddle the chain's base after a retention
-- sweep: what the removed records contributed, so rules and replay answer as before.
-- kind: 'trace' or 'session'; projection: the trace summary row (traces only); totals: the
-- rules' running totals. Also carried in the sweep's receipt.
CREATE TABLE IF NOT EXISTS carried_totals (
    project    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    projection TEXT,
    totals     TEXT NOT NULL,
    PRIMARY KEY (project, kind, id)
);
