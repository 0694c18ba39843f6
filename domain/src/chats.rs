//! Chats and their messages. Every function takes the user it acts for, and every query filters on
//! that user: someone else's chat is, to these functions, a chat that does not exist.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use crate::agent::Call;
use crate::{Database, Error, Result};

/// A `streaming` message not flushed for this long is from a server that died mid-answer.
pub const STALE_STREAM_SECS: i64 = 30;
pub const MAX_TITLE_CHARS: usize = 200;
/// Why a chat cannot take a message now.
pub const BUSY: &str =
    "An answer is still being written in this chat. Wait for it, or stop it first.";
/// A title made from a first message keeps at most this many characters.
const AUTO_TITLE_CHARS: usize = 60;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub id: Uuid,
    pub thread_id: Uuid,
    pub title: String,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub use protocol::{Fallback, Offered, Role, Status, Usage};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub position: i32,
    pub role: Role,
    pub content: String,
    pub status: Status,
    pub error: Option<String>,
    pub model: Option<String>,
    /// The tool calls an answer made, with their decisions and results.
    pub tool_calls: Vec<Call>,
    /// What an answer's model thought first (reasoning models).
    pub thinking: String,
    /// What an answer used, once its model was asked.
    pub usage: Option<Usage>,
    pub created_at: DateTime<Utc>,
}

impl Message {
    /// The message as clients see it.
    pub fn view(self) -> protocol::MessageView {
        let status = self.status;
        protocol::MessageView {
            id: self.id.to_string(),
            position: self.position,
            role: self.role,
            content: self.content,
            status,
            error: self.error,
            tool_calls: self.tool_calls.iter().map(|c| c.view(status)).collect(),
            model: self.model,
            thinking: self.thinking,
            usage: self.usage,
        }
    }
}

/// An answer's usage as stored (none before its model was asked).
fn usage_of(
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    estimated: Option<bool>,
    first_token_ms: Option<i32>,
    duration_ms: Option<i32>,
    fallback: Option<Fallback>,
    trimmed: Option<i32>,
) -> Option<Usage> {
    let count = |n: i32| n.max(0) as u32;
    Some(Usage {
        input_tokens: count(input_tokens?),
        output_tokens: output_tokens.map_or(0, count),
        estimated: estimated.unwrap_or(false),
        first_token_ms: first_token_ms.map(count),
        duration_ms: duration_ms.map_or(0, count),
        fallback,
        trimmed: trimmed.map(count),
        offered: Vec::new(),
    })
}

/// A message must say something.
pub fn check_message(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::Invalid("Write a message first.".into()));
    }
    Ok(())
}

fn check_title(title: &str) -> Result<String> {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return Err(Error::Invalid("A chat's title cannot be empty.".into()));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Error::Invalid(format!(
            "A chat's title has at most {MAX_TITLE_CHARS} characters."
        )));
    }
    Ok(title)
}

/// A short title from a chat's first message: its first line, cut at a word near 60 characters.
pub fn title_from(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("New chat");
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= AUTO_TITLE_CHARS {
        return line;
    }
    let cut: String = line.chars().take(AUTO_TITLE_CHARS).collect();
    let at_word = match cut.rfind(' ') {
        Some(space) if space > AUTO_TITLE_CHARS / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{}…", at_word.trim_end_matches([',', '.', ';', ':']))
}

pub async fn create(db: &Database, user_id: Uuid, model: Option<&str>) -> Result<Chat> {
    let chat = sqlx::query_as!(
        Chat,
        "INSERT INTO chats (user_id, model) VALUES ($1, $2)
         RETURNING id, thread_id, title, model, created_at, updated_at",
        user_id,
        model
    )
    .fetch_one(db.pool())
    .await?;
    Ok(chat)
}

pub async fn get(db: &Database, user_id: Uuid, chat_id: Uuid) -> Result<Option<Chat>> {
    let chat = sqlx::query_as!(
        Chat,
        "SELECT id, thread_id, title, model, created_at, updated_at FROM chats
         WHERE id = $1 AND user_id = $2",
        chat_id,
        user_id
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(chat)
}

/// The user's chats, most recently active first; with `search`, only those whose title or messages
/// match it (PostgreSQL full-text search, any language).
pub async fn list(db: &Database, user_id: Uuid, search: Option<&str>) -> Result<Vec<Chat>> {
    let search = search.map(str::trim).filter(|s| !s.is_empty());
    let chats = sqlx::query_as!(
        Chat,
        r#"SELECT c.id, c.thread_id, c.title, c.model, c.created_at, c.updated_at FROM chats c
           WHERE c.user_id = $1
             AND ($2::text IS NULL
                  OR to_tsvector('simple', c.title) @@ websearch_to_tsquery('simple', $2)
                  OR EXISTS (SELECT 1 FROM messages m
                             WHERE m.chat_id = c.id
                               AND to_tsvector('simple', m.content) @@ websearch_to_tsquery('simple', $2)))
           ORDER BY c.updated_at DESC
           LIMIT 500"#,
        user_id,
        search
    )
    .fetch_all(db.pool())
    .await?;
    Ok(chats)
}

/// Renames a chat; false when the user has no such chat.
pub async fn rename(db: &Database, user_id: Uuid, chat_id: Uuid, title: &str) -> Result<bool> {
    let title = check_title(title)?;
    let done = sqlx::query!(
        "UPDATE chats SET title = $3 WHERE id = $1 AND user_id = $2",
        chat_id,
        user_id,
        title
    )
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Chooses the chat's model (None: the default); false when the user has no such chat.
pub async fn set_model(
    db: &Database,
    user_id: Uuid,
    chat_id: Uuid,
    model: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE chats SET model = $3 WHERE id = $1 AND user_id = $2",
        chat_id,
        user_id,
        model
    )
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a chat and its messages; false when the user has no such chat.
pub async fn delete(db: &Database, user_id: Uuid, chat_id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM chats WHERE id = $1 AND user_id = $2",
        chat_id,
        user_id
    )
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The chat's messages in order, or None when the user has no such chat (see [`conversation`]).
pub async fn messages(db: &Database, user_id: Uuid, chat_id: Uuid) -> Result<Option<Vec<Message>>> {
    Ok(conversation(db, user_id, chat_id, None)
        .await?
        .map(|c| c.history))
}

/// A chat and its messages: all of them (a page), or, for an edit or a regeneration, those before
/// the position it replaces from (what the new message follows).
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub chat: Chat,
    pub history: Vec<Message>,
    /// The later messages are replaced: an edit or a regeneration.
    pub replacing: bool,
    /// The user wants a connection to some tool server, so the chat may have tools (read here, in
    /// the same round trip, so that a send in a chat without tools needs no other).
    pub tool_servers: bool,
    /// An answer of the chat (any of it, also after `from_position`) is being written now, on
    /// any instance: `streaming` and flushed within [`STALE_STREAM_SECS`].
    pub being_written: bool,
}

impl Conversation {
    /// Where the next message goes.
    pub fn next_position(&self) -> i32 {
        self.history.last().map_or(0, |m| m.position + 1)
    }
}

/// The user's chat and the messages before `from_position` (all of them when None), in order, in
/// one read; None when the user has no such chat. A `streaming` message that has not been flushed
/// for [`STALE_STREAM_SECS`] is reported as interrupted. (The `messages` of the chat's subquery is
/// by `$1`, not `c.id`, so PostgreSQL runs it once, not once per message.)
pub async fn conversation(
    db: &Database,
    user_id: Uuid,
    chat_id: Uuid,
    from_position: Option<i32>,
) -> Result<Option<Conversation>> {
    read_conversation(db, user_id, chat_id, from_position, None).await
}

/// The user's chat and the messages before its message `message_id` (none when it has no such
/// message): the conversation an answer answers, for its run to go on. None when the user has no
/// such chat.
pub async fn conversation_before(
    db: &Database,
    user_id: Uuid,
    chat_id: Uuid,
    message_id: Uuid,
) -> Result<Option<Conversation>> {
    read_conversation(db, user_id, chat_id, None, Some(message_id)).await
}

async fn read_conversation(
    db: &Database,
    user_id: Uuid,
    chat_id: Uuid,
    from_position: Option<i32>,
    before_message: Option<Uuid>,
) -> Result<Option<Conversation>> {
    let rows = sqlx::query!(
        r#"SELECT c.id AS chat_id, c.thread_id, c.title, c.model AS chat_model,
                  c.created_at AS chat_created_at, c.updated_at AS chat_updated_at,
                  m.id AS "id?", m.position AS "position?", m.role AS "role?: Role",
                  m.content AS "content?",
                  (CASE WHEN m.status = 'streaming' AND m.updated_at < now() - make_interval(secs => $4)
                        THEN 'interrupted' ELSE m.status END) AS "status?: Status",
                  m.error, m.model, m.tool_calls AS "tool_calls?: Json<Vec<Call>>",
                  m.thinking AS "thinking?", m.input_tokens, m.output_tokens,
                  m.tokens_estimated AS "tokens_estimated?", m.first_token_ms, m.duration_ms,
                  m.fallback AS "fallback: Json<Fallback>", m.trimmed,
                  m.tools_offered AS "tools_offered: Json<Vec<Offered>>",
                  m.created_at AS "created_at?",
                  EXISTS (SELECT 1 FROM mcp_connections x WHERE x.user_id = $2) AS "tool_servers!",
                  EXISTS (SELECT 1 FROM messages w
                          WHERE w.chat_id = $1 AND w.status = 'streaming'
                            AND w.updated_at >= now() - make_interval(secs => $4))
                      AS "being_written!"
           FROM chats c
           LEFT JOIN messages m ON m.chat_id = c.id AND ($3::int IS NULL OR m.position < $3)
                AND ($5::uuid IS NULL
                     OR m.position < (SELECT b.position FROM messages b
                                      WHERE b.id = $5 AND b.chat_id = $1))
           WHERE c.id = $1 AND c.user_id = $2
           ORDER BY m.position"#,
        chat_id,
        user_id,
        from_position,
        STALE_STREAM_SECS as f64,
        before_message
    )
    .fetch_all(db.pool())
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let (tool_servers, being_written) = (first.tool_servers, first.being_written);
    let chat = Chat {
        id: first.chat_id,
        thread_id: first.thread_id,
        title: first.title.clone(),
        model: first.chat_model.clone(),
        created_at: first.chat_created_at,
        updated_at: first.chat_updated_at,
    };
    let history = rows
        .into_iter()
        .filter_map(|row| {
            Some(Message {
                id: row.id?,
                position: row.position?,
                role: row.role?,
                content: row.content?,
                status: row.status?,
                error: row.error,
                model: row.model,
                tool_calls: row.tool_calls?.0,
                thinking: row.thinking.unwrap_or_default(),
                usage: usage_of(
                    row.input_tokens,
                    row.output_tokens,
                    row.tokens_estimated,
                    row.first_token_ms,
                    row.duration_ms,
                    row.fallback.map(|f| f.0),
                    row.trimmed,
                )
                .map(|usage| Usage {
                    offered: row.tools_offered.map(|o| o.0).unwrap_or_default(),
                    ..usage
                }),
                created_at: row.created_at?,
            })
        })
        .collect();
    Ok(Some(Conversation {
        chat,
        history,
        replacing: from_position.is_some() || before_message.is_some(),
        tool_servers,
        being_written,
    }))
}

/// What [`ask`] stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Asked {
    pub question: Message,
    pub answer: Message,
    /// The sequence number of the chat thread's last checkpoint (-1: none), read in the same
    /// statement: where the answer's run writes its first.
    pub last_checkpoint: i32,
}

/// Adds the person's message and an empty, streaming answer after the `conversation` as it was
/// read, replacing the messages after it when it is an edit or a regeneration. The first message of
/// a chat titled "New chat" names it. None when the user no longer has the chat.
///
/// One statement, so one round trip and one commit: a send is on the path to the first token. If
/// the chat changed since it was read (a send from another tab or server), its next position is
/// taken and the `(chat_id, position)` key refuses this one as busy; nothing is half-written.
pub async fn ask(
    db: &Database,
    user_id: Uuid,
    conversation: &Conversation,
    text: &str,
    model: &str,
) -> Result<Option<Asked>> {
    check_message(text)?;
    let position = conversation.next_position();
    // Sub-statements run in no set order; the inserts wait for the delete
    // (`(SELECT count(*) FROM gone) >= 0`) so they never meet the rows it removes.
    let stored = sqlx::query!(
        r#"WITH chat AS (
               SELECT id FROM chats WHERE id = $1 AND user_id = $2
           ), gone AS (
               DELETE FROM messages
               WHERE $4 AND chat_id = (SELECT id FROM chat) AND position >= $3
               RETURNING 1
           ), question AS (
               INSERT INTO messages (chat_id, position, role, content)
               SELECT id, $3, 'user', $5 FROM chat WHERE (SELECT count(*) FROM gone) >= 0
               RETURNING id, position, role, content, status, error, model, created_at
           ), answer AS (
               INSERT INTO messages (chat_id, position, role, status, model)
               SELECT id, $3 + 1, 'assistant', 'streaming', $6 FROM chat
               WHERE (SELECT count(*) FROM gone) >= 0
               RETURNING id, position, role, content, status, error, model, created_at
           ), k AS (
               SELECT coalesce(max(k.seq), -1) AS seq FROM checkpoints k JOIN chats c
                   ON c.thread_id = k.thread_id WHERE c.id = $1 AND c.user_id = $2
           ), renamed AS (
               UPDATE chats SET updated_at = now(),
                   title = CASE WHEN $3 = 0 AND title = 'New chat' THEN $7 ELSE title END
               WHERE id = (SELECT id FROM chat)
           )
           SELECT id AS "id!", position AS "position!", role AS "role!: Role",
                  content AS "content!", status AS "status!: Status", error, model,
                  created_at AS "created_at!", k.seq AS "last_checkpoint!"
           FROM question, k
           UNION ALL
           SELECT id, position, role, content, status, error, model, created_at, k.seq
           FROM answer, k"#,
        conversation.chat.id,
        user_id,
        position,
        conversation.replacing,
        text,
        model,
        title_from(text),
    )
    .fetch_all(db.pool())
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict(BUSY.into()),
        _ => e.into(),
    })?;
    let last_checkpoint = stored.first().map_or(-1, |r| r.last_checkpoint);
    let mut messages = stored.into_iter().map(|r| Message {
        id: r.id,
        position: r.position,
        role: r.role,
        content: r.content,
        status: r.status,
        error: r.error,
        model: r.model,
        tool_calls: Vec::new(),
        thinking: String::new(),
        usage: None,
        created_at: r.created_at,
    });
    let (Some(first), Some(second)) = (messages.next(), messages.next()) else {
        return Ok(None);
    };
    let (question, answer) = if first.role == Role::User {
        (first, second)
    } else {
        (second, first)
    };
    Ok(Some(Asked {
        question,
        answer,
        last_checkpoint,
    }))
}

// `flush` and `finish` commit without waiting for the disk (`synchronous_commit` off for their
// own transaction, set in the statement itself: one round trip). What that risks is what the flush
// interval already accepts: only if PostgreSQL itself crashes in the next fraction of a second
// does the answer fall back to its previously saved text, shown as interrupted. Other sessions see
// the write at once. It takes a disk wait off every answer's end. Questions are stored with a
// normal, durable commit.

/// Saves the text streamed so far (a crash keeps it) and shows the answer is still alive.
pub async fn flush(db: &Database, message_id: Uuid, content: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE messages SET content = $2, updated_at = now()
         WHERE id = $1 AND status = 'streaming'
           AND set_config('synchronous_commit', 'off', true) IS NOT NULL",
        message_id,
        content
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Whether an answer of the user's chat is being written now (on any instance): `streaming`, and
/// flushed within [`STALE_STREAM_SECS`].
pub async fn being_written(db: &Database, user_id: Uuid, chat_id: Uuid) -> Result<bool> {
    let busy = sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT 1 FROM messages m JOIN chats c ON c.id = m.chat_id
               WHERE m.chat_id = $1 AND c.user_id = $2 AND m.status = 'streaming'
                 AND m.updated_at >= now() - make_interval(secs => $3)
           ) AS "busy!""#,
        chat_id,
        user_id,
        STALE_STREAM_SECS as f64
    )
    .fetch_one(db.pool())
    .await?;
    Ok(busy)
}

/// Shows a streaming answer is still alive (a tool is running, nothing streams).
pub async fn touch(db: &Database, message_id: Uuid) -> Result<()> {
    sqlx::query!(
        "UPDATE messages SET updated_at = now()
         WHERE id = $1 AND status = 'streaming'
           AND set_config('synchronous_commit', 'off', true) IS NOT NULL",
        message_id
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Ends an answer with its final text and status.
pub async fn finish(
    db: &Database,
    message_id: Uuid,
    content: &str,
    status: Status,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query!(
        "UPDATE messages SET content = $2, status = $3, error = $4, updated_at = now()
         WHERE id = $1 AND set_config('synchronous_commit', 'off', true) IS NOT NULL",
        message_id,
        content,
        status.as_str(),
        error
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_line_cut_at_a_word() {
        assert_eq!(
            title_from("  \n Plan a trip to Lisbon \nwith kids"),
            "Plan a trip to Lisbon"
        );
        let long = "Explain how the borrow checker decides when a mutable reference may be taken, with examples";
        let title = title_from(long);
        assert!(title.ends_with('…'), "{title}");
        assert!(title.chars().count() <= AUTO_TITLE_CHARS + 1, "{title}");
        assert!(
            long.starts_with(title.trim_end_matches('…')),
            "cut at a word: {title}"
        );
        assert_eq!(title_from("   "), "New chat");
    }

    #[test]
    fn titles_are_checked() {
        assert_eq!(check_title("  My   chat ").unwrap(), "My chat");
        assert!(check_title(" ").is_err());
        assert!(check_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
    }
}
