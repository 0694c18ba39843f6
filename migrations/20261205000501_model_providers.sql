-- Model providers administrators add in the app, beside those of the environment (which stay
-- read-only), and the model settings they change there. An API key is stored encrypted
-- (domain::secrets, bound to its provider's id) and never shown back.
CREATE TABLE model_providers (
    id              text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('openai', 'anthropic')),
    base_url        text NOT NULL,
    api_key         bytea,
    models          text[] NOT NULL,
    thinking_budget integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row: the aliases (`[["fast", "ollama/llama3.2"], ...]`) and the default model set in the app;
-- they add to and override the environment's.
CREATE TABLE model_settings (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    aliases       jsonb NOT NULL DEFAULT '[]',
    default_model text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
