//! Checkpoints in PostgreSQL: one row per step, keyed by (thread, sequence). Reads and decisions
//! go through the chat that owns the thread, so they are filtered by its owner like every other
//! query of a person's data.

use uuid::Uuid;

use super::{Decision, RunState, Step};
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

/// A thread's checkpoints.
#[derive(Clone, Debug)]
pub struct Thread {
    db: Database,
    thread_id: Uuid,
    /// The sequence number of the last checkpoint written (or read).
    seq: i32,
}

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
    /// Every call of the turn is decided: the run goes on (whoever decided last resumes it).
    pub complete: bool,
}

impl Thread {
    /// Checkpoints written after `seq` (-1 for a thread with none).
    pub fn new(db: Database, thread_id: Uuid, seq: i32) -> Self {
        Self { db, thread_id, seq }
    }

    pub fn seq(&self) -> i32 {
        self.seq
    }
}

impl super::Checkpoints for Thread {
    async fn save(&mut self, state: &RunState) -> Result<()> {
        let seq = self.seq + 1;
        insert(&self.db, self.thread_id, seq, state, durable(state)).await?;
        self.seq = seq;
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

/// Inserts one checkpoint (one statement; a conflict on (thread, seq) means another writer came
/// first).
async fn insert(
    db: &Database,
    thread_id: Uuid,
    seq: i32,
    state: &RunState,
    durable: bool,
) -> Result<()> {
    let json = serde_json::to_value(state).expect("a run state serialises");
    let commit = if durable { "on" } else { "off" };
    sqlx::query!(
        "INSERT INTO checkpoints (thread_id, seq, step, state)
         SELECT $1, $2, $3, $4 WHERE set_config('synchronous_commit', $5, true) IS NOT NULL",
        thread_id,
        seq,
        step_name(state.next),
        json,
        commit
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The latest checkpoint of the user's chat thread; None when the chat is not theirs or has none.
pub async fn latest(db: &Database, user_id: Uuid, thread_id: Uuid) -> Result<Option<Latest>> {
    let row = sqlx::query!(
        "SELECT k.seq, k.state FROM checkpoints k JOIN chats c ON c.thread_id = k.thread_id
         WHERE k.thread_id = $1 AND c.user_id = $2
         ORDER BY k.seq DESC LIMIT 1",
        thread_id,
        user_id
    )
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Latest {
            seq: r.seq,
            state: parse(r.state)?,
        })
    })
    .transpose()
}

fn parse(state: serde_json::Value) -> Result<RunState> {
    serde_json::from_value(state)
        .map_err(|e| Error::Invalid(format!("A stored run state cannot be read ({e}).")))
}

/// Records the person's decision on one pending call of their thread, as a new checkpoint, always
/// on disk before it answers. Two decisions at once (two tabs, a double click, a retry, two
/// instances) cannot both land on the same checkpoint: the second finds its sequence number taken,
/// reads the thread again and is judged on what the first left (a second decision on the same call
/// is refused). None when the chat is not the user's.
pub async fn decide(
    db: &Database,
    user_id: Uuid,
    thread_id: Uuid,
    call_id: &str,
    decision: Decision,
) -> Result<Option<Decided>> {
    for _ in 0..8 {
        let Some(Latest { seq, mut state }) = latest(db, user_id, thread_id).await? else {
            return Ok(None);
        };
        state
            .decide(call_id, decision.clone())
            .map_err(Error::Invalid)?;
        match insert(db, thread_id, seq + 1, &state, true).await {
            Ok(()) => {
                let complete = state.is_decided();
                return Ok(Some(Decided {
                    thread: Latest {
                        seq: seq + 1,
                        state,
                    },
                    complete,
                }));
            }
            Err(Error::Query(sqlx::Error::Database(e))) if e.is_unique_violation() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Invalid(
        "The chat is changing too fast to record the decision; try again.".into(),
    ))
}
