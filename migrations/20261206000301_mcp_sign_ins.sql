-- People's sign-ins to tool servers that ask for one (MCP authorization: OAuth 2.1 with PKCE and
-- resource indicators). A sign-in holds the client Switchboard is at the server's authorization
-- server and the person's tokens, sealed with the instance key and bound to the row; it is for
-- the server's URL it was made at, and is not sent anywhere else.
CREATE TABLE mcp_sign_ins (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id  text        NOT NULL,
    url        text        NOT NULL,
    issuer     text,
    client_id  text        NOT NULL,
    sealed     bytea       NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, server_id)
);

-- Sign-ins under way, between the redirect to the authorization server and its callback (which
-- may reach another instance): found by a hash of their `state`, for the person who began them,
-- for ten minutes.
CREATE TABLE mcp_sign_in_flows (
    state_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id  text        NOT NULL,
    url        text        NOT NULL,
    return_to  text        NOT NULL,
    sealed     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mcp_sign_in_flows_user ON mcp_sign_in_flows (user_id, created_at);
