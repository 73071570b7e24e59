-- The trace list filtered by agent or session pages by (start_time DESC, trace_id DESC): with
-- trace_id in these indexes they serve the whole ORDER BY (as on SQLite, migration 0008).
DROP INDEX traces_project_agent;
DROP INDEX traces_project_session;
CREATE INDEX traces_project_agent ON traces (project, agent, start_time DESC, trace_id DESC);
CREATE INDEX traces_project_session ON traces (project, session_id, start_time DESC, trace_id DESC);
