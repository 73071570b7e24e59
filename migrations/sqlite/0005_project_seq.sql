-- A project's records in log order: ablation jobs read only their own project's history,
-- page by page, never the whole log.
CREATE INDEX events_project_seq ON events (project, seq);
