-- The agent in chats: an answer may wait for the person's approval of tool calls, and keeps the
-- tool calls it made (with their decisions and results) beside its text, written in the same
-- transaction as the checkpoint of the step that produced them.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('complete', 'streaming', 'waiting', 'stopped', 'failed', 'interrupted'));
ALTER TABLE messages ADD COLUMN tool_calls jsonb NOT NULL DEFAULT '[]';

-- A person's standing approvals: a tool of a server ("always allow this tool"), or with tool ''
-- every tool of the server ("always allow this server").
CREATE TABLE tool_policies (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id  text        NOT NULL,
    tool       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, server_id, tool)
);

-- A person's agent settings; a person with no row has the defaults.
CREATE TABLE agent_settings (
    user_id               uuid    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- Tools that declare themselves read-only run without asking.
    auto_approve_read_only boolean NOT NULL DEFAULT false,
    -- The most model calls one answer may make.
    max_steps             integer NOT NULL DEFAULT 10 CHECK (max_steps BETWEEN 1 AND 50),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Every tool call the agent was asked to make, with its decision (by whom, or which policy) and
-- what came of it. Kept when its chat is deleted (the chat id is then a dangling reference, on
-- purpose); gone with its user.
CREATE TABLE tool_audit (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id     uuid        NOT NULL,
    call_id     text        NOT NULL,
    server_id   text        NOT NULL,
    tool        text        NOT NULL,
    arguments   jsonb       NOT NULL,
    -- `approved` or `rejected`; NULL for a call refused before any decision (an unknown tool, bad
    -- arguments).
    decision    text        CHECK (decision IN ('approved', 'rejected')),
    -- `person`, or the policy: `policy:tool`, `policy:server`, `policy:read_only`.
    decided_by  text,
    reason      text,
    -- `ok`, `error`, `interrupted` or `not_run`.
    outcome     text        NOT NULL CHECK (outcome IN ('ok', 'error', 'interrupted', 'not_run')),
    -- The start of what the tool returned (or the error).
    result      text,
    duration_ms integer,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tool_audit_by_user ON tool_audit (user_id, created_at DESC);
