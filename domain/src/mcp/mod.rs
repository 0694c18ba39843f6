//! MCP tool servers: where they are described (see [`registry`]), and each user's own live
//! connections to them.
//!
//! [`Mcp`] holds, per user, one supervised connection per server that user has connected. At
//! connect the server's tools are fetched (every page of `tools/list`, within [`Limits`]) and kept
//! with their input schemas and annotations; `notifications/tools/list_changed` fetches them again
//! (at most one fetch at a time, a few seconds apart at least). A connection that drops is retried
//! with backoff for as long as the user wants it; one left unused for the idle time closes, and
//! opens again when it is next used. Which servers a user has connected is stored, so after a
//! restart, or on another instance, the connections come back on the user's first use. Two users
//! connected to the same server have two connections of their own.
//!
//! Stdio servers start with a clean environment in a working directory of their own, in a process
//! group killed with the connection (see [`stdio`]). Personal servers are reached only at
//! addresses [`net::AddressPolicy`] allows. What a server sends is capped (see [`limits`]).

pub mod limits;
pub mod net;
pub mod registry;
mod remote;
mod stdio;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResponse};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use limits::Limits;
pub use net::AddressPolicy;
pub use registry::{
    PERSONAL_PREFIX, PublicTransport, Registry, ServerInput, ServerSpec, Source, Transport,
};

use crate::secrets::SecretKey;
use crate::users::User;
use crate::{Database, Error, Result};

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
    pub tools: Vec<Tool>,
}

/// A server as an administrator sees it on the admin page: everything but secret values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminServer {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
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
    /// The servers file's servers.
    file: Registry,
    key: SecretKey,
    settings: Arc<Settings>,
    /// One HTTP client (and connection pool) for every registry server's connections.
    http: rmcp_reqwest::Client,
    users: Mutex<HashMap<Uuid, UserConnections>>,
}

#[derive(Default)]
struct UserConnections {
    servers: HashMap<String, Connection>,
}

/// One supervised connection.
struct Connection {
    /// When it was started (a reconciliation that read the intent before then leaves it be).
    started: Instant,
    shared: Arc<Shared>,
    /// Tells the supervisor to end the session and stop.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Shared {
    status: watch::Sender<Status>,
    tools: RwLock<Vec<Tool>>,
    peer: RwLock<Option<Peer<RoleClient>>>,
    /// A call found the server gone (over HTTP there is no stream that would tell): why.
    broken: Mutex<Option<String>>,
    broken_notify: Notify,
    last_used: Mutex<Instant>,
    /// An idle connection is wanted again.
    wake: Notify,
    /// The server said its tools changed (notices that come in the meantime make one).
    tools_changed: Notify,
    /// Why the transport ended the session it carries, when it did (a message too large).
    fault: Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            status: watch::Sender::new(Status::Connecting),
            tools: RwLock::default(),
            peer: RwLock::default(),
            broken: Mutex::default(),
            broken_notify: Notify::new(),
            last_used: Mutex::new(Instant::now()),
            wake: Notify::new(),
            tools_changed: Notify::new(),
            fault: Mutex::default(),
        }
    }

    fn fault(&self) -> Option<String> {
        self.fault.lock().expect("not poisoned").clone()
    }

    /// For a transport, to say why it ended the session.
    fn report_fault(self: &Arc<Self>) -> impl Fn(String) + Send + Sync + 'static {
        let shared = self.clone();
        move |why| *shared.fault.lock().expect("not poisoned") = Some(why)
    }

    fn set(&self, status: Status) {
        self.status.send_replace(status);
    }

    fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    fn touch(&self) {
        *self.last_used.lock().expect("not poisoned") = Instant::now();
    }

    /// The session cannot carry requests any more: the supervisor starts a new one.
    fn break_with(&self, reason: String) {
        *self.broken.lock().expect("not poisoned") = Some(reason);
        self.broken_notify.notify_waiters();
    }
}

/// Receives what a server tells its client; `tools/list_changed` has the tools fetched again
/// (by [`refresh_tools`], which the session runs).
#[derive(Clone)]
struct Client {
    shared: Arc<Shared>,
}

impl rmcp::ClientHandler for Client {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.shared.tools_changed.notify_one();
        std::future::ready(())
    }
}

/// Servers of their own a person may have at once.
pub const MAX_PERSONAL_SERVERS: usize = 20;

fn forbidden() -> Error {
    Error::Forbidden("Only administrators can change the tool server registry.".into())
}

impl Mcp {
    /// The connections of everyone, to the servers of `file` and of the database (whose secrets
    /// `key` opens).
    pub fn new(db: Database, file: Registry, key: SecretKey, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                file,
                key,
                settings: Arc::new(settings),
                http: remote::http_client(),
                users: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The servers the user may use: the file's, the administrators' registry, their own (a
    /// stored server with a file server's id is shadowed by it).
    pub async fn specs(&self, user_id: Uuid) -> Result<Vec<ServerSpec>> {
        let mut specs = self.inner.file.servers().to_vec();
        let stored = registry::stored(&self.inner.db, &self.inner.key, Some(user_id)).await?;
        specs.extend(
            stored
                .into_iter()
                .filter(|s| self.inner.file.get(&s.id).is_none()),
        );
        Ok(specs)
    }

    async fn spec(&self, user_id: Uuid, server_id: &str) -> Result<Option<ServerSpec>> {
        if let Some(spec) = self.inner.file.get(server_id) {
            return Ok(Some(spec.clone()));
        }
        registry::find(&self.inner.db, &self.inner.key, user_id, server_id).await
    }

    /// The servers the user may connect to, with their connection and tools. The first call for a
    /// user on this instance brings back the connections they had.
    pub async fn servers(&self, user_id: Uuid) -> Result<Vec<ServerView>> {
        let specs = self.specs(user_id).await?;
        self.sync(user_id, &specs).await?;
        let users = self.inner.users.lock().expect("not poisoned");
        let mine = users.get(&user_id);
        Ok(specs
            .into_iter()
            .map(|spec| {
                let connection = mine.and_then(|m| m.servers.get(&spec.id));
                let url = match (&spec.transport, spec.source) {
                    (Transport::Http { url, .. }, Source::Personal) => Some(url.clone()),
                    _ => None,
                };
                ServerView {
                    transport: spec.transport.kind().into(),
                    status: connection.map_or(Status::Disconnected, |c| c.shared.status()),
                    tools: connection.map_or_else(Vec::new, |c| {
                        c.shared.tools.read().expect("not poisoned").clone()
                    }),
                    id: spec.id,
                    name: spec.name,
                    description: spec.description,
                    source: spec.source,
                    url,
                    enabled: spec.enabled,
                }
            })
            .collect())
    }

    /// Connects the user to a server (and remembers that they want it). Returns at once; the
    /// status says how it goes. False when there is no such server for them.
    pub async fn connect(&self, user_id: Uuid, server_id: &str) -> Result<bool> {
        let Some(spec) = self.spec(user_id, server_id).await? else {
            return Ok(false);
        };
        if !spec.enabled {
            return Err(Error::Conflict(format!(
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
        self.start(user_id, spec);
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
        let live = self.take(Some(user_id), server_id);
        let was_live = !live.is_empty();
        close_all(live).await;
        Ok(stored > 0 || was_live)
    }

    /// Waits until the user's connection to a server has settled (connected, failed, idle), at
    /// most `timeout`; its status then, or None when there is no such connection.
    pub async fn settled(
        &self,
        user_id: Uuid,
        server_id: &str,
        timeout: Duration,
    ) -> Option<Status> {
        let mut status = {
            let users = self.inner.users.lock().expect("not poisoned");
            users
                .get(&user_id)
                .and_then(|m| m.servers.get(server_id))
                .map(|c| c.shared.status.subscribe())?
        };
        let _ = tokio::time::timeout(timeout, status.wait_for(|s| *s != Status::Connecting)).await;
        let now = status.borrow().clone();
        Some(now)
    }

    /// Calls a tool on one of the user's connected servers, within the call timeout (a call that
    /// takes longer is cancelled on the server). An idle connection opens again first. The tool's
    /// own failure is an output with `is_error`; not reaching it at all is an error.
    pub async fn call(
        &self,
        user_id: Uuid,
        server_id: &str,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ToolOutput> {
        let shared = match self.live(user_id, server_id) {
            Some(shared) => shared,
            None => {
                // Connected on another instance, or before a restart: start it here.
                self.resume(user_id, server_id).await?;
                self.live(user_id, server_id).ok_or_else(|| {
                    Error::Conflict(format!(
                        "You are not connected to the MCP server '{server_id}'."
                    ))
                })?
            }
        };
        shared.touch();
        let peer = self.ready(&shared, server_id).await?;
        let started = Instant::now();
        let request = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let timeout = self.inner.settings.call_timeout;
        let limits = &self.inner.settings.limits;
        // Dropping the request on timeout tells the server to cancel it.
        let response = tokio::time::timeout(timeout, peer.call_tool_once(request))
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "The tool '{tool}' did not finish within {} s and was cancelled.",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| {
                // A server's error message can be as large as a message may be.
                let why = limits::cut(&e.to_string(), limits.max_error_chars);
                let why = if matches!(
                    e,
                    rmcp::ServiceError::TransportSend(_) | rmcp::ServiceError::TransportClosed
                ) {
                    // The transport's own reason (a message too large) says more.
                    let why = shared
                        .fault()
                        .unwrap_or_else(|| format!("The server stopped answering: {why}."));
                    shared.break_with(why.clone());
                    why
                } else {
                    why
                };
                Error::Unavailable(format!("The tool '{tool}' could not be called: {why}"))
            })?;
        shared.touch();
        let CallToolResponse::Complete(result) = response else {
            return Err(Error::Unavailable(format!(
                "The tool '{tool}' asked for more input, which Switchboard cannot give yet."
            )));
        };
        let is_error = result.is_error.unwrap_or(false);
        let (content, structured) = limits::bounded_result(
            result.content,
            result.structured_content,
            limits.max_result_bytes,
        );
        Ok(ToolOutput {
            is_error,
            content,
            structured,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The session of a connection, waking it if it is idle and waiting while it connects.
    async fn ready(&self, shared: &Shared, server_id: &str) -> Result<Peer<RoleClient>> {
        let mut status = shared.status.subscribe();
        if *status.borrow() == Status::Idle {
            shared.wake.notify_one();
        }
        let waited = tokio::time::timeout(
            self.inner.settings.connect_timeout,
            status.wait_for(|s| !matches!(s, Status::Idle | Status::Connecting)),
        )
        .await;
        let not_now = || {
            Error::Unavailable(format!(
                "The MCP server '{server_id}' is not connected right now; try again when its status is connected."
            ))
        };
        match waited {
            Ok(Ok(s)) if *s == Status::Connected => {}
            Ok(Ok(s)) => {
                if let Status::Failed { reason } = &*s {
                    return Err(Error::Unavailable(format!(
                        "The MCP server '{server_id}' is not connected: {reason}"
                    )));
                }
                return Err(not_now());
            }
            _ => return Err(not_now()),
        }
        shared
            .peer
            .read()
            .expect("not poisoned")
            .clone()
            .ok_or_else(not_now)
    }

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
                .filter(|s| {
                    matches!(
                        s.status,
                        Status::Connected | Status::Idle | Status::Connecting
                    )
                })
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

    /// Every server of the registry (the file's and the administrators'), for the admin page.
    pub async fn admin_servers(&self, actor: &User) -> Result<Vec<AdminServer>> {
        if !actor.is_admin() {
            return Err(forbidden());
        }
        let stored = registry::stored(&self.inner.db, &self.inner.key, None).await?;
        Ok(self
            .inner
            .file
            .servers()
            .iter()
            .cloned()
            .chain(stored)
            .map(|spec| AdminServer {
                transport: spec.transport.public(),
                id: spec.id,
                name: spec.name,
                description: spec.description,
                enabled: spec.enabled,
                source: spec.source,
                problem: spec.problem,
            })
            .collect())
    }

    /// Adds a server to the registry (`previous` None) or changes one; administrators only (a
    /// stdio server starts a process on this machine). Connections to a changed server start
    /// again with its new description. False when there is no such server to change.
    pub async fn save_server(
        &self,
        actor: &User,
        previous: Option<&str>,
        input: ServerInput,
    ) -> Result<bool> {
        if !actor.is_admin() {
            return Err(forbidden());
        }
        for id in [Some(input.id.as_str()), previous].into_iter().flatten() {
            if self.inner.file.get(id).is_some() {
                return Err(Error::Invalid(format!(
                    "The server '{id}' comes from the servers file: change it there."
                )));
            }
        }
        if input.id.starts_with(PERSONAL_PREFIX) {
            return Err(Error::Invalid(format!(
                "Ids that start with '{PERSONAL_PREFIX}' are kept for personal servers."
            )));
        }
        let id = input.id.clone();
        if !registry::save(&self.inner.db, &self.inner.key, None, previous, input).await? {
            return Ok(false);
        }
        let spec = registry::stored(&self.inner.db, &self.inner.key, None)
            .await?
            .into_iter()
            .find(|s| s.id == id);
        self.restart(previous.unwrap_or(&id), spec).await?;
        Ok(true)
    }

    /// Removes a server from the registry, closing everyone's connection to it on this instance.
    pub async fn delete_server(&self, actor: &User, id: &str) -> Result<bool> {
        if !actor.is_admin() {
            return Err(forbidden());
        }
        if self.inner.file.get(id).is_some() {
            return Err(Error::Invalid(format!(
                "The server '{id}' comes from the servers file: remove it there."
            )));
        }
        let deleted = registry::delete(&self.inner.db, None, id).await?;
        close_all(self.take(None, id)).await;
        Ok(deleted)
    }

    /// Adds a personal Streamable HTTP server for the user, after checking where its URL leads.
    /// Returns its id.
    pub async fn add_personal(
        &self,
        user_id: Uuid,
        name: &str,
        description: &str,
        url: &str,
        bearer_token: Option<String>,
        headers: std::collections::BTreeMap<String, String>,
    ) -> Result<String> {
        self.inner
            .settings
            .addresses
            .check(url.trim())
            .await
            .map_err(Error::Invalid)?;
        let input = ServerInput {
            // Personal ids start with the prefix the registry's may not use, so only the person's
            // own servers can hold it already.
            id: format!("{PERSONAL_PREFIX}{}", registry::slug(name)),
            name: name.to_owned(),
            description: description.to_owned(),
            enabled: true,
            transport: Transport::Http {
                url: url.trim().to_owned(),
                headers,
                bearer_token: bearer_token.filter(|t| !t.trim().is_empty()),
            },
        };
        registry::add_personal(
            &self.inner.db,
            &self.inner.key,
            user_id,
            MAX_PERSONAL_SERVERS,
            input,
        )
        .await
    }

    /// Removes one of the user's personal servers (and their connection to it).
    pub async fn delete_personal(&self, user_id: Uuid, id: &str) -> Result<bool> {
        let deleted = registry::delete(&self.inner.db, Some(user_id), id).await?;
        if deleted {
            close_all(self.take(Some(user_id), id)).await;
        }
        Ok(deleted)
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
        close_all(all).await;
    }

    /// Removes the live connections to a server, of one user or of everyone on this instance.
    fn take(&self, user_id: Option<Uuid>, server_id: &str) -> Vec<Connection> {
        let mut users = self.inner.users.lock().expect("not poisoned");
        users
            .iter_mut()
            .filter(|(id, _)| user_id.is_none_or(|u| u == **id))
            .filter_map(|(_, m)| m.servers.remove(server_id))
            .collect()
    }

    /// After a registry server changed: its connections on this instance close, and everyone here
    /// who wants it is connected again with its new description (if it is still switched on).
    async fn restart(&self, old_id: &str, spec: Option<ServerSpec>) -> Result<()> {
        close_all(self.take(None, old_id)).await;
        let Some(spec) = spec.filter(|s| s.enabled) else {
            return Ok(());
        };
        let wanting = sqlx::query_scalar!(
            "SELECT user_id FROM mcp_connections WHERE server_id = $1",
            spec.id
        )
        .fetch_all(self.inner.db.pool())
        .await?;
        let here: HashSet<Uuid> = {
            let users = self.inner.users.lock().expect("not poisoned");
            users.keys().copied().collect()
        };
        for user in wanting.into_iter().filter(|u| here.contains(u)) {
            // The others get it on their next use, from the database.
            self.start(user, spec.clone());
        }
        Ok(())
    }

    fn live(&self, user_id: Uuid, server_id: &str) -> Option<Arc<Shared>> {
        let users = self.inner.users.lock().expect("not poisoned");
        users
            .get(&user_id)
            .and_then(|m| m.servers.get(server_id))
            .map(|c| c.shared.clone())
    }

    /// Starts the user's connection to one server on this instance if they want it.
    async fn resume(&self, user_id: Uuid, server_id: &str) -> Result<()> {
        let wanted = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM mcp_connections WHERE user_id = $1 AND server_id = $2) AS "wanted!""#,
            user_id,
            server_id
        )
        .fetch_one(self.inner.db.pool())
        .await?;
        if wanted && let Some(spec) = self.spec(user_id, server_id).await?.filter(|s| s.enabled) {
            self.start(user_id, spec);
        }
        Ok(())
    }

    /// Makes this instance's connections of a user what the user wants, as stored: the ones they
    /// connected (here, elsewhere, or before a restart) are started, the ones they disconnected
    /// elsewhere are closed.
    async fn sync(&self, user_id: Uuid, specs: &[ServerSpec]) -> Result<()> {
        let asked = Instant::now();
        let wanted: HashSet<String> = sqlx::query_scalar!(
            "SELECT server_id FROM mcp_connections WHERE user_id = $1",
            user_id
        )
        .fetch_all(self.inner.db.pool())
        .await?
        .into_iter()
        .collect();
        for spec in specs.iter().filter(|s| s.enabled && wanted.contains(&s.id)) {
            self.start(user_id, spec.clone());
        }
        let unwanted: Vec<Connection> = {
            let mut users = self.inner.users.lock().expect("not poisoned");
            let Some(mine) = users.get_mut(&user_id) else {
                return Ok(());
            };
            let gone: Vec<String> = mine
                .servers
                .iter()
                // One started after the intent was read may be a connect that read missed.
                .filter(|(id, c)| !wanted.contains(*id) && c.started < asked)
                .map(|(id, _)| id.clone())
                .collect();
            gone.iter()
                .filter_map(|id| mine.servers.remove(id))
                .collect()
        };
        close_all(unwanted).await;
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
        let id = spec.id.clone();
        let task = tokio::spawn(supervise(
            user_id,
            spec,
            shared.clone(),
            self.inner.settings.clone(),
            self.inner.http.clone(),
            stopped,
        ));
        mine.servers.insert(
            id,
            Connection {
                started: Instant::now(),
                shared,
                stop,
                task,
            },
        );
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

/// How long a closing session may take (a stdio server gets its stdin closed, then SIGTERM, then
/// SIGKILL, within this).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Ends connections and waits for them to be gone, their servers' processes too.
async fn close_all(connections: Vec<Connection>) {
    futures_util::future::join_all(connections.into_iter().map(close)).await;
}

async fn close(connection: Connection) {
    let Connection { stop, mut task, .. } = connection;
    let _ = stop.send(true);
    if tokio::time::timeout(CLOSE_WITHIN, &mut task).await.is_err() {
        // Dropping the session kills a stdio server's process group.
        task.abort();
        let _ = task.await;
    }
}

/// How a live session ended.
enum Ended {
    /// With this reason: connect again after a pause.
    Lost(String),
    /// Unused for the idle time: wait until wanted.
    Idle,
    Stopped,
}

/// Keeps one connection up while it is wanted: connect, fetch the tools, wait for the end, pause,
/// again; until `stopped`, when the session is closed properly.
async fn supervise(
    user_id: Uuid,
    spec: ServerSpec,
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    http: rmcp_reqwest::Client,
    mut stopped: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_secs(1);
    loop {
        shared.set(Status::Connecting);
        *shared.fault.lock().expect("not poisoned") = None;
        *shared.broken.lock().expect("not poisoned") = None;
        let client = Client {
            shared: shared.clone(),
        };
        let opened = tokio::select! {
            opened = tokio::time::timeout(settings.connect_timeout, open(user_id, &spec, client, &settings, &http)) => opened,
            _ = stop_requested(&mut stopped) => return,
        };
        let reason = match opened {
            Ok(Ok((service, tools))) => {
                *shared.tools.write().expect("not poisoned") = tools;
                *shared.peer.write().expect("not poisoned") = Some(service.peer().clone());
                shared.touch();
                shared.set(Status::Connected);
                pause = Duration::from_secs(1);
                tracing::info!(server = %spec.id, "MCP server connected");
                match live(service, &shared, &settings, &mut stopped).await {
                    Ended::Stopped => return,
                    Ended::Idle => {
                        tracing::info!(server = %spec.id, "MCP connection closed after its idle time");
                        shared.set(Status::Idle);
                        tokio::select! {
                            _ = shared.wake.notified() => continue,
                            _ = stop_requested(&mut stopped) => return,
                        }
                    }
                    Ended::Lost(reason) => {
                        tracing::warn!(server = %spec.id, "MCP server disconnected: {reason}");
                        reason
                    }
                }
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

/// Serves a connected session until it ends, is found broken, idles out or is stopped; then
/// closes it (a stdio server is shut down with it).
async fn live(
    service: RunningService<RoleClient, Client>,
    shared: &Shared,
    settings: &Settings,
    stopped: &mut watch::Receiver<bool>,
) -> Ended {
    let cancel = service.cancellation_token();
    let peer = service.peer().clone();
    let mut ended = std::pin::pin!(service.waiting());
    let (outcome, over) = tokio::select! {
        ended = &mut ended => (Ended::Lost(shared.fault().unwrap_or_else(|| match ended {
            Ok(rmcp::service::QuitReason::Closed) => "The server closed the connection.".to_owned(),
            Ok(other) => limits::cut(&format!("The connection ended ({other:?})."), settings.limits.max_error_chars),
            Err(e) => format!("The connection failed: {}.", limits::cut(&e.to_string(), settings.limits.max_error_chars)),
        })), true),
        never = refresh_tools(&peer, shared, settings) => match never {},
        _ = shared.broken_notify.notified() => (Ended::Lost(
            shared
                .broken
                .lock()
                .expect("not poisoned")
                .take()
                .unwrap_or_else(|| "The server stopped answering.".into()),
        ), false),
        _ = idle(shared, settings.idle_timeout) => (Ended::Idle, false),
        _ = stop_requested(stopped) => (Ended::Stopped, false),
    };
    *shared.peer.write().expect("not poisoned") = None;
    if !over {
        cancel.cancel();
        let _ = ended.await;
    }
    outcome
}

/// Fetches the tools again when the server says they changed: notices that come while a fetch
/// waits or runs make one more fetch, at most one runs at a time, fetches are
/// `refresh_interval` apart at least, and each may take the connect time. A list that cannot be
/// fetched (or is refused) ends the session, whose status then says why.
async fn refresh_tools(
    peer: &Peer<RoleClient>,
    shared: &Shared,
    settings: &Settings,
) -> std::convert::Infallible {
    let mut last: Option<Instant> = None;
    loop {
        shared.tools_changed.notified().await;
        if let Some(last) = last {
            tokio::time::sleep_until((last + settings.refresh_interval).into()).await;
        }
        last = Some(Instant::now());
        let fetched = tokio::time::timeout(
            settings.connect_timeout,
            limits::list_tools(peer, &settings.limits),
        )
        .await;
        match fetched {
            Ok(Ok(tools)) => *shared.tools.write().expect("not poisoned") = tools,
            Ok(Err(reason)) => shared.break_with(reason),
            Err(_) => shared.break_with(format!(
                "The server said its tools changed, then did not list them within {} s.",
                settings.connect_timeout.as_secs()
            )),
        }
    }
}

/// Resolves once the connection has not been used for `timeout`.
async fn idle(shared: &Shared, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let deadline = *shared.last_used.lock().expect("not poisoned") + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Resolves when the connection is to stop.
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Starts a session with the server and fetches its tools.
async fn open(
    user_id: Uuid,
    spec: &ServerSpec,
    client: Client,
    settings: &Settings,
    shared_http: &rmcp_reqwest::Client,
) -> std::result::Result<(RunningService<RoleClient, Client>, Vec<Tool>), String> {
    if let Some(problem) = &spec.problem {
        return Err(problem.clone());
    }
    let limits = &settings.limits;
    let shared = client.shared.clone();
    // What a failure says: the transport's own reason when it gave one, else rmcp's (cut).
    let failed = |what: &str, e: &(dyn std::error::Error + 'static)| {
        shared.fault().unwrap_or_else(|| {
            format!(
                "{what}: {}.",
                limits::cut(&crate::error::chain(e), limits.max_error_chars)
            )
        })
    };
    let service = match &spec.transport {
        Transport::Stdio {
            command,
            args,
            env,
            secret_env,
        } => {
            let dir = stdio::work_dir(&settings.work_dir, &spec.id, user_id)?;
            let transport = stdio::spawn(
                stdio::Launch {
                    command,
                    args,
                    env,
                    secret_env,
                    dir: &dir,
                },
                limits.max_message_bytes,
                shared.report_fault(),
            )?;
            client
                .serve(transport)
                .await
                .map_err(|e| failed("The server did not complete the MCP handshake", &e))?
        }
        Transport::Http {
            url,
            headers,
            bearer_token,
        } => {
            // Checked when saved; again here for servers stored or listed before these checks.
            registry::check_url(url)?;
            registry::check_headers(headers)?;
            let http = if spec.source == Source::Personal {
                remote::pinned_client(&settings.addresses, url).await?
            } else {
                shared_http.clone()
            };
            let mut config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                )
                .max_sse_event_size(limits.max_message_bytes);
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
            let http = remote::Capped {
                client: http,
                fault: Arc::new(shared.report_fault()),
            };
            let transport = StreamableHttpClientTransport::with_client(http, config);
            client
                .serve(transport)
                .await
                .map_err(|e| match remote::http_cause(&e) {
                    Some(cause) => format!(
                        "Cannot reach {url}: {}.",
                        limits::cut(&cause, limits.max_error_chars)
                    ),
                    None => failed(&format!("Cannot reach {url}"), &e),
                })?
        }
    };
    // Tool lists are fetched fresh, and only through the limits: no copies in rmcp's cache.
    service
        .peer()
        .set_response_cache_config(rmcp::ClientCacheConfig::disabled())
        .await;
    let tools = limits::list_tools(service.peer(), limits)
        .await
        .map_err(|reason| shared.fault().unwrap_or(reason))?;
    Ok((service, tools))
}
