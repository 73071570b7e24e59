-- The event log: append-only, the source of truth. Every other table is a projection of it
-- and can be rebuilt with `audittrail replay`.
CREATE TABLE events (
    -- Log position, assigned by the single writer; the chain links records in this order.
    seq          INTEGER PRIMARY KEY,
    -- Tenant. Every row carries it from day one.
    project      TEXT NOT NULL,
    -- Client-chosen or generated id; unique per project so SDK retries store an event once.
    event_id     TEXT NOT NULL,
    -- span | guard | violation | rule_error
    record_type  TEXT NOT NULL,
    -- Denormalised from the body for trace lookups.
    trace_id     TEXT,
    -- Span start time (fixed-width RFC 3339 UTC), for ordering spans within a trace.
    event_time   TEXT,
    -- When the writer appended it.
    recorded_at  TEXT NOT NULL,
    -- Redacted canonical JSON. NULL once erased; digest and link stay so the chain verifies.
    body         TEXT,
    -- hex SHA-256 of (seq, project, event_id, record_type, recorded_at, body).
    digest       TEXT NOT NULL,
    -- hex HMAC-SHA256(chain key, previous link || digest).
    link         TEXT NOT NULL
);
CREATE UNIQUE INDEX events_project_event_id ON events (project, event_id);
CREATE INDEX events_project_trace ON events (project, trace_id, seq);

-- Where verification starts when retention has removed a prefix of the log: the seq and link
-- of the last removed record. Absent for a log that still starts at its genesis.
CREATE TABLE chain_base (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    link  TEXT NOT NULL
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
    span_count     INTEGER NOT NULL,
    error_count    INTEGER NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    cost_nanos     INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    PRIMARY KEY (project, trace_id)
);
CREATE INDEX traces_project_start ON traces (project, start_time DESC, trace_id DESC);
CREATE INDEX traces_project_agent ON traces (project, agent, start_time DESC);
CREATE INDEX traces_project_session ON traces (project, session_id, start_time DESC);
