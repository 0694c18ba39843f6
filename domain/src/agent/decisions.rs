//! The person's decisions on a waiting run, and their replies to what its tools' servers asked:
//! the graph's `await_approval` transitions ([`RunState::decide_all`](super::RunState::decide_all),
//! [`RunState::reply`](super::RunState::reply)) applied to the thread's latest checkpoint and
//! written as the next one ([`store`]), all or none, tried again on what another writer left when
//! one came first.

use uuid::Uuid;

use super::Decision;
use super::store::{self, Answer, Decided, Latest, Paused, Recorded, Waiting, latest};
use crate::mcp::elicitation::Reply;
use crate::{Database, Error, Result};

/// Records the person's decision on one pending call of their thread (see [`decide_all`]).
pub async fn decide(
    db: &Database,
    user_id: Uuid,
    thread_id: Uuid,
    call_id: &str,
    decision: Decision,
) -> Result<Option<Decided>> {
    let decisions = vec![(call_id.to_owned(), decision)];
    decide_all(db, user_id, thread_id, None, decisions).await
}

/// Records the person's decisions on pending calls of their thread, all or none, as one new
/// checkpoint, always on disk before it answers. `known` is the thread's latest checkpoint when
/// the caller has just read it (it is read again only when another writer came first). None when
/// the chat is not the user's. See [`decide_waiting`] for a chat's waiting answer.
pub async fn decide_all(
    db: &Database,
    user_id: Uuid,
    thread_id: Uuid,
    known: Option<Latest>,
    decisions: Vec<(String, Decision)>,
) -> Result<Option<Decided>> {
    let decide = |state: &mut super::RunState| state.decide_all(decisions.clone());
    decide_on(db, user_id, thread_id, None, None, known, decide).await
}

/// Records the person's reply to the question `question_id` a waiting call's server asked in
/// their thread, as one new checkpoint (see [`RunState::reply`](super::RunState::reply)). None
/// when the chat is not the user's. See [`reply_waiting`] for a chat's waiting answer.
pub async fn reply(
    db: &Database,
    user_id: Uuid,
    thread_id: Uuid,
    question_id: &str,
    reply: Reply,
) -> Result<Option<Decided>> {
    let give = |state: &mut super::RunState| state.reply(question_id, reply.clone());
    decide_on(db, user_id, thread_id, None, None, None, give).await
}

/// Records the person's decisions on calls of `turn` of the chat answer that `waiting` says waits
/// (from [`store::pending`]), all or none, as one new checkpoint, always on disk before it answers; the
/// answer's calls are updated in the same transaction. Two decisions at once (two tabs, a double
/// click, a retry, two instances) cannot both land on the same checkpoint: the second finds its
/// sequence number taken, reads the thread again and is judged on what the first left (a second
/// decision on the same call is refused, and so is one for a turn that no longer waits). None when
/// the chat is not the user's (any more).
pub async fn decide_waiting(
    db: &Database,
    paused: &Paused,
    user_id: Uuid,
    chat_id: Uuid,
    waiting: Waiting,
    turn: u32,
    decisions: Vec<(String, Decision)>,
) -> Result<Option<Decided>> {
    let decide = |state: &mut super::RunState| state.decide_all(decisions.clone());
    change_waiting(db, paused, user_id, chat_id, waiting, Some(turn), decide).await
}

/// Records the person's reply to the question `question_id` that a call's server asked in the
/// chat answer that `waiting` says waits (see [`RunState::reply`](super::RunState::reply)), as one
/// new checkpoint, as [`decide_waiting`] does; with the last reply the run goes on
/// ([`Decided::complete`]). A second reply to the same question is refused.
pub async fn reply_waiting(
    db: &Database,
    paused: &Paused,
    user_id: Uuid,
    chat_id: Uuid,
    waiting: Waiting,
    question_id: &str,
    reply: Reply,
) -> Result<Option<Decided>> {
    let give = |state: &mut super::RunState| state.reply(question_id, reply.clone());
    change_waiting(db, paused, user_id, chat_id, waiting, None, give).await
}

/// Applies `change` to the chat answer that `waiting` says waits (its turn `turn`, when given),
/// and remembers the pause while the run still waits.
async fn change_waiting(
    db: &Database,
    paused: &Paused,
    user_id: Uuid,
    chat_id: Uuid,
    waiting: Waiting,
    turn: Option<u32>,
    change: impl Fn(&mut super::RunState) -> std::result::Result<(), String>,
) -> Result<Option<Decided>> {
    let answer = Answer {
        user_id,
        chat_id,
        message_id: waiting.answer_id,
    };
    let (known, history) = (Some(waiting.latest), waiting.history);
    let decided = decide_on(
        db,
        user_id,
        waiting.thread_id,
        Some(waiting.answer_id),
        turn,
        known,
        change,
    )
    .await
    .map(|d| d.map(|d| Decided { history, ..d }));
    match &decided {
        // Partly decided: the run still waits, at the decision's checkpoint.
        Ok(Some(d)) if !d.complete => {
            let latest = d.thread.clone();
            paused.remember(answer, waiting.thread_id, latest, d.history.clone());
        }
        _ => paused.forget(user_id, chat_id),
    }
    decided
}

async fn decide_on(
    db: &Database,
    user_id: Uuid,
    thread_id: Uuid,
    answer: Option<Uuid>,
    turn: Option<u32>,
    mut known: Option<Latest>,
    change: impl Fn(&mut super::RunState) -> std::result::Result<(), String>,
) -> Result<Option<Decided>> {
    for _ in 0..8 {
        // A state known from before (remembered, or read by the caller) may be out of date by
        // now; what is read here is judged for good.
        let fresh = known.is_none();
        let read = match known.take() {
            Some(known) => Some(known),
            None => latest(db, user_id, thread_id).await?,
        };
        let Some(Latest { seq, mut state }) = read else {
            return Ok(None);
        };
        let before = state.clone();
        let decided = match turn {
            Some(turn) if state.turn() != Some(turn) => Err(super::OUT_OF_DATE.to_owned()),
            _ => change(&mut state),
        };
        if let Err(refused) = decided {
            if fresh {
                return Err(Error::Invalid(refused));
            }
            continue;
        }
        let written =
            store::record_decisions(db, user_id, thread_id, answer, seq + 1, &before, &state);
        match written.await {
            Ok(Recorded::Written { waiting }) => {
                let complete = state.is_decided();
                return Ok(Some(Decided {
                    thread: Latest {
                        seq: seq + 1,
                        state,
                    },
                    before,
                    complete,
                    message_id: waiting,
                    history: None,
                }));
            }
            // Just read, and yet refused: the chat is gone, or its answer was replaced (an edit,
            // a regeneration) and waits for nothing.
            Ok(Recorded::Refused) if fresh => {
                return match answer {
                    Some(_) => Err(Error::Invalid(super::OUT_OF_DATE.into())),
                    None => Ok(None),
                };
            }
            Ok(Recorded::Refused) => continue,
            Err(Error::Query(sqlx::Error::Database(e))) if e.is_unique_violation() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(
        "The chat is changing too fast to record the decision; try again.".into(),
    ))
}
