-- People who sign in. A person is known by the identity provider that vouches for them (issuer) and
-- the id it gives them there (subject); name, e-mail and avatar are refreshed at every sign-in.
-- The local user of an instance without a provider has issuer 'local'.
CREATE TABLE users (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    issuer         text        NOT NULL,
    subject        text        NOT NULL,
    name           text        NOT NULL,
    email          text,
    email_verified boolean     NOT NULL DEFAULT false,
    avatar_url     text,
    role           text        NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (issuer, subject)
);

-- Personal API tokens. Only a SHA-256 of the secret is kept: tokens are 256 random bits, so a slow
-- password hash would add nothing but latency to every API call. The prefix is shown in the list so
-- a person can tell their tokens apart.
CREATE TABLE api_tokens (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix       text        NOT NULL,
    secret_hash  bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at);

-- Browser sessions: the id from the cookie, the session's data, and when it expires. Expired rows
-- are deleted by the server in the background.
CREATE TABLE sessions (
    id          text        PRIMARY KEY,
    data        jsonb       NOT NULL,
    expiry_date timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expiry_date);
