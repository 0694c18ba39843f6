//! What a chat's event stream carries: each event ([`EventKind`]), its id ([`EventId`]), and the
//! events a run's state moving from one checkpoint to the next makes ([`call_events`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agent::{Call, CallState, Decider, Decision, RunState, Step, store};
use crate::metrics::{CallOutcome, DecisionLabels, METRICS};

/// One event on a chat's stream. `id` orders them; see [`EventId`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatEvent {
    pub id: EventId,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened: the wire's own event (see [`protocol::Event`]), which every instance relays as
/// it is.
pub use protocol::Event as EventKind;

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

/// The events that a run's state moving from `before` to `after` makes (each move is seen here
/// once, where it is made: the decisions and ended calls are counted for operators too).
pub(super) fn call_events(answer_id: Uuid, before: &RunState, after: &RunState) -> Vec<EventKind> {
    let (status, _) = store::answer_status(after);
    let answer_id = answer_id.to_string();
    let was: Vec<&Call> = before.all_calls().collect();
    let mut events = Vec::new();
    for (i, call) in after.all_calls().enumerate() {
        let prev = was.get(i).copied().filter(|p| p.id == call.id);
        let view = || call.view(status);
        // New, or asked again (it met an expired sign-in and waits for the person), or waiting
        // for the replies to what its server asked.
        let signing_in = call.sign_in.is_some() && prev.is_some_and(|p| p.sign_in.is_none());
        let asking = call.asking.as_ref().map(|a| a.round);
        let asks =
            asking.is_some() && prev.is_some_and(|p| p.asking.as_ref().map(|a| a.round) != asking);
        // Made again with the person's replies.
        let again = call.state == CallState::Running
            && prev.is_some_and(|p| p.state == CallState::Waiting && p.asking.is_some());
        if prev.is_none() || signing_in || asks || again {
            events.push(EventKind::ToolCall {
                answer_id: answer_id.clone(),
                call: view(),
            });
        }
        // Its server's question, shown once the pause it waits in is on disk (a reply finds it).
        if asks && let Some(question) = call.asking.as_ref().and_then(|a| a.next()) {
            events.push(question_event(&answer_id, call, question));
        }
        if let Some(decision) = &call.decision
            && prev.is_none_or(|p| p.decision.is_none())
        {
            count_decision(decision);
            events.push(EventKind::Decision {
                answer_id: answer_id.clone(),
                call: view(),
            });
        }
        let ended =
            |c: &Call| matches!(c.state, CallState::Finished { .. } | CallState::Interrupted);
        if ended(call) && !prev.is_some_and(ended) {
            count_ended(&call.state);
            events.push(EventKind::ToolResult {
                answer_id: answer_id.clone(),
                call: view(),
            });
        }
    }
    // A turn whose every call a policy allowed goes on at once: nothing waits. One that waits
    // only for replies to its servers' questions waits all the same (no call to decide).
    let undecided: Vec<String> = after.undecided().map(|c| c.id.clone()).collect();
    let unanswered = after.unanswered().next().is_some();
    if let Some(turn) = after.turn()
        && before.next != Step::AwaitApproval
        && (!undecided.is_empty() || unanswered)
    {
        events.push(EventKind::ApprovalNeeded {
            answer_id,
            turn,
            call_ids: undecided,
            usage: store::answer_usage(after),
        });
    }
    events
}

/// The event that shows a question a call's server asked (see [`Asking`](crate::agent::Asking)).
pub(super) fn question_event(
    answer_id: &str,
    call: &Call,
    question: &crate::agent::AskedQuestion,
) -> EventKind {
    EventKind::Question {
        answer_id: answer_id.to_owned(),
        call_id: call.id.clone(),
        question: question
            .question
            .clone()
            .view(question.id.clone(), call.server.clone()),
    }
}

fn count_decision(decision: &Decision) {
    let (decision, by) = match decision {
        Decision::Approve { by, .. } => ("approve", by),
        Decision::Reject { by, .. } => ("reject", by),
    };
    let by = match by {
        Decider::Person => "person",
        Decider::Policy { .. } => "policy",
    };
    METRICS
        .tool_decisions
        .get_or_create(&DecisionLabels { decision, by })
        .inc();
}

fn count_ended(state: &CallState) {
    let outcome = match state {
        CallState::Finished { result } if result.is_error => "error",
        CallState::Finished { .. } => "ok",
        _ => "interrupted",
    };
    METRICS
        .tool_calls
        .get_or_create(&CallOutcome { outcome })
        .inc();
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
