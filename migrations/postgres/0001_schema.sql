-- The schema of migrations/sqlite 0001-0006, for Postgres: the same tables, columns and
-- meanings. Integers are BIGINT (they decode as 64-bit everywhere); times are the same
-- fixed-width RFC 3339 text as on SQLite, so they sort alike and keep the precision the chain
-- hashed; bodies are the canonical JSON text that was hashed — never jsonb, which would
-- rewrite the document.

-- The event log: append-only, the source of truth. Every other table is a projection of it
-- and can be rebuilt with `audittrail replay`.
CREATE TABLE events (
    -- Log position, assigned by the single writer; the chain links records in this order.
    seq          BIGINT PRIMARY KEY,
    -- Tenant (`*` for system records: audit checkpoints, retention receipts).
    project      TEXT NOT NULL,
    -- Client-chosen or generated id; unique per project so SDK retries store an event once.
    event_id     TEXT NOT NULL,
    -- span | guard | violation | rule_error | erasure | audit_checkpoint
    record_type  TEXT NOT NULL,
    -- Denormalised from the body for lookups.
    trace_id     TEXT,
    session_id   TEXT,
    agent        TEXT,
    -- Span start time (fixed-width RFC 3339 UTC), for ordering spans within a trace.
    event_time   TEXT,
    -- When the writer appended it.
    recorded_at  TEXT NOT NULL,
    -- Redacted canonical JSON. NULL once erased (a later erasure receipt lists the position).
    body         TEXT,
    -- hex SHA-256 of (project, event_id, record_type, recorded_at, body).
    digest       TEXT NOT NULL,
    -- hex HMAC-SHA256(chain key, previous link || seq || digest).
    link         TEXT NOT NULL
);
CREATE UNIQUE INDEX events_project_event_id ON events (project, event_id);
CREATE INDEX events_project_trace ON events (project, trace_id, seq);
CREATE INDEX events_project_session ON events (project, session_id, seq);
CREATE INDEX events_project_agent ON events (project, agent, seq);
CREATE INDEX events_project_seq ON events (project, seq);
CREATE INDEX events_record_type ON events (record_type, seq)
    WHERE record_type NOT IN ('span', 'violation', 'guard', 'rule_error');

-- Where verification starts when retention has removed a prefix of the log: the seq and link
-- of the last removed record, tagged with the chain key.
CREATE TABLE chain_base (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    link  TEXT NOT NULL,
    tag   TEXT
);

-- The head checkpoint: the last record's position and link, tagged, updated with every commit.
CREATE TABLE chain_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    link  TEXT NOT NULL,
    tag   TEXT NOT NULL
);

-- Projection: one summary per trace. Cost is kept in integer nano-dollars so sums are exact
-- and `replay` rebuilds the same numbers whatever the batch boundaries were.
CREATE TABLE traces (
    project        TEXT NOT NULL,
    trace_id       TEXT NOT NULL,
    agent          TEXT,
    session_id     TEXT,
    start_time     TEXT NOT NULL,
    end_time       TEXT,
    span_count     BIGINT NOT NULL,
    error_count    BIGINT NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    cost_nanos     BIGINT NOT NULL,
    last_seq       BIGINT NOT NULL,
    PRIMARY KEY (project, trace_id)
);
CREATE INDEX traces_project_start ON traces (project, start_time DESC, trace_id DESC);
CREATE INDEX traces_project_agent ON traces (project, agent, start_time DESC);
CREATE INDEX traces_project_session ON traces (project, session_id, start_time DESC);

-- Projection: rule outcomes (violations and rule errors) recorded in the log.
CREATE TABLE violations (
    seq            BIGINT PRIMARY KEY,
    project        TEXT NOT NULL,
    violation_id   TEXT NOT NULL,
    -- violation | rule_error
    outcome        TEXT NOT NULL,
    rule_id        TEXT NOT NULL,
    -- info | warning | high | critical (NULL for rule errors)
    severity       TEXT,
    -- 0 info .. 3 critical, for `severity >=` filters
    severity_rank  BIGINT,
    message        TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_seq      BIGINT NOT NULL,
    event_kind     TEXT,
    trace_id       TEXT,
    span_id        TEXT,
    agent          TEXT,
    session_id     TEXT,
    at             TEXT NOT NULL
);
CREATE INDEX violations_project_seq ON violations (project, outcome, seq DESC);
CREATE INDEX violations_project_rule ON violations (project, rule_id, outcome, seq DESC);
CREATE INDEX violations_project_trace ON violations (project, trace_id, seq);

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
    -- The key made by POST /api/v1/keys/bootstrap.
    is_owner     BOOLEAN NOT NULL DEFAULT FALSE
);
-- At most one owner key, whoever races to bootstrap.
CREATE UNIQUE INDEX api_keys_one_owner ON api_keys (is_owner) WHERE is_owner;

-- Append-only security audit log, chained entry by entry (digest, link) and anchored in the
-- event log by `audit_checkpoint` records. Never holds a secret.
CREATE TABLE audit_log (
    id              BIGINT PRIMARY KEY,
    timestamp       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    principal       TEXT,
    project         TEXT,
    resource        TEXT,
    operation       TEXT NOT NULL,
    result          TEXT NOT NULL,
    correlation_id  TEXT,
    source_ip       TEXT,
    metadata        TEXT NOT NULL,
    digest          TEXT,
    link            TEXT
);
CREATE INDEX audit_log_time ON audit_log (timestamp DESC);
CREATE INDEX audit_log_type ON audit_log (event_type, id DESC);
-- Refuse edits by mistake (not a defence against someone holding the database: the chain is).
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Target of the deep health check's real write.
CREATE TABLE health_probe (
    id  BIGINT PRIMARY KEY CHECK (id = 1),
    at  TEXT NOT NULL
);
