//! Each chat's channel on this instance: its recent events (for subscribers that reconnect), its
//! live run (this instance's, or one heard of on another), and the broadcast its subscribers
//! listen to. A chat's run slot is taken here ([`Runs::reserve`]), so two sends cannot both start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protocol::LiveText;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::Runs;
use super::events::{ChatEvent, EventId, EventKind};
use super::instances::{Instances, Note};
use crate::chats::{self, Status};
use crate::{Error, Result};

/// Events kept per chat for subscribers that reconnect (a run's tokens are usually far fewer).
const LOG_LIMIT: usize = 20_000;

/// Events a subscriber may fall behind by before it is cut off (it reconnects with the last id it
/// saw and gets the rest from the log). Every chat followed holds this many slots, idle or not:
/// 64 is about 2.5 KB, and 640 ms of tokens at 100 a second (docs/benchmarks.md, "Event streams at
/// scale").
const SUBSCRIBER_BACKLOG: usize = 64;

/// A chat's channel with no run and no subscriber is forgotten after this long (its events with
/// it: a subscriber that comes back later is told to read the chat again).
pub(super) const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A run in progress.
pub(super) struct Live {
    pub(super) answer_id: Uuid,
    pub(super) text: String,
    /// The thinking of the model's turn under way.
    pub(super) thinking: String,
    /// Set to how the run should end: `Stopped` (the person) or `Interrupted` (shutdown).
    pub(super) stop: watch::Sender<Option<Status>>,
}

/// A run in progress on another instance, as its events tell.
pub(super) struct Remote {
    /// The instance it runs on.
    pub(super) origin: Uuid,
    pub(super) answer_id: String,
    pub(super) text: String,
    pub(super) thinking: String,
}

/// A chat's channel: its recent events, its live run, and the subscribers' broadcast.
pub(super) struct Channel {
    /// The last event's sequence number (per chat, so a gap in a subscriber's ids means loss).
    pub(super) seq: u64,
    pub(super) log: Vec<ChatEvent>,
    pub(super) live: Option<Live>,
    /// The chat's run on another instance, if one is heard of.
    pub(super) remote: Option<Remote>,
    /// A send is being written; its run has not begun yet.
    pub(super) starting: bool,
    /// Shared, not copied: a chat's channel holds a slot per event of its backlog whatever the
    /// event, so its slots are pointers, and idle chats cost little.
    pub(super) sender: broadcast::Sender<Arc<ChatEvent>>,
    /// The last event, or the last subscriber's arrival.
    pub(super) touched: Instant,
}

impl Channel {
    /// A channel whose first event is numbered after `seq` (above any number an earlier channel
    /// of the chat gave, so that an old id is never taken for a new one).
    pub(super) fn new(seq: u64) -> Self {
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
    pub(super) fn push(&mut self, epoch: u64, kind: EventKind) {
        self.seq += 1;
        self.touched = Instant::now();
        let event = ChatEvent {
            id: EventId {
                epoch,
                seq: self.seq,
            },
            kind,
        };
        match (&mut self.live, &event.kind) {
            (Some(live), EventKind::Token { text, .. }) => live.text.push_str(text),
            (Some(live), EventKind::Thinking { text, .. }) => live.thinking.push_str(text),
            // A new turn (after a decision) thinks anew.
            (Some(live), EventKind::Snapshot { thinking, .. }) => {
                live.thinking.clone_from(thinking)
            }
            _ => {}
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
    pub(super) fn current(&self, instances: &Instances) -> Option<LiveText> {
        if let Some(live) = &self.live {
            return Some(LiveText {
                answer_id: live.answer_id.to_string(),
                text: live.text.clone(),
                thinking: live.thinking.clone(),
            });
        }
        self.remote
            .as_ref()
            .filter(|r| instances.is_alive(r.origin))
            .map(|r| LiveText {
                answer_id: r.answer_id.clone(),
                text: r.text.clone(),
                thinking: r.thinking.clone(),
            })
    }
}

/// A chat's run slot, taken while its send is written.
pub(super) struct Reservation {
    runs: Runs,
    chat_id: Uuid,
    held: bool,
}

impl Reservation {
    /// The run has begun: its answer is live from now on.
    pub(super) fn begin(mut self, live: Live) {
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

/// Where a chat stands: the id of its last event here, and its live answer and text so far.
pub type Position = (Option<EventId>, Option<LiveText>);

/// What a subscriber gets: the events it missed, then live ones from `receiver`.
pub struct Subscription {
    pub missed: Vec<ChatEvent>,
    pub receiver: broadcast::Receiver<Arc<ChatEvent>>,
}

impl Runs {
    /// Where a page that has just read the chat stands, as this instance knows it: the id of the
    /// chat's last event (to subscribe from, so that nothing after it is missed) and the live
    /// answer's text so far, both taken at the same instant. (See [`Runs::position`], which also
    /// asks the other instances.)
    pub(super) fn position_here(&self, chat_id: Uuid) -> Position {
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
    pub(super) fn channel(&self) -> Channel {
        Channel::new(self.inner.forgotten_seq.load(Ordering::Acquire))
    }

    /// Takes the chat's run slot, or says the chat is busy. The slot is given back when the
    /// reservation is dropped without [`Reservation::begin`] (the send failed). (An answer being
    /// written on another instance is told by its row, see [`Runs::start`].)
    pub(super) fn reserve(&self, chat_id: Uuid) -> Result<Reservation> {
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
            Some(LiveText {
                answer_id,
                text,
                thinking,
            }) => missed.push(ChatEvent {
                id,
                kind: EventKind::Snapshot {
                    answer_id,
                    text,
                    thinking,
                },
            }),
            None => self.inner.instances.share(Note::WantSnapshot { chat_id }),
        }
        Subscription { missed, receiver }
    }

    /// Sends an event of a run on this instance to the chat's subscribers, here and on the other
    /// instances, and keeps it for those that reconnect.
    pub(super) fn emit(&self, chat_id: Uuid, kind: EventKind) {
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

    /// Stops the chat's run, if one is live. Returns whether one was.
    pub fn stop(&self, chat_id: Uuid) -> bool {
        let channels = self.inner.channels.lock().expect("not poisoned");
        match channels.get(&chat_id).and_then(|c| c.live.as_ref()) {
            Some(live) => live.stop.send(Some(Status::Stopped)).is_ok(),
            None => false,
        }
    }

    /// Forgets the channels of chats with no run, no subscriber and no event for
    /// [`FORGET_AFTER`].
    pub(super) fn forget_idle_channels(&self) {
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
}

/// The text of the chat's live answer so far.
pub(super) fn live_text(runs: &Runs, chat_id: Uuid) -> String {
    let channels = runs.inner.channels.lock().expect("not poisoned");
    channels
        .get(&chat_id)
        .and_then(|c| c.live.as_ref())
        .map(|l| l.text.clone())
        .unwrap_or_default()
}
