//! Checkpoints in PostgreSQL: one row per step, keyed by (thread, sequence). Reads and decisions
//! go through the chat that owns the thread, so they are filtered by its owner like every other
//! query of a person's data.
//!
//! A run that answers in a chat ([`Thread::for_answer`]) writes, in the same transaction as each
//! checkpoint, what that step produced for the person: the answer's text, its tool calls and
//! status in `messages`, and an audit row for every call that step settled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::types::Json;
use uuid::Uuid;

use super::{Call, CallState, Decider, Decision, End, RunState, Step};
use crate::chats::{Status, Usage};
use crate::llm::Message;
use crate::{Database, Error, Result};

fn step_name(step: Step) -> &'static str {
    match step {
        Step::CallModel => "call_model",
        Step::AwaitApproval => "await_approval",
        Step::RunTools => "run_tools",
        Step::Humanize => "humanize",
        Step::Done => "done",
    }
}

/// The chat answer a run writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub user_id: Uuid,
    pub chat_id: Uuid,
    pub message_id: Uuid,
}

/// A thread's checkpoints.
#[derive(Clone, Debug)]
pub struct Thread {
    db: Database,
    /// Where this instance remembers the pause a checkpoint makes (see [`Paused`]).
    paused: Paused,
    thread_id: Uuid,
    /// The sequence number of the last checkpoint written (or read).
    seq: i32,
    answer: Option<Answer>,
    /// The state last written (or read), to tell which calls a new checkpoint settles.
    last: Option<RunState>,
    /// The conversation the run answers, remembered with its pause (see [`Thread::remembering`]).
    history: Option<History>,
}

/// The conversation a run answers, as its model is given it (shared, not copied).
pub type History = Arc<[Message]>;

/// The latest checkpoint of a thread.
#[derive(Clone, Debug, PartialEq)]
pub struct Latest {
    pub seq: i32,
    pub state: RunState,
}

/// What a decision left.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub thread: Latest,
    /// The state the decisions were made on.
    pub before: RunState,
    /// Every call of the turn is decided: the run goes on (whoever decided last resumes it).
    pub complete: bool,
    /// The conversation the run answers, when this instance remembered it with the pause (the
    /// resume then needs no read of it).
    pub history: Option<History>,
    /// The chat message of the answer that waited (None for a thread with no chat answer).
    pub message_id: Option<Uuid>,
}

/// A chat's answer that waits for the person's decisions: where a decision starts from.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub thread_id: Uuid,
    pub answer_id: Uuid,
    pub latest: Latest,
    /// Taken from this instance's memory of the pause (see [`Paused`]), not read just now: the
    /// thread may have moved on since, which the decision's write finds out.
    pub remembered: bool,
    /// The conversation the run answers, remembered with the pause.
    pub history: Option<History>,
}

/// What a chat of the user's waits for.
#[derive(Clone, Debug, PartialEq)]
pub enum Pending {
    /// The user has no such chat.
    NoChat,
    /// Nothing: no answer of the chat waits for a decision.
    Nothing,
    Waiting(Box<Waiting>),
}

/// The runs this instance paused for approval lately (or recorded a partial decision on), so that
/// the decision that resumes one needs no read first: a decision is written at the next sequence
/// number of the thread, which fails when another writer (on any instance) came first, and only
/// when the chat's answer is still the one waiting; either failure sends it to read the thread.
/// So a remembered pause that is out of date costs a read, never a wrong decision. Bounded in
/// size and age: a decision made later reads the thread, as it would on another instance. The
/// runs of an instance hold one (cheap to clone: clones share it).
#[derive(Clone, Debug, Default)]
pub struct Paused {
    runs: Arc<Mutex<Remembered>>,
}

/// Each (user, chat)'s paused run, and when it was remembered.
type Remembered = HashMap<(Uuid, Uuid), (Instant, Waiting)>;

impl Paused {
    /// Pauses remembered at most.
    const CAPACITY: usize = 1024;
    /// How long a pause is remembered.
    const KEPT_FOR: Duration = Duration::from_secs(15 * 60);

    /// Remembers that `answer`'s run, on `thread_id`, waits at `latest`, answering `history`.
    pub(super) fn remember(
        &self,
        answer: Answer,
        thread_id: Uuid,
        latest: Latest,
        history: Option<History>,
    ) {
        let waiting = Waiting {
            thread_id,
            answer_id: answer.message_id,
            latest,
            remembered: true,
            history,
        };
        let mut runs = self.runs.lock().expect("not poisoned");
        if runs.len() >= Self::CAPACITY {
            runs.retain(|_, (at, _)| at.elapsed() < Self::KEPT_FOR);
        }
        if runs.len() < Self::CAPACITY {
            runs.insert((answer.user_id, answer.chat_id), (Instant::now(), waiting));
        }
    }

    fn recall(&self, user_id: Uuid, chat_id: Uuid) -> Option<Waiting> {
        let mut runs = self.runs.lock().expect("not poisoned");
        match runs.get(&(user_id, chat_id)) {
            Some((at, waiting)) if at.elapsed() < Self::KEPT_FOR => Some(waiting.clone()),
            Some(_) => {
                runs.remove(&(user_id, chat_id));
                None
            }
            None => None,
        }
    }

    pub(super) fn forget(&self, user_id: Uuid, chat_id: Uuid) {
        self.runs
            .lock()
            .expect("not poisoned")
            .remove(&(user_id, chat_id));
    }
}

impl Thread {
    /// Checkpoints written after `seq` (-1 for a thread with none).
    pub fn new(db: Database, thread_id: Uuid, seq: i32) -> Self {
        Self {
            db,
            paused: Paused::default(),
            thread_id,
            seq,
            answer: None,
            last: None,
            history: None,
        }
    }

    /// Checkpoints after `seq` of a run answering in a chat, which was at `last` (None: a new run).
    pub fn for_answer(
        db: Database,
        paused: Paused,
        thread_id: Uuid,
        seq: i32,
        answer: Answer,
        last: Option<RunState>,
    ) -> Self {
        Self {
            db,
            paused,
            thread_id,
            seq,
            answer: Some(answer),
            last,
            history: None,
        }
    }

    /// A pause of the run is remembered with the conversation it answers, `history`, so that the
    /// decision that resumes it on this instance needs no read of it.
    pub fn remembering(mut self, history: History) -> Self {
        self.history = Some(history);
        self
    }

    pub fn seq(&self) -> i32 {
        self.seq
    }
}

impl super::Checkpoints for Thread {
    async fn save(&mut self, state: &RunState) -> Result<()> {
        let seq = self.seq + 1;
        match self.answer {
            None => insert(&self.db, self.thread_id, seq, state, durable(state)).await?,
            Some(answer) => {
                save_with_answer(
                    &self.db,
                    self.thread_id,
                    seq,
                    state,
                    answer,
                    self.last.as_ref(),
                )
                .await?
            }
        }
        self.seq = seq;
        self.last = Some(state.clone());
        if let Some(answer) = self.answer {
            let paused = &self.paused;
            if state.next == Step::AwaitApproval {
                let latest = Latest {
                    seq,
                    state: state.clone(),
                };
                paused.remember(answer, self.thread_id, latest, self.history.clone());
            } else {
                paused.forget(answer.user_id, answer.chat_id);
            }
        }
        Ok(())
    }
}

/// Whether a checkpoint must be on disk before the run goes on: a pause for the person, and calls
/// marked running before they run (so that no tool ever runs twice). The others (tool results, the
/// end) commit without waiting for the disk: if PostgreSQL itself crashes in the next moment, the run
/// resumes from the checkpoint before, which reports the calls interrupted rather than running them
/// again; the same bargain the chat's answers make.
fn durable(state: &RunState) -> bool {
    state.next == Step::AwaitApproval
        || state
            .calls
            .iter()
            .any(|c| c.state == super::CallState::Running)
}

/// The status of the chat message of a run at `state`, and the error shown with it.
pub fn answer_status(state: &RunState) -> (Status, Option<String>) {
    match (&state.next, &state.end) {
        (Step::AwaitApproval, _) => (Status::Waiting, None),
        (Step::Done, Some(End::Answered | End::Declined)) => (Status::Complete, None),
        (Step::Done, Some(End::Stopped)) => (Status::Stopped, None),
        (Step::Done, Some(End::Interrupted)) => (Status::Interrupted, None),
        (Step::Done, Some(End::Failed { message })) => (Status::Failed, Some(message.clone())),
        (Step::Done, Some(End::StepLimit)) => (
            Status::Failed,
            Some(format!(
                "The agent stopped after {} model call{}, the most one answer may make. Ask it to go on, or raise the limit in Settings.",
                state.max_steps,
                if state.max_steps == 1 { "" } else { "s" }
            )),
        ),
        _ => (Status::Streaming, None),
    }
}

/// What the answer of a run at `state` used: none before its model was asked.
pub fn answer_usage(state: &RunState) -> Option<Usage> {
    (state.steps > 0).then(|| state.usage.clone())
}

/// A checkpoint, the answer's text, tool calls and status as the run left them, and the audit rows
/// of the calls this step settled: one statement, so one round trip and one transaction.
async fn save_with_answer(
    db: &Database,
    thread_id: Uuid,
    seq: i32,
    state: &RunState,
    answer: Answer,
    before: Option<&RunState>,
) -> Result<()> {
    // Written straight to the statement's buffer as JSON (no `serde_json::Value` in between).
    let json = Json(state);
    let calls = Json(state.all_calls().collect::<Vec<&Call>>());
    let (status, error) = answer_status(state);
    let usage = answer_usage(state);
    let fallback = state.usage.fallback.as_ref();
    let tokens = |n: Option<u32>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let commit = if durable(state) { "on" } else { "off" };
    let spent = Spent::between(before, state);
    // The later parts wait for the checkpoint (`EXISTS (SELECT 1 FROM k)`): when its (thread,
    // sequence) is taken, the statement fails whole.
    sqlx::query!(
        r#"WITH k AS (
               INSERT INTO checkpoints (thread_id, seq, step, state)
               SELECT $1, $2, $3, $4
               WHERE set_config('synchronous_commit', $5, true) IS NOT NULL
                 AND EXISTS (SELECT 1 FROM chats WHERE thread_id = $1)
               RETURNING seq
           ), m AS (
               UPDATE messages SET content = $7, tool_calls = $8, status = $9, error = $10,
                      thinking = $14, input_tokens = $15, output_tokens = $16,
                      tokens_estimated = coalesce($17, false), first_token_ms = $18,
                      duration_ms = $19, fallback = $20, model = coalesce($21, model),
                      trimmed = $22, tools_offered = $23,
                      updated_at = now()
               WHERE id = $6 AND EXISTS (SELECT 1 FROM k)
           ), a AS (
               INSERT INTO tool_audit (user_id, chat_id, call_id, server_id, tool, arguments,
                                       decision, decided_by, reason, outcome, result, duration_ms)
               SELECT $11, $12, x.call_id, x.server_id, x.tool, x.arguments, x.decision,
                      x.decided_by, x.reason, x.outcome, x.result, x.duration_ms
               FROM jsonb_to_recordset($13) AS x(call_id text, server_id text, tool text,
                    arguments jsonb, decision text, decided_by text, reason text, outcome text,
                    result text, duration_ms integer)
               WHERE EXISTS (SELECT 1 FROM k)
           ), u AS (
               INSERT INTO usage_days (user_id, day, model, answers, input_tokens, output_tokens)
               SELECT $11, (now() AT TIME ZONE 'UTC')::date,
                      coalesce($21, (SELECT model FROM messages WHERE id = $6), ''),
                      $24::integer, $25::bigint, $26::bigint
               WHERE EXISTS (SELECT 1 FROM k)
                 AND ($24::integer > 0 OR $25::bigint > 0 OR $26::bigint > 0)
               ON CONFLICT (user_id, day, model) DO UPDATE SET
                   answers = usage_days.answers + EXCLUDED.answers,
                   input_tokens = usage_days.input_tokens + EXCLUDED.input_tokens,
                   output_tokens = usage_days.output_tokens + EXCLUDED.output_tokens
           )
           SELECT seq AS "seq!" FROM k"#,
        thread_id,
        seq,
        step_name(state.next),
        json as _,
        commit,
        answer.message_id,
        state.answer_text(),
        calls as _,
        status.as_str(),
        error,
        answer.user_id,
        answer.chat_id,
        audit_rows(before, state),
        state.answer_thinking(),
        tokens(usage.as_ref().map(|u| u.input_tokens)),
        tokens(usage.as_ref().map(|u| u.output_tokens)),
        usage.as_ref().map(|u| u.estimated),
        tokens(usage.as_ref().and_then(|u| u.first_token_ms)),
        tokens(usage.as_ref().map(|u| u.duration_ms)),
        fallback.map(Json) as _,
        fallback.map(|f| f.model.as_str()),
        tokens(state.usage.trimmed),
        (!state.usage.offered.is_empty()).then(|| Json(&state.usage.offered)) as _,
        spent.answers,
        spent.input_tokens,
        spent.output_tokens,
    )
    .fetch_one(db.pool())
    .await?;
    Ok(())
}

/// What a checkpoint adds to its person's usage (`usage_days`): the tokens the run used since the
/// checkpoint before, and the answer itself when its model was asked for the first time.
#[derive(Debug, PartialEq, Eq)]
struct Spent {
    answers: i32,
    input_tokens: i64,
    output_tokens: i64,
}

impl Spent {
    fn between(before: Option<&RunState>, now: &RunState) -> Self {
        let (steps, input, output) = before.map_or((0, 0, 0), |b| {
            (b.steps, b.usage.input_tokens, b.usage.output_tokens)
        });
        Self {
            answers: i32::from(steps == 0 && now.steps > 0),
            input_tokens: i64::from(now.usage.input_tokens.saturating_sub(input)),
            output_tokens: i64::from(now.usage.output_tokens.saturating_sub(output)),
        }
    }
}

/// Whether a call has come to its end, for the audit: it ran (or was interrupted), or the run went
/// past it without running it (rejected, refused, or the run stopped or failed first).
fn settled(call: &Call, state: &RunState) -> bool {
    match call.state {
        CallState::Finished { .. } | CallState::Interrupted => true,
        CallState::Running => false,
        CallState::Waiting => match state.next {
            Step::AwaitApproval | Step::RunTools => false,
            // Rejected calls settle when the run moves on; others when it ends.
            Step::Humanize | Step::CallModel => {
                call.decision.as_ref().is_some_and(|d| !d.is_approval())
            }
            Step::Done => true,
        },
    }
}

/// The audit rows (a JSON array, for `jsonb_to_recordset`) of every call that `state` settles and
/// `before` had not.
fn audit_rows(before: Option<&RunState>, state: &RunState) -> serde_json::Value {
    let was: Vec<bool> = before
        .map(|b| b.all_calls().map(|c| settled(c, b)).collect())
        .unwrap_or_default();
    let rows: Vec<serde_json::Value> = state
        .all_calls()
        .enumerate()
        .filter(|(i, call)| settled(call, state) && !was.get(*i).copied().unwrap_or(false))
        .map(|(_, call)| {
            let (decision, decided_by, reason) = match &call.decision {
                Some(Decision::Approve { by, .. }) => (Some("approved"), Some(by_name(by)), None),
                Some(Decision::Reject { by, reason }) => {
                    (Some("rejected"), Some(by_name(by)), reason.clone())
                }
                None => (None, None, None),
            };
            let (outcome, result, duration) = match &call.state {
                CallState::Finished { result } if result.is_error => (
                    "error",
                    Some(summary(&result.text)),
                    Some(result.duration_ms),
                ),
                CallState::Finished { result } => {
                    ("ok", Some(summary(&result.text)), Some(result.duration_ms))
                }
                CallState::Interrupted => ("interrupted", None, None),
                _ => ("not_run", None, None),
            };
            serde_json::json!({
                "call_id": call.id,
                "server_id": call.server,
                "tool": call.tool,
                "arguments": call.effective_arguments(),
                "decision": decision,
                "decided_by": decided_by,
                "reason": reason,
                "outcome": outcome,
                "result": result,
                "duration_ms": duration.map(|d| d.min(i32::MAX as u64)),
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

fn by_name(by: &Decider) -> String {
    match by {
        Decider::Person => "person".into(),
        Decider::Policy { policy } => format!("policy:{policy}"),
    }
}

/// The start of a tool's result, for the audit.
fn summary(text: &str) -> String {
    const MAX: usize = 500;
    match super::end_of_chars(text, MAX) {
        Some(at) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Inserts one checkpoint (one statement; a conflict on (thread, seq) means another writer came
/// first).
async fn insert(
    db: &Database,
    thread_id: Uuid,
    seq: i32,
    state: &RunState,
    durable: bool,
) -> Result<()> {
    let json = Json(state);
    let commit = if durable { "on" } else { "off" };
    let written = sqlx::query!(
        "INSERT INTO checkpoints (thread_id, seq, step, state)
         SELECT $1, $2, $3, $4
         WHERE set_config('synchronous_commit', $5, true) IS NOT NULL
           AND EXISTS (SELECT 1 FROM chats WHERE thread_id = $1)",
        thread_id,
        seq,
        step_name(state.next),
        json as _,
        commit
    )
    .execute(db.pool())
    .await?;
    if written.rows_affected() == 0 {
        // The thread's chat is gone (deleted while its run went on).
        return Err(Error::Query(sqlx::Error::RowNotFound));
    }
    Ok(())
}

/// What writing a decision came to.
pub(super) enum Recorded {
    /// Written; the chat's answer that waited, if the thread has one.
    Written { waiting: Option<Uuid> },
    /// Not written: the chat is not the user's (any more), or `answer` no longer waits.
    Refused,
}

/// A decision's checkpoint (on disk before it answers), and, when the thread's chat has an answer
/// waiting, that answer's calls and the audit rows of the calls it settled: one statement. With
/// `answer`, nothing is written unless that answer is the one waiting.
pub(super) async fn record_decisions(
    db: &Database,
    user_id: Uuid,
    thread_id: Uuid,
    answer: Option<Uuid>,
    seq: i32,
    before: &RunState,
    state: &RunState,
) -> Result<Recorded> {
    // Written straight to the statement's buffer as JSON (no `serde_json::Value` in between).
    let json = Json(state);
    let calls = Json(state.all_calls().collect::<Vec<&Call>>());
    let (status, error) = answer_status(state);
    let row = sqlx::query!(
        r#"WITH w AS (
               SELECT m.id, m.chat_id FROM messages m JOIN chats c ON c.id = m.chat_id
               WHERE c.thread_id = $1 AND c.user_id = $5 AND m.status = 'waiting'
               ORDER BY m.position DESC LIMIT 1
           ), k AS (
               INSERT INTO checkpoints (thread_id, seq, step, state)
               SELECT c.thread_id, $2, $3, $4 FROM chats c
               WHERE c.thread_id = $1 AND c.user_id = $5
                 AND ($10::uuid IS NULL OR $10 = (SELECT id FROM w))
               RETURNING seq
           ), m AS (
               UPDATE messages SET tool_calls = $6, status = $7, error = $8, updated_at = now()
               FROM w WHERE messages.id = w.id AND EXISTS (SELECT 1 FROM k)
           ), a AS (
               INSERT INTO tool_audit (user_id, chat_id, call_id, server_id, tool, arguments,
                                       decision, decided_by, reason, outcome, result, duration_ms)
               SELECT $5, w.chat_id, x.call_id, x.server_id, x.tool, x.arguments, x.decision,
                      x.decided_by, x.reason, x.outcome, x.result, x.duration_ms
               FROM w, jsonb_to_recordset($9) AS x(call_id text, server_id text, tool text,
                    arguments jsonb, decision text, decided_by text, reason text, outcome text,
                    result text, duration_ms integer)
               WHERE EXISTS (SELECT 1 FROM k)
           )
           SELECT k.seq AS "seq!", (SELECT id FROM w) AS "waiting?" FROM k"#,
        thread_id,
        seq,
        step_name(state.next),
        json as _,
        user_id,
        calls as _,
        status.as_str(),
        error,
        audit_rows(Some(before), state),
        answer,
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        Some(row) => Recorded::Written {
            waiting: row.waiting,
        },
        None => Recorded::Refused,
    })
}

/// What the user's chat waits for: its answer waiting for decisions, with the thread's latest
/// checkpoint. Remembered when this instance paused that answer (no query), otherwise one read.
pub async fn pending(
    db: &Database,
    paused: &Paused,
    user_id: Uuid,
    chat_id: Uuid,
) -> Result<Pending> {
    match paused.recall(user_id, chat_id) {
        Some(waiting) => Ok(Pending::Waiting(Box::new(waiting))),
        None => read_pending(db, user_id, chat_id).await,
    }
}

/// [`pending`], read from the database (for a decision a remembered pause could not take).
pub async fn read_pending(db: &Database, user_id: Uuid, chat_id: Uuid) -> Result<Pending> {
    let row = sqlx::query!(
        r#"SELECT c.thread_id, k.seq AS "seq?", k.state AS "state?: Json<RunState>",
                  w.id AS "answer_id?"
           FROM chats c
           LEFT JOIN LATERAL (SELECT seq, state FROM checkpoints
                              WHERE thread_id = c.thread_id ORDER BY seq DESC LIMIT 1) k ON true
           LEFT JOIN LATERAL (SELECT id FROM messages
                              WHERE chat_id = c.id AND status = 'waiting'
                              ORDER BY position DESC LIMIT 1) w ON true
           WHERE c.id = $1 AND c.user_id = $2"#,
        chat_id,
        user_id
    )
    .fetch_optional(db.pool())
    .await
    .map_err(unreadable)?;
    let Some(row) = row else {
        return Ok(Pending::NoChat);
    };
    Ok(match (row.seq, row.state, row.answer_id) {
        (Some(seq), Some(Json(state)), Some(answer_id)) if state.next == Step::AwaitApproval => {
            Pending::Waiting(Box::new(Waiting {
                thread_id: row.thread_id,
                answer_id,
                latest: Latest { seq, state },
                remembered: false,
                history: None,
            }))
        }
        _ => Pending::Nothing,
    })
}

/// A run settled by [`settle_abandoned`]: its answer, and its state before and after.
pub struct Settled {
    pub answer: Answer,
    pub before: RunState,
    pub after: RunState,
}

/// The runs whose server died while their tools ran (the answer has shown no sign of life for
/// [`chats::STALE_STREAM_SECS`](crate::chats::STALE_STREAM_SECS), and its thread's latest
/// checkpoint has calls running): each ends as interrupted in a checkpoint of its own, with its
/// calls interrupted (never run again) and audited, and its answer marked interrupted. A run
/// another instance settles (or goes on with) first is left to it. Returns the runs it settled.
pub async fn settle_abandoned(db: &Database, paused: &Paused) -> Result<Vec<Settled>> {
    // The answer is its chat's last message, and its run's running checkpoint came after it (not
    // an earlier run's left behind).
    let cut_off = sqlx::query!(
        r#"SELECT c.user_id, c.id AS chat_id, c.thread_id, m.id AS message_id,
                  k.seq, k.state AS "state: Json<RunState>"
           FROM messages m
           JOIN chats c ON c.id = m.chat_id
           JOIN LATERAL (SELECT seq, step, state, created_at FROM checkpoints
                         WHERE thread_id = c.thread_id ORDER BY seq DESC LIMIT 1) k ON true
           WHERE m.status = 'streaming'
             AND m.updated_at < now() - make_interval(secs => $1)
             AND m.position = (SELECT max(position) FROM messages WHERE chat_id = m.chat_id)
             AND k.step = 'run_tools' AND k.created_at >= m.created_at"#,
        crate::chats::STALE_STREAM_SECS as f64
    )
    .fetch_all(db.pool())
    .await
    .map_err(unreadable)?;
    let mut settled = Vec::new();
    for run in cut_off {
        let (seq, Json(state)) = (run.seq, run.state);
        if state.next != Step::RunTools {
            continue;
        }
        let mut ended = state.clone();
        ended.abandon();
        let answer = Answer {
            user_id: run.user_id,
            chat_id: run.chat_id,
            message_id: run.message_id,
        };
        let mut thread = Thread::for_answer(
            db.clone(),
            paused.clone(),
            run.thread_id,
            seq,
            answer,
            Some(state.clone()),
        );
        match super::Checkpoints::save(&mut thread, &ended).await {
            Ok(()) => settled.push(Settled {
                answer,
                before: state,
                after: ended,
            }),
            Err(Error::Query(sqlx::Error::Database(e))) if e.is_unique_violation() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(settled)
}

/// The latest checkpoint of the user's chat thread; None when the chat is not theirs or has none.
pub async fn latest(db: &Database, user_id: Uuid, thread_id: Uuid) -> Result<Option<Latest>> {
    let row = sqlx::query!(
        r#"SELECT k.seq, k.state AS "state: Json<RunState>"
           FROM checkpoints k JOIN chats c ON c.thread_id = k.thread_id
           WHERE k.thread_id = $1 AND c.user_id = $2
           ORDER BY k.seq DESC LIMIT 1"#,
        thread_id,
        user_id
    )
    .fetch_optional(db.pool())
    .await
    .map_err(unreadable)?;
    Ok(row.map(|r| Latest {
        seq: r.seq,
        state: r.state.0,
    }))
}

/// The sequence number of the user's thread's last checkpoint (-1 when it has none).
pub async fn last_seq(db: &Database, user_id: Uuid, thread_id: Uuid) -> Result<i32> {
    let seq = sqlx::query_scalar!(
        r#"SELECT max(k.seq) AS "seq" FROM checkpoints k JOIN chats c ON c.thread_id = k.thread_id
           WHERE k.thread_id = $1 AND c.user_id = $2"#,
        thread_id,
        user_id
    )
    .fetch_one(db.pool())
    .await?;
    Ok(seq.unwrap_or(-1))
}

/// A stored run state that does not decode says so, rather than passing for a database failure.
fn unreadable(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::ColumnDecode { source, .. } => {
            Error::Invalid(format!("A stored run state cannot be read ({source})."))
        }
        e => Error::Query(e),
    }
}
