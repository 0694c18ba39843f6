-- Who may use Switchboard: a person is active, waiting for an administrator's approval (when new
-- people must be approved; see SWITCHBOARD_APPROVE_NEW_USERS), or deactivated (refused or taken
-- off): only active people have sessions, tokens and event streams that work. Their groups from the
-- identity provider are kept, so that roles follow a changed admin rule at the next start even
-- before they sign in again.
ALTER TABLE users
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'pending', 'deactivated')),
    ADD COLUMN groups text[] NOT NULL DEFAULT '{}';
