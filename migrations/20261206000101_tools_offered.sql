-- On an answer whose chat has more tools than the tool-search threshold: the tools each of its
-- model calls was offered ([{turn, of, tools}]).
ALTER TABLE messages ADD COLUMN tools_offered jsonb;
