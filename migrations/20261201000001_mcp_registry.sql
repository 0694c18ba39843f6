-- Tool servers kept in the database: the registry that admins manage on the admin page (owner_id
-- NULL), and the personal servers people add for themselves (owner_id: that person, Streamable HTTP
-- only). Servers from the servers file are not stored: the file stays their source.
--
-- `transport` is the transport without its secrets (the names of secret environment variables and
-- headers, whether there is a bearer token); `secrets` holds their values, encrypted with the key
-- from SWITCHBOARD_SECRET_KEY (ChaCha20-Poly1305, nonce first, the row's id as associated data).
CREATE TABLE mcp_servers (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    uuid        REFERENCES users (id) ON DELETE CASCADE,
    slug        text        NOT NULL CHECK (slug ~ '^[a-z0-9-]{1,40}$'),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text        NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    enabled     boolean     NOT NULL DEFAULT true,
    transport   jsonb       NOT NULL,
    secrets     bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Personal servers are always Streamable HTTP: stdio starts a process on this machine.
    CHECK (owner_id IS NULL OR transport ->> 'transport' = 'http')
);
CREATE UNIQUE INDEX mcp_servers_registry_slug ON mcp_servers (slug) WHERE owner_id IS NULL;
CREATE UNIQUE INDEX mcp_servers_personal_slug ON mcp_servers (owner_id, slug) WHERE owner_id IS NOT NULL;

-- Tools a person switched off in one chat (every tool of a connected server is on by default).
CREATE TABLE chat_disabled_tools (
    chat_id   uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    server_id text NOT NULL,
    tool      text NOT NULL,
    PRIMARY KEY (chat_id, server_id, tool)
);
