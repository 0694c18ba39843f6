-- When another model of an alias's list than the one chosen wrote an answer (the chosen could not
-- answer): {"model", "instead_of", "why"}. `messages.model` then names the one that wrote it.
ALTER TABLE messages ADD COLUMN fallback jsonb;
