//! The MCP tool-server functions (`/api/mcp/...`) and the types they return: the registry as the
//! caller sees it, with their own connection to each server and its tools.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A tool of a connected server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolView {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The JSON Schema of its arguments.
    pub input_schema: serde_json::Value,
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// A server of the registry with the caller's connection to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// False when an administrator has switched it off.
    pub enabled: bool,
    /// `disconnected`, `connecting`, `connected` or `failed`.
    pub status: String,
    /// Why the last attempt failed (another follows while the server stays connected).
    pub error: Option<String>,
    pub tools: Vec<ToolView>,
}

/// `POST /api/mcp/servers`: the tool servers the caller may connect to, with their status and
/// tools. The first call after a restart brings back the caller's connections.
#[server(endpoint = "mcp/servers")]
pub async fn list_servers() -> Result<Vec<ServerView>, AppError> {
    let user = crate::ssr::current_user()?;
    let servers = crate::ssr::mcp()?.servers(user.id).await?;
    Ok(servers.into_iter().map(ssr::server).collect())
}

/// `POST /api/mcp/connect` with `id`: connects the caller to a server (and remembers it). Returns
/// at once; `mcp/servers` shows how it goes.
#[server(endpoint = "mcp/connect")]
pub async fn connect_server(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    if crate::ssr::mcp()?.connect(user.id, id.trim()).await? {
        Ok(())
    } else {
        Err(ssr::no_server())
    }
}

/// `POST /api/mcp/disconnect` with `id`: closes the caller's connection and forgets it.
#[server(endpoint = "mcp/disconnect")]
pub async fn disconnect_server(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    if crate::ssr::mcp()?.disconnect(user.id, id.trim()).await? {
        Ok(())
    } else {
        Err(ssr::no_server())
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use domain::mcp::{self, Status};

    use super::{ServerView, ToolView};
    use crate::error::AppError;

    pub fn no_server() -> AppError {
        AppError::not_found("There is no such tool server, or you are not connected to it.")
            .respond()
    }

    pub fn server(view: mcp::ServerView) -> ServerView {
        let (status, error) = match view.status {
            Status::Disconnected => ("disconnected", None),
            Status::Connecting => ("connecting", None),
            Status::Connected => ("connected", None),
            Status::Failed { reason } => ("failed", Some(reason)),
        };
        ServerView {
            id: view.id,
            name: view.name,
            description: view.description,
            transport: view.transport,
            enabled: view.enabled,
            status: status.into(),
            error,
            tools: view
                .tools
                .into_iter()
                .map(|t| ToolView {
                    name: t.name,
                    title: t.title,
                    description: t.description,
                    input_schema: t.input_schema,
                    read_only: t.annotations.read_only,
                    destructive: t.annotations.destructive,
                    idempotent: t.annotations.idempotent,
                    open_world: t.annotations.open_world,
                })
                .collect(),
        }
    }
}
