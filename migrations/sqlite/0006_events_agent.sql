-- The agent of each span and guard record, denormalised from the body like session_id, so
-- erasure and queries by agent use an index instead of reading every body.
ALTER TABLE events ADD COLUMN agent TEXT;
UPDATE events SET agent = json_extract(body, '$.agent')
 WHERE body IS NOT NULL AND record_type IN ('span', 'guard', 'violation', 'rule_error');
CREATE INDEX events_project_agent ON events (project, agent, seq);

-- At most one owner key, whoever races to bootstrap (Postgres has the same index).
CREATE UNIQUE INDEX api_keys_one_owner ON api_keys (is_owner) WHERE is_owner = 1;
