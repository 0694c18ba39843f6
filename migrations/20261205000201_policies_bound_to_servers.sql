-- A standing approval ("always allow") is bound to the server it was given for: it keeps the key of
-- that server's definition (domain/src/agent/server_key.rs) and allows only while the server the
-- person uses under that id has the same key. A server kept here gets a generation, new with every
-- row (so a server deleted and made again is another) and new whenever its id, owner or transport
-- changes (a rename, or an administrator changing what it runs), whoever writes the row.
ALTER TABLE mcp_servers ADD COLUMN generation uuid NOT NULL DEFAULT gen_random_uuid();

CREATE FUNCTION mcp_servers_new_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.slug IS DISTINCT FROM OLD.slug
       OR NEW.owner_id IS DISTINCT FROM OLD.owner_id
       OR NEW.transport IS DISTINCT FROM OLD.transport THEN
        NEW.generation := gen_random_uuid();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER mcp_servers_generation BEFORE UPDATE ON mcp_servers
    FOR EACH ROW EXECUTE FUNCTION mcp_servers_new_generation();

-- Approvals given before they were bound cannot say which definition they were for: people are
-- asked again.
DELETE FROM tool_policies;
ALTER TABLE tool_policies ADD COLUMN server_key text NOT NULL CHECK (server_key <> '');
