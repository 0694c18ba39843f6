-- Chats and their messages. A chat belongs to one user; every query that reads one filters on that
-- user. `thread_id` names the chat's agent thread (its checkpoints, in a later migration).
CREATE TABLE chats (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    thread_id  uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    title      text        NOT NULL DEFAULT 'New chat' CHECK (length(title) BETWEEN 1 AND 200),
    -- The model chosen for this chat (`<provider>/<model>` or an alias); NULL: the default.
    model      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chats_by_user ON chats (user_id, updated_at DESC);
CREATE INDEX chats_title_search ON chats USING gin (to_tsvector('simple', title));

-- An assistant message is written when its answer starts (status `streaming`), its text flushed
-- while it streams, and its status set when it ends. A `streaming` message whose `updated_at` has
-- not moved for a while belonged to a server that died: it is shown as interrupted.
CREATE TABLE messages (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    chat_id    uuid        NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    position   integer     NOT NULL CHECK (position >= 0),
    role       text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content    text        NOT NULL DEFAULT '',
    status     text        NOT NULL DEFAULT 'complete'
                           CHECK (status IN ('complete', 'streaming', 'stopped', 'failed', 'interrupted')),
    -- Why an answer failed, in words for the person.
    error      text,
    model      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chat_id, position)
);
CREATE INDEX messages_search ON messages USING gin (to_tsvector('simple', content));
CREATE INDEX messages_streaming ON messages (updated_at) WHERE status = 'streaming';
