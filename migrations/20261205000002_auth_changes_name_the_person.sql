-- The notices of migration 20261203000001 now name the person a change is about (their user id as
-- the payload): an instance forgets only that person's checked tokens, and only that person's open
-- event streams check again whether they may stay open, instead of everyone's at every sign-in.
DROP TRIGGER api_tokens_revoked ON api_tokens;
DROP TRIGGER users_changed ON users;
DROP FUNCTION notify_auth_changed();

CREATE FUNCTION notify_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchboard_auth_changed', OLD.user_id::text);
    RETURN NULL;
END
$$;

CREATE FUNCTION notify_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchboard_auth_changed', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_revoked AFTER DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION notify_token_revoked();

CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_changed();
