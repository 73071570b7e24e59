-- Cluster mode (Postgres only) records the last JetStream sequence it stored here; the table
-- exists on SQLite too so both backends share one schema.
CREATE TABLE IF NOT EXISTS stream_progress (
    stream   TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
