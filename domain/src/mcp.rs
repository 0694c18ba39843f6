//! MCP tool servers: the registry an administrator keeps, and each user's own live connections.
//!
//! [`Mcp`] holds, per user, one supervised connection per server that user has connected. At
//! connect the server's tools are fetched (every page of `tools/list`) and kept with their input
//! schemas and annotations; `notifications/tools/list_changed` fetches them again. A connection that
//! drops is retried with backoff for as long as the user wants it. Which servers a user has
//! connected is stored, so after a restart, or on another instance, the connections come back on
//! the user's first use. Two users connected to the same server have two connections of their own.
//!
//! Stdio servers run in a process group of their own, killed with the connection (a server started
//! through `npx` or a shell leaves no grandchild behind).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResponse};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService, ServiceExt};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{Database, Error, Result};

/// A server of the registry, as an administrator describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// Short, stable name used in URLs and in tool names (`[a-z0-9-]`).
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub transport: Transport,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// How Switchboard reaches a server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transport {
    /// A process Switchboard starts on its own machine, speaking MCP on stdin/stdout.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        bearer_token: Option<String>,
    },
}

/// Never prints environment values, header values or tokens: they may be secrets.
impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio {
                command, args, env, ..
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            Transport::Http { url, headers, .. } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish_non_exhaustive(),
        }
    }
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        }
    }
}

/// The registry: the servers users may connect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    servers: Vec<ServerSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default, rename = "server")]
    servers: Vec<ServerSpec>,
}

impl Registry {
    pub fn new(servers: Vec<ServerSpec>) -> Result<Self> {
        let mut seen = HashSet::new();
        for server in &servers {
            let valid = !server.id.is_empty()
                && server.id.len() <= 40
                && server
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(Error::Invalid(format!(
                    "The MCP server id '{}' is not valid: use 1 to 40 of a-z, 0-9 and '-'.",
                    server.id
                )));
            }
            if !seen.insert(server.id.as_str()) {
                return Err(Error::Invalid(format!(
                    "Two MCP servers have the id '{}'.",
                    server.id
                )));
            }
        }
        Ok(Self { servers })
    }

    /// Reads a registry file: TOML with one `[[server]]` table per server.
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: RegistryFile = toml::from_str(text)
            .map_err(|e| Error::Invalid(format!("The MCP servers file is not valid: {e}")))?;
        Self::new(file.servers)
    }

    pub fn servers(&self) -> &[ServerSpec] {
        &self.servers
    }

    pub fn get(&self, id: &str) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.id == id)
    }
}

/// What a tool says about itself (MCP's hints; absent ones take the protocol's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The last attempt failed; another follows after a pause while the user wants the server.
    Failed {
        reason: String,
    },
}

/// A server as one user sees it: the registry entry, their connection and its tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub transport: String,
    pub enabled: bool,
    pub status: Status,
    pub tools: Vec<Tool>,
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
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Starting a server, the handshake and the first `tools/list`.
    pub connect_timeout: Duration,
    /// One tool call.
    pub call_timeout: Duration,
    /// The longest pause between reconnection attempts (they start at one second and double).
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Every user's MCP connections on this server. Cheap to clone.
#[derive(Clone)]
pub struct Mcp {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    registry: Registry,
    settings: Settings,
    users: Mutex<HashMap<Uuid, UserConnections>>,
}

#[derive(Default)]
struct UserConnections {
    /// The stored intent has been read on this instance.
    restored: bool,
    servers: HashMap<String, Connection>,
}

/// One supervised connection.
struct Connection {
    shared: Arc<Shared>,
    /// Tells the supervisor to end the session and stop.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Shared {
    status: RwLock<Status>,
    tools: RwLock<Vec<Tool>>,
    peer: RwLock<Option<Peer<RoleClient>>>,
    /// A call found the server gone (over HTTP there is no stream that would tell): why.
    broken: Mutex<Option<String>>,
    broken_notify: tokio::sync::Notify,
}

impl Shared {
    fn new() -> Self {
        Self {
            status: RwLock::new(Status::Connecting),
            tools: RwLock::default(),
            peer: RwLock::default(),
            broken: Mutex::default(),
            broken_notify: tokio::sync::Notify::new(),
        }
    }

    fn set(&self, status: Status) {
        *self.status.write().expect("not poisoned") = status;
    }

    /// The session cannot carry requests any more: the supervisor starts a new one.
    fn break_with(&self, reason: String) {
        *self.broken.lock().expect("not poisoned") = Some(reason);
        self.broken_notify.notify_waiters();
    }
}

/// Receives what a server tells its client; `tools/list_changed` fetches the tools again.
#[derive(Clone)]
struct Client {
    shared: Arc<Shared>,
}

impl rmcp::ClientHandler for Client {
    fn on_tool_list_changed(
        &self,
        context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let shared = self.shared.clone();
        // Not awaited here: the answer arrives through the same session this handler runs in.
        tokio::spawn(async move {
            match context.peer.list_all_tools().await {
                Ok(tools) => {
                    *shared.tools.write().expect("not poisoned") =
                        tools.into_iter().map(Tool::from).collect();
                }
                Err(e) => tracing::warn!("could not fetch a changed tool list: {e}"),
            }
        });
        std::future::ready(())
    }
}

impl Mcp {
    pub fn new(db: Database, registry: Registry, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                registry,
                settings,
                users: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The servers the user may connect to, with their connection and tools. The first call for a
    /// user on this instance brings back the connections they had.
    pub async fn servers(&self, user_id: Uuid) -> Result<Vec<ServerView>> {
        self.restore(user_id).await?;
        let users = self.inner.users.lock().expect("not poisoned");
        let mine = users.get(&user_id);
        Ok(self
            .inner
            .registry
            .servers()
            .iter()
            .map(|spec| {
                let connection = mine.and_then(|m| m.servers.get(&spec.id));
                ServerView {
                    id: spec.id.clone(),
                    name: spec.name.clone(),
                    description: spec.description.clone(),
                    transport: spec.transport.kind().into(),
                    enabled: spec.enabled,
                    status: connection.map_or(Status::Disconnected, |c| {
                        c.shared.status.read().expect("not poisoned").clone()
                    }),
                    tools: connection.map_or_else(Vec::new, |c| {
                        c.shared.tools.read().expect("not poisoned").clone()
                    }),
                }
            })
            .collect())
    }

    /// Connects the user to a server of the registry (and remembers that they want it). Returns
    /// at once; the status says how it goes. False when there is no such server.
    pub async fn connect(&self, user_id: Uuid, server_id: &str) -> Result<bool> {
        let Some(spec) = self.inner.registry.get(server_id) else {
            return Ok(false);
        };
        if !spec.enabled {
            return Err(Error::Invalid(format!(
                "The MCP server '{}' is switched off by an administrator.",
                spec.name
            )));
        }
        sqlx::query!(
            "INSERT INTO mcp_connections (user_id, server_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            user_id,
            server_id
        )
        .execute(self.inner.db.pool())
        .await?;
        self.restore(user_id).await?;
        self.start(user_id, spec.clone());
        Ok(true)
    }

    /// Closes the user's connection to a server and forgets that they want it. False when they
    /// had none.
    pub async fn disconnect(&self, user_id: Uuid, server_id: &str) -> Result<bool> {
        let stored = sqlx::query!(
            "DELETE FROM mcp_connections WHERE user_id = $1 AND server_id = $2",
            user_id,
            server_id
        )
        .execute(self.inner.db.pool())
        .await?
        .rows_affected();
        let live = {
            let mut users = self.inner.users.lock().expect("not poisoned");
            users
                .get_mut(&user_id)
                .and_then(|m| m.servers.remove(server_id))
        };
        let was_live = live.is_some();
        if let Some(connection) = live {
            close(connection).await;
        }
        Ok(stored > 0 || was_live)
    }

    /// Calls a tool on one of the user's connected servers, within the call timeout (a call that
    /// takes longer is cancelled on the server). The tool's own failure is an output with
    /// `is_error`; not reaching it at all is an error.
    pub async fn call(
        &self,
        user_id: Uuid,
        server_id: &str,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ToolOutput> {
        self.restore(user_id).await?;
        let (peer, shared) = {
            let users = self.inner.users.lock().expect("not poisoned");
            let connection = users
                .get(&user_id)
                .and_then(|m| m.servers.get(server_id))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "You are not connected to the MCP server '{server_id}'."
                    ))
                })?;
            let peer = connection.shared.peer.read().expect("not poisoned").clone();
            let peer = peer.ok_or_else(|| {
                Error::Invalid(format!(
                    "The MCP server '{server_id}' is not connected right now; try again when its status is connected."
                ))
            })?;
            (peer, connection.shared.clone())
        };
        let started = Instant::now();
        let request = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let timeout = self.inner.settings.call_timeout;
        // Dropping the request on timeout tells the server to cancel it.
        let response = tokio::time::timeout(timeout, peer.call_tool_once(request))
            .await
            .map_err(|_| {
                Error::Invalid(format!(
                    "The tool '{tool}' did not finish within {} s and was cancelled.",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| {
                if matches!(
                    e,
                    rmcp::ServiceError::TransportSend(_) | rmcp::ServiceError::TransportClosed
                ) {
                    shared.break_with(format!("The server stopped answering: {e}."));
                }
                Error::Invalid(format!("The tool '{tool}' could not be called: {e}"))
            })?;
        let CallToolResponse::Complete(result) = response else {
            return Err(Error::Invalid(format!(
                "The tool '{tool}' asked for more input, which Switchboard cannot give yet."
            )));
        };
        Ok(ToolOutput {
            is_error: result.is_error.unwrap_or(false),
            content: serde_json::to_value(&result.content).unwrap_or_default(),
            structured: result.structured_content.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Closes every connection (stdio servers' processes end with them).
    pub async fn shutdown(&self) {
        let all: Vec<Connection> = {
            let mut users = self.inner.users.lock().expect("not poisoned");
            users
                .drain()
                .flat_map(|(_, m)| m.servers.into_values())
                .collect()
        };
        futures_util::future::join_all(all.into_iter().map(close)).await;
    }

    /// Brings back, once per user and instance, the connections the user had asked for.
    async fn restore(&self, user_id: Uuid) -> Result<()> {
        let restored = {
            let users = self.inner.users.lock().expect("not poisoned");
            users.get(&user_id).is_some_and(|m| m.restored)
        };
        if restored {
            return Ok(());
        }
        let wanted = sqlx::query_scalar!(
            "SELECT server_id FROM mcp_connections WHERE user_id = $1 ORDER BY created_at",
            user_id
        )
        .fetch_all(self.inner.db.pool())
        .await?;
        {
            let mut users = self.inner.users.lock().expect("not poisoned");
            let mine = users.entry(user_id).or_default();
            if mine.restored {
                return Ok(());
            }
            mine.restored = true;
        }
        for id in &wanted {
            // A server since removed from the registry (or switched off) stays remembered but idle.
            if let Some(spec) = self.inner.registry.get(id).filter(|s| s.enabled) {
                self.start(user_id, spec.clone());
            }
        }
        Ok(())
    }

    /// Starts a supervised connection unless one is already there.
    fn start(&self, user_id: Uuid, spec: ServerSpec) {
        let mut users = self.inner.users.lock().expect("not poisoned");
        let mine = users.entry(user_id).or_default();
        if mine.servers.contains_key(&spec.id) {
            return;
        }
        let shared = Arc::new(Shared::new());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(
            spec.clone(),
            shared.clone(),
            self.inner.settings,
            stopped,
        ));
        mine.servers
            .insert(spec.id, Connection { shared, stop, task });
    }
}

/// How long a closing session may take (a stdio server gets its stdin closed, then SIGTERM, then
/// SIGKILL, within this).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Ends a connection and waits for it to be gone, its server's processes too.
async fn close(connection: Connection) {
    let Connection { stop, mut task, .. } = connection;
    let _ = stop.send(true);
    if tokio::time::timeout(CLOSE_WITHIN, &mut task).await.is_err() {
        // Dropping the session kills a stdio server's process group.
        task.abort();
        let _ = task.await;
    }
}

/// Keeps one connection up while it is wanted: connect, fetch the tools, wait for the end, pause,
/// again; until `stopped`, when the session is closed properly.
async fn supervise(
    spec: ServerSpec,
    shared: Arc<Shared>,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_secs(1);
    loop {
        shared.set(Status::Connecting);
        let client = Client {
            shared: shared.clone(),
        };
        let opened = tokio::select! {
            opened = tokio::time::timeout(settings.connect_timeout, open(&spec, client)) => opened,
            _ = stop_requested(&mut stopped) => return,
        };
        let reason = match opened {
            Ok(Ok((service, tools))) => {
                *shared.tools.write().expect("not poisoned") = tools;
                *shared.peer.write().expect("not poisoned") = Some(service.peer().clone());
                shared.set(Status::Connected);
                pause = Duration::from_secs(1);
                tracing::info!(server = %spec.id, "MCP server connected");
                let cancel = service.cancellation_token();
                let mut ended = std::pin::pin!(service.waiting());
                let (reason, over) = tokio::select! {
                    ended = &mut ended => (Some(match ended {
                        Ok(rmcp::service::QuitReason::Closed) => {
                            "The server closed the connection.".to_owned()
                        }
                        Ok(other) => format!("The connection ended ({other:?})."),
                        Err(e) => format!("The connection failed: {e}."),
                    }), true),
                    _ = shared.broken_notify.notified() => (Some(
                        shared
                            .broken
                            .lock()
                            .expect("not poisoned")
                            .take()
                            .unwrap_or_else(|| "The server stopped answering.".into()),
                    ), false),
                    _ = stop_requested(&mut stopped) => (None, false),
                };
                *shared.peer.write().expect("not poisoned") = None;
                if !over {
                    // The session closes its transport: a stdio server is shut down.
                    cancel.cancel();
                    let _ = ended.await;
                }
                let Some(reason) = reason else {
                    return;
                };
                tracing::warn!(server = %spec.id, "MCP server disconnected: {reason}");
                reason
            }
            Ok(Err(reason)) => {
                tracing::warn!(server = %spec.id, "cannot connect to an MCP server: {reason}");
                reason
            }
            Err(_) => format!(
                "The server did not answer within {} s.",
                settings.connect_timeout.as_secs()
            ),
        };
        shared.set(Status::Failed { reason });
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop_requested(&mut stopped) => return,
        }
        pause = (pause * 2).min(settings.max_backoff);
    }
}

/// Resolves when the connection is to stop.
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Starts a session with the server and fetches its tools.
async fn open(
    spec: &ServerSpec,
    client: Client,
) -> std::result::Result<(RunningService<RoleClient, Client>, Vec<Tool>), String> {
    let service = match &spec.transport {
        Transport::Stdio { command, args, env } => {
            let mut wrapped = process_wrap::tokio::CommandWrap::with_new(command, |c| {
                c.args(args).envs(env).kill_on_drop(true);
            });
            wrapped
                .wrap(process_wrap::tokio::ProcessGroup::leader())
                .wrap(process_wrap::tokio::KillOnDrop);
            let (transport, _) = TokioChildProcess::builder(wrapped)
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("Cannot start '{command}': {e}."))?;
            client
                .serve(transport)
                .await
                .map_err(|e| format!("The server did not complete the MCP handshake: {e}."))?
        }
        Transport::Http {
            url,
            headers,
            bearer_token,
        } => {
            let mut config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                );
            if let Some(token) = bearer_token {
                config = config.auth_header(token.clone());
            }
            let mut custom = HashMap::new();
            for (name, value) in headers {
                let name = http::HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("The header name '{name}' is not valid."))?;
                let value = http::HeaderValue::try_from(value.as_str())
                    .map_err(|_| format!("The value of the header '{name}' is not valid."))?;
                custom.insert(name, value);
            }
            config = config.custom_headers(custom);
            let transport = StreamableHttpClientTransport::with_client(reqwest13(), config);
            client
                .serve(transport)
                .await
                .map_err(|e| format!("Cannot reach {url}: {e}."))?
        }
    };
    let tools = service
        .peer()
        .list_all_tools()
        .await
        .map_err(|e| format!("The server did not list its tools: {e}."))?;
    Ok((service, tools.into_iter().map(Tool::from).collect()))
}

/// The HTTP client rmcp's Streamable HTTP transport is built on.
fn reqwest13() -> rmcp_reqwest::Client {
    // Its TLS uses the process's rustls provider: ring, as elsewhere (a no-op once installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    rmcp_reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default()
}
