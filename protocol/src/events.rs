//! The events of a chat's stream (`GET /api/chats/{id}/events`): each is sent as an SSE event
//! named [`Event::name`] whose data is the event as JSON, `type` included.

use serde::{Deserialize, Serialize};

use crate::{CallView, MessageView, Progress, QuestionView, Status, Usage};

/// What happened in a chat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A run began: the person's message is stored, and the answer `answer_id` is on its way.
    RunStarted {
        question: MessageView,
        answer_id: String,
        model: String,
    },
    /// More of the answer.
    Token { answer_id: String, text: String },
    /// More of the model's thinking before (or between) the answer's text: shown apart, folded.
    Thinking { answer_id: String, text: String },
    /// The answer so far, for a subscriber that arrives (or returns) mid-answer and cannot be
    /// given the exact events it missed, and when a run goes on after a decision.
    Snapshot {
        answer_id: String,
        text: String,
        /// The thinking of the model's turn under way, so far.
        #[serde(default)]
        thinking: String,
    },
    /// The model asked for a tool call (decided already when one of the person's policies allows
    /// it; answered with an error at once when it cannot run).
    ToolCall { answer_id: String, call: CallView },
    /// The answer waits for the person's decisions on these calls (by id) of `turn`; nothing is
    /// being written now.
    ApprovalNeeded {
        answer_id: String,
        turn: u32,
        call_ids: Vec<String>,
        /// What the answer used so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// A call was decided (by the person or a policy): `call` as it stands now.
    Decision { answer_id: String, call: CallView },
    /// A running call's server said how far it has come (at most a few times a second).
    ToolProgress {
        answer_id: String,
        call_id: String,
        progress: Progress,
    },
    /// A running call's server asks the person something: the call waits for the answer (see
    /// `chats/answer`) within its timeout.
    Question {
        answer_id: String,
        call_id: String,
        question: QuestionView,
    },
    /// The question was answered (`accept`, `decline`, `cancel`) or ended with its call
    /// (`expired`): it no longer waits.
    QuestionAnswered {
        answer_id: String,
        call_id: String,
        id: String,
        state: String,
    },
    /// A call ran, failed, or was interrupted: `call.state` says which, `call.result` what it
    /// returned.
    ToolResult { answer_id: String, call: CallView },
    /// The answer ended: complete, stopped, interrupted, or failed with a message for the person.
    RunFinished {
        answer_id: String,
        status: Status,
        error: Option<String>,
        /// What the answer used, when its model was asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// The events after the id the subscriber gave cannot be replayed (the instance restarted
    /// since, never served them, or has forgotten them): read the chat again. A `snapshot`
    /// follows when an answer is live.
    Resync,
}

impl Event {
    /// Every event's name, as [`Event::name`] gives it.
    pub const NAMES: [&'static str; 13] = [
        "run_started",
        "token",
        "thinking",
        "snapshot",
        "tool_call",
        "approval_needed",
        "decision",
        "tool_progress",
        "question",
        "question_answered",
        "tool_result",
        "run_finished",
        "resync",
    ];

    /// The event's name on the event stream (its `type`).
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::Token { .. } => "token",
            Event::Thinking { .. } => "thinking",
            Event::Snapshot { .. } => "snapshot",
            Event::ToolCall { .. } => "tool_call",
            Event::ApprovalNeeded { .. } => "approval_needed",
            Event::Decision { .. } => "decision",
            Event::ToolProgress { .. } => "tool_progress",
            Event::Question { .. } => "question",
            Event::QuestionAnswered { .. } => "question_answered",
            Event::ToolResult { .. } => "tool_result",
            Event::RunFinished { .. } => "run_finished",
            Event::Resync => "resync",
        }
    }

    /// The answer it is about (none for `resync`).
    pub fn answer_id(&self) -> Option<&str> {
        match self {
            Event::RunStarted { answer_id, .. }
            | Event::Token { answer_id, .. }
            | Event::Thinking { answer_id, .. }
            | Event::Snapshot { answer_id, .. }
            | Event::ToolCall { answer_id, .. }
            | Event::ApprovalNeeded { answer_id, .. }
            | Event::Decision { answer_id, .. }
            | Event::ToolProgress { answer_id, .. }
            | Event::Question { answer_id, .. }
            | Event::QuestionAnswered { answer_id, .. }
            | Event::ToolResult { answer_id, .. }
            | Event::RunFinished { answer_id, .. } => Some(answer_id),
            Event::Resync => None,
        }
    }
}
