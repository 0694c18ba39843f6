//! What a chat's event stream carries: each event ([`EventKind`]), its id ([`EventId`]), and the
//! events a run's state moving from one checkpoint to the next makes ([`call_events`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agent::{Call, CallState, Decision, RunState, Step};
use crate::chats::{self, Status};

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

/// A call as the chat's events show it: without its server's key, which a person could hold
/// against guesses of how a servers-file server is defined.
fn shown(call: &Call) -> Call {
    Call {
        server_key: String::new(),
        ..call.clone()
    }
}

/// The events that a run's state moving from `before` to `after` makes.
pub(super) fn call_events(answer_id: Uuid, before: &RunState, after: &RunState) -> Vec<EventKind> {
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
