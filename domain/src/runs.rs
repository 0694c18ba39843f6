//! Runs: an answer being generated, on the server, independent of any browser.
//!
//! [`Runs::start`] stores the person's message and an empty answer, then streams the model's
//! answer in a task of its own. Everything a run does is an event on its chat's channel; a
//! subscriber gets the events it missed (by event id) and then the live ones. Text is flushed to
//! the database every [`FLUSH_EVERY`], not token by token, so a crash keeps all but the last moment
//! of an answer. Closing a tab does not stop a run; [`Runs::stop`] does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch};
use uuid::Uuid;

use crate::chats::{self, Role, Status};
use crate::llm::{self, Catalog, LlmClient, StreamEvent};
use crate::{Database, Error, Result};

/// How often the text of a streaming answer is written to the database.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Events kept per chat for subscribers that reconnect (a run's tokens are usually far fewer).
const LOG_LIMIT: usize = 20_000;

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
    /// The run ended: complete, stopped, or failed with a message for the person.
    RunFinished {
        answer_id: Uuid,
        status: Status,
        error: Option<String>,
    },
}

/// An event's id: this process's start (so ids from before a restart are recognised as unknown)
/// and a sequence number. Written `<epoch>-<seq>` in the event stream.
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

/// A chat's channel: its recent events, its live run, and the subscribers' broadcast.
struct Channel {
    /// The last event's sequence number (per chat, so a gap in a subscriber's ids means loss).
    seq: u64,
    log: Vec<ChatEvent>,
    live: Option<Live>,
    /// A send is being written; its run has not begun yet.
    starting: bool,
    sender: broadcast::Sender<ChatEvent>,
}

impl Channel {
    fn new() -> Self {
        Self {
            seq: 0,
            log: Vec::new(),
            live: None,
            starting: false,
            sender: broadcast::channel(1024).0,
        }
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
    pub receiver: broadcast::Receiver<ChatEvent>,
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
    epoch: u64,
    channels: Mutex<HashMap<Uuid, Channel>>,
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
    pub fn new(db: Database, llm: LlmClient, models: Arc<Catalog>) -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                db,
                llm,
                models,
                epoch,
                channels: Mutex::new(HashMap::new()),
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
    /// The model is asked while the question is being stored, so that the store's commit is not on
    /// the way to the first token; no token goes out before the question is stored, and if storing
    /// fails the model's answer is dropped unread.
    pub async fn start(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        text: &str,
        from_position: Option<i32>,
    ) -> Result<Option<Started>> {
        // Before the model is asked: `chats::ask` would refuse it only after.
        chats::check_message(text)?;
        let Some(conversation) =
            chats::conversation(&self.inner.db, user_id, chat_id, from_position).await?
        else {
            return Ok(None);
        };
        let (provider, model) = self
            .inner
            .models
            .for_chat(conversation.chat.model.as_deref())?;
        let provider = provider.clone();
        let mut messages: Vec<llm::Message> = conversation
            .history
            .iter()
            .filter_map(|m| match m.role {
                Role::User => Some(llm::Message::User {
                    content: m.content.clone(),
                }),
                Role::Assistant if !m.content.is_empty() => Some(llm::Message::Assistant {
                    content: Some(m.content.clone()),
                    tool_calls: vec![],
                }),
                Role::Assistant => None,
            })
            .collect();
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
        let request = llm::Request {
            model: model.to_owned(),
            messages,
            tools: vec![],
        };
        let (stored, started) = oneshot::channel();
        let runs = self.clone();
        tokio::spawn(async move { runs.run(send, provider, request, stored).await });
        started
            .await
            .unwrap_or_else(|_| Err(Error::Invalid("The answer could not be started.".into())))
    }

    /// Stops the chat's run, if one is live. Returns whether one was.
    pub fn stop(&self, chat_id: Uuid) -> bool {
        let channels = self.inner.channels.lock().expect("not poisoned");
        match channels.get(&chat_id).and_then(|c| c.live.as_ref()) {
            Some(live) => live.stop.send(Some(Status::Stopped)).is_ok(),
            None => false,
        }
    }

    /// Shutting down: every live run ends as interrupted, keeping its text, and every event
    /// stream ends. Waits (up to 5 s) for the runs to write their end.
    pub async fn shutdown(&self) {
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
                channel
                    .live
                    .as_ref()
                    .map(|live| (live.answer_id, live.text.clone())),
            ),
            None => (None, None),
        }
    }

    /// Takes the chat's run slot, or says the chat is busy. The slot is given back when the
    /// reservation is dropped without [`Reservation::begin`] (the send failed).
    fn reserve(&self, chat_id: Uuid) -> Result<Reservation> {
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        let channel = channels.entry(chat_id).or_insert_with(Channel::new);
        if channel.live.is_some() || channel.starting {
            return Err(Error::Invalid(chats::BUSY.into()));
        }
        channel.starting = true;
        Ok(Reservation {
            runs: self.clone(),
            chat_id,
            held: true,
        })
    }

    /// Subscribes to a chat's events (the caller has checked the chat is the user's). With the id
    /// of the last event the subscriber saw, it gets exactly the events after it; without one, or
    /// with one this server does not know, a snapshot of the live answer, if any.
    pub fn subscribe(&self, chat_id: Uuid, last_seen: Option<EventId>) -> Subscription {
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        let channel = channels.entry(chat_id).or_insert_with(Channel::new);
        let receiver = channel.sender.subscribe();
        let known = last_seen.filter(|id| {
            id.epoch == self.inner.epoch
                && channel
                    .log
                    .first()
                    .is_some_and(|first| first.id.seq <= id.seq + 1)
        });
        let missed = match known {
            Some(id) => channel.log.iter().filter(|e| e.id > id).cloned().collect(),
            None => match &channel.live {
                Some(live) => vec![ChatEvent {
                    id: EventId {
                        epoch: self.inner.epoch,
                        seq: channel.seq,
                    },
                    kind: EventKind::Snapshot {
                        answer_id: live.answer_id,
                        text: live.text.clone(),
                    },
                }],
                None => Vec::new(),
            },
        };
        Subscription { missed, receiver }
    }

    fn emit(&self, chat_id: Uuid, kind: EventKind) {
        let mut channels = self.inner.channels.lock().expect("not poisoned");
        let Some(channel) = channels.get_mut(&chat_id) else {
            return;
        };
        channel.seq += 1;
        let event = ChatEvent {
            id: EventId {
                epoch: self.inner.epoch,
                seq: channel.seq,
            },
            kind,
        };
        if let (Some(live), EventKind::Token { text, .. }) = (&mut channel.live, &event.kind) {
            live.text.push_str(text);
        }
        if matches!(event.kind, EventKind::RunFinished { .. }) {
            channel.live = None;
        }
        if channel.log.len() >= LOG_LIMIT {
            channel.log.drain(..LOG_LIMIT / 2);
        }
        channel.log.push(event.clone());
        // No subscribers is fine: the run goes on without them.
        let _ = channel.sender.send(event);
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
            let mut flushed = Instant::now();
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    how = stopped.wait_for(Option::is_some) => break 'run (ended(how.ok().and_then(|s| *s)), None),
                };
                match item {
                    Some(Ok(StreamEvent::Token(token))) => {
                        text.push_str(&token);
                        self.emit(
                            chat_id,
                            EventKind::Token {
                                answer_id,
                                text: token,
                            },
                        );
                        if flushed.elapsed() >= FLUSH_EVERY {
                            if let Err(e) = chats::flush(db, answer_id, &text).await {
                                tracing::warn!(%chat_id, "could not save a streaming answer: {e}");
                            }
                            flushed = Instant::now();
                        }
                    }
                    Some(Ok(StreamEvent::Finished { .. })) | None => {
                        break 'run (Status::Complete, None);
                    }
                    Some(Err(error)) => break 'run (Status::Failed, Some(error.to_string())),
                }
            }
        };
        let (status, error) = outcome;
        if let Err(e) = chats::finish(db, answer_id, &text, status, error.as_deref()).await {
            tracing::error!(%chat_id, "could not save the end of an answer: {e}");
        }
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
}
