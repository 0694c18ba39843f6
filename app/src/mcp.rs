//! The MCP tool-server functions (`/api/mcp/...`, and a chat's tool switches under
//! `/api/chats/...`) and the types they return: the servers as the caller sees them, with their
//! own connection to each server and its tools; the registry as an administrator edits it.
//!
//! These types mirror `domain::mcp`'s on purpose: this crate is also built for the browser, where
//! `domain` (SQL, processes, sockets) can never go.

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

/// A server the caller may connect to, with their connection to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// `file` or `admin` (the registry), or `personal` (the caller's own).
    pub source: String,
    /// A personal server's URL.
    pub url: Option<String>,
    /// False when an administrator has switched it off.
    pub enabled: bool,
    /// `disconnected`, `connecting`, `connected`, `idle`, `failed` or `sign_in` (the server asks
    /// the caller to sign in: a form posts `id` and `return_to` to `/mcp/oauth/start`).
    pub status: String,
    /// Why the last attempt failed (another follows while the server stays connected), or why a
    /// sign-in is needed.
    pub error: Option<String>,
    /// The caller is signed in to it (it asked them to).
    #[serde(default)]
    pub signed_in: bool,
    pub tools: Vec<ToolView>,
    /// What it offers besides tools.
    #[serde(default)]
    pub resources: Vec<protocol::Resource>,
    #[serde(default)]
    pub prompts: Vec<protocol::Prompt>,
}

/// A registry server as the admin page shows it: everything but the values of secrets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminServerView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    /// `file` (read-only here) or `admin`.
    pub source: String,
    /// `stdio` or `http`.
    pub transport: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Environment variables whose values may be shown.
    pub env: Vec<(String, String)>,
    /// Names of the secret environment variables.
    pub secret_env: Vec<String>,
    pub url: Option<String>,
    /// Names of the headers (their values are secrets).
    pub headers: Vec<String>,
    /// Whether a bearer token is set.
    pub bearer_token: bool,
    /// The OAuth client registered for Switchboard at the server's sign-in service, if one is.
    #[serde(default)]
    pub oauth_client_id: Option<String>,
    /// Whether that client has a secret set.
    #[serde(default)]
    pub oauth_client_secret: bool,
    /// The groups it is limited to (none: everyone).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Why it cannot be used as stored.
    pub problem: Option<String>,
}

/// A tool of a connected server and whether a chat may use it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatToolView {
    pub server_id: String,
    pub server_name: String,
    pub tool: ToolView,
    pub enabled: bool,
}

/// One argument of a tool, from its input schema, as the UI lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argument {
    pub name: String,
    /// The JSON type (`string`, `number`, `string[]`, ...) or `any`.
    pub kind: String,
    pub required: bool,
    pub description: Option<String>,
}

impl ToolView {
    /// The arguments its schema declares, required ones first.
    pub fn arguments(&self) -> Vec<Argument> {
        let required: Vec<&str> = self.input_schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let mut arguments: Vec<Argument> = self.input_schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, schema)| Argument {
                name: name.clone(),
                kind: kind(schema),
                required: required.contains(&name.as_str()),
                description: schema["description"].as_str().map(str::to_owned),
            })
            .collect();
        arguments.sort_by_key(|a| !a.required);
        arguments
    }

    /// What the tool says of itself, as short labels.
    pub fn hints(&self) -> Vec<&'static str> {
        let mut hints = Vec::new();
        if self.read_only {
            hints.push("read-only");
        }
        if self.destructive {
            hints.push("destructive");
        }
        if self.idempotent {
            hints.push("idempotent");
        }
        if self.open_world {
            hints.push("open world");
        }
        hints
    }
}

fn kind(schema: &serde_json::Value) -> String {
    match &schema["type"] {
        serde_json::Value::String(t) if t == "array" => format!("{}[]", kind(&schema["items"])),
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(types) => types
            .iter()
            .filter_map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        _ if schema.get("enum").is_some() => "enum".into(),
        _ => "any".into(),
    }
}

/// `POST /api/mcp/servers`: the tool servers the caller may connect to (the registry's and their
/// own), with their status and tools. The first call after a restart brings back the caller's
/// connections.
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

/// `POST /api/mcp/sign-out` with `id`: forgets the caller's sign-in to a server (and asks its
/// sign-in service to revoke it); the server then asks them to sign in again.
#[server(endpoint = "mcp/sign-out")]
pub async fn sign_out_of_server(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    if crate::ssr::mcp()?.sign_out(user.id, id.trim()).await? {
        Ok(())
    } else {
        Err(AppError::not_found(
            "You are not signed in to that tool server.",
        ))
    }
}

/// `POST /api/mcp/personal/add` with `name`, `url`, optional `description`, `bearer_token` and
/// `headers` (`Name: value` lines): adds a Streamable HTTP server only the caller sees, and
/// returns its id. Its URL may not lead to loopback, private or link-local addresses unless an
/// administrator allows the network.
#[server(endpoint = "mcp/personal/add")]
pub async fn add_personal_server(
    name: String,
    url: String,
    description: Option<String>,
    bearer_token: Option<String>,
    headers: Option<String>,
) -> Result<String, AppError> {
    let user = crate::ssr::current_user()?;
    let headers =
        domain::mcp::registry::parse_pairs(headers.as_deref().unwrap_or_default(), ':', "header")?;
    let id = crate::ssr::mcp()?
        .add_personal(
            user.id,
            &name,
            description.as_deref().unwrap_or_default(),
            &url,
            bearer_token,
            headers,
        )
        .await?;
    Ok(id)
}

/// `POST /api/mcp/personal/delete` with `id`: removes one of the caller's own servers.
#[server(endpoint = "mcp/personal/delete")]
pub async fn delete_personal_server(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    if crate::ssr::mcp()?
        .delete_personal(user.id, id.trim())
        .await?
    {
        Ok(())
    } else {
        Err(ssr::no_server())
    }
}

/// `POST /api/mcp/admin/servers` (administrators): the whole registry, the servers file's and the
/// admin page's, without secret values.
#[server(endpoint = "mcp/admin/servers")]
pub async fn admin_servers() -> Result<Vec<AdminServerView>, AppError> {
    let user = crate::ssr::current_user()?;
    let servers = crate::ssr::mcp()?.admin_servers(&user).await?;
    Ok(servers.into_iter().map(ssr::admin_server).collect())
}

pub use save::{SaveServer, save_server};

#[expect(clippy::too_many_arguments, reason = "one argument per form field")]
mod save {
    use leptos::prelude::*;

    use crate::error::AppError;

    /// `POST /api/mcp/admin/save` (administrators): adds a registry server, or changes the one named
    /// by `previous`; `disabled=true` lists it switched off. `transport` is `stdio` (`command`, `args` one a line, `env` and `secret_env` as
    /// `NAME=value` lines) or `http` (`url`, `headers` as `Name: value` lines, `bearer_token`, and for a
    /// server whose people sign in and whose sign-in service takes no registrations,
    /// `oauth_client_id` and `oauth_client_secret`). A secret left empty keeps its stored value;
    /// `remove_bearer_token` removes the token. `groups` (names separated by commas) limits it to
    /// their members: nobody else sees or uses it; empty, everyone may.
    #[server(endpoint = "mcp/admin/save")]
    pub async fn save_server(
        previous: Option<String>,
        id: String,
        name: String,
        description: Option<String>,
        disabled: Option<String>,
        transport: String,
        command: Option<String>,
        args: Option<String>,
        env: Option<String>,
        secret_env: Option<String>,
        url: Option<String>,
        headers: Option<String>,
        bearer_token: Option<String>,
        remove_bearer_token: Option<String>,
        oauth_client_id: Option<String>,
        oauth_client_secret: Option<String>,
        groups: Option<String>,
    ) -> Result<(), AppError> {
        use domain::mcp::registry::parse_pairs;
        use domain::mcp::{ServerInput, Transport};

        let user = crate::ssr::current_user()?;
        let text = |v: Option<String>| v.unwrap_or_default();
        let transport = match transport.as_str() {
            "stdio" => Transport::Stdio {
                command: text(command).trim().to_owned(),
                args: text(args)
                    .lines()
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect(),
                env: parse_pairs(&text(env), '=', "variable")?,
                secret_env: parse_pairs(&text(secret_env), '=', "variable")?,
            },
            "http" => Transport::Http {
                url: text(url).trim().to_owned(),
                headers: parse_pairs(&text(headers), ':', "header")?,
                bearer_token: if remove_bearer_token.is_some() {
                    None
                } else {
                    // Empty: keep the stored token (if there is none, there stays none).
                    Some(text(bearer_token).trim().to_owned())
                },
                oauth_client_id: oauth_client_id
                    .map(|id| id.trim().to_owned())
                    .filter(|id| !id.is_empty()),
                // Empty: keep the stored secret.
                oauth_client_secret: oauth_client_secret.map(|s| s.trim().to_owned()),
            },
            other => {
                return Err(AppError::invalid(format!(
                    "'{other}' is not a transport: use stdio or http."
                )));
            }
        };
        let mut input = ServerInput {
            id: id.trim().to_owned(),
            name,
            description: text(description),
            // A form's checkbox is sent only when ticked, so the field says "off".
            enabled: disabled.is_none_or(|v| v == "false"),
            groups: domain::access::parse_groups(&text(groups))?,
            transport,
        };
        let previous = previous
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        if previous.is_none()
            && let Transport::Http {
                bearer_token,
                oauth_client_secret,
                ..
            } = &mut input.transport
        {
            // A new server has no stored secrets for an empty field to keep.
            if bearer_token.as_deref() == Some("") {
                *bearer_token = None;
            }
            if oauth_client_secret.as_deref() == Some("") {
                *oauth_client_secret = None;
            }
        }
        if let Transport::Http {
            oauth_client_id: None,
            oauth_client_secret,
            ..
        } = &mut input.transport
        {
            // No client, no secret of one.
            *oauth_client_secret = None;
        }
        if crate::ssr::mcp()?
            .save_server(&user, previous.as_deref(), input)
            .await?
        {
            Ok(())
        } else {
            Err(super::ssr::no_server())
        }
    }
}

/// `POST /api/mcp/admin/delete` with `id` (administrators): removes a registry server and everyone's
/// connection to it.
#[server(endpoint = "mcp/admin/delete")]
pub async fn delete_server(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    if crate::ssr::mcp()?.delete_server(&user, id.trim()).await? {
        Ok(())
    } else {
        Err(ssr::no_server())
    }
}

/// `POST /api/chats/tools` with `id`: the tools of the caller's connected servers, each marked on
/// or off for this chat (all are on until switched off).
#[server(endpoint = "chats/tools")]
pub async fn chat_tools(id: String) -> Result<Vec<ChatToolView>, AppError> {
    let user = crate::ssr::current_user()?;
    let chat_id = crate::chats::ssr::chat_id(&id)?;
    let tools = crate::ssr::mcp()?
        .chat_tools(user.id, chat_id)
        .await?
        .ok_or_else(crate::chats::ssr::no_chat)?;
    Ok(tools
        .into_iter()
        .map(|t| ChatToolView {
            server_id: t.server_id,
            server_name: t.server_name,
            tool: ssr::tool(t.tool),
            enabled: t.enabled,
        })
        .collect())
}

/// `POST /api/chats/tool` with `id`, `server`, `tool` and `enabled` (`true`/`false`): switches
/// one tool on or off in this chat.
#[server(endpoint = "chats/tool")]
pub async fn set_chat_tool(
    id: String,
    server: String,
    tool: String,
    enabled: bool,
) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let chat_id = crate::chats::ssr::chat_id(&id)?;
    let found = crate::ssr::mcp()?
        .set_chat_tool(user.id, chat_id, server.trim(), tool.trim(), enabled)
        .await?;
    found.then_some(()).ok_or_else(crate::chats::ssr::no_chat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_come_from_the_schema_required_first() {
        let tool = ToolView {
            name: "search".into(),
            title: None,
            description: None,
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "limit": {"type": "integer"},
                    "query": {"type": "string", "description": "What to look for"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["query"],
            }),
            read_only: true,
            destructive: false,
            idempotent: false,
            open_world: true,
        };
        let arguments = tool.arguments();
        assert_eq!(arguments[0].name, "query");
        assert!(arguments[0].required);
        assert_eq!(
            arguments[0].description.as_deref(),
            Some("What to look for")
        );
        let tags = arguments.iter().find(|a| a.name == "tags").unwrap();
        assert_eq!(tags.kind, "string[]");
        assert_eq!(tool.hints(), vec!["read-only", "open world"]);
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use domain::mcp::{self, PublicTransport, Source, Status};

    use super::{AdminServerView, ServerView, ToolView};
    use crate::error::AppError;

    pub fn no_server() -> AppError {
        AppError::not_found("There is no such tool server, or you are not connected to it.")
    }

    fn source(source: Source) -> String {
        match source {
            Source::File => "file",
            Source::Admin => "admin",
            Source::Personal => "personal",
        }
        .into()
    }

    pub fn tool(t: mcp::Tool) -> ToolView {
        ToolView {
            name: t.name,
            title: t.title,
            description: t.description,
            input_schema: t.input_schema,
            read_only: t.annotations.read_only,
            destructive: t.annotations.destructive,
            idempotent: t.annotations.idempotent,
            open_world: t.annotations.open_world,
        }
    }

    pub fn server(view: mcp::ServerView) -> ServerView {
        let (status, error) = match view.status {
            Status::Disconnected => ("disconnected", None),
            Status::Connecting => ("connecting", None),
            Status::Connected => ("connected", None),
            Status::Idle => ("idle", None),
            Status::Failed { reason } => ("failed", Some(reason)),
            Status::SignInNeeded { reason } => ("sign_in", Some(reason)),
        };
        ServerView {
            id: view.id,
            name: view.name,
            description: view.description,
            transport: view.transport,
            source: source(view.source),
            url: view.url,
            enabled: view.enabled,
            status: status.into(),
            error,
            signed_in: view.signed_in,
            tools: view.tools.into_iter().map(tool).collect(),
            resources: view.resources,
            prompts: view.prompts,
        }
    }

    pub fn admin_server(server: mcp::AdminServer) -> AdminServerView {
        let mut view = AdminServerView {
            id: server.id,
            name: server.name,
            description: server.description,
            enabled: server.enabled,
            source: source(server.source),
            groups: server.groups,
            problem: server.problem,
            ..AdminServerView::default()
        };
        match server.transport {
            PublicTransport::Stdio {
                command,
                args,
                env,
                secret_env,
            } => {
                view.transport = "stdio".into();
                view.command = Some(command);
                view.args = args;
                view.env = env.into_iter().collect();
                view.secret_env = secret_env;
            }
            PublicTransport::Http {
                url,
                headers,
                bearer_token,
                oauth_client_id,
                oauth_client_secret,
            } => {
                view.transport = "http".into();
                view.url = Some(url);
                view.headers = headers;
                view.bearer_token = bearer_token;
                view.oauth_client_id = oauth_client_id;
                view.oauth_client_secret = oauth_client_secret;
            }
        }
        view
    }
}
