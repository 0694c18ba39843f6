-- What administrators did to people (let in, refuse, deactivate, reactivate): who did it, to whom,
-- when. Kept when the administrator is gone (their id is then empty).
CREATE TABLE admin_actions (
    id         bigserial   PRIMARY KEY,
    actor_id   uuid        REFERENCES users (id) ON DELETE SET NULL,
    subject_id uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    action     text        NOT NULL CHECK (action IN ('admit', 'refuse', 'deactivate', 'reactivate')),
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_actions_subject ON admin_actions (subject_id, at);
