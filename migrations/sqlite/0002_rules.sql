-- Session of each span, so the rules' running session totals can be rebuilt from the log.
ALTER TABLE events ADD COLUMN session_id TEXT;
CREATE INDEX events_project_session ON events (project, session_id, seq);

-- Projection: rule outcomes (violations and rule errors) recorded in the log.
CREATE TABLE violations (
    -- Position of the violation / rule_error record in the log.
    seq            INTEGER PRIMARY KEY,
    project        TEXT NOT NULL,
    violation_id   TEXT NOT NULL,
    -- violation | rule_error
    outcome        TEXT NOT NULL,
    rule_id        TEXT NOT NULL,
    -- info | warning | high | critical (NULL for rule errors)
    severity       TEXT,
    -- 0 info .. 3 critical, for `severity >=` filters
    severity_rank  INTEGER,
    message        TEXT NOT NULL,
    -- The event that caused it, and that event's log position.
    event_id       TEXT NOT NULL,
    event_seq      INTEGER NOT NULL,
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
