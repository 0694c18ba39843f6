//! This instance's side of the conversation between instances: what it hears ([`Runs::heard`]),
//! what it tells, and Stop for a run on another instance. The notes themselves and who is alive
//! are in [`super::instances`].

use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::Runs;
use super::channels::{Position, Remote};
use super::events::EventKind;
use super::instances::{self, Assembler, CHANNEL, Note};
use crate::Result;
use crate::chats;

/// How long a read of a chat waits for the instance writing its answer to send the text so far.
const SNAPSHOT_WITHIN: Duration = Duration::from_secs(1);

/// How long "Stop" waits to hear that a run on another instance has ended.
const STOP_ELSEWHERE_WITHIN: Duration = Duration::from_secs(3);

impl Runs {
    /// Where a page that has just read the user's chat stands: the id of the chat's last event
    /// (to subscribe from, so that nothing after it is missed) and the live answer's text so far,
    /// both taken at the same instant. An answer written on another instance that this one has not
    /// heard of yet is asked of the others (up to [`SNAPSHOT_WITHIN`]), so a read on either
    /// instance has the text so far and an id to continue from.
    pub async fn position(&self, user_id: Uuid, chat_id: Uuid) -> Result<Position> {
        let here = self.position_here(chat_id);
        if here.1.is_some()
            || self.inner.instances.others() == 0
            || !chats::being_written(&self.inner.db, user_id, chat_id).await?
        {
            return Ok(here);
        }
        let snapshot_or_end = |kind: &EventKind| {
            matches!(
                kind,
                EventKind::Snapshot { .. }
                    | EventKind::RunStarted { .. }
                    | EventKind::RunFinished { .. }
                    | EventKind::ApprovalNeeded { .. }
            )
        };
        let want = Note::WantSnapshot { chat_id };
        self.ask_others(chat_id, want, SNAPSHOT_WITHIN, snapshot_or_end)
            .await;
        Ok(self.position_here(chat_id))
    }

    /// Asks the other instances to stop the chat's run, and waits (up to
    /// [`STOP_ELSEWHERE_WITHIN`]) to hear that it ended. Whether it did.
    pub(super) async fn stop_elsewhere(&self, user_id: Uuid, chat_id: Uuid) -> Result<bool> {
        if self.inner.instances.others() == 0
            || !chats::being_written(&self.inner.db, user_id, chat_id).await?
        {
            return Ok(false);
        }
        let ended = |kind: &EventKind| matches!(kind, EventKind::RunFinished { .. });
        let stop = Note::Stop { chat_id };
        Ok(self
            .ask_others(chat_id, stop, STOP_ELSEWHERE_WITHIN, ended)
            .await)
    }

    /// Tells the other instances `note` about the chat, and waits (up to `within`) for an event of
    /// the chat's that `answered` accepts (heard from them, or from a run here). Whether one came.
    async fn ask_others(
        &self,
        chat_id: Uuid,
        note: Note,
        within: Duration,
        answered: impl Fn(&EventKind) -> bool,
    ) -> bool {
        let mut events = {
            let mut channels = self.inner.channels.lock().expect("not poisoned");
            let channel = channels.entry(chat_id).or_insert_with(|| self.channel());
            channel.touched = Instant::now();
            channel.sender.subscribe()
        };
        self.inner.instances.tell(note);
        let heard = async {
            loop {
                match events.recv().await {
                    Ok(event) if answered(&event.kind) => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        tokio::time::timeout(within, heard).await.unwrap_or(false)
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
                    answer_id: answer_id.clone(),
                    text: String::new(),
                    thinking: String::new(),
                });
            }
            EventKind::Snapshot {
                answer_id,
                text,
                thinking,
            } => {
                channel.remote = Some(Remote {
                    origin,
                    answer_id: answer_id.clone(),
                    text: text.clone(),
                    thinking: thinking.clone(),
                });
            }
            EventKind::Token { answer_id, text } | EventKind::Thinking { answer_id, text } => {
                let remote = match &mut channel.remote {
                    Some(remote) if remote.answer_id == *answer_id => remote,
                    // Heard of from the middle: what came before is on its way (a snapshot).
                    other => other.insert(Remote {
                        origin,
                        answer_id: answer_id.clone(),
                        text: String::new(),
                        thinking: String::new(),
                    }),
                };
                match &kind {
                    EventKind::Token { .. } => remote.text.push_str(text),
                    _ => remote.thinking.push_str(text),
                }
            }
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
            Note::Answered { id } => {
                let runs = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = runs.answered_elsewhere(id).await {
                        tracing::warn!("could not read an answer given on another instance: {e}");
                    }
                });
            }
            Note::ModelsChanged => {
                let runs = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = runs.reload_models().await {
                        tracing::warn!(
                            "could not read the models changed on another instance: {e}"
                        );
                    }
                });
            }
            Note::WantSnapshot { chat_id } => {
                let live = {
                    let channels = self.inner.channels.lock().expect("not poisoned");
                    channels
                        .get(&chat_id)
                        .and_then(|c| c.live.as_ref())
                        .map(|l| (l.answer_id, l.text.clone(), l.thinking.clone()))
                };
                if let Some((answer_id, text, thinking)) = live {
                    let answer_id = answer_id.to_string();
                    let snapshot = EventKind::Snapshot {
                        answer_id,
                        text,
                        thinking,
                    };
                    self.emit(chat_id, snapshot);
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
}
