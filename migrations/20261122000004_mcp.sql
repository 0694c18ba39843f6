-- Which MCP servers each user has connected: their intent, kept so that after a restart, or on
-- another instance, the connections come back on the user's first use. `server_id` is the id of a
-- server in the registry (the servers file); an id no longer there is kept but not connected.
CREATE TABLE mcp_connections (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, server_id)
);
