-- What an answer's model thought before answering (reasoning models: shown folded, never given back
-- to a model as answer text), and what the answer used: the tokens in and out (the provider's
-- counts, or Switchboard's estimates when it gave none), the time to its first token and the model's
-- writing time.
ALTER TABLE messages
    ADD COLUMN thinking         text    NOT NULL DEFAULT '',
    ADD COLUMN input_tokens     integer,
    ADD COLUMN output_tokens    integer,
    ADD COLUMN tokens_estimated boolean NOT NULL DEFAULT false,
    ADD COLUMN first_token_ms   integer,
    ADD COLUMN duration_ms      integer;
