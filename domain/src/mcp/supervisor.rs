//! One connection's life: its shared state ([`Shared`]), the supervisor that keeps it up while it
//! is wanted (connect, fetch the tools, reconnect with backoff, close when idle), and its end.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use protocol::Progress;
use rmcp::model::{
    ElicitRequestParams, ElicitResult, ElicitationAction, NumberOrString,
    ProgressNotificationParam, ProgressToken,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleClient, RunningService};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::elicitation::{self, Asker};
use super::offerings::{self, Prompt, Resource};
use super::sign_in::SignIns;
use super::transport::{Lists, Refused, open};
use super::{ServerSpec, Settings, Status, Tool, limits};

/// One supervised connection.
pub(super) struct Connection {
    /// When it was started (a reconciliation that read the intent before then leaves it be).
    pub(super) started: Instant,
    pub(super) shared: Arc<Shared>,
    /// Tells the supervisor to end the session and stop.
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: JoinHandle<()>,
}

pub(super) struct Shared {
    pub(super) status: watch::Sender<Status>,
    pub(super) tools: RwLock<Vec<Tool>>,
    pub(super) resources: RwLock<Vec<Resource>>,
    pub(super) prompts: RwLock<Vec<Prompt>>,
    pub(super) peer: RwLock<Option<Peer<RoleClient>>>,
    /// A call found the server gone (over HTTP there is no stream that would tell): why.
    pub(super) broken: Mutex<Option<String>>,
    pub(super) broken_notify: Notify,
    pub(super) last_used: Mutex<Instant>,
    /// An idle connection is wanted again.
    pub(super) wake: Notify,
    /// The server said its tools changed (notices that come in the meantime make one).
    pub(super) tools_changed: Notify,
    /// The server said its resources or prompts changed.
    pub(super) offerings_changed: Notify,
    /// Why the transport ended the session it carries, when it did (a message too large).
    pub(super) fault: Mutex<Option<String>>,
    /// The server's last answer was a 401: its `WWW-Authenticate` challenge (cleared by any
    /// answer that is not).
    pub(super) challenge: Mutex<Option<String>>,
    /// Requests a 401 turned away (never run), by id, until their callers have looked.
    pub(super) refused: Mutex<HashSet<NumberOrString>>,
    /// Who hears the progress of each call under way that asked for it, by progress token, and
    /// when they last heard.
    pub(super) progress: Mutex<HashMap<String, (ProgressSink, Option<Instant>)>>,
    /// Who answers the server's questions for each call under way that can ask the person, by a
    /// number of the call's, in the order the calls began (the latest is asked).
    pub(super) askers: Mutex<Vec<(u64, Asker)>>,
}

/// A progress token as the sinks are keyed.
pub(super) fn progress_key(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::String(s) => format!("s:{s}"),
        NumberOrString::Number(n) => format!("n:{n}"),
    }
}

/// Hears how far a tool call has come.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// The least time between two progress reports passed on for one call: a server may send them
/// as fast as it likes, people's pages get a few a second.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

impl Shared {
    pub(super) fn new() -> Self {
        Self {
            status: watch::Sender::new(Status::Connecting),
            tools: RwLock::default(),
            resources: RwLock::default(),
            prompts: RwLock::default(),
            peer: RwLock::default(),
            broken: Mutex::default(),
            broken_notify: Notify::new(),
            last_used: Mutex::new(Instant::now()),
            wake: Notify::new(),
            tools_changed: Notify::new(),
            offerings_changed: Notify::new(),
            fault: Mutex::default(),
            challenge: Mutex::default(),
            refused: Mutex::default(),
            progress: Mutex::default(),
            askers: Mutex::default(),
        }
    }

    /// Keeps what the server offers, as listed.
    pub(super) fn keep(&self, lists: Lists) {
        *self.tools.write().expect("not poisoned") = lists.tools;
        *self.resources.write().expect("not poisoned") = lists.resources;
        *self.prompts.write().expect("not poisoned") = lists.prompts;
    }

    pub(super) fn fault(&self) -> Option<String> {
        self.fault.lock().expect("not poisoned").clone()
    }

    /// For a transport, to say why it ended the session.
    pub(super) fn report_fault(self: &Arc<Self>) -> impl Fn(String) + Send + Sync + 'static {
        let shared = self.clone();
        move |why| *shared.fault.lock().expect("not poisoned") = Some(why)
    }

    /// The server's last answer asked for a sign-in: its challenge.
    pub(super) fn challenge(&self) -> Option<String> {
        self.challenge.lock().expect("not poisoned").clone()
    }

    /// For a transport, to say whether the server's answer was a 401, and with what challenge.
    pub(super) fn report_challenge(
        self: &Arc<Self>,
    ) -> impl Fn(Option<String>) + Send + Sync + 'static {
        let shared = self.clone();
        move |challenge| *shared.challenge.lock().expect("not poisoned") = challenge
    }

    /// For a transport, to say which request a 401 turned away.
    pub(super) fn report_refused(
        self: &Arc<Self>,
    ) -> impl Fn(NumberOrString) + Send + Sync + 'static {
        let shared = self.clone();
        move |id| {
            shared.refused.lock().expect("not poisoned").insert(id);
        }
    }

    /// Whether a 401 turned this request away (the record is then dropped).
    pub(super) fn was_refused(&self, id: &NumberOrString) -> bool {
        self.refused.lock().expect("not poisoned").remove(id)
    }

    pub(super) fn set(&self, status: Status) {
        self.status.send_replace(status);
    }

    pub(super) fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub(super) fn touch(&self) {
        *self.last_used.lock().expect("not poisoned") = Instant::now();
    }

    /// The session cannot carry requests any more: the supervisor starts a new one.
    pub(super) fn break_with(&self, reason: String) {
        *self.broken.lock().expect("not poisoned") = Some(reason);
        self.broken_notify.notify_waiters();
    }
}

/// Receives what a server tells its client; `tools/list_changed` has the tools fetched again
/// (by [`refresh_tools`], which the session runs).
#[derive(Clone)]
pub(super) struct Client {
    pub(super) shared: Arc<Shared>,
}

impl rmcp::ClientHandler for Client {
    /// Switchboard can ask the person a server's questions (forms and pages to open).
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let capabilities = serde_json::from_value(serde_json::json!({
            "elicitation": {"form": {"schemaValidation": true}, "url": {}}
        }))
        .unwrap_or_default();
        rmcp::model::ClientConfig::new(
            capabilities,
            rmcp::model::Implementation::new("switchboard", env!("CARGO_PKG_VERSION")),
        )
    }

    /// A server's question during a call: the person is asked through the call's asker (the one
    /// call under way on this connection that can ask), and the call waits for the reply within
    /// its timeout. A question outside any such call, or while several could be asking, is
    /// declined; so are questions beyond the few one call may ask (see [`Asker`]).
    fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> impl Future<Output = Result<ElicitResult, rmcp::ErrorData>> + Send + '_ {
        // With several calls under way that could ask, the question cannot be told apart (stdio
        // carries no related-request id): it is declined rather than shown under the wrong call.
        let asker = {
            let askers = self.shared.askers.lock().expect("not poisoned");
            match askers.as_slice() {
                [(_, asker)] => Some(asker.clone()),
                _ => None,
            }
        };
        async move {
            let question = elicitation::question(&request)
                .map_err(|why| rmcp::ErrorData::invalid_params(why, None))?;
            let Some(asker) = asker else {
                return Ok(ElicitResult::new(ElicitationAction::Decline));
            };
            // The asker lives as long as its call: the question is asked without holding it.
            let asking = asker(question);
            drop(asker);
            let reply = asking.await;
            let action = match reply.action.as_str() {
                "accept" => ElicitationAction::Accept,
                "decline" => ElicitationAction::Decline,
                _ => ElicitationAction::Cancel,
            };
            let mut result = ElicitResult::new(action);
            if let Some(content) = reply.content {
                result = result.with_content(content);
            }
            Ok(result)
        }
    }

    /// Passed on to the call's sink, its message cut, at most every [`PROGRESS_EVERY`]; a token
    /// of no call under way (a server's guess, a call gone) is ignored.
    fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let token = progress_key(&params.progress_token);
        let sink = {
            let mut sinks = self.shared.progress.lock().expect("not poisoned");
            match sinks.get_mut(&token) {
                // The last report (progress = total) always passes.
                Some((sink, last))
                    if last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
                        || params.total.is_some_and(|t| params.progress >= t) =>
                {
                    *last = Some(Instant::now());
                    Some(sink.clone())
                }
                _ => None,
            }
        };
        if let Some(sink) = sink
            && params.progress.is_finite()
        {
            sink(Progress {
                progress: params.progress,
                total: params.total.filter(|t| t.is_finite()),
                message: params
                    .message
                    .map(|m| limits::cut(&m, Progress::MAX_MESSAGE)),
            });
        }
        std::future::ready(())
    }

    fn on_resource_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.shared.offerings_changed.notify_one();
        std::future::ready(())
    }

    fn on_prompt_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.shared.offerings_changed.notify_one();
        std::future::ready(())
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.shared.tools_changed.notify_one();
        std::future::ready(())
    }
}

/// How long a closing session may take (a stdio server gets its stdin closed, then SIGTERM, then
/// SIGKILL, within this).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Ends connections and waits for them to be gone, their servers' processes too.
pub(super) async fn close_all(connections: Vec<Connection>) {
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
pub(super) async fn supervise(
    user_id: Uuid,
    spec: ServerSpec,
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    http: rmcp_reqwest::Client,
    sign_ins: SignIns,
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
            opened = tokio::time::timeout(settings.connect_timeout, open(user_id, &spec, client, &settings, &http, &sign_ins)) => opened,
            _ = stop_requested(&mut stopped) => return,
        };
        let reason = match opened {
            Ok(Ok((service, lists))) => {
                shared.keep(lists);
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
            Ok(Err(Refused::SignIn(reason))) => {
                // Nothing to try until the person signs in: then the connection is woken.
                tracing::info!(server = %spec.id, "an MCP server asks its person to sign in");
                shared.set(Status::SignInNeeded { reason });
                tokio::select! {
                    _ = shared.wake.notified() => continue,
                    _ = stop_requested(&mut stopped) => return,
                }
            }
            Ok(Err(Refused::Failed(reason))) => {
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
        never = refresh_offerings(&peer, shared, settings) => match never {},
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

/// Fetches the resources and prompts again when the server says they changed, as
/// [`refresh_tools`] does the tools; a list that cannot be fetched is kept as it was (a server's
/// resources are no reason to lose its tools).
async fn refresh_offerings(
    peer: &Peer<RoleClient>,
    shared: &Shared,
    settings: &Settings,
) -> std::convert::Infallible {
    let mut last: Option<Instant> = None;
    loop {
        shared.offerings_changed.notified().await;
        if let Some(last) = last {
            tokio::time::sleep_until((last + settings.refresh_interval).into()).await;
        }
        last = Some(Instant::now());
        let (resources, prompts) = tokio::join!(
            tokio::time::timeout(
                settings.connect_timeout,
                offerings::list_resources(peer, &settings.limits)
            ),
            tokio::time::timeout(
                settings.connect_timeout,
                offerings::list_prompts(peer, &settings.limits)
            ),
        );
        match resources {
            Ok(Ok(resources)) => *shared.resources.write().expect("not poisoned") = resources,
            Ok(Err(why)) => tracing::warn!("cannot list an MCP server's resources again: {why}"),
            Err(_) => tracing::warn!("an MCP server did not list its resources again in time"),
        }
        match prompts {
            Ok(Ok(prompts)) => *shared.prompts.write().expect("not poisoned") = prompts,
            Ok(Err(why)) => tracing::warn!("cannot list an MCP server's prompts again: {why}"),
            Err(_) => tracing::warn!("an MCP server did not list its prompts again in time"),
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
