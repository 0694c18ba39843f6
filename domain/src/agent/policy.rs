//! A person's standing approvals ("always allow this tool / server", read-only tools), their agent
//! settings, and the audit of every tool call their agent asked for. Every query filters on the
//! person. An approval of a tool or a server is bound to the server's definition it was given for
//! (its key, see [`super::server_key`]): it applies, and is listed, only while the server the
//! person uses under that id has that key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::server_key::{ServerKeys, server_keys};
use super::{DEFAULT_MAX_STEPS, Policies};
use crate::mcp::Mcp;
use crate::{Database, Error, Result};

/// The most model calls one answer may be allowed.
pub const MAX_STEPS_LIMIT: i32 = 50;

/// A person's agent settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub auto_approve_read_only: bool,
    pub max_steps: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auto_approve_read_only: false,
            max_steps: DEFAULT_MAX_STEPS as i32,
        }
    }
}

/// One standing approval: a tool of a server, or (tool None) all of the server's tools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowed {
    pub server_id: String,
    pub tool: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn settings(db: &Database, user_id: Uuid) -> Result<Settings> {
    let row = sqlx::query_as!(
        Settings,
        "SELECT auto_approve_read_only, max_steps FROM agent_settings WHERE user_id = $1",
        user_id
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(row.unwrap_or_default())
}

pub async fn save_settings(db: &Database, user_id: Uuid, settings: &Settings) -> Result<()> {
    if !(1..=MAX_STEPS_LIMIT).contains(&settings.max_steps) {
        return Err(Error::Invalid(format!(
            "The most model calls per answer must be between 1 and {MAX_STEPS_LIMIT}."
        )));
    }
    sqlx::query!(
        "INSERT INTO agent_settings (user_id, auto_approve_read_only, max_steps)
         VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
         SET auto_approve_read_only = $2, max_steps = $3, updated_at = now()",
        user_id,
        settings.auto_approve_read_only,
        settings.max_steps
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The person's standing approvals that still apply: those whose server has, in `keys` (the
/// servers they may use now), the key it had when they were given.
pub async fn allowed(db: &Database, user_id: Uuid, keys: &ServerKeys) -> Result<Vec<Allowed>> {
    let rows = sqlx::query!(
        "SELECT server_id, tool, server_key, created_at FROM tool_policies WHERE user_id = $1
         ORDER BY server_id, tool",
        user_id
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| keys.get(&r.server_id) == Some(&r.server_key))
        .map(|r| Allowed {
            server_id: r.server_id,
            tool: (!r.tool.is_empty()).then_some(r.tool),
            created_at: r.created_at,
        })
        .collect())
}

/// Always allows a tool of the server the person may use under `server_id` now (tool None: every
/// tool of it). Refused when they have no such server.
pub async fn allow_current(
    db: &Database,
    mcp: &Mcp,
    user_id: Uuid,
    server_id: &str,
    tool: Option<&str>,
) -> Result<()> {
    if server_id.trim().is_empty() {
        return Err(Error::Invalid("Say which server to allow.".into()));
    }
    let keys = server_keys(db, mcp, user_id).await?;
    let key = keys.get(server_id).map_or("", String::as_str);
    allow(db, user_id, server_id, tool, key).await
}

/// Always allows a tool of a server (tool None: every tool of it), as it was defined when its key
/// was `server_key` (the definition the person saw); a policy given earlier for it is replaced.
pub async fn allow(
    db: &Database,
    user_id: Uuid,
    server_id: &str,
    tool: Option<&str>,
    server_key: &str,
) -> Result<()> {
    if server_key.is_empty() {
        return Err(Error::NotFound(format!(
            "There is no tool server '{server_id}' for you to allow: it may have been removed or renamed. See the Servers page for the servers you can use."
        )));
    }
    sqlx::query!(
        "INSERT INTO tool_policies (user_id, server_id, tool, server_key) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, server_id, tool) DO UPDATE
         SET server_key = EXCLUDED.server_key, created_at = now()
         WHERE tool_policies.server_key <> EXCLUDED.server_key",
        user_id,
        server_id,
        tool.unwrap_or_default(),
        server_key
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Takes back a standing approval; false when there was none.
pub async fn revoke(
    db: &Database,
    user_id: Uuid,
    server_id: &str,
    tool: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM tool_policies WHERE user_id = $1 AND server_id = $2 AND tool = $3",
        user_id,
        server_id,
        tool.unwrap_or_default()
    )
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Everything a run needs of the person: their policies (each with the key of the server it was
/// given for, which [`Policies::allows`] holds against the server's key now) and the step limit,
/// in one read.
pub async fn for_run(db: &Database, user_id: Uuid) -> Result<(Policies, Settings)> {
    let rows = sqlx::query!(
        r#"SELECT p.server_id AS "server_id?", p.tool AS "tool?", p.server_key AS "key?",
                  s.auto_approve_read_only AS "read_only?", s.max_steps AS "max_steps?"
           FROM (SELECT $1::uuid AS user_id) me
           LEFT JOIN agent_settings s ON s.user_id = me.user_id
           LEFT JOIN tool_policies p ON p.user_id = me.user_id"#,
        user_id
    )
    .fetch_all(db.pool())
    .await?;
    let mut settings = Settings::default();
    let mut policies = Policies::default();
    for row in rows {
        if let (Some(read_only), Some(max_steps)) = (row.read_only, row.max_steps) {
            settings = Settings {
                auto_approve_read_only: read_only,
                max_steps,
            };
        }
        match (row.server_id, row.tool, row.key) {
            (Some(server), Some(tool), Some(key)) if tool.is_empty() => {
                policies.servers.insert(server, key);
            }
            (Some(server), Some(tool), Some(key)) => {
                policies.tools.insert((server, tool), key);
            }
            _ => {}
        }
    }
    policies.read_only = settings.auto_approve_read_only;
    Ok((policies, settings))
}

/// One audited tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub chat_id: Uuid,
    /// The chat's title, when the chat still exists.
    pub chat_title: Option<String>,
    pub call_id: String,
    pub server_id: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub outcome: String,
    pub result: Option<String>,
    pub duration_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// The person's audited tool calls, newest first: `limit` of them, older than `before` (an
/// entry's id) when given.
pub async fn audit(
    db: &Database,
    user_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query_as!(
        AuditEntry,
        r#"SELECT a.id, a.chat_id, c.title AS "chat_title?", a.call_id, a.server_id, a.tool,
                  a.arguments, a.decision, a.decided_by, a.reason, a.outcome, a.result,
                  a.duration_ms, a.created_at
           FROM tool_audit a LEFT JOIN chats c ON c.id = a.chat_id AND c.user_id = a.user_id
           WHERE a.user_id = $1 AND ($2::bigint IS NULL OR a.id < $2)
           ORDER BY a.id DESC LIMIT $3"#,
        user_id,
        before,
        limit.clamp(1, 200)
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}
