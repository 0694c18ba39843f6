//! The agent's server functions: deciding on the tool calls an answer waits for
//! (`/api/chats/decide`), the person's approval settings (`/api/agent/...`) and their tool-call
//! audit, with the types the pages show. A tool call's own shape is the wire's
//! ([`protocol::CallView`]), the same for the server and the browser.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

pub use protocol::{CallStatus, CallView, ResultPart, policy_words};

/// One decision, as `chats/decide` takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionInput {
    pub call_id: String,
    pub approve: bool,
    /// Why not (a rejection).
    #[serde(default)]
    pub reason: Option<String>,
    /// Run it with these arguments instead (an approval); checked against the tool's schema.
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
    /// `tool` or `server`: also allow it from now on (an approval).
    #[serde(default)]
    pub always: Option<String>,
}

/// A standing approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedView {
    pub server_id: String,
    /// None: every tool of the server.
    pub tool: Option<String>,
}

/// The person's approval settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSettingsView {
    pub auto_approve_read_only: bool,
    pub max_steps: i32,
    pub allowed: Vec<AllowedView>,
}

/// One audited tool call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    pub id: i64,
    pub chat_id: String,
    pub chat_title: Option<String>,
    pub server_id: String,
    pub tool: String,
    /// Pretty-printed JSON.
    pub arguments: String,
    /// `approved`, `rejected`, or None (refused before any decision).
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// `ok`, `error`, `interrupted` or `not_run`.
    pub outcome: String,
    pub result: Option<String>,
    pub duration_ms: Option<i32>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `POST /api/chats/decide` (JSON) with `id`, `answer_id`, `turn` and `decisions`: decides on
/// tool calls of that turn of the answer, which must still wait for them (or nothing is decided),
/// all or none; with the last decision the answer goes on. `answer_id` and `turn` are required
/// (optional here only so that a request without them gets a message that says so).
#[server(endpoint = "chats/decide", input = Json)]
pub async fn decide(
    id: String,
    answer_id: Option<String>,
    turn: Option<u32>,
    decisions: Vec<DecisionInput>,
) -> Result<(), AppError> {
    use domain::runs::{Always, Choice};
    let user = crate::ssr::current_user()?;
    let chat_id = crate::chats::ssr::chat_id(&id)?;
    let answer_id = answer_id.and_then(|a| a.trim().parse::<uuid::Uuid>().ok());
    let (Some(answer_id), Some(turn)) = (answer_id, turn) else {
        return Err(AppError::invalid(
            "A decision must say which answer (`answer_id`) and which of its turns (`turn`) it is for, as the chat's waiting tool calls give them: it is refused once they no longer wait.",
        ));
    };
    let choices = decisions
        .into_iter()
        .map(|d| {
            let always = match d.always.as_deref() {
                None | Some("") => None,
                Some("tool") => Some(Always::Tool),
                Some("server") => Some(Always::Server),
                Some(other) => {
                    return Err(AppError::invalid(format!(
                        "'always' is 'tool' or 'server', not '{other}'."
                    )));
                }
            };
            Ok(Choice {
                call_id: d.call_id,
                approve: d.approve,
                reason: d.reason,
                arguments: d.arguments,
                always,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    crate::ssr::runs()?
        .decide(user.id, chat_id, answer_id, turn, choices)
        .await?
        .map(|_| ())
        .ok_or_else(crate::chats::ssr::no_chat)
}

/// `POST /api/agent/settings`: the caller's approval settings and the standing approvals that
/// apply (those given for a server that is gone, or redefined since, do not).
#[server(endpoint = "agent/settings")]
pub async fn agent_settings() -> Result<AgentSettingsView, AppError> {
    use domain::agent::{policy, server_key};
    let user = crate::ssr::current_user()?;
    let db = crate::ssr::db()?;
    let mcp = crate::ssr::mcp()?;
    let settings = policy::settings(&db, user.id).await?;
    let keys = server_key::server_keys(&db, &mcp, user.id).await?;
    let allowed = policy::allowed(&db, user.id, &keys).await?;
    Ok(AgentSettingsView {
        auto_approve_read_only: settings.auto_approve_read_only,
        max_steps: settings.max_steps,
        allowed: allowed
            .into_iter()
            .map(|a| AllowedView {
                server_id: a.server_id,
                tool: a.tool,
            })
            .collect(),
    })
}

/// `POST /api/agent/settings/save` with `auto_approve_read_only` and `max_steps`.
#[server(endpoint = "agent/settings/save")]
pub async fn save_agent_settings(
    auto_approve_read_only: bool,
    max_steps: i32,
) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let settings = domain::agent::policy::Settings {
        auto_approve_read_only,
        max_steps,
    };
    domain::agent::policy::save_settings(&crate::ssr::db()?, user.id, &settings).await?;
    Ok(())
}

/// `POST /api/agent/allow` with `server_id` and optional `tool` (none: every tool of the server):
/// always allow it, on the server the caller may use under that id now (refused when there is
/// none); the approval lapses when that server is removed, renamed, shadowed or redefined.
#[server(endpoint = "agent/allow")]
pub async fn allow_tool(server_id: String, tool: Option<String>) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let tool = tool.filter(|t| !t.is_empty());
    let (db, mcp) = (crate::ssr::db()?, crate::ssr::mcp()?);
    domain::agent::policy::allow_current(&db, &mcp, user.id, &server_id, tool.as_deref()).await?;
    Ok(())
}

/// `POST /api/agent/revoke` with `server_id` and optional `tool`: ask again from now on.
#[server(endpoint = "agent/revoke")]
pub async fn revoke_tool(server_id: String, tool: Option<String>) -> Result<bool, AppError> {
    let user = crate::ssr::current_user()?;
    let tool = tool.filter(|t| !t.is_empty());
    Ok(
        domain::agent::policy::revoke(&crate::ssr::db()?, user.id, &server_id, tool.as_deref())
            .await?,
    )
}

/// `POST /api/agent/audit` with optional `before` (an entry's id): the caller's tool calls,
/// newest first, 50 at a time.
#[server(endpoint = "agent/audit")]
pub async fn audit(before: Option<i64>) -> Result<Vec<AuditView>, AppError> {
    let user = crate::ssr::current_user()?;
    let entries = domain::agent::policy::audit(&crate::ssr::db()?, user.id, before, 50).await?;
    Ok(entries
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            chat_id: e.chat_id.to_string(),
            chat_title: e.chat_title,
            server_id: e.server_id,
            tool: e.tool,
            arguments: serde_json::to_string_pretty(&e.arguments).unwrap_or_default(),
            decision: e.decision,
            decided_by: e.decided_by,
            reason: e.reason,
            outcome: e.outcome,
            result: e.result,
            duration_ms: e.duration_ms,
            created_at: e.created_at.to_rfc3339(),
        })
        .collect())
}
