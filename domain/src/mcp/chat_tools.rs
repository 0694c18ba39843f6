//! The tools a chat may use: every tool of the person's connected servers, less those switched off
//! in that chat.

use std::collections::HashSet;

use uuid::Uuid;

use super::{ChatTool, Mcp};
use crate::{Database, Result};

impl Mcp {
    /// The tools of the user's connected servers, each marked on or off for one chat. None when
    /// the chat is not the user's. A server that is connecting again (its connection dropped a
    /// moment ago, or it idled out and is being woken) keeps the tools it had: a message sent in
    /// that moment is answered with them, and a call waits for the connection.
    pub async fn chat_tools(&self, user_id: Uuid, chat_id: Uuid) -> Result<Option<Vec<ChatTool>>> {
        let Some(off) = disabled_tools(&self.inner.db, user_id, chat_id).await? else {
            return Ok(None);
        };
        let servers = self.servers(user_id).await?;
        Ok(Some(
            servers
                .into_iter()
                .filter(|s| s.status.is_usable())
                .flat_map(|server| {
                    let off = &off;
                    server.tools.into_iter().map(move |tool| ChatTool {
                        enabled: !off.contains(&(server.id.clone(), tool.name.clone())),
                        server_id: server.id.clone(),
                        server_name: server.name.clone(),
                        tool,
                    })
                })
                .collect(),
        ))
    }

    /// Switches one tool on or off in one of the user's chats. False when the chat is not theirs.
    pub async fn set_chat_tool(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        server_id: &str,
        tool: &str,
        enabled: bool,
    ) -> Result<bool> {
        // One statement: it checks the chat is the user's, and switches the tool on (deletes its
        // row) or off (adds one).
        let mine = sqlx::query_scalar!(
            r#"WITH mine AS (SELECT id FROM chats WHERE id = $1 AND user_id = $2),
                    gone AS (DELETE FROM chat_disabled_tools
                             WHERE $5 AND chat_id IN (SELECT id FROM mine)
                               AND server_id = $3 AND tool = $4),
                    added AS (INSERT INTO chat_disabled_tools (chat_id, server_id, tool)
                              SELECT id, $3, $4 FROM mine WHERE NOT $5 ON CONFLICT DO NOTHING)
               SELECT count(*) AS "n!" FROM mine"#,
            chat_id,
            user_id,
            server_id,
            tool,
            enabled
        )
        .fetch_one(self.inner.db.pool())
        .await?;
        Ok(mine > 0)
    }
}

/// The tools switched off in a chat of the user's; None when the chat is not theirs.
async fn disabled_tools(
    db: &Database,
    user_id: Uuid,
    chat_id: Uuid,
) -> Result<Option<HashSet<(String, String)>>> {
    let rows = sqlx::query!(
        r#"SELECT d.server_id AS "server_id?", d.tool AS "tool?"
           FROM chats c LEFT JOIN chat_disabled_tools d ON d.chat_id = c.id
           WHERE c.id = $1 AND c.user_id = $2"#,
        chat_id,
        user_id
    )
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|r| Some((r.server_id?, r.tool?)))
            .collect(),
    ))
}
