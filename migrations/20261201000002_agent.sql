-- The agent graph's checkpoints: the whole run state after every step, per chat thread, in order.
-- The latest one is where a run stands (waiting for an approval, running tools, done); a run
-- resumes from it on any instance, after any restart.
CREATE TABLE checkpoints (
    thread_id  uuid        NOT NULL REFERENCES chats (thread_id) ON DELETE CASCADE,
    seq        integer     NOT NULL CHECK (seq >= 0),
    -- The step the run takes next (the state's `next`), for queries that need not read the state.
    step       text        NOT NULL,
    state      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, seq)
);
