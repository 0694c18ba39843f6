-- A provider's context window (tokens its models take in one request), when an administrator set
-- it; and, on an answer, how many of the oldest messages were left out to fit it.
ALTER TABLE model_providers ADD COLUMN context_window integer;
ALTER TABLE messages ADD COLUMN trimmed integer;
