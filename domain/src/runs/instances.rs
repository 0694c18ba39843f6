//! The other instances that share this database, and what runs tell them.
//!
//! A page's event stream is served by one instance, and the run it shows may be on another: the
//! send, the decision or the "Stop" may have landed elsewhere. Instances therefore tell each other
//! through PostgreSQL's LISTEN/NOTIFY on [`CHANNEL`] (no broker to run): every event a run emits,
//! "stop this chat's run", and "who has this chat's live answer?".
//!
//! An instance says hello when it starts listening, that it is alive every [`ALIVE_EVERY`], and
//! goodbye when it shuts down. It shares its runs' events only while it hears of another
//! instance, so an instance alone sends nothing but its heartbeat. Notifications are not stored:
//! an instance that is not listening when one is sent misses it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::EventKind;

/// The notification channel the instances of one database share.
pub const CHANNEL: &str = "switchboard_runs";
/// How often an instance says it is alive.
pub(super) const ALIVE_EVERY: Duration = Duration::from_secs(10);
/// An instance not heard of for this long is taken to be gone.
const GONE_AFTER: Duration = Duration::from_secs(35);
/// The most of a note's JSON one notification carries. PostgreSQL takes payloads of up to 8,000
/// bytes; escaped as a JSON string in its envelope, a part takes at most twice its size.
const PART_BYTES: usize = 3_500;
/// Notes sent in one statement at most.
pub(super) const BATCH: usize = 256;
/// Notes arriving in parts, waiting for the rest, at most (a part lost with its connection leaves
/// its note unfinished for good).
const UNFINISHED: usize = 64;

/// What one instance tells the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// Started listening: the others answer that they are alive.
    Hello,
    Alive,
    /// Shutting down.
    Bye,
    /// An event of a run on the sender.
    Event {
        chat_id: Uuid,
        event: Box<EventKind>,
    },
    /// Stop the chat's run, wherever it is live.
    Stop {
        chat_id: Uuid,
    },
    /// The instance with the chat's live answer sends a snapshot of it.
    WantSnapshot {
        chat_id: Uuid,
    },
    /// An administrator changed the models added in the app: read them again.
    ModelsChanged,
    /// A person answered the tool server's question `id`: the call waiting on it, here, gets it.
    Answered {
        id: Uuid,
    },
}

/// One notification: a note, or one part of a note too long for one.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    from: Uuid,
    /// The sender's note counter: notes in parts are put together by it (PostgreSQL would also
    /// drop a notification identical to another in the same transaction).
    n: u64,
    part: u32,
    parts: u32,
    #[serde(borrow)]
    body: Cow<'a, str>,
}

/// This instance's view of the others, and its outbox.
pub(super) struct Instances {
    /// This instance (a process), as the others know it.
    pub id: Uuid,
    /// The others, with when they were last heard of.
    peers: Mutex<HashMap<Uuid, Instant>>,
    listening: AtomicBool,
    outbox: mpsc::UnboundedSender<Note>,
    /// Taken by the task that sends the outbox.
    unsent: Mutex<Option<mpsc::UnboundedReceiver<Note>>>,
    /// Notes queued so far, and (watched) notes sent or given up on: their difference is what is
    /// still on its way.
    queued: AtomicU64,
    sent: watch::Sender<u64>,
}

impl Instances {
    pub fn new() -> Self {
        let (outbox, unsent) = mpsc::unbounded_channel();
        Self {
            id: Uuid::new_v4(),
            peers: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            outbox,
            unsent: Mutex::new(Some(unsent)),
            queued: AtomicU64::new(0),
            sent: watch::channel(0).0,
        }
    }

    /// How many other instances this one has heard of lately.
    pub fn others(&self) -> usize {
        let peers = self.peers.lock().expect("not poisoned");
        peers
            .values()
            .filter(|at| at.elapsed() < GONE_AFTER)
            .count()
    }

    /// Whether `id` (another instance) has been heard of lately.
    pub fn is_alive(&self, id: Uuid) -> bool {
        let peers = self.peers.lock().expect("not poisoned");
        peers.get(&id).is_some_and(|at| at.elapsed() < GONE_AFTER)
    }

    /// Notes that `from` was heard of; true when it had not been (or had been taken for gone).
    pub fn heard(&self, from: Uuid) -> bool {
        let mut peers = self.peers.lock().expect("not poisoned");
        let new = peers.get(&from).is_none_or(|at| at.elapsed() >= GONE_AFTER);
        peers.insert(from, Instant::now());
        peers.retain(|_, at| at.elapsed() < GONE_AFTER);
        new
    }

    pub fn forget(&self, id: Uuid) {
        self.peers.lock().expect("not poisoned").remove(&id);
    }

    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
    }

    /// Tells the others `note`, if there are others to tell.
    pub fn share(&self, note: Note) {
        if self.others() > 0 {
            self.tell(note);
        }
    }

    /// Queues `note` for the others, whether or not any is known (hello, alive, bye).
    pub fn tell(&self, note: Note) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.outbox.send(note).is_err() {
            self.sent.send_modify(|n| *n += 1);
        }
    }

    /// The outbox, for the one task that sends it.
    pub fn take_outbox(&self) -> Option<mpsc::UnboundedReceiver<Note>> {
        self.unsent.lock().expect("not poisoned").take()
    }

    /// `count` more notes have been sent (or given up on).
    pub fn sent(&self, count: usize) {
        self.sent.send_modify(|n| *n += count as u64);
    }

    /// Waits until every note queued so far is sent, or `limit` has passed.
    pub async fn flushed(&self, limit: Duration) {
        let queued = self.queued.load(Ordering::Acquire);
        let mut sent = self.sent.subscribe();
        let _ = tokio::time::timeout(limit, sent.wait_for(|n| *n >= queued)).await;
    }
}

/// `note` as notification payloads: one, or several parts when it is long.
pub(super) fn payloads(from: Uuid, n: u64, note: &Note) -> Vec<String> {
    let body = serde_json::to_string(note).expect("a note is JSON");
    let mut parts = Vec::new();
    let mut rest = body.as_str();
    while !rest.is_empty() || parts.is_empty() {
        let mut end = rest.len().min(PART_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    let count = parts.len() as u32;
    parts
        .into_iter()
        .enumerate()
        .map(|(part, body)| {
            serde_json::to_string(&Envelope {
                from,
                n,
                part: part as u32,
                parts: count,
                body: Cow::Borrowed(body),
            })
            .expect("an envelope is JSON")
        })
        .collect()
}

/// Puts notes together from the notifications that carry them.
#[derive(Default)]
pub(super) struct Assembler {
    /// By sender and note counter.
    unfinished: HashMap<(Uuid, u64), Unfinished>,
}

/// A note some of whose parts have come.
struct Unfinished {
    parts: Vec<Option<String>>,
    since: Instant,
}

impl Assembler {
    /// The note `payload` finishes, with its sender; None while parts are missing, or when the
    /// payload is not one of ours.
    pub fn take(&mut self, payload: &str) -> Option<(Uuid, Note)> {
        let envelope: Envelope = match serde_json::from_str(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!("ignored a notification on {CHANNEL} that is not a note: {e}");
                return None;
            }
        };
        if envelope.parts <= 1 {
            return parse(envelope.from, &envelope.body);
        }
        if envelope.part >= envelope.parts {
            return None;
        }
        let key = (envelope.from, envelope.n);
        if !self.unfinished.contains_key(&key) && self.unfinished.len() >= UNFINISHED {
            // The oldest unfinished note will not be finished now.
            if let Some(oldest) = self
                .unfinished
                .iter()
                .min_by_key(|(_, unfinished)| unfinished.since)
                .map(|(key, _)| *key)
            {
                self.unfinished.remove(&oldest);
            }
        }
        let unfinished = self.unfinished.entry(key).or_insert_with(|| Unfinished {
            parts: vec![None; envelope.parts as usize],
            since: Instant::now(),
        });
        if let Some(slot) = unfinished.parts.get_mut(envelope.part as usize) {
            *slot = Some(envelope.body.into_owned());
        }
        if unfinished.parts.iter().any(Option::is_none) {
            return None;
        }
        let finished = self.unfinished.remove(&key)?;
        let body: String = finished.parts.into_iter().flatten().collect();
        parse(key.0, &body)
    }
}

fn parse(from: Uuid, body: &str) -> Option<(Uuid, Note)> {
    match serde_json::from_str(body) {
        Ok(note) => Some((from, note)),
        Err(e) => {
            // An instance of a newer version may tell of things this one does not know.
            tracing::debug!(%from, "ignored a note this instance does not understand: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> Note {
        Note::Event {
            chat_id: Uuid::nil(),
            event: Box::new(EventKind::Token {
                answer_id: Uuid::nil().to_string(),
                text: text.to_owned(),
            }),
        }
    }

    #[test]
    fn a_short_note_is_one_notification() {
        let from = Uuid::new_v4();
        let sent = payloads(from, 7, &token("hello"));
        assert_eq!(sent.len(), 1);
        assert_eq!(
            Assembler::default().take(&sent[0]),
            Some((from, token("hello")))
        );
    }

    #[test]
    fn a_long_note_goes_in_parts_that_each_fit_and_comes_back_whole() {
        let from = Uuid::new_v4();
        // Quotes and backslashes double when escaped; multi-byte characters must not be split.
        let text = "\"quoted\" \\ é🙂 ".repeat(2_000);
        let note = token(&text);
        let sent = payloads(from, 1, &note);
        assert!(sent.len() > 2, "{} parts", sent.len());
        assert!(
            sent.iter().all(|p| p.len() < 8_000),
            "each under 8,000 bytes"
        );

        let mut assembler = Assembler::default();
        // Another sender's note in between changes nothing.
        let other = payloads(Uuid::new_v4(), 1, &token("x"));
        let (last, first) = sent.split_last().unwrap();
        for part in first {
            assert_eq!(assembler.take(part), None, "not whole yet");
        }
        assert!(assembler.take(&other[0]).is_some());
        assert_eq!(assembler.take(last), Some((from, note)));
    }

    #[test]
    fn what_is_not_a_note_is_ignored() {
        let mut assembler = Assembler::default();
        assert_eq!(assembler.take("hello"), None);
        let from = Uuid::new_v4();
        let unknown = serde_json::json!({"from": from, "n": 1, "part": 0, "parts": 1, "body": "{\"note\":\"new_thing\"}"});
        assert_eq!(assembler.take(&unknown.to_string()), None);
    }

    #[test]
    fn an_instance_is_another_only_while_it_is_heard_of() {
        let instances = Instances::new();
        let other = Uuid::new_v4();
        assert_eq!(instances.others(), 0);
        assert!(instances.heard(other), "new");
        assert!(!instances.heard(other), "known");
        assert!(instances.is_alive(other));
        assert_eq!(instances.others(), 1);
        instances.forget(other);
        assert_eq!(instances.others(), 0);
        assert!(!instances.is_alive(other));
    }
}
