//! A run's tool calls as every client sees them ([`protocol::CallView`]): on their cards, in
//! `chats/get`, and in the chat's events.

use protocol::{CallStatus, CallView, Status, policy_words};

use super::{Call, CallState, Decider, Decision};

impl Call {
    /// This call as its card shows it, in an answer that is `status` (see
    /// [`CallStatus::in_answer`]: a call left running or approved in an answer that is no longer
    /// being written was interrupted, or never ran).
    pub fn view(&self, status: Status) -> CallView {
        let state = match (&self.state, &self.decision) {
            (CallState::Finished { result }, _) if result.is_error => CallStatus::Error,
            (CallState::Finished { .. }, _) => CallStatus::Ok,
            (CallState::Interrupted, _) => CallStatus::Interrupted,
            (CallState::Running, _) => CallStatus::Running,
            (CallState::Waiting, Some(Decision::Reject { .. })) => CallStatus::Rejected,
            // Approved while the turn's other calls wait, or about to run.
            (CallState::Waiting, Some(Decision::Approve { .. })) => CallStatus::Approved,
            (CallState::Waiting, None) => CallStatus::Waiting,
        }
        .in_answer(status);
        let (decided_by, reason) = match &self.decision {
            Some(Decision::Approve { by, .. }) => (Some(who(by)), None),
            Some(Decision::Reject { by, reason }) => (Some(who(by)), reason.clone()),
            None => (None, None),
        };
        let (result, parts, duration_ms) = match &self.state {
            CallState::Finished { result } => (
                Some(result.text.clone()),
                result.parts.clone(),
                Some(result.duration_ms),
            ),
            _ => (None, Vec::new(), None),
        };
        CallView {
            id: self.id.clone(),
            turn: self.turn,
            server: self.server.clone(),
            tool: self.tool.clone(),
            arguments: serde_json::to_string_pretty(self.effective_arguments()).unwrap_or_default(),
            edited: matches!(
                &self.decision,
                Some(Decision::Approve {
                    arguments: Some(_),
                    ..
                })
            ),
            read_only: self.annotations.read_only,
            destructive: self.annotations.destructive,
            open_world: self.annotations.open_world,
            state,
            decided_by,
            reason,
            result,
            parts,
            progress: None,
            question: None,
            sign_in: self
                .sign_in
                .clone()
                .filter(|_| state == CallStatus::Waiting),
            duration_ms,
        }
    }
}

fn who(by: &Decider) -> String {
    match by {
        Decider::Person => "you".into(),
        Decider::Policy { policy } => policy_words(policy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ToolResult;

    fn call(decision: Option<Decision>, state: CallState) -> Call {
        Call {
            id: "c1".into(),
            turn: 1,
            server: "calc".into(),
            server_key: "k".into(),
            tool: "add".into(),
            arguments: serde_json::json!({"a": 1}),
            annotations: Default::default(),
            decision,
            state,
            sign_in: None,
            asking: None,
        }
    }

    fn approve() -> Option<Decision> {
        Some(Decision::Approve {
            by: Decider::Person,
            arguments: None,
        })
    }

    fn shown(c: Call, status: Status) -> CallStatus {
        c.view(status).state
    }

    #[test]
    fn a_card_says_where_its_call_stands_in_its_answer() {
        use CallState::*;
        // An answer waiting for the person: the undecided call waits; one decided already
        // says so while the others wait.
        assert_eq!(
            shown(call(None, Waiting), Status::Waiting),
            CallStatus::Waiting
        );
        assert_eq!(
            shown(call(approve(), Waiting), Status::Waiting),
            CallStatus::Approved
        );
        let rejected = Some(Decision::Reject {
            by: Decider::Person,
            reason: None,
        });
        assert_eq!(
            shown(call(rejected, Waiting), Status::Waiting),
            CallStatus::Rejected
        );
        // Being written: running, or done.
        assert_eq!(
            shown(call(approve(), Running), Status::Streaming),
            CallStatus::Running
        );
        let result = ToolResult {
            is_error: false,
            text: "2".into(),
            duration_ms: 3,
            parts: Vec::new(),
            sign_in: None,
            asking: None,
        };
        let done = call(approve(), Finished { result });
        assert_eq!(shown(done, Status::Complete), CallStatus::Ok);
        // An answer that is no longer written: a call it left running was cut off, one it
        // never reached did not run.
        assert_eq!(
            shown(call(approve(), Running), Status::Interrupted),
            CallStatus::Interrupted
        );
        assert_eq!(
            shown(call(approve(), Waiting), Status::Stopped),
            CallStatus::NotRun
        );
        assert_eq!(
            shown(call(None, Waiting), Status::Stopped),
            CallStatus::NotRun
        );
    }
}
