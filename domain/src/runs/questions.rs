//! A tool server's questions to the person during a call of an answer (MCP elicitation): stored
//! (so a reloaded page, or one on another instance, shows the card), sent as a `question` event,
//! and answered by the person from any instance. Asked while the call runs, the call waits for the
//! answer within its timeout, and a question whose call ends first (its timeout, Stop, a restart)
//! is `expired`. Asked in answer to the call (a multi round-trip call), the question is *kept*:
//! the answer pauses as for an approval, the reply goes into its checkpoint, and the last reply
//! makes the call again, on whichever instance takes it, however long after; such a question
//! expires only when its answer stops waiting (Stop, a new answer in its place).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::QuestionView;
use serde_json::Value;
use sqlx::types::Json;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::Runs;
use super::events::{EventKind, call_events, question_event};
use super::instances::Note;
use crate::agent::{self, live::KeepFor, store};
use crate::mcp::elicitation::{self, Asker, Question, Reply};
use crate::{Error, Result};

/// The most questions one call's server may ask.
const MAX_QUESTIONS_PER_CALL: u32 = 3;

/// The questions this instance's calls wait on, by id: where their replies go.
pub(super) type Waiting = Mutex<HashMap<Uuid, oneshot::Sender<Reply>>>;

/// Where a question comes from: one call of one answer.
#[derive(Clone)]
struct Origin {
    user_id: Uuid,
    chat_id: Uuid,
    answer_id: Uuid,
    call_id: String,
    server_id: String,
}

impl Origin {
    fn of(user_id: Uuid, chat_id: Uuid, answer_id: Uuid, call_id: &str, server_id: &str) -> Self {
        Self {
            user_id,
            chat_id,
            answer_id,
            call_id: call_id.to_owned(),
            server_id: server_id.to_owned(),
        }
    }
}

impl Runs {
    /// Asks the person the questions of one call of an answer.
    pub(super) fn asker(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        answer_id: Uuid,
        call_id: &str,
        server_id: &str,
    ) -> Asker {
        let runs = self.clone();
        let from = Origin::of(user_id, chat_id, answer_id, call_id, server_id);
        // Dropped with the asker, when its call ends: a question still waiting then expires.
        let (alive, _) = watch::channel(());
        // How many questions the call has asked, and whether one waits now.
        let asked = Arc::new(Mutex::new((0_u32, false)));
        Arc::new(move |question| {
            let (runs, from, call_ended) = (runs.clone(), from.clone(), alive.subscribe());
            let asked = asked.clone();
            Box::pin(async move {
                {
                    let mut asked = asked.lock().expect("not poisoned");
                    if asked.1 || asked.0 >= MAX_QUESTIONS_PER_CALL {
                        // One at a time, and a few in all: a server cannot flood the person.
                        return Reply::decline();
                    }
                    *asked = (asked.0 + 1, true);
                }
                let reply = runs.ask(from, question, call_ended).await;
                asked.lock().expect("not poisoned").1 = false;
                reply
            })
        })
    }

    /// Keeps the questions a call of an answer was answered with (see the module's text).
    pub(super) fn keeper(&self, user_id: Uuid, chat_id: Uuid, answer_id: Uuid) -> KeepFor {
        let runs = self.clone();
        Arc::new(
            move |call_id: &str, server_id: &str, questions: Vec<Question>| {
                let from = Origin::of(user_id, chat_id, answer_id, call_id, server_id);
                let runs = runs.clone();
                Box::pin(async move { runs.keep(from, questions).await })
            },
        )
    }

    /// Stores a call's questions as kept; their ids, in order. They show once the pause they wait
    /// in is on disk (its events carry the first; each reply's, the next), so that a reply always
    /// finds them waiting.
    async fn keep(&self, from: Origin, questions: Vec<Question>) -> Result<Vec<Uuid>> {
        let ids: Vec<Uuid> = questions.iter().map(|_| Uuid::new_v4()).collect();
        let mut tx = self.inner.db.pool().begin().await?;
        for (id, question) in ids.iter().zip(&questions) {
            store_question(&mut *tx, *id, &from, question, true).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Sends a question to the chat's pages.
    fn show(&self, from: &Origin, id: Uuid, question: Question) {
        self.emit(
            from.chat_id,
            EventKind::Question {
                answer_id: from.answer_id.to_string(),
                call_id: from.call_id.clone(),
                question: question.view(id.to_string(), from.server_id.clone()),
            },
        );
    }

    async fn ask(
        &self,
        from: Origin,
        question: Question,
        mut call_ended: watch::Receiver<()>,
    ) -> Reply {
        let id = Uuid::new_v4();
        let stored = store_question(self.inner.db.pool(), id, &from, &question, false).await;
        if let Err(e) = stored {
            tracing::error!("cannot store a tool server's question: {e}");
            return Reply::cancel();
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .questions
            .lock()
            .expect("not poisoned")
            .insert(id, tx);
        let _ends = Expires {
            runs: self.clone(),
            id,
            from: from.clone(),
        };
        self.show(&from, id, question);
        tokio::select! {
            reply = rx => reply.unwrap_or_else(|_| Reply::cancel()),
            // Nothing is ever sent: this resolves when the call ends. The question is marked
            // expired before this returns, so that an answer landing now is refused.
            _ = call_ended.changed() => {
                self.expire(id).await;
                Reply::cancel()
            }
        }
    }

    /// Marks a question that still waits expired.
    async fn expire(&self, id: Uuid) {
        let expired = sqlx::query!(
            "UPDATE tool_questions SET state = 'expired', answered_at = now()
             WHERE id = $1 AND state = 'waiting'",
            id
        )
        .execute(self.inner.db.pool())
        .await;
        if let Err(e) = expired {
            tracing::warn!("cannot mark a tool server's question expired: {e}");
        }
    }

    /// The person's answer to a question of theirs in a chat: `accept` with the form's content
    /// (checked against the form), `decline` or `cancel`. False when there is no such question of
    /// theirs; refused when it no longer waits.
    pub async fn answer_question(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        id: Uuid,
        reply: Reply,
    ) -> Result<bool> {
        let db = self.inner.db.pool();
        // A question waits while its answer is being written (on a live instance), and a kept
        // one while its answer waits too; otherwise it waits for nothing and is refused as ended.
        let Some(row) = sqlx::query!(
            r#"SELECT q.answer_id, q.call_id, q.server_id, q.kept, q.schema AS "schema: Json<Value>",
                      (CASE WHEN q.state = 'waiting'
                                 AND NOT (q.kept AND m.status = 'waiting')
                                 AND (m.status IS DISTINCT FROM 'streaming'
                                      OR m.updated_at < now() - make_interval(secs => $4))
                            THEN 'expired' ELSE q.state END) AS "state!"
               FROM tool_questions q LEFT JOIN messages m ON m.id = q.answer_id
               WHERE q.id = $1 AND q.user_id = $2 AND q.chat_id = $3"#,
            id,
            user_id,
            chat_id,
            crate::chats::STALE_STREAM_SECS as f64
        )
        .fetch_optional(db)
        .await?
        else {
            return Ok(false);
        };
        let gone = || Error::Conflict(agent::QUESTION_GONE.into());
        if row.state != "waiting" {
            return Err(gone());
        }
        let content = match reply.action.as_str() {
            // A page to open is answered with no content.
            "accept" if row.schema.is_none() => None,
            "accept" => {
                let content = reply.content.clone().unwrap_or(Value::Null);
                if let Some(schema) = &row.schema {
                    elicitation::check(&schema.0, &content).map_err(Error::Invalid)?;
                }
                Some(content)
            }
            "decline" | "cancel" => None,
            other => {
                return Err(Error::Invalid(format!(
                    "'{other}' is no answer: accept, decline or cancel."
                )));
            }
        };
        let reply = Reply {
            action: reply.action,
            content,
        };
        if row.kept {
            // The run's checkpoint takes the reply first (once: a second is refused there), then
            // the record: a reply is never recorded that the run did not get.
            let from = Origin::of(
                user_id,
                chat_id,
                row.answer_id,
                &row.call_id,
                &row.server_id,
            );
            let decided = self.reply_kept(&from, id, reply.clone()).await?;
            if let Err(e) = self.record_reply(id, &reply).await {
                // The run has the reply; only the record lacks it (the sweep expires the row).
                tracing::warn!("cannot record the reply to a tool server's question: {e}");
            }
            self.replied(from, id, reply, decided).await?;
            return Ok(true);
        }
        if !self.record_reply(id, &reply).await? {
            return Err(gone());
        }
        if !self.deliver(id, reply.clone()) {
            self.inner.instances.share(Note::Answered { id });
        }
        self.emit(
            chat_id,
            answered(row.answer_id, row.call_id, id, reply.action),
        );
        Ok(true)
    }

    /// Records the reply to a question that waits; false when it no longer waits.
    async fn record_reply(&self, id: Uuid, reply: &Reply) -> Result<bool> {
        let answered = sqlx::query!(
            "UPDATE tool_questions SET state = $2, content = $3, answered_at = now()
             WHERE id = $1 AND state = 'waiting'",
            id,
            reply.action,
            reply.content.clone().map(Json) as _,
        )
        .execute(self.inner.db.pool())
        .await?
        .rows_affected();
        Ok(answered > 0)
    }

    /// Puts the reply to a kept question into its answer's checkpoint (a pause this instance
    /// remembers, read again when it turns out out of date). Refused (409) when the answer no
    /// longer waits for it.
    async fn reply_kept(&self, from: &Origin, id: Uuid, reply: Reply) -> Result<store::Decided> {
        let db = &self.inner.db;
        let gone = || Error::Conflict(agent::QUESTION_GONE.into());
        let mut pending =
            store::pending(db, &self.inner.paused, from.user_id, from.chat_id).await?;
        loop {
            let store::Pending::Waiting(waiting) = pending else {
                return Err(gone());
            };
            let remembered = waiting.remembered;
            let replied = if waiting.answer_id == from.answer_id {
                let id = id.to_string();
                let (paused, reply) = (&self.inner.paused, reply.clone());
                let (user_id, chat_id) = (from.user_id, from.chat_id);
                agent::decisions::reply_waiting(db, paused, user_id, chat_id, *waiting, &id, reply)
                    .await
            } else {
                Err(gone())
            };
            match replied {
                Ok(Some(decided)) => return Ok(decided),
                Ok(None) => return Err(gone()),
                // A pause remembered from before may be out of date: tried again as it is now.
                Err(_) if remembered => {
                    pending = store::read_pending(db, from.user_id, from.chat_id).await?;
                }
                Err(Error::Invalid(_)) => return Err(gone()),
                Err(e) => return Err(e),
            }
        }
    }

    /// What a reply to a kept question makes happen: the pages are told, the call's next question
    /// shows, or, with the last reply, the call is made again (the run goes on here).
    async fn replied(
        &self,
        from: Origin,
        id: Uuid,
        reply: Reply,
        decided: store::Decided,
    ) -> Result<()> {
        let answer_id = from.answer_id;
        let event = answered(answer_id, from.call_id.clone(), id, reply.action);
        self.emit(from.chat_id, event);
        for event in call_events(answer_id, &decided.before, &decided.thread.state) {
            self.emit(from.chat_id, event);
        }
        let call = decided
            .thread
            .state
            .calls
            .iter()
            .find(|c| c.id == from.call_id);
        if let Some(call) = call
            && let Some(next) = call.asking.as_ref().and_then(|a| a.next())
        {
            let answer_id = answer_id.to_string();
            self.emit(from.chat_id, question_event(&answer_id, call, next));
        }
        if decided.complete {
            let (user_id, chat_id) = (from.user_id, from.chat_id);
            let (thread, history) = (decided.thread, decided.history);
            self.resume(user_id, chat_id, answer_id, thread, history)
                .await?;
        }
        Ok(())
    }

    /// Gives a question's reply to its call, if it waits on this instance.
    fn deliver(&self, id: Uuid, reply: Reply) -> bool {
        let waiting = self
            .inner
            .questions
            .lock()
            .expect("not poisoned")
            .remove(&id);
        waiting.is_some_and(|tx| tx.send(reply).is_ok())
    }

    /// Another instance took the answer to a question: if its call waits here, it gets it.
    pub(super) async fn answered_elsewhere(&self, id: Uuid) -> Result<()> {
        if !self
            .inner
            .questions
            .lock()
            .expect("not poisoned")
            .contains_key(&id)
        {
            return Ok(());
        }
        let row = sqlx::query!(
            r#"SELECT state, content AS "content: Json<Value>" FROM tool_questions WHERE id = $1"#,
            id
        )
        .fetch_one(self.inner.db.pool())
        .await?;
        self.deliver(
            id,
            Reply {
                action: row.state,
                content: row.content.map(|c| c.0),
            },
        );
        Ok(())
    }

    /// Marks expired the questions still waiting whose answer is no longer being written on any
    /// instance (its instance stopped, or it was replaced): nobody waits for their replies.
    pub(super) async fn expire_abandoned_questions(&self) -> Result<u64> {
        Ok(sqlx::query!(
            "UPDATE tool_questions q SET state = 'expired', answered_at = now()
             WHERE q.state = 'waiting'
               AND NOT EXISTS (SELECT 1 FROM messages m
                               WHERE m.id = q.answer_id
                                 AND ((q.kept AND m.status = 'waiting')
                                      OR (m.status = 'streaming'
                                          AND m.updated_at >= now() - make_interval(secs => $1))))",
            crate::chats::STALE_STREAM_SECS as f64
        )
        .execute(self.inner.db.pool())
        .await?
        .rows_affected())
    }

    /// The questions waiting in a chat of the user's, by call id.
    pub async fn waiting_questions(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
    ) -> Result<HashMap<String, QuestionView>> {
        // The first a call asked of those that wait (a kept one, only while its answer waits).
        let rows = sqlx::query!(
            r#"SELECT q.id, q.call_id, q.server_id, q.message, q.schema AS "schema: Json<Value>",
                      q.url
               FROM tool_questions q LEFT JOIN messages m ON m.id = q.answer_id
               WHERE q.chat_id = $1 AND q.user_id = $2 AND q.state = 'waiting'
                 AND (NOT q.kept OR m.status = 'waiting')
               ORDER BY q.created_at DESC"#,
            chat_id,
            user_id
        )
        .fetch_all(self.inner.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.call_id,
                    QuestionView {
                        id: r.id.to_string(),
                        server: r.server_id,
                        message: r.message,
                        schema: r.schema.map(|s| s.0),
                        url: r.url,
                    },
                )
            })
            .collect())
    }
}

/// The event that says a question was answered (`accept`, `decline`, `cancel`) or expired.
fn answered(answer_id: Uuid, call_id: String, id: Uuid, state: String) -> EventKind {
    EventKind::QuestionAnswered {
        answer_id: answer_id.to_string(),
        call_id,
        id: id.to_string(),
        state,
    }
}

/// Stores a question of `from`'s (`kept`: asked in answer to the call). Its time is the
/// statement's own, so that questions stored one after the other show in that order.
async fn store_question(
    db: impl sqlx::PgExecutor<'_>,
    id: Uuid,
    from: &Origin,
    question: &Question,
    kept: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO tool_questions (id, user_id, chat_id, answer_id, call_id, server_id,
                                     message, schema, url, kept, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())",
        id,
        from.user_id,
        from.chat_id,
        from.answer_id,
        from.call_id,
        from.server_id,
        question.message,
        question.schema.clone().map(Json) as _,
        question.url,
        kept,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ends a question when its call stops waiting for it (answered, timed out, stopped): one still
/// waiting then is `expired`, and the page is told.
struct Expires {
    runs: Runs,
    id: Uuid,
    from: Origin,
}

impl Drop for Expires {
    /// A question whose reply was not delivered (it is still in this instance's map) expires: the
    /// page is told at once, before the call's result, and the record follows.
    fn drop(&mut self) {
        let (runs, id, from) = (self.runs.clone(), self.id, self.from.clone());
        let unanswered = runs
            .inner
            .questions
            .lock()
            .expect("not poisoned")
            .remove(&id)
            .is_some();
        if !unanswered {
            return;
        }
        let expired = answered(from.answer_id, from.call_id, id, "expired".into());
        runs.emit(from.chat_id, expired);
        tokio::spawn(async move { runs.expire(id).await });
    }
}
