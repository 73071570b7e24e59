-- Cluster mode: the last JetStream stream sequence a worker stored, written in the same
-- transaction as the records it produced, so a redelivered message is never applied twice.
CREATE TABLE IF NOT EXISTS stream_progress (
    stream   TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
