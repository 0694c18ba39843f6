//! What the MCP layer tells the rest of Switchboard: a tool and its hints, a connection's status,
//! the views of a server (a person's, an administrator's, a chat's), a tool's output, and settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::offerings::{Prompt, Resource};
use super::{AddressPolicy, Limits, PublicTransport, Source, stdio};

/// What a tool says about itself (MCP's hints; absent ones take the protocol's defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// A tool of a connected server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The JSON Schema of its arguments.
    pub input_schema: serde_json::Value,
    pub annotations: Annotations,
}

impl From<rmcp::model::Tool> for Tool {
    fn from(tool: rmcp::model::Tool) -> Self {
        let hints = tool.annotations.clone().unwrap_or_default();
        let read_only = hints.read_only_hint.unwrap_or(false);
        Tool {
            title: tool
                .title
                .clone()
                .or_else(|| hints.title.clone())
                .filter(|t| !t.is_empty()),
            name: tool.name.into_owned(),
            description: tool.description.map(|d| d.into_owned()),
            input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
            annotations: Annotations {
                read_only,
                destructive: !read_only && hints.destructive_hint.unwrap_or(true),
                idempotent: hints.idempotent_hint.unwrap_or(false),
                open_world: hints.open_world_hint.unwrap_or(true),
            },
        }
    }
}

/// Where a user's connection to a server stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Disconnected,
    Connecting,
    Connected,
    /// Closed after the idle time; opens again when a tool is next used (its tools are kept).
    Idle,
    /// The last attempt failed; another follows after a pause while the user wants the server.
    Failed {
        reason: String,
    },
    /// The server asks the person to sign in (again): nothing is tried until they have.
    SignInNeeded {
        reason: String,
    },
}

impl Status {
    /// Its tools (and resources and prompts) may be used: connected, or coming back (idle, or
    /// connecting again), when a use waits for the connection.
    pub fn is_usable(&self) -> bool {
        matches!(self, Status::Connected | Status::Idle | Status::Connecting)
    }
}

/// A server as one user sees it: where it comes from, their connection and its tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub transport: String,
    pub source: Source,
    /// A personal server's URL (the registry's addresses are the administrators' business).
    pub url: Option<String>,
    pub enabled: bool,
    pub status: Status,
    /// The person is signed in to it (it asked them to, and they did).
    #[serde(default)]
    pub signed_in: bool,
    pub tools: Vec<Tool>,
    /// What it offers besides tools (kept while it idles, as its tools are).
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub prompts: Vec<Prompt>,
}

/// A server as an administrator sees it on the admin page: everything but secret values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminServer {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    /// The groups it is limited to (none: everyone).
    pub groups: Vec<String>,
    pub source: Source,
    pub transport: PublicTransport,
    /// Why it cannot be used as stored.
    pub problem: Option<String>,
}

/// A tool of one of the user's connected servers, and whether a chat uses it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatTool {
    pub server_id: String,
    pub server_name: String,
    pub tool: Tool,
    pub enabled: bool,
}

/// What a tool call returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// The server says the tool failed (the content says how).
    pub is_error: bool,
    /// MCP content blocks, as the server sent them.
    pub content: serde_json::Value,
    pub structured: Option<serde_json::Value>,
    pub duration_ms: u64,
}

impl ToolOutput {
    /// The text parts of the content, joined.
    pub fn text(&self) -> String {
        self.content
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|block| block.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Limits of connections and calls.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Starting a server, the handshake and the first `tools/list`.
    pub connect_timeout: Duration,
    /// One tool call.
    pub call_timeout: Duration,
    /// The longest pause between reconnection attempts (they start at one second and double).
    pub max_backoff: Duration,
    /// A connection unused for this long closes (None: never).
    pub idle_timeout: Option<Duration>,
    /// Where personal servers may point.
    pub addresses: AddressPolicy,
    /// Where stdio servers get their working directories (one per server and person).
    pub work_dir: PathBuf,
    /// What a server may send.
    pub limits: Limits,
    /// The least time between two fetches of a tool list that a server says has changed.
    pub refresh_interval: Duration,
    /// The most servers one person may have connected at once (each is a process or a session
    /// held open for them).
    pub max_connections: usize,
    /// Over this many tools in a chat, its model is offered a tool search and a few of them
    /// rather than all (0: all, however many).
    pub tool_search_over: usize,
    /// Where authorization servers send people back after they signed in to a tool server
    /// (`<public URL>/mcp/oauth/callback`); None: nobody can sign in to one.
    pub sign_in_redirect: Option<String>,
    /// Switchboard's OAuth client metadata document (`<public URL>/oauth/client.json`), offered
    /// as its client id where an authorization server takes one; only over https.
    pub client_document: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            addresses: AddressPolicy::default(),
            work_dir: stdio::default_work_dir(),
            limits: Limits::default(),
            refresh_interval: Duration::from_secs(2),
            max_connections: 20,
            tool_search_over: 40,
            sign_in_redirect: None,
            client_document: None,
        }
    }
}
