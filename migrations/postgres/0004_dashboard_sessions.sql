-- Dashboard sign-ins. The cookie carries a random id and its HMAC; only the id's SHA-256 is
-- stored, so a copy of the database opens no session. Sessions are not part of the event log.
CREATE TABLE dashboard_sessions (
    id_hash         TEXT PRIMARY KEY,
    key_id          TEXT NOT NULL,
    -- The key's rotated_at at sign-in: a rotation since then ends the session.
    key_rotated_at  TEXT,
    -- The project picked in the header bar (keys scoped to several projects).
    project         TEXT,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    ended_at        TEXT
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
