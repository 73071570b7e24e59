-- Written by `audittrail copy` into the database it copies *to*: which log it is a copy of and
-- how far the copy got, so an interrupted copy resumes instead of starting over (and a copy
-- never lands in a database that holds anything else).
CREATE TABLE copy_state (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    -- The source log's identity: the link of its first record (or "empty").
    source       TEXT NOT NULL,
    -- The last position the copy covers (the source's head when the copy started).
    until_seq    BIGINT NOT NULL,
    -- When the copy finished; NULL while it is under way.
    finished_at  TEXT
);
