-- Groups, who may use what, and what each may spend.
--
-- A group is a name. A person is in it when their identity provider says so (`users.groups`, from
-- their last sign-in) or when an administrator added them in the app (`group_members`); a row in
-- `groups` holds the group's settings and exists for every group made in the app, and for a
-- provider's group once an administrator set something on it. A group's budget (tokens per day and
-- per month, UTC) and rate (answers per minute) apply to each member; a person's own values, when
-- set, replace their groups'. Members of a group with `personal_servers` off cannot use servers of
-- their own.
CREATE TABLE groups (
    name               text        PRIMARY KEY
                                   CHECK (length(name) BETWEEN 1 AND 100 AND name = btrim(name)
                                          AND position(',' IN name) = 0),
    personal_servers   boolean     NOT NULL DEFAULT true,
    tokens_per_day     bigint      CHECK (tokens_per_day >= 0),
    tokens_per_month   bigint      CHECK (tokens_per_month >= 0),
    answers_per_minute integer     CHECK (answers_per_minute >= 0),
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE group_members (
    group_name text        NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

-- A person's own limits (replacing their groups'), and the role an administrator gave them in the
-- app (it stands over SWITCHBOARD_ADMIN_EMAILS / _GROUPS until cleared).
ALTER TABLE users
    ADD COLUMN tokens_per_day     bigint CHECK (tokens_per_day >= 0),
    ADD COLUMN tokens_per_month   bigint CHECK (tokens_per_month >= 0),
    ADD COLUMN answers_per_minute integer CHECK (answers_per_minute >= 0),
    ADD COLUMN role_set_in_app    boolean NOT NULL DEFAULT false;

-- A registry server limited to groups: only their members see and use it (empty: everyone).
ALTER TABLE mcp_servers ADD COLUMN groups text[] NOT NULL DEFAULT '{}';

-- Models (`<provider>/<model>`) limited to groups; a model without a row is everyone's.
CREATE TABLE model_groups (
    model  text   PRIMARY KEY CHECK (length(model) BETWEEN 1 AND 300),
    groups text[] NOT NULL CHECK (cardinality(groups) > 0)
);

-- What each person's answers used, by day (UTC) and model: kept when chats are deleted, so that a
-- budget cannot be reset by deleting them. Checkpoints add to it as answers go; the answers before
-- this migration are counted from their messages.
CREATE TABLE usage_days (
    user_id       uuid    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day           date    NOT NULL,
    model         text    NOT NULL,
    answers       integer NOT NULL DEFAULT 0,
    input_tokens  bigint  NOT NULL DEFAULT 0,
    output_tokens bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, model)
);
CREATE INDEX usage_days_by_day ON usage_days (day);
INSERT INTO usage_days (user_id, day, model, answers, input_tokens, output_tokens)
SELECT c.user_id, (m.created_at AT TIME ZONE 'UTC')::date, coalesce(m.model, ''), count(*),
       sum(coalesce(m.input_tokens, 0)), sum(coalesce(m.output_tokens, 0))
FROM messages m JOIN chats c ON c.id = m.chat_id
WHERE m.role = 'assistant' AND (m.input_tokens IS NOT NULL OR m.output_tokens IS NOT NULL)
GROUP BY 1, 2, 3;

-- When the answers of a person with a rate limit started, for the rate: a row per answer let
-- through (kept a minute; an edit or a regeneration, which replace messages, still counts).
CREATE TABLE answer_starts (
    user_id uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at      timestamptz NOT NULL
);
CREATE INDEX answer_starts_by_user ON answer_starts (user_id, at);

-- What administrators do to people now includes their role, groups and limits (`detail` says which
-- group, or what changed).
ALTER TABLE admin_actions DROP CONSTRAINT admin_actions_action_check;
ALTER TABLE admin_actions
    ADD CONSTRAINT admin_actions_action_check CHECK (action IN
        ('admit', 'refuse', 'deactivate', 'reactivate', 'promote', 'demote', 'join', 'leave', 'limits')),
    ADD COLUMN detail text;
