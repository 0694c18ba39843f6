//! Runs: an answer being generated, on the server, independent of any browser.
//!
//! [`Runs::start`] stores the person's message and an empty answer, then streams the model's
//! answer in a task of its own. Everything a run does is an event on its chat's channel; a
//! subscriber gets the events it missed (by event id) and then the live ones. Text is flushed to
//! the database every [`FLUSH_EVERY`], not token by token, so a crash keeps all but the last moment
//! of an answer. Closing a tab does not stop a run; [`Runs::stop`] does.
//!
//! In a chat with tools, the answer is a run of the agent graph ([`crate::agent`]): it pauses
//! when the model asks for tools (the answer is then `waiting`, and the run holds no task), and
//! [`Runs::decide`] records the person's decisions and, with the last one, resumes it, on
//! whichever instance the decision lands. A chat with no tools has nothing to approve: its answer
//! is one model call, streamed as above.
//!
//! Instances on one database tell each other their runs' events ([`instances`]), so a page follows
//! a run whichever instance its event stream is on, and Stop reaches a run on another instance.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, oneshot, watch};
use uuid::Uuid;

use crate::agent::live::TokenSink;
use crate::agent::{
    self, Call, CallState, Checkpoints, Completion, Decider, Decision, Policies, RunState, Step,
    ToolSpec, store,
};
use crate::chats::{self, Role, Status};
use crate::llm::{self, Catalog, LlmClient, StreamEvent};
use crate::mcp::Mcp;
use crate::{Database, Error, Result};

mod instances;

pub use instances::CHANNEL;
use instances::{Assembler, Instances, Note};

/// How often the text of a streaming answer is written to the database.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often an agent run shows its answer is alive while nothing streams (tools running), well
/// within [`chats::STALE_STREAM_SECS`].
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Events kept per chat for subscribers that reconnect (a run's tokens are usually far fewer).
const LOG_LIMIT: usize = 20_000;
/// Events a subscriber may fall behind by before it is cut off (it reconnects with the last id it
/// saw and gets the rest from the log).
const SUBSCRIBER_BACKLOG: usize = 256;
/// A chat's channel with no run and no subscriber is forgotten after this long (its events with
/// it: a subscriber that comes back later is told to read the chat again).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// How long "Stop" waits to hear that a run on another instance has ended.
const STOP_ELSEWHERE_WITHIN: Duration = Duration::from_secs(3);

/// One event on a chat's stream. `id` orders them; see [`EventId`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatEvent {
    pub id: EventId,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A run began: the person's message is stored, and the answer `answer_id` is on its way.
    RunStarted {
        question: chats::Message,
        answer_id: Uuid,
        model: String,
    },
    /// More of the answer.
    Token { answer_id: Uuid, text: String },
    /// The answer so far, for a subscriber that arrives (or returns) mid-answer and cannot be
    /// given the exact events it missed.
    Snapshot { answer_id: Uuid, text: String },
    /// The model asked for a tool call (decided already when one of the person's policies allows
    /// it; answered with an error at once when it cannot run).
    ToolCall { answer_id: Uuid, call: Call },
    /// The run waits for the person's decisions on these calls (by id) of `turn`; it holds no
    /// task now.
    ApprovalNeeded {
        answer_id: Uuid,
        turn: u32,
        call_ids: Vec<String>,
    },
    /// A call was decided (by the person or a policy).
    Decision {
        answer_id: Uuid,
        call_id: String,
        decision: Decision,
    },
    /// A call ran, failed, or was interrupted: `call.state` says which, with its result.
    ToolResult { answer_id: Uuid, call: Call },
    /// The run ended: complete, stopped, or failed with a message for the person.
    RunFinished {
        answer_id: Uuid,
        status: Status,
        error: Option<String>,
    },
    /// The events after the id the subscriber gave cannot be replayed (this instance restarted
    /// since, never served them, or has forgotten them): read the chat again. A `snapshot`
    /// follows when an answer is live.
    Resync,
}

impl EventKind {
    /// The event's name on the event stream.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::Token { .. } => "token",
            EventKind::Snapshot { .. } => "snapshot",
            EventKind::ToolCall { .. } => "tool_call",
            EventKind::ApprovalNeeded { .. } => "approval_needed",
            EventKind::Decision { .. } => "decision",
            EventKind::ToolResult { .. } => "tool_result",
            EventKind::RunFinished { .. } => "run_finished",
            EventKind::Resync => "resync",
        }
    }
}

/// An event's id: this process's start (so ids from before a restart, or from another instance,
/// are recognised as unknown) and a sequence number. Written `<epoch>-<seq>` in the event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    pub epoch: u64,
    pub seq: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl std::str::FromStr for EventId {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let (epoch, seq) = s.trim().split_once('-').ok_or(())?;
        Ok(Self {
            epoch: epoch.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// A run in progress.
struct Live {
    answer_id: Uuid,
    text: String,
    /// Set to how the run should end: `Stopped` (the person) or `Interrupted` (shutdown).
    stop: watch::Sender<Option<Status>>,
}

/// A run in progress on another instance, as its events tell.
struct Remote {
    /// The instance it runs on.
    origin: Uuid,
    answer_id: Uuid,
    text: String,
}

/// A chat's channel: its recent events, its live run, and the subscribers' broadcast.
struct Channel {
    /// The last event's sequence number (per chat, so a gap in a subscriber's ids means loss).
    seq: u64,
    log: Vec<ChatEvent>,
    live: Option<Live>,
    /// The chat's run on another instance, if one is heard of.
    remote: Option<Remote>,
    /// A send is being written; its run has not begun yet.
    starting: bool,
    /// Shared, not copied: a chat's channel holds a slot per event of its backlog whatever the
    /// event, so its slots are pointers, and idle chats cost little.
    sender: broadcast::Sender<Arc<ChatEvent>>,
    /// The last event, or the last subscriber's arrival.
    touched: Instant,
}

impl Channel {
    /// A channel whose first event is numbered after `seq` (above any number an earlier channel
    /// of the chat gave, so that an old id is never taken for a new one).
    fn new(seq: u64) -> Self {
        Self {
            seq,
            log: Vec::new(),
            live: None,
            remote: None,
            starting: false,
            sender: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            touched: Instant::now(),
        }
    }

    /// Numbers `kind`, keeps it for subscribers that reconnect and sends it to those listening.
    fn push(&mut self, epoch: u64, kind: EventKind) {
        self.seq += 1;
        self.touched = Instant::now();
        let event = ChatEvent {
            id: EventId {
                epoch,
                seq: self.seq,
            },
            kind,
        };
        if let (Some(live), EventKind::Token { text, .. }) = (&mut self.live, &event.kind) {
            live.text.push_str(text);
        }
        if matches!(
            event.kind,
            EventKind::RunFinished { .. } | EventKind::ApprovalNeeded { .. }
        ) {
            self.live = None;
        }
        if self.log.len() >= LOG_LIMIT {
            self.log.drain(..LOG_LIMIT / 2);
        }
        self.log.push(event.clone());
        // No subscribers is fine: the run goes on without them.
        let _ = self.sender.send(Arc::new(event));
    }

    /// The live answer and its text so far: this instance's run, or one heard of on `instances`.
    fn current(&self, instances: &Instances) -> Option<(Uuid, String)> {
        if let Some(live) = &self.live {
            return Some((live.answer_id, live.text.clone()));
        }
        self.remote
            .as_ref()
            .filter(|r| instances.is_alive(r.origin))
            .map(|r| (r.answer_id, r.text.clone()))
    }
}

/// A send on its way: what is stored before the answer begins.
struct Outgoing {
    user_id: Uuid,
    /// `<provider>/<model>`, as the answer records it.
    model: String,
    conversation: chats::Conversation,
    text: String,
    slot: Reservation,
}

/// A chat's run slot, taken while its send is written.
struct Reservation {
    runs: Runs,
    chat_id: Uuid,
    held: bool,
}

impl Reservation {
    /// The run has begun: its answer is live from now on.
    fn begin(mut self, live: Live) {
        let mut channels = self.runs.inner.channels.lock().expect("not poisoned");
        if let Some(channel) = channels.get_mut(&self.chat_id) {
            // A new run: the previous run's events are no longer needed for replay.
            channel.log.clear();
            channel.live = Some(live);
            channel.remote = None;
            channel.starting = false;
        }
        self.held = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            let mut channels = self.runs.inner.channels.lock().expect("not poisoned");
            if let Some(channel) = channels.get_mut(&self.chat_id) {
                channel.starting = false;
            }
        }
    }
}

/// What a subscriber gets: the events it missed, then live ones from `receiver`.
pub struct Subscription {
    pub missed: Vec<ChatEvent>,
    pub receiver: broadcast::Receiver<Arc<ChatEvent>>,
}

/// All runs of this server. Cheap to clone.
#[derive(Clone)]
pub struct Runs {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    llm: LlmClient,
    models: Arc<Catalog>,
    mcp: Mcp,
    epoch: u64,
    channels: Mutex<HashMap<Uuid, Channel>>,
    /// The highest sequence number of a forgotten channel (new channels number after it).
    forgotten_seq: std::sync::atomic::AtomicU64,
    /// The other instances on this database, and what this one tells them.
    instances: Instances,
    /// True once the server is shutting down: event streams end, runs are interrupted.
    closing: watch::Sender<bool>,
}

/// What [`Runs::start`] returns to the caller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub question: chats::Message,
    pub answer_id: Uuid,
    pub model: String,
}

impl Runs {
    pub fn new(db: Database, llm: LlmClient, models: Arc<Catalog>, mcp: Mcp) -> Self {
        // Milliseconds, and three random digits: instances started in the same millisecond differ.
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default()
            * 1_000
            + (Uuid::new_v4().as_u128() % 1_000) as u64;
        Self {
            inner: Arc::new(Inner {
                db,
                llm,
                models,
                mcp,
                epoch,
                channels: Mutex::new(HashMap::new()),
                forgotten_seq: Default::default(),
                instances: Instances::new(),
                closing: watch::channel(false).0,
            }),
        }
    }

    pub fn models(&self) -> &Catalog {
        &self.inner.models
    }

    /// Sends `text` in the user's chat (replacing everything from `from_position` when editing or
    /// regenerating) and starts the answer. None when the user has no such chat.
    ///
    /// Without tools, the model is asked while the question is being stored, so that the store's
    /// commit is not on the way to the first token; no token goes out before the question is
    /// stored, and if storing fails the model's answer is dropped unread. With tools, the answer is
    /// a run of the agent graph, checkpointed from its first step.
    pub async fn start(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        text: &str,
        from_position: Option<i32>,
    ) -> Result<Option<Started>> {
        // Before the model is asked: `chats::ask` would refuse it only after.
        chats::check_message(text)?;
        let db = &self.inner.db;
        let Some(conversation) = chats::conversation(db, user_id, chat_id, from_position).await?
        else {
            return Ok(None);
        };
        // Being written on another instance (this one's own runs hold the chat's slot): an edit
        // or a regeneration would replace the answer under its run, a send would interleave.
        if conversation.being_written {
            return Err(Error::Conflict(chats::BUSY.into()));
        }
        if from_position.is_none()
            && conversation.history.last().map(|m| m.status) == Some(Status::Waiting)
        {
            return Err(Error::Conflict(WAITING.into()));
        }
        // Only a person connected to a tool server can have tools here: the others' sends go
        // straight to the model.
        let (specs, person) = if conversation.tool_servers {
            let (tools, person) = tokio::join!(
                agent::live::chat_tools(db, &self.inner.mcp, user_id, chat_id),
                agent::policy::for_run(db, user_id),
            );
            (tools?.unwrap_or_default(), Some(person?))
        } else {
            (Vec::new(), None)
        };
        let (provider, model) = self
            .inner
            .models
            .for_chat(conversation.chat.model.as_deref())?;
        let provider = provider.clone();
        // With tools, the answer is an agent's run; without, one model call.
        let agent = match (specs.is_empty(), person) {
            (false, Some(person)) => Some((specs, person)),
            _ => None,
        };
        // Earlier answers' tool calls go to a model that is offered tools: some providers refuse
        // them in a request without any.
        let mut messages = llm_history(&conversation.history, agent.is_some());
        messages.push(llm::Message::User {
            content: text.to_owned(),
        });
        let send = Outgoing {
            user_id,
            model: llm::qualified(&provider.id, model),
            conversation,
            text: text.to_owned(),
            // Takes the chat's run slot before anything is written: two sends cannot both start.
            slot: self.reserve(chat_id)?,
        };
        let (stored, started) = oneshot::channel();
        let runs = self.clone();
        if let Some((specs, (policies, settings))) = agent {
            let plan = Plan {
                provider,
                model: model.to_owned(),
                specs,
                policies,
            };
            let state = RunState::new(messages, settings.max_steps.max(1) as u32);
            tokio::spawn(async move { runs.agent(send, plan, state, stored).await });
        } else {
            let request = llm::Request {
                model: model.to_owned(),
                messages,
                tools: vec![],
            };
            tokio::spawn(async move { runs.run(send, provider, request, stored).await });
        }
        started
            .await
            .unwrap_or_else(|_| Err(Error::Unavailable("The answer could not be started.".into())))
    }

    /// Records the person's decisions on the tool calls of `turn` that their chat's answer
    /// `answer_id` waits for, all or none (see [`store::decide_waiting`]); with the last one, the
    /// run resumes here. Decisions for an answer or a turn that no longer waits (a second click,
    /// a stale tab) are refused, and nothing runs. An edit of a call's arguments is checked
    /// against the tool's input schema first; "always allow" adds the policy as well, bound to
    /// the server the call was asked of. None when the user has no such chat.
    pub async fn decide(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        answer_id: Uuid,
        turn: u32,
        choices: Vec<Choice>,
    ) -> Result<Option<RunState>> {
        let db = &self.inner.db;
        let edits = choices.iter().any(|c| c.arguments.is_some());
        let specs = if edits {
            agent::live::chat_tools(db, &self.inner.mcp, user_id, chat_id)
                .await?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut pending = store::pending(db, user_id, chat_id).await?;
        let (waiting, Judged { decisions, always }) = loop {
            let waiting = match pending {
                store::Pending::NoChat => return Ok(None),
                store::Pending::Nothing => return Err(Error::Invalid(agent::OUT_OF_DATE.into())),
                store::Pending::Waiting(waiting) => waiting,
            };
            let current =
                waiting.answer_id == answer_id && waiting.latest.state.turn() == Some(turn);
            let judged = if current {
                judge(&waiting.latest.state, &specs, choices.clone())
            } else {
                Err(Error::Invalid(agent::OUT_OF_DATE.into()))
            };
            match judged {
                Ok(judged) => break (waiting, judged),
                // A pause remembered from before may be out of date: judged again as it is now.
                Err(_) if waiting.remembered => {
                    pending = store::read_pending(db, user_id, chat_id).await?;
                }
                Err(e) => return Err(e),
            }
        };
        let decided = store::decide_waiting(db, user_id, chat_id, waiting, turn, decisions);
        let Some(decided) = decided.await? else {
            return Ok(None);
        };
        for (server, tool, key) in always {
            let tool = tool.as_deref();
            if key.is_empty() {
                // A call asked for before calls kept their server's key.
                agent::policy::allow_current(db, &self.inner.mcp, user_id, &server, tool).await?;
            } else {
                agent::policy::allow(db, user_id, &server, tool, &key).await?;
            }
        }
        for event in call_events(answer_id, &decided.before, &decided.thread.state) {
            self.emit(chat_id, event);
        }
        let state = decided.thread.state.clone();
        if decided.complete {
            self.resume(user_id, chat_id, answer_id, decided.thread)
                .await?;
        }
        Ok(Some(state))
    }

    /// Goes on with a run whose every call is decided, from its checkpoint.
    async fn resume(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        answer_id: Uuid,
        latest: store::Latest,
    ) -> Result<()> {
        let db = &self.inner.db;
        let (tools, person, chat) = tokio::join!(
            agent::live::chat_tools(db, &self.inner.mcp, user_id, chat_id),
            agent::policy::for_run(db, user_id),
            chats::get(db, user_id, chat_id),
        );
        let Some(chat) = chat? else {
            // Deleted since the decision: nothing to answer in.
            return Ok(());
        };
        let specs = tools?.unwrap_or_default();
        let (policies, _) = person?;
        let (provider, model) = self.inner.models.for_chat(chat.model.as_deref())?;
        let plan = Plan {
            provider: provider.clone(),
            model: model.to_owned(),
            specs,
            policies,
        };
        let slot = self.reserve(chat_id)?;
        let (stop, stopped) = watch::channel(None);
        let text = latest.state.answer_text();
        slot.begin(Live {
            answer_id,
            text: text.clone(),
            stop,
        });
        // The page's live copy starts from the answer so far.
        self.emit(chat.id, EventKind::Snapshot { answer_id, text });
        let answer = store::Answer {
            user_id,
            chat_id: chat.id,
            message_id: answer_id,
        };
        let thread = store::Thread::for_answer(
            db.clone(),
            chat.thread_id,
            latest.seq,
            answer,
            Some(latest.state.clone()),
        );
        let runs = self.clone();
        tokio::spawn(async move {
            runs.drive(answer, plan, latest.state, thread, stopped)
                .await
        });
        Ok(())
    }

    /// Stops the chat's run, if one is live. Returns whether one was.
    pub fn stop(&self, chat_id: Uuid) -> bool {
        let channels = self.inner.channels.lock().expect("not poisoned");
        match channels.get(&chat_id).and_then(|c| c.live.as_ref()) {
            Some(live) => live.stop.send(Some(Status::Stopped)).is_ok(),
            None => false,
        }
    }

    /// Stops the user's chat's answer: the live one, or one waiting for approval (its calls are
    /// then not run). Returns whether there was one; None when the user has no such chat.
    pub async fn stop_chat(&self, user_id: Uuid, chat_id: Uuid) -> Result<Option<bool>> {
        let db = &self.inner.db;
        let pending = store::read_pending(db, user_id, chat_id).await?;
        if pending == store::Pending::NoChat {
            return Ok(None);
        }
        if self.stop(chat_id) {
            return Ok(Some(true));
        }
        let store::Pending::Waiting(waiting) = pending else {
            return Ok(Some(self.stop_elsewhere(user_id, chat_id).await?));
        };
        let (latest, answer_id) = (waiting.latest, waiting.answer_id);
        let mut state = latest.state.clone();
        state.stop();
        let answer = store::Answer {
            user_id,
            chat_id,
            message_id: answer_id,
        };
        let mut thread = store::Thread::for_answer(
            db.clone(),
            waiting.thread_id,
            latest.seq,
            answer,
            Some(latest.state),
        );
        // A decision that landed first wins; this stop then finds its checkpoint taken.
        match thread.save(&state).await {
            Ok(()) => {}
            Err(Error::Query(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                return Ok(Some(false));
            }
            Err(e) => return Err(e),
        }
        self.finished(chat_id, answer_id, Status::Stopped, None);
        Ok(Some(true))
    }

    /// Asks the other instances to stop the chat's run, and waits (up to
    /// [`STOP_ELSEWHERE_WITHIN`]) to hear that it ended. Whether it did.
    async fn stop_elsewhere(&self, user_id: Uuid, chat_id: Uuid) -> Result<bool> {
        if self.inner.instances.others() == 0
            || !chats::being_written(&self.inner.db, user_id, chat_id).await?
        {
            return Ok(false);
        }
        let mut events = {
            let mut channels = self.inner.channels.lock().expect("not poisoned");
            let channel = channels.entry(chat_id).or_insert_with(|| self.channel());
            channel.touched = Instant::now();
            channel.sender.subscribe()
        };
        self.inner.instances.tell(Note::Stop { chat_id });
        let ended = async {
            loop {
                match events.recv().await {
                    Ok(event) if matches!(event.kind, EventKind::RunFinished { .. }) => {
                        return true;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        Ok(tokio::time::timeout(STOP_ELSEWHERE_WITHIN, ended)
            .await
            .unwrap_or(false))
    }

    /// Shutting down: every live run ends as interrupted, keeping its text, and every event
    /// stream ends. Waits (up to 5 s) for the runs to write their end, then (up to 1 s more) for
    /// the other instances to be told.
    pub async fn shutdown(&self) {
        self.end_runs().await;
        let instances = &self.inner.instances;
        if instances.is_listening() {
            instances.tell(Note::Bye);
        }
        instances.flushed(Duration::from_secs(1)).await;
    }

    async fn end_runs(&self) {
        self.inner.closing.send_replace(true);
        {
            let channels = self.inner.channels.lock().expect("not poisoned");
            for live in channels.values().filter_map(|c| c.live.as_ref()) {
                let _ = live.stop.send(Some(Status::Interrupted));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let any_live = {
                let channels = self.inner.channels.lock().expect("not poisoned");
                channels.values().any(|c| c.live.is_some())
            };
            if !any_live {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resolves when the server starts shutting down (event streams end then).
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.inner.closing.subscribe();
        async move {
            let _ = closing.wait_for(|c| *c).await;
        }
    }

    /// Where a page that has just read the chat stands: the id of the chat's last event (to
    /// subscribe from, so that nothing after it is missed) and the live answer's text so far, both
    /// taken at the same instant.
    pub fn position(&self, chat_id: Uuid) -> (Option<EventId>, Option<(Uuid, String)>) {
        let channels = self.inner.channels.lock().expect("not poisoned");
        match channels.get(&chat_id) {
            Some(channel) => (
                Some(EventId {
                    epoch: self.inner.epoch,
                    seq: channel.seq,
                }),
                channel.current(&self.inner.instances),
            ),
            None => (None, None),
        }
    }

    /// A new channel for a chat this instance has not seen lately.
    fn channel(&self) -> Channel {
        Channel::new(self.inner.forgotten_seq.load(Ordering::Acquire))
    }

    /// Takes the chat's run slot, or says the chat is busy. The slot is given back when the
    /// reservation is dropped without [`Reservation::begin`] (the send failed). (An answer being
    /// written on another instance is told by its row, see [`Runs::start`].)
    fn reserve(&self, chat_id: Uuid) -> Result<Reservation> {
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        let channel = channels.entry(chat_id).or_insert_with(|| self.channel());
        if channel.live.is_some() || channel.starting {
            return Err(Error::Conflict(chats::BUSY.into()));
        }
        channel.starting = true;
        Ok(Reservation {
            runs: self.clone(),
            chat_id,
            held: true,
        })
    }

    /// Subscribes to a chat's events (the caller has checked the chat is the user's). With the id
    /// of the last event the subscriber saw, it gets exactly the events after it; with one this
    /// instance cannot replay from, `resync`; and then, without an id or with an unknown one, a
    /// snapshot of the live answer, if any (asked of the other instances when the run is not
    /// here: it follows when they answer).
    pub fn subscribe(&self, chat_id: Uuid, last_seen: Option<EventId>) -> Subscription {
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        let channel = channels.entry(chat_id).or_insert_with(|| self.channel());
        channel.touched = Instant::now();
        let receiver = channel.sender.subscribe();
        let known = last_seen.filter(|id| {
            id.epoch == self.inner.epoch
                && (id.seq == channel.seq
                    || channel
                        .log
                        .first()
                        .is_some_and(|first| first.id.seq <= id.seq + 1))
        });
        if let Some(id) = known {
            let missed = channel.log.iter().filter(|e| e.id > id).cloned().collect();
            return Subscription { missed, receiver };
        }
        let id = EventId {
            epoch: self.inner.epoch,
            seq: channel.seq,
        };
        let mut missed = Vec::new();
        if last_seen.is_some() {
            missed.push(ChatEvent {
                id,
                kind: EventKind::Resync,
            });
        }
        match channel.current(&self.inner.instances) {
            Some((answer_id, text)) => missed.push(ChatEvent {
                id,
                kind: EventKind::Snapshot { answer_id, text },
            }),
            None => self.inner.instances.share(Note::WantSnapshot { chat_id }),
        }
        Subscription { missed, receiver }
    }

    /// Sends an event of a run on this instance to the chat's subscribers, here and on the other
    /// instances, and keeps it for those that reconnect.
    fn emit(&self, chat_id: Uuid, kind: EventKind) {
        {
            let mut channels = self.inner.channels.lock().expect("not poisoned");
            // A chat this instance has not seen yet (a decision landing here) gets its channel now.
            let channel = channels.entry(chat_id).or_insert_with(|| self.channel());
            channel.push(self.inner.epoch, kind.clone());
        }
        self.inner.instances.share(Note::Event {
            chat_id,
            event: Box::new(kind),
        });
    }

    /// An event of a run on another instance (`origin`), for this instance's subscribers to the
    /// chat, if it has any.
    fn relay(&self, origin: Uuid, chat_id: Uuid, kind: EventKind) {
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        let Some(channel) = channels.get_mut(&chat_id) else {
            return;
        };
        match &kind {
            EventKind::RunStarted { answer_id, .. } => {
                // A new run: the previous run's events are no longer needed for replay.
                channel.log.clear();
                channel.remote = Some(Remote {
                    origin,
                    answer_id: *answer_id,
                    text: String::new(),
                });
            }
            EventKind::Snapshot { answer_id, text } => {
                channel.remote = Some(Remote {
                    origin,
                    answer_id: *answer_id,
                    text: text.clone(),
                });
            }
            EventKind::Token { answer_id, text } => match &mut channel.remote {
                Some(remote) if remote.answer_id == *answer_id => remote.text.push_str(text),
                // Heard of from the middle: the text so far is on its way (a snapshot).
                _ => {
                    channel.remote = Some(Remote {
                        origin,
                        answer_id: *answer_id,
                        text: text.clone(),
                    })
                }
            },
            EventKind::ApprovalNeeded { .. } | EventKind::RunFinished { .. } => {
                channel.remote = None;
            }
            _ => {}
        }
        channel.push(self.inner.epoch, kind);
    }

    /// What another instance said.
    fn heard(&self, from: Uuid, note: Note) {
        let instances = &self.inner.instances;
        if from == instances.id {
            return;
        }
        let new = instances.heard(from);
        match note {
            Note::Hello => instances.tell(Note::Alive),
            // One that started before this one listened: it may have missed this one's hello.
            Note::Alive if new => instances.tell(Note::Alive),
            Note::Alive => {}
            Note::Bye => instances.forget(from),
            Note::Event { chat_id, event } => self.relay(from, chat_id, *event),
            Note::Stop { chat_id } => {
                self.stop(chat_id);
            }
            Note::WantSnapshot { chat_id } => {
                let live = {
                    let channels = self.inner.channels.lock().expect("not poisoned");
                    channels
                        .get(&chat_id)
                        .and_then(|c| c.live.as_ref())
                        .map(|l| (l.answer_id, l.text.clone()))
                };
                if let Some((answer_id, text)) = live {
                    self.emit(chat_id, EventKind::Snapshot { answer_id, text });
                }
            }
        }
    }

    /// How many other instances on this database this one hears of (0 while it is not
    /// listening; see [`Runs::share_with_other_instances`]).
    pub fn other_instances(&self) -> usize {
        self.inner.instances.others()
    }

    /// Until the database's pool closes: tells the other instances on this database what runs here
    /// emit, and hears what theirs do (see the `instances` module); also forgets the channels of
    /// chats idle for [`FORGET_AFTER`]. Spawn it once per instance.
    pub async fn share_with_other_instances(self) {
        let closed = self.inner.db.pool().close_event();
        let mut closed = std::pin::pin!(closed);
        let _ = closed
            .as_mut()
            .do_until(async { tokio::join!(self.send_notes(), self.hear_notes()) })
            .await;
        self.inner.instances.set_listening(false);
    }

    /// Sends the outbox, a batch at a time, in order; says this instance is alive and forgets
    /// idle channels every [`instances::ALIVE_EVERY`].
    async fn send_notes(&self) {
        let instances = &self.inner.instances;
        let Some(mut outbox) = instances.take_outbox() else {
            return;
        };
        let mut tick = tokio::time::interval(instances::ALIVE_EVERY);
        let mut n = 0u64;
        let mut notes = Vec::with_capacity(instances::BATCH);
        loop {
            tokio::select! {
                count = outbox.recv_many(&mut notes, instances::BATCH) => {
                    if count == 0 {
                        return;
                    }
                }
                _ = tick.tick() => {
                    self.forget_idle_channels();
                    if instances.is_listening() {
                        instances.tell(Note::Alive);
                    }
                    continue;
                }
            }
            let payloads: Vec<String> = notes
                .iter()
                .flat_map(|note| {
                    n += 1;
                    instances::payloads(instances.id, n, note)
                })
                .collect();
            let sent = sqlx::query_scalar!(
                "SELECT count(pg_notify($1, payload)) FROM unnest($2::text[]) AS payload",
                CHANNEL,
                &payloads
            )
            .fetch_one(self.inner.db.pool())
            .await;
            if let Err(e) = sent {
                tracing::warn!(
                    "could not tell the other instances of {} events: {e}",
                    notes.len()
                );
            }
            instances.sent(notes.len());
            notes.clear();
        }
    }

    /// Listens for the other instances' notes, listening again (after a pause) when the
    /// connection is lost.
    async fn hear_notes(&self) {
        let instances = &self.inner.instances;
        let mut wait = Duration::from_millis(500);
        loop {
            let Err(e) = self.listen().await;
            if matches!(e, sqlx::Error::PoolClosed) {
                return;
            }
            if instances.is_listening() {
                // It was heard from before it failed: the database answers, so try again soon.
                wait = Duration::from_millis(500);
            }
            instances.set_listening(false);
            tracing::warn!(
                "not hearing of the other instances' runs (pages here will not follow them live): {e}"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    async fn listen(&self) -> std::result::Result<std::convert::Infallible, sqlx::Error> {
        let mut listener = PgListener::connect_with(self.inner.db.pool()).await?;
        listener.listen(CHANNEL).await?;
        self.listening_again();
        let mut assembler = Assembler::default();
        loop {
            match listener.try_recv().await? {
                Some(notification) => {
                    if let Some((from, note)) = assembler.take(notification.payload()) {
                        self.heard(from, note);
                    }
                }
                // Listening again on a new connection: what was said meanwhile is lost.
                None => self.listening_again(),
            }
        }
    }

    /// Listening (again): says hello, and forgets the runs heard of on other instances, whose end
    /// may have been said while this one was not listening.
    fn listening_again(&self) {
        let instances = &self.inner.instances;
        instances.set_listening(true);
        instances.tell(Note::Hello);
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        for channel in channels.values_mut() {
            channel.remote = None;
        }
    }

    /// Forgets the channels of chats with no run, no subscriber and no event for
    /// [`FORGET_AFTER`].
    fn forget_idle_channels(&self) {
        let instances = &self.inner.instances;
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        let mut highest = self.inner.forgotten_seq.load(Ordering::Acquire);
        channels.retain(|_, c| {
            let keep = c.live.is_some()
                || c.starting
                || c.remote
                    .as_ref()
                    .is_some_and(|r| instances.is_alive(r.origin))
                || c.sender.receiver_count() > 0
                || c.touched.elapsed() < FORGET_AFTER;
            if !keep {
                highest = highest.max(c.seq);
            }
            keep
        });
        self.inner.forgotten_seq.store(highest, Ordering::Release);
    }

    /// Stores the question while the model is asked, tells the sender (`stored`), then streams
    /// the answer into the chat's events until it ends.
    async fn run(
        &self,
        send: Outgoing,
        provider: llm::Provider,
        request: llm::Request,
        stored: oneshot::Sender<Result<Option<Started>>>,
    ) {
        let db = &self.inner.db;
        let chat_id = send.conversation.chat.id;
        let mut asking = std::pin::pin!(chats::ask(
            db,
            send.user_id,
            &send.conversation,
            &send.text,
            &send.model
        ));
        let mut opening = std::pin::pin!(self.inner.llm.stream(&provider, &request));
        let mut opened = None;
        let asked = loop {
            tokio::select! {
                asked = &mut asking => break asked,
                result = &mut opening, if opened.is_none() => opened = Some(result),
            }
        };
        let (answer_id, mut stopped) = match asked {
            Ok(Some(asked)) => {
                let (stop, stopped) = watch::channel(None);
                send.slot.begin(Live {
                    answer_id: asked.answer.id,
                    text: String::new(),
                    stop,
                });
                let started = Started {
                    question: asked.question.clone(),
                    answer_id: asked.answer.id,
                    model: send.model.clone(),
                };
                self.emit(
                    chat_id,
                    EventKind::RunStarted {
                        question: asked.question,
                        answer_id: asked.answer.id,
                        model: send.model.clone(),
                    },
                );
                let _ = stored.send(Ok(Some(started)));
                (asked.answer.id, stopped)
            }
            // Nothing was stored: the slot is given back and the model's answer dropped unread.
            failed => {
                let _ = stored.send(failed.map(|_| None));
                return;
            }
        };

        let mut text = String::new();
        let outcome: (Status, Option<String>) = 'run: {
            let opened = match opened {
                Some(opened) => opened,
                None => tokio::select! {
                    opened = &mut opening => opened,
                    how = stopped.wait_for(Option::is_some) => break 'run (ended(how.ok().and_then(|s| *s)), None),
                },
            };
            let mut stream = match opened {
                Ok(stream) => stream,
                Err(error) => break 'run (Status::Failed, Some(error.to_string())),
            };
            let mut sink = LiveAnswer::new(self, chat_id, answer_id);
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    how = stopped.wait_for(Option::is_some) => break 'run (ended(how.ok().and_then(|s| *s)), None),
                };
                match item {
                    Some(Ok(StreamEvent::Token(token))) => {
                        text.push_str(&token);
                        sink.token(&token).await;
                    }
                    Some(Ok(StreamEvent::Finished { .. })) | None => {
                        break 'run (Status::Complete, None);
                    }
                    Some(Err(error)) => break 'run (Status::Failed, Some(error.to_string())),
                }
            }
        };
        let (status, error) = outcome;
        self.end(chat_id, answer_id, &text, status, error).await;
    }

    /// Saves the end of an answer and tells the chat.
    async fn end(
        &self,
        chat_id: Uuid,
        answer_id: Uuid,
        text: &str,
        status: Status,
        error: Option<String>,
    ) {
        let saved = chats::finish(&self.inner.db, answer_id, text, status, error.as_deref());
        if let Err(e) = saved.await {
            tracing::error!(%chat_id, "could not save the end of an answer: {e}");
        }
        self.finished(chat_id, answer_id, status, error);
    }

    /// Tells the chat its answer has ended (and its live run with it).
    fn finished(&self, chat_id: Uuid, answer_id: Uuid, status: Status, error: Option<String>) {
        self.emit(
            chat_id,
            EventKind::RunFinished {
                answer_id,
                status,
                error,
            },
        );
    }
}

/// Why a chat cannot take a new message while its answer waits for approval.
pub const WAITING: &str = "This chat's answer is waiting for your decision on its tool calls: approve or reject them first, or press Stop.";
/// The conversation so far, as the model is given it. `with_calls`: an earlier answer's tool
/// calls come before its text, each with what the tool returned (or why it did not run), so that
/// the model knows what its tools said in earlier answers; without, answers are their text.
fn llm_history(history: &[chats::Message], with_calls: bool) -> Vec<llm::Message> {
    let mut messages = Vec::with_capacity(history.len());
    for m in history {
        match m.role {
            Role::User => messages.push(llm::Message::User {
                content: m.content.clone(),
            }),
            Role::Assistant => {
                if with_calls && !m.tool_calls.is_empty() {
                    let (asked, answers): (Vec<_>, Vec<_>) =
                        m.tool_calls.iter().map(Call::in_history).unzip();
                    messages.push(llm::Message::Assistant {
                        content: None,
                        tool_calls: asked,
                    });
                    messages.extend(answers);
                }
                if !m.content.is_empty() {
                    messages.push(llm::Message::Assistant {
                        content: Some(m.content.clone()),
                        tool_calls: vec![],
                    });
                }
            }
        }
    }
    messages
}

/// One decision as the person gives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub call_id: String,
    pub approve: bool,
    /// Why not (a rejection).
    pub reason: Option<String>,
    /// The arguments to run it with instead of the model's (an approval).
    pub arguments: Option<serde_json::Value>,
    /// Also allow this tool, or this server, from now on (an approval).
    pub always: Option<Always>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Always {
    Tool,
    Server,
}

/// The person's choices, judged.
struct Judged {
    /// The decisions, by call id.
    decisions: Vec<(String, Decision)>,
    /// The "always allow" policies asked for: a server, one of its tools or all of them, and the
    /// key of the server's definition the call was asked of.
    always: Vec<(String, Option<String>, String)>,
}

/// The person's choices as decisions on the calls `state` waits for (an edit checked against the
/// tool's input schema in `specs`), and the "always allow" policies they ask for.
fn judge(state: &RunState, specs: &[ToolSpec], choices: Vec<Choice>) -> Result<Judged> {
    let mut decisions = Vec::with_capacity(choices.len());
    let mut always = Vec::new();
    for choice in choices {
        let call = state
            .calls
            .iter()
            .find(|c| c.id == choice.call_id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "There is no tool call '{}' waiting for a decision.",
                    choice.call_id
                ))
            })?;
        let decision = if choice.approve {
            if let Some(arguments) = &choice.arguments {
                check_arguments(specs, call, arguments)?;
            }
            let tool = match choice.always {
                Some(Always::Tool) => Some(Some(call.tool.clone())),
                Some(Always::Server) => Some(None),
                None => None,
            };
            if let Some(tool) = tool {
                always.push((call.server.clone(), tool, call.server_key.clone()));
            }
            Decision::Approve {
                by: Decider::Person,
                arguments: choice.arguments,
            }
        } else {
            Decision::Reject {
                by: Decider::Person,
                reason: choice
                    .reason
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty()),
            }
        };
        decisions.push((choice.call_id, decision));
    }
    Ok(Judged { decisions, always })
}

/// Edited arguments must be an object that the tool's input schema accepts.
fn check_arguments(specs: &[ToolSpec], call: &Call, arguments: &serde_json::Value) -> Result<()> {
    if !arguments.is_object() {
        return Err(Error::Invalid(
            "The edited arguments must be a JSON object.".into(),
        ));
    }
    let spec = specs
        .iter()
        .find(|s| s.server == call.server && s.tool == call.tool)
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "The tool '{}' of '{}' is not available now, so its arguments cannot be checked: connect its server again, or approve the arguments as they are.",
                call.tool, call.server
            ))
        })?;
    let validator = jsonschema::validator_for(&spec.input_schema).map_err(|e| {
        Error::Invalid(format!(
            "The tool '{}' has an input schema Switchboard cannot read ({e}).",
            call.tool
        ))
    })?;
    let problems: Vec<String> = validator
        .iter_errors(arguments)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "The edited arguments do not fit the tool '{}': {}.",
            call.tool,
            problems.join("; ")
        )))
    }
}

/// What an agent run works with.
struct Plan {
    provider: llm::Provider,
    model: String,
    specs: Vec<ToolSpec>,
    policies: Policies,
}

/// A call as the chat's events show it: without its server's key, which a person could hold
/// against guesses of how a servers-file server is defined.
fn shown(call: &Call) -> Call {
    Call {
        server_key: String::new(),
        ..call.clone()
    }
}

/// The events that a run's state moving from `before` to `after` makes.
fn call_events(answer_id: Uuid, before: &RunState, after: &RunState) -> Vec<EventKind> {
    let was: Vec<&Call> = before.all_calls().collect();
    let mut events = Vec::new();
    for (i, call) in after.all_calls().enumerate() {
        let prev = was.get(i).copied().filter(|p| p.id == call.id);
        if prev.is_none() {
            events.push(EventKind::ToolCall {
                answer_id,
                call: shown(call),
            });
        }
        if let Some(decision) = &call.decision
            && prev.is_none_or(|p| p.decision.is_none())
        {
            events.push(EventKind::Decision {
                answer_id,
                call_id: call.id.clone(),
                decision: decision.clone(),
            });
        }
        let ended =
            |c: &Call| matches!(c.state, CallState::Finished { .. } | CallState::Interrupted);
        if ended(call) && !prev.is_some_and(ended) {
            events.push(EventKind::ToolResult {
                answer_id,
                call: shown(call),
            });
        }
    }
    // A turn whose every call a policy allowed goes on at once: nothing waits.
    let undecided: Vec<String> = after.undecided().map(|c| c.id.clone()).collect();
    if let Some(turn) = after.turn()
        && before.next != Step::AwaitApproval
        && !undecided.is_empty()
    {
        events.push(EventKind::ApprovalNeeded {
            answer_id,
            turn,
            call_ids: undecided,
        });
    }
    events
}

/// A run's checkpoints, which also tell the chat's subscribers what each step did.
struct Recorder<'a> {
    runs: &'a Runs,
    chat_id: Uuid,
    answer_id: Uuid,
    thread: store::Thread,
    last: RunState,
}

impl Checkpoints for Recorder<'_> {
    async fn save(&mut self, state: &RunState) -> Result<()> {
        self.thread.save(state).await?;
        for event in call_events(self.answer_id, &self.last, state) {
            self.runs.emit(self.chat_id, event);
        }
        self.last = state.clone();
        Ok(())
    }
}

/// The model of an agent run: the streaming client, its tokens sent to the chat as they come.
struct StreamingModel<'a> {
    runs: &'a Runs,
    chat_id: Uuid,
    answer_id: Uuid,
    llm: agent::live::LlmModel<'a>,
    /// The text of the completion under way (emptied when it returns): what a Stop keeps.
    writing: Mutex<String>,
}

impl agent::Model for StreamingModel<'_> {
    async fn complete(
        &self,
        messages: &[llm::Message],
        tools: &[llm::Tool],
    ) -> std::result::Result<Completion, String> {
        self.writing.lock().expect("not poisoned").clear();
        let mut sink =
            LiveAnswer::new(self.runs, self.chat_id, self.answer_id).keeping(&self.writing);
        let completion = self.llm.complete_into(messages, tools, &mut sink).await;
        self.writing.lock().expect("not poisoned").clear();
        completion
    }

    fn cut_off_text(&self) -> String {
        self.writing.lock().expect("not poisoned").clone()
    }
}

/// One model turn's text on its way to the chat (a plain answer, or a turn of an agent run): an
/// event per token, and the answer so far saved every [`FLUSH_EVERY`].
struct LiveAnswer<'a> {
    runs: &'a Runs,
    chat_id: Uuid,
    answer_id: Uuid,
    /// No text of this turn has come yet.
    first: bool,
    flushed: Instant,
    /// Also keeps the turn's text here (an agent run's model, for a Stop mid-turn).
    keep: Option<&'a Mutex<String>>,
}

impl<'a> LiveAnswer<'a> {
    fn new(runs: &'a Runs, chat_id: Uuid, answer_id: Uuid) -> Self {
        Self {
            runs,
            chat_id,
            answer_id,
            first: true,
            flushed: Instant::now(),
            keep: None,
        }
    }

    /// The turn's text is also kept in `text`, as it comes.
    fn keeping(mut self, text: &'a Mutex<String>) -> Self {
        self.keep = Some(text);
        self
    }
}

impl TokenSink for LiveAnswer<'_> {
    async fn token(&mut self, text: &str) {
        if let Some(keep) = self.keep {
            keep.lock().expect("not poisoned").push_str(text);
        }
        let (runs, chat_id, answer_id) = (self.runs, self.chat_id, self.answer_id);
        // A later turn's text follows the earlier turns' after a blank line, as the stored answer
        // joins them.
        let text = if std::mem::take(&mut self.first) && !live_text(runs, chat_id).is_empty() {
            format!("\n\n{text}")
        } else {
            text.to_owned()
        };
        runs.emit(chat_id, EventKind::Token { answer_id, text });
        if self.flushed.elapsed() >= FLUSH_EVERY {
            let text = live_text(runs, chat_id);
            if let Err(e) = chats::flush(&runs.inner.db, answer_id, &text).await {
                tracing::warn!(%chat_id, "could not save a streaming answer: {e}");
            }
            self.flushed = Instant::now();
        }
    }
}

/// The text of the chat's live answer so far.
fn live_text(runs: &Runs, chat_id: Uuid) -> String {
    let channels = runs.inner.channels.lock().expect("not poisoned");
    channels
        .get(&chat_id)
        .and_then(|c| c.live.as_ref())
        .map(|l| l.text.clone())
        .unwrap_or_default()
}

impl Runs {
    /// Stores the question, then runs the agent graph for its answer.
    async fn agent(
        &self,
        send: Outgoing,
        plan: Plan,
        state: RunState,
        stored: oneshot::Sender<Result<Option<Started>>>,
    ) {
        let db = &self.inner.db;
        let chat = send.conversation.chat.clone();
        let asked = async {
            let asked = chats::ask(
                db,
                send.user_id,
                &send.conversation,
                &send.text,
                &send.model,
            )
            .await?;
            let seq = store::last_seq(db, send.user_id, chat.thread_id).await?;
            Ok::<_, Error>(asked.map(|a| (a, seq)))
        };
        let (asked, seq) = match asked.await {
            Ok(Some(asked)) => asked,
            failed => {
                let _ = stored.send(failed.map(|_| None));
                return;
            }
        };
        let answer_id = asked.answer.id;
        let (stop, stopped) = watch::channel(None);
        send.slot.begin(Live {
            answer_id,
            text: String::new(),
            stop,
        });
        self.emit(
            chat.id,
            EventKind::RunStarted {
                question: asked.question.clone(),
                answer_id,
                model: send.model.clone(),
            },
        );
        let _ = stored.send(Ok(Some(Started {
            question: asked.question,
            answer_id,
            model: send.model,
        })));
        let answer = store::Answer {
            user_id: send.user_id,
            chat_id: chat.id,
            message_id: answer_id,
        };
        let thread = store::Thread::for_answer(db.clone(), chat.thread_id, seq, answer, None);
        self.drive(answer, plan, state, thread, stopped).await;
    }

    /// Runs the graph from `state` until it pauses for approval or ends, then tells the chat.
    async fn drive(
        &self,
        answer: store::Answer,
        plan: Plan,
        state: RunState,
        thread: store::Thread,
        mut stopped: watch::Receiver<Option<Status>>,
    ) {
        let (chat_id, answer_id) = (answer.chat_id, answer.message_id);
        let model = StreamingModel {
            runs: self,
            chat_id,
            answer_id,
            llm: agent::live::LlmModel {
                client: &self.inner.llm,
                provider: &plan.provider,
                model: &plan.model,
            },
            writing: Mutex::default(),
        };
        let tools = agent::live::McpTools {
            db: &self.inner.db,
            mcp: &self.inner.mcp,
            user_id: answer.user_id,
        };
        let deps = agent::Deps {
            model: &model,
            tools: &tools,
            specs: &plan.specs,
            policies: &plan.policies,
        };
        let mut recorder = Recorder {
            runs: self,
            chat_id,
            answer_id,
            thread,
            last: state.clone(),
        };
        let (stop_graph, mut stop_rx) = watch::channel(false);
        let forward = async {
            if stopped.wait_for(Option::is_some).await.is_ok() {
                let _ = stop_graph.send(true);
            }
            std::future::pending::<()>().await;
        };
        // A tool may run for longer than an answer may go unsaved: the answer is shown alive.
        let heartbeat = async {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = chats::touch(&self.inner.db, answer_id).await {
                    tracing::warn!(%chat_id, "could not mark an answer alive: {e}");
                }
            }
        };
        let ran = tokio::select! {
            ran = agent::run(state, &deps, &mut stop_rx, &mut recorder) => ran,
            () = forward => unreachable!("forwarding a stop never ends"),
            () = heartbeat => unreachable!("a heartbeat never ends"),
        };
        match ran {
            Ok(state) if state.next == Step::AwaitApproval => {
                // The pause's checkpoint told the chat (approval_needed) and ended the live run.
            }
            Ok(state) => {
                // The last checkpoint saved the answer's end.
                let (status, error) = store::answer_status(&state);
                self.finished(chat_id, answer_id, status, error);
            }
            Err(e) => {
                tracing::error!(%chat_id, "an agent run could not save its checkpoint: {e}");
                let text = recorder.last.answer_text();
                let error = "Switchboard could not save this answer's progress (its database is unreachable). Try again in a moment.";
                self.end(
                    chat_id,
                    answer_id,
                    &text,
                    Status::Failed,
                    Some(error.into()),
                )
                .await;
            }
        }
    }
}

/// How a run that was told to end ends.
fn ended(how: Option<Status>) -> Status {
    how.unwrap_or(Status::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_order() {
        let id = EventId {
            epoch: 1_700_000_000_000,
            seq: 42,
        };
        assert_eq!(id.to_string(), "1700000000000-42");
        assert_eq!("1700000000000-42".parse::<EventId>(), Ok(id));
        assert!("42".parse::<EventId>().is_err());
        assert!(EventId { epoch: 1, seq: 9 } < EventId { epoch: 1, seq: 10 });
    }

    fn message(role: Role, content: &str, tool_calls: Vec<Call>) -> chats::Message {
        chats::Message {
            id: Uuid::new_v4(),
            position: 0,
            role,
            content: content.into(),
            status: Status::Complete,
            error: None,
            model: None,
            tool_calls,
            created_at: chrono::Utc::now(),
        }
    }

    fn call(id: &str, tool: &str, decision: Option<Decision>, state: CallState) -> Call {
        Call {
            id: id.into(),
            turn: 1,
            server: "everything".into(),
            server_key: "k".into(),
            tool: tool.into(),
            arguments: serde_json::json!({"message": "hi"}),
            annotations: Default::default(),
            decision,
            state,
        }
    }

    #[test]
    fn an_earlier_answers_tool_calls_and_results_are_given_back_to_the_model() {
        let ran = call(
            "c1",
            "echo",
            Some(Decision::Approve {
                by: Decider::Person,
                arguments: Some(serde_json::json!({"message": "edited"})),
            }),
            CallState::Finished {
                result: agent::ToolResult {
                    is_error: false,
                    text: "Echo: edited".into(),
                    duration_ms: 3,
                },
            },
        );
        let long = "x".repeat(Call::MAX_EARLIER_RESULT + 10);
        let failed = call(
            "c2",
            "get-env",
            Some(Decision::Approve {
                by: Decider::Policy {
                    policy: "tool".into(),
                },
                arguments: None,
            }),
            CallState::Finished {
                result: agent::ToolResult {
                    is_error: true,
                    text: long,
                    duration_ms: 1,
                },
            },
        );
        let declined = call(
            "c3",
            "add",
            Some(Decision::Reject {
                by: Decider::Person,
                reason: Some("not now".into()),
            }),
            CallState::Waiting,
        );
        let history = vec![
            message(Role::User, "echo hi", vec![]),
            message(
                Role::Assistant,
                "It said: edited.",
                vec![ran, failed, declined],
            ),
            message(Role::User, "what did it say?", vec![]),
            // An answer stopped before it wrote anything, with no calls: nothing of it is given.
            message(Role::Assistant, "", vec![]),
        ];
        let text_only = llm_history(&history, false);
        assert_eq!(text_only.len(), 3, "{text_only:#?}");
        assert_eq!(
            text_only[1],
            llm::Message::Assistant {
                content: Some("It said: edited.".into()),
                tool_calls: vec![],
            }
        );
        let messages = llm_history(&history, true);
        assert_eq!(messages.len(), 7, "{messages:#?}");
        assert_eq!(
            messages[0],
            llm::Message::User {
                content: "echo hi".into()
            }
        );
        let llm::Message::Assistant {
            content: None,
            tool_calls,
        } = &messages[1]
        else {
            panic!("the calls come first: {:?}", messages[1]);
        };
        let names: Vec<(&str, &str)> = tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("c1", "everything__echo"),
                ("c2", "everything__get-env"),
                ("c3", "everything__add")
            ]
        );
        // The arguments the tool ran with: the person's edit.
        assert_eq!(tool_calls[0].arguments, r#"{"message":"edited"}"#);
        let tool = |i: usize| match &messages[i] {
            llm::Message::Tool {
                tool_call_id,
                content,
            } => (tool_call_id.as_str(), content.as_str()),
            other => panic!("a tool message: {other:?}"),
        };
        assert_eq!(tool(2), ("c1", "Echo: edited"));
        let (id, content) = tool(3);
        assert_eq!(id, "c2");
        assert!(content.starts_with("Error: xxx"), "{content}");
        assert!(
            content.ends_with("(17 more characters, cut from this earlier result)"),
            "{content}"
        );
        assert_eq!(
            tool(4),
            ("c3", "The person declined this tool call: not now")
        );
        assert_eq!(
            messages[5],
            llm::Message::Assistant {
                content: Some("It said: edited.".into()),
                tool_calls: vec![],
            }
        );
        assert_eq!(
            messages[6],
            llm::Message::User {
                content: "what did it say?".into()
            }
        );
    }
}
