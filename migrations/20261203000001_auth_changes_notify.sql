-- Each instance keeps the API tokens it checked lately in memory, and forgets them all when it hears
-- that a token was revoked or a user changed (a new role, a new name, deleted): these triggers tell
-- it, on commit, through NOTIFY.
CREATE FUNCTION notify_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchboard_auth_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_revoked AFTER DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION notify_auth_changed();

CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION notify_auth_changed();
