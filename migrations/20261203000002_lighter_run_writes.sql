-- Every step of an agent run writes its checkpoint and updates its answer's row; both are on the
-- run's critical path, so they are made to cost less (measured with pgbench on a 2-core machine):
--
--  * `messages_streaming` indexed `updated_at`, which every flush, heartbeat and checkpoint sets,
--    so no update of an answer could be a HOT update (one that writes no index entry): each wrote
--    an entry into every index of the table, the full-text index too. No query uses it (an answer
--    left `streaming` by a dead server is told by its own row, `chats::conversation`), so it goes:
--    an update that changes neither the text nor the status is now HOT, about 0.03 ms less each.
--    What stays indexed is which answers are being written (a few at any time), by chat: how an
--    instance finds the runs whose server died while their tools ran (`store::settle_abandoned`).
--  * The run state and an answer's tool calls are read and written whole by Switchboard and never
--    queried inside by PostgreSQL: `json` (the text, checked) instead of `jsonb` (parsed into a
--    binary form on every write, and rendered back on every read).
DROP INDEX messages_streaming;
CREATE INDEX messages_being_written ON messages (chat_id) WHERE status = 'streaming';
ALTER TABLE checkpoints ALTER COLUMN state TYPE json;
ALTER TABLE messages ALTER COLUMN tool_calls DROP DEFAULT;
ALTER TABLE messages ALTER COLUMN tool_calls TYPE json;
ALTER TABLE messages ALTER COLUMN tool_calls SET DEFAULT '[]';
