-- API keys. Only the Argon2id hash of the secret is stored; the secret is shown once.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    -- JSON list of project ids the key may touch; ["*"] for every project.
    projects     TEXT NOT NULL,
    -- JSON list of permissions (traces:write, ..., admin:all).
    permissions  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    rotated_at   TEXT,
    revoked_at   TEXT,
    -- 1 for the key made by POST /api/v1/keys/bootstrap.
    is_owner     INTEGER NOT NULL DEFAULT 0
);

-- Append-only security audit log (seed 001 fields). Never holds a secret.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    timestamp       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    principal       TEXT,
    project         TEXT,
    resource        TEXT,
    operation       TEXT NOT NULL,
    result          TEXT NOT NULL,
    correlation_id  TEXT,
    source_ip       TEXT,
    metadata        TEXT NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (timestamp DESC);
CREATE INDEX audit_log_type ON audit_log (event_type, id DESC);
CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Target of the deep health check's real write.
CREATE TABLE health_probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  TEXT NOT NULL
);
