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

//!
//! | module | owns |
//! |---|---|
//! | [`types`] | what the rest of Switchboard sees: tools, statuses, server views, settings |
//! | [`registry`] | where servers are described: the servers file, the registry, personal servers |
//! | [`connections`] | each person's connections: connect, disconnect, call, reconcile |
//! | [`supervisor`] | one connection's life, kept up while wanted |
//! | [`transport`], [`stdio`], [`remote`] | opening a session over stdio or Streamable HTTP |
//! | [`admin`], [`chat_tools`] | registry changes; the tools a chat may use |
//! | [`results`] | what a tool returned, as the model is told it and the person shown it |
//! | [`offerings`] | a server's resources and prompts: listed, read, run |
//! | [`elicitation`] | a server's questions to the person during a call, and their answers checked |
//! | [`sign_in`] | a person's sign-in to a server that asks for one (OAuth), and their tokens |
//! | [`limits`], [`net`] | what a server may send; which addresses may be reached |

mod admin;
mod chat_tools;
mod connections;
pub mod elicitation;
pub mod limits;
pub mod net;
mod offerings;
pub mod registry;
mod remote;
mod results;
mod sign_in;
mod stdio;
mod supervisor;
mod transport;
mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

pub use limits::Limits;
pub use net::AddressPolicy;
pub use registry::{
    PERSONAL_PREFIX, PublicTransport, Registry, ServerInput, ServerSpec, Source, Transport,
};

use crate::access::Access;
use crate::secrets::SecretKey;
use crate::{Database, Result};
use connections::UserConnections;
pub use connections::{Called, Hooks};
pub use supervisor::ProgressSink;
use supervisor::{Connection, close_all};

pub use admin::MAX_PERSONAL_SERVERS;
pub use offerings::{MAX_RESOURCE_CHARS, Prompt, PromptArgument, Resource, ResourceText};
pub use sign_in::{FLOW_MINUTES, Finished};
pub use types::{
    AdminServer, Annotations, ChatTool, ServerView, Settings, Status, Tool, ToolOutput,
};

/// Whether a person with `access` may see and use the server `spec`.
fn usable(access: &Access, spec: &ServerSpec) -> bool {
    match spec.source {
        Source::Personal => access.personal_servers(),
        Source::File | Source::Admin => access.may_use(&spec.groups),
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

impl Mcp {
    /// The connections of everyone, to the servers of `file` and of the database (whose secrets
    /// `key` opens).
    /// The key that opens the secrets stored in the database.
    pub(crate) fn key(&self) -> &SecretKey {
        &self.inner.key
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

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
    /// stored server with a file server's id is shadowed by it), less those limited to groups they
    /// are not in, and their own when a group of theirs has them switched off.
    pub async fn specs(&self, user_id: Uuid) -> Result<Vec<ServerSpec>> {
        let (access, stored) = tokio::join!(
            Access::of(&self.inner.db, user_id),
            registry::stored(&self.inner.db, &self.inner.key, Some(user_id)),
        );
        let access = access?;
        let mut specs = self.inner.file.servers().to_vec();
        specs.extend(
            stored?
                .into_iter()
                .filter(|s| self.inner.file.get(&s.id).is_none()),
        );
        specs.retain(|s| usable(&access, s));
        Ok(specs)
    }

    /// One server the user may use (see [`Mcp::specs`]), by id.
    async fn spec(&self, user_id: Uuid, server_id: &str) -> Result<Option<ServerSpec>> {
        let spec = match self.inner.file.get(server_id) {
            Some(spec) => Some(spec.clone()),
            None => registry::find(&self.inner.db, &self.inner.key, user_id, server_id).await?,
        };
        let Some(spec) = spec else {
            return Ok(None);
        };
        let access = Access::of(&self.inner.db, user_id).await?;
        Ok(usable(&access, &spec).then_some(spec))
    }

    /// The servers the user may connect to, with their connection and tools. The first call for a
    /// user on this instance brings back the connections they had, and wakes the ones that wait
    /// for a sign-in the user has made since (on any instance).
    pub async fn servers(&self, user_id: Uuid) -> Result<Vec<ServerView>> {
        let specs = self.specs(user_id).await?;
        self.sync(user_id, &specs).await?;
        let sign_ins = self.sign_ins().of(user_id).await?;
        let signed_in = |spec: &ServerSpec| match &spec.transport {
            Transport::Http { url, .. } => {
                sign_ins.iter().any(|(id, u)| *id == spec.id && u == url)
            }
            Transport::Stdio { .. } => false,
        };
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
                let signed_in = signed_in(&spec);
                let status = connection.map_or(Status::Disconnected, |c| c.shared.status());
                if signed_in
                    && matches!(status, Status::SignInNeeded { .. })
                    && let Some(c) = connection
                {
                    c.shared.wake.notify_one();
                }
                ServerView {
                    transport: spec.transport.kind().into(),
                    status,
                    signed_in,
                    tools: connection.map_or_else(Vec::new, |c| {
                        c.shared.tools.read().expect("not poisoned").clone()
                    }),
                    resources: connection.map_or_else(Vec::new, |c| {
                        c.shared.resources.read().expect("not poisoned").clone()
                    }),
                    prompts: connection.map_or_else(Vec::new, |c| {
                        c.shared.prompts.read().expect("not poisoned").clone()
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

    /// How many connections of everyone's on this instance are in each state (`connected`,
    /// `connecting`, `idle`, `failed`, `sign_in`).
    pub fn connection_counts(&self) -> HashMap<&'static str, usize> {
        let users = self.inner.users.lock().expect("not poisoned");
        let mut counts = HashMap::new();
        for connection in users.values().flat_map(|m| m.servers.values()) {
            let state = match connection.shared.status() {
                Status::Disconnected => "disconnected",
                Status::Connecting => "connecting",
                Status::Connected => "connected",
                Status::Idle => "idle",
                Status::Failed { .. } => "failed",
                Status::SignInNeeded { .. } => "sign_in",
            };
            *counts.entry(state).or_default() += 1;
        }
        counts
    }

    /// The registry's servers (not people's own, whose ids are theirs) that some connection on
    /// this instance cannot reach now, sorted.
    pub fn failing_registry_servers(&self) -> Vec<String> {
        let users = self.inner.users.lock().expect("not poisoned");
        let mut failing: Vec<String> = users
            .values()
            .flat_map(|m| m.servers.iter())
            .filter(|(id, c)| {
                !id.starts_with(PERSONAL_PREFIX)
                    && matches!(c.shared.status(), Status::Failed { .. })
            })
            .map(|(id, _)| id.clone())
            .collect();
        failing.sort();
        failing.dedup();
        failing
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
}
