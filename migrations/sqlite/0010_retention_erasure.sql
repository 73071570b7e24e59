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
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
