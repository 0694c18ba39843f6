-- Tool servers' questions to people during calls (MCP elicitation), and their answers: what the
-- page shows while a call waits, and the record of who answered what.
CREATE TABLE tool_questions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    answer_id uuid NOT NULL,
    call_id text NOT NULL,
    server_id text NOT NULL,
    message text NOT NULL,
    schema jsonb,
    url text,
    state text NOT NULL DEFAULT 'waiting'
        CHECK (state IN ('waiting', 'accept', 'decline', 'cancel', 'expired')),
    content jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    answered_at timestamptz
);
CREATE INDEX tool_questions_waiting ON tool_questions (chat_id) WHERE state = 'waiting';
