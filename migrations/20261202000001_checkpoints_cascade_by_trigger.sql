-- A checkpoint is written after every step of a run, so its write is on the run's critical path.
-- The foreign key to chats made every one of those inserts lock its chat's row (a FOR KEY SHARE
-- lock is itself a write, logged and, for the durable ones, waited for): measured, it cost more
-- than the insert it guarded. The key goes; what it gave stays:
--  * deleting a chat (by the person, or with its user) deletes its checkpoints: the trigger below;
--  * a checkpoint is only written for a thread whose chat exists: every insert checks so in its
--    own statement (domain/src/agent/store.rs), with a plain index lookup that locks nothing. A
--    run's write racing its chat's deletion can leave a checkpoint behind, which no query can
--    reach (every read joins the chat and its owner) and the next deletion of that thread, if any,
--    removes.
ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_thread_id_fkey;

CREATE FUNCTION delete_chat_checkpoints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM checkpoints WHERE thread_id = OLD.thread_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER chats_delete_checkpoints AFTER DELETE ON chats
    FOR EACH ROW EXECUTE FUNCTION delete_chat_checkpoints();
