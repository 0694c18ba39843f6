//! Each person's live connections: connect, disconnect, wait until settled, call a tool, and the
//! reconciliation that brings the stored intent (which servers a person has connected) back to life
//! after a restart or on another instance.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientRequest, RequestId,
    ServerResult,
};
use rmcp::service::PeerRequestOptions;
use rmcp::service::{Peer, RoleClient};
use tokio::sync::watch;
use uuid::Uuid;

use super::elicitation::{self, Asked, Asker, Round};
use super::supervisor::{Connection, ProgressSink, Shared, close_all, progress_key, supervise};
use super::{Mcp, ServerSpec, Status, ToolOutput, limits};
use crate::{Error, Result};

#[derive(Default)]
pub(super) struct UserConnections {
    pub(super) servers: HashMap<String, Connection>,
}

impl Mcp {
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
        self.want(user_id, server_id).await?;
        self.start(user_id, spec);
        Ok(true)
    }

    /// Remembers that the user wants a server connected, within the most servers one person may
    /// have connected (their row is locked meanwhile, so that connects sent together cannot pass
    /// the cap together).
    pub(super) async fn want(&self, user_id: Uuid, server_id: &str) -> Result<()> {
        let max = self.inner.settings.max_connections;
        let mut tx = self.inner.db.pool().begin().await?;
        sqlx::query!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let others = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM mcp_connections WHERE user_id = $1 AND server_id <> $2"#,
            user_id,
            server_id
        )
        .fetch_one(&mut *tx)
        .await?;
        if usize::try_from(others).unwrap_or(usize::MAX) >= max {
            return Err(Error::Conflict(format!(
                "You have {others} tool servers connected, the most one person may have at once. Disconnect one you no longer use, then connect this one."
            )));
        }
        sqlx::query!(
            "INSERT INTO mcp_connections (user_id, server_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            user_id,
            server_id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
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
    /// own failure is an output with `is_error`; not reaching it at all is an error, and so is a
    /// server that asks the person something (only a chat's answer can wait for them).
    pub async fn call(
        &self,
        user_id: Uuid,
        server_id: &str,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ToolOutput> {
        match self
            .call_reporting(user_id, server_id, tool, arguments, Hooks::default())
            .await?
        {
            Called::Output(output) => Ok(output),
            Called::Asked(_) => Err(Error::Unavailable(format!(
                "The tool '{tool}' asked the person something, which only a chat's answer can wait for."
            ))),
        }
    }

    /// [`Mcp::call`], with the person behind it: the server's progress reports reach
    /// `hooks.progress`, its questions while the call runs `hooks.ask`, and the replies to the
    /// questions it asked the round before (`hooks.replies`) go with the call. A server that
    /// answers with questions for the person (a multi round-trip call) gets them back as
    /// [`Called::Asked`], to be asked while nothing waits, and the call made again with the
    /// replies.
    pub async fn call_reporting(
        &self,
        user_id: Uuid,
        server_id: &str,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        mut hooks: Hooks,
    ) -> Result<Called> {
        let shared = self.used(user_id, server_id).await?;
        let peer = self.ready(user_id, &shared, server_id).await?;
        let started = Instant::now();
        let mut request = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        if let Some(round) = hooks.replies.take() {
            let replies = round
                .replies
                .iter()
                .map(|(key, reply)| (key.clone(), reply.to_result()))
                .collect();
            request.input_responses = Some(replies);
            request.request_state = round.state;
        }
        let timeout = self.inner.settings.call_timeout;
        let limits = &self.inner.settings.limits;
        // Dropping the request on timeout tells the server to cancel it.
        let response = tokio::time::timeout(timeout, call_tool(&peer, &shared, request, hooks))
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "The tool '{tool}' did not finish within {} s and was cancelled.",
                    timeout.as_secs()
                ))
            })?
            .map_err(|failed| {
                let e = match failed {
                    CallFailed::Other(e) => e,
                    CallFailed::SignIn => {
                        // The server refused the token, and a refresh did not help: it did not
                        // run. The connection starts again, and asks for a sign-in.
                        shared.break_with("Your sign-in has expired.".into());
                        return Error::SignIn(format!(
                            "Your sign-in to the tool server '{server_id}' has expired, so '{tool}' did not run: sign in to it again, then run the tool."
                        ));
                    }
                };
                // A server's error message can be as large as a message may be.
                let why = limits::cut(&e.to_string(), limits.max_error_chars);
                let lost = matches!(
                    e,
                    rmcp::ServiceError::TransportSend(_) | rmcp::ServiceError::TransportClosed
                );
                let why = if lost {
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
        let result = match response {
            ServerResult::CallToolResult(result) => result,
            ServerResult::InputRequiredResult(asked) => {
                return elicitation::asked(asked).map(Called::Asked).map_err(|why| {
                    Error::Unavailable(format!("The tool '{tool}' could not go on: {why}"))
                });
            }
            _ => {
                return Err(Error::Unavailable(format!(
                    "The tool '{tool}' answered with something other than a tool result (a task, say), which Switchboard does not take."
                )));
            }
        };
        let is_error = result.is_error.unwrap_or(false);
        let (content, structured) = limits::bounded_result(
            result.content,
            result.structured_content,
            limits.max_result_bytes,
            limits.max_media_bytes,
        );
        Ok(Called::Output(ToolOutput {
            is_error,
            content,
            structured,
            duration_ms: started.elapsed().as_millis() as u64,
        }))
    }

    /// The user's connection to a server, started on this instance when they connected it
    /// elsewhere or before a restart, marked used.
    async fn used(&self, user_id: Uuid, server_id: &str) -> Result<Arc<Shared>> {
        // Asked at every use: a server limited to groups they are not in since they connected
        // (or their own, switched off for a group of theirs) is theirs no more, and its
        // connection closes.
        if self.spec(user_id, server_id).await?.is_none() {
            close_all(self.take(Some(user_id), server_id)).await;
            return Err(Error::NotFound(format!(
                "There is no MCP server '{server_id}' for you: it may have been removed, or limited to groups you are not in."
            )));
        }
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
        Ok(shared)
    }

    /// The session of the user's connection to a server, ready for a request.
    pub(super) async fn peer(&self, user_id: Uuid, server_id: &str) -> Result<Peer<RoleClient>> {
        let shared = self.used(user_id, server_id).await?;
        self.ready(user_id, &shared, server_id).await
    }

    /// The session of a connection, waking it if it is idle (or waits for a sign-in the person
    /// has made since, on any instance) and waiting while it connects.
    async fn ready(
        &self,
        user_id: Uuid,
        shared: &Shared,
        server_id: &str,
    ) -> Result<Peer<RoleClient>> {
        let mut status = shared.status.subscribe();
        let now = status.borrow().clone();
        if now == Status::Idle {
            shared.wake.notify_one();
        }
        if matches!(now, Status::SignInNeeded { .. })
            && self.woken_by_sign_in(user_id, shared, server_id).await
        {
            // The supervisor is moving on: wait for the status it reaches.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                status.wait_for(|s| !matches!(s, Status::SignInNeeded { .. })),
            )
            .await;
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
                match &*s {
                    Status::Failed { reason } => {
                        return Err(Error::Unavailable(format!(
                            "The MCP server '{server_id}' is not connected: {reason}"
                        )));
                    }
                    Status::SignInNeeded { reason } => {
                        return Err(Error::SignIn(format!(
                            "The MCP server '{server_id}' is not connected: {reason}"
                        )));
                    }
                    _ => {}
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

    /// Wakes a connection that waits for a sign-in when the person has signed in since (here or
    /// on another instance). True when it was woken.
    async fn woken_by_sign_in(&self, user_id: Uuid, shared: &Shared, server_id: &str) -> bool {
        let Ok(Some(spec)) = self.spec(user_id, server_id).await else {
            return false;
        };
        let signed_in = self.sign_ins().is_signed_in(user_id, &spec).await;
        if signed_in {
            shared.wake.notify_one();
        }
        signed_in
    }

    /// Removes the live connections to a server, of one user or of everyone on this instance.
    pub(super) fn take(&self, user_id: Option<Uuid>, server_id: &str) -> Vec<Connection> {
        let mut users = self.inner.users.lock().expect("not poisoned");
        users
            .iter_mut()
            .filter(|(id, _)| user_id.is_none_or(|u| u == **id))
            .filter_map(|(_, m)| m.servers.remove(server_id))
            .collect()
    }

    /// After a registry server changed: its connections on this instance close, and everyone here
    /// who wants it is connected again with its new description (if it is still switched on).
    pub(super) async fn restart(&self, old_id: &str, spec: Option<ServerSpec>) -> Result<()> {
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
            // The others get it on their next use, from the database; those it is now limited
            // away from do not get it back.
            let access = crate::access::Access::of(&self.inner.db, user).await?;
            if super::usable(&access, &spec) {
                self.start(user, spec.clone());
            }
        }
        Ok(())
    }

    pub(super) fn live(&self, user_id: Uuid, server_id: &str) -> Option<Arc<Shared>> {
        let users = self.inner.users.lock().expect("not poisoned");
        users
            .get(&user_id)
            .and_then(|m| m.servers.get(server_id))
            .map(|c| c.shared.clone())
    }

    /// Starts the user's connection to one server on this instance if they want it.
    pub(super) async fn resume(&self, user_id: Uuid, server_id: &str) -> Result<()> {
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
    pub(super) async fn sync(&self, user_id: Uuid, specs: &[ServerSpec]) -> Result<()> {
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
                // One started after the intent was read may be a connect that read missed; one to
                // a server no longer theirs to use (limited to groups since) closes in any case.
                .filter(|(id, c)| {
                    (!wanted.contains(*id) && c.started < asked)
                        || !specs.iter().any(|s| s.id == **id)
                })
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
            self.sign_ins(),
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

/// Sends a `tools/call` and waits for its answer. When this is dropped before the answer (Stop, the
/// call's timeout) the server is told to cancel it (`notifications/cancelled`). With `progress`,
/// the server's reports for it (under the token rmcp gave the request) reach that sink.
async fn call_tool(
    peer: &Peer<RoleClient>,
    shared: &Arc<Shared>,
    params: CallToolRequestParams,
    hooks: Hooks,
) -> std::result::Result<ServerResult, CallFailed> {
    let _asking = hooks.ask.map(|asker| Asking::start(shared, asker));
    let progress = hooks.progress;
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = peer
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await
        .map_err(CallFailed::Other)?;
    let _listening =
        progress.map(|sink| Listening::start(shared, progress_key(&handle.progress_token), sink));
    let mut abandoned = Abandoned {
        peer: peer.clone(),
        id: Some(handle.id.clone()),
    };
    let id = handle.id.clone();
    let answer = handle.await_response().await;
    abandoned.id = None;
    answer.map_err(|e| {
        if shared.was_refused(&id) {
            CallFailed::SignIn
        } else {
            CallFailed::Other(e)
        }
    })
}

/// How a call failed: turned away for want of a (valid) sign-in, so it did not run; or otherwise.
enum CallFailed {
    SignIn,
    Other(rmcp::ServiceError),
}

/// What goes with a call besides its arguments: who hears its progress, who answers its
/// server's questions while it runs, and the replies to what the server asked the round before.
#[derive(Clone, Default)]
pub struct Hooks {
    pub progress: Option<ProgressSink>,
    pub ask: Option<Asker>,
    pub replies: Option<Round>,
}

/// What a call came to.
#[derive(Clone, Debug)]
pub enum Called {
    /// The tool's output (its own failure included).
    Output(ToolOutput),
    /// The server's questions to the person: the call is made again with the replies.
    Asked(Asked),
}

/// A call's asker, asked while the call is under way.
struct Asking {
    shared: Arc<Shared>,
    number: u64,
}

static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Asking {
    fn start(shared: &Arc<Shared>, asker: Asker) -> Self {
        let number = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shared
            .askers
            .lock()
            .expect("not poisoned")
            .push((number, asker));
        Self {
            shared: shared.clone(),
            number,
        }
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        self.shared
            .askers
            .lock()
            .expect("not poisoned")
            .retain(|(n, _)| *n != self.number);
    }
}

/// Tells the server to cancel a request that was given up before its answer came.
struct Abandoned {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let peer = self.peer.clone();
        tokio::spawn(async move {
            let _ = peer
                .notify_cancelled(CancelledNotificationParam::new(
                    Some(id),
                    Some("The person stopped the answer, or the call took too long.".into()),
                ))
                .await;
        });
    }
}

/// A call's progress sink, heard while the call is under way (until this is dropped: the call
/// ended, or was given up).
struct Listening {
    shared: Arc<Shared>,
    token: String,
}

impl Listening {
    fn start(shared: &Arc<Shared>, token: String, sink: ProgressSink) -> Self {
        shared
            .progress
            .lock()
            .expect("not poisoned")
            .insert(token.clone(), (sink, None));
        Self {
            shared: shared.clone(),
            token,
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.shared
            .progress
            .lock()
            .expect("not poisoned")
            .remove(&self.token);
    }
}
