-- A question a server asked in answer to a multi round-trip call (MCP 2026-07-28) is kept with
-- the paused answer, not with a call held open: it waits as long as its answer waits (status
-- 'waiting'), across reloads and restarts, and its reply goes into the run's checkpoint.
ALTER TABLE tool_questions ADD COLUMN kept boolean NOT NULL DEFAULT false;
