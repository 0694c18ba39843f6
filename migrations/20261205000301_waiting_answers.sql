-- The answer of a chat that waits for the person's decisions is found through this index, not by
-- reading every message of the chat: a decision, and what a chat waits for, cost the same in a chat
-- of 500 messages as in a new one (docs/benchmarks.md, "A checkpointed approval turn"). Few
-- messages wait at any time, so the index stays small.
CREATE INDEX messages_waiting ON messages (chat_id, position) WHERE status = 'waiting';
