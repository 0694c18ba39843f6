//! A chat's messages as every client sees them (`chats/get` returns them; the events change
//! them), and [`ChatState::apply`], how the events change them: a page that applies every event
//! to what it read holds what a fresh read would return.

use serde::{Deserialize, Serialize};

use crate::{CallView, Event};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// Where a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Complete,
    /// Being written by a run right now.
    Streaming,
    /// Waiting for the person to decide on the tool calls it asked for.
    Waiting,
    /// The person pressed Stop.
    Stopped,
    /// The model provider failed; `error` says how.
    Failed,
    /// The server stopped mid-answer; what had streamed is kept.
    Interrupted,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Streaming => "streaming",
            Status::Waiting => "waiting",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

/// A message of a chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    pub position: i32,
    pub role: Role,
    pub content: String,
    pub status: Status,
    /// Why an answer failed, in words for the person.
    pub error: Option<String>,
    /// An answer's tool calls, in order.
    pub tool_calls: Vec<CallView>,
}

/// An answer being written, as far as it has come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveText {
    pub answer_id: String,
    pub text: String,
}

/// What a client knows of a chat: its messages, and the answer being written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatState {
    pub messages: Vec<MessageView>,
    pub live: Option<LiveText>,
}

/// What applying an event asks of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing more: the state is up to date.
    Done,
    /// The events cannot be followed from here: read the chat again (`chats/get`).
    Resync,
}

impl ChatState {
    /// Applies one event of the chat's stream (see [`apply`]).
    pub fn apply(&mut self, event: Event) -> Applied {
        apply(&mut self.messages, &mut self.live, event)
    }
}

/// Applies one event of a chat's stream to its `messages` and `live` answer (kept apart, so that a
/// page can hold them in two places: a token changes only `live`).
pub fn apply(
    messages: &mut Vec<MessageView>,
    live: &mut Option<LiveText>,
    event: Event,
) -> Applied {
    match event {
        Event::RunStarted {
            question,
            answer_id,
            ..
        } => started(messages, live, question, answer_id),
        Event::Token { answer_id, text } => token(live, answer_id, &text),
        Event::Snapshot { answer_id, text } => {
            if let Some(answer) = find(messages, &answer_id) {
                answer.status = Status::Streaming;
            }
            *live = Some(LiveText { answer_id, text });
        }
        Event::ToolCall { answer_id, call }
        | Event::Decision { answer_id, call }
        | Event::ToolResult { answer_id, call } => {
            if let Some(answer) = find(messages, &answer_id) {
                match answer.tool_calls.iter_mut().find(|c| c.id == call.id) {
                    Some(known) => *known = call,
                    None => answer.tool_calls.push(call),
                }
            }
        }
        Event::ApprovalNeeded { answer_id, .. } => {
            settle(messages, live, &answer_id, Status::Waiting, None);
        }
        Event::RunFinished {
            answer_id,
            status,
            error,
        } => settle(messages, live, &answer_id, status, error),
        Event::Resync => return Applied::Resync,
    }
    Applied::Done
}

/// A send started an answer: `question` replaces what followed its position, and the answer
/// `answer_id` follows it, being written. Told twice (the send's reply and its event), it does
/// the same once.
pub fn started(
    messages: &mut Vec<MessageView>,
    live: &mut Option<LiveText>,
    question: MessageView,
    answer_id: String,
) {
    if find(messages, &answer_id).is_none() {
        let position = question.position;
        messages.retain(|m| m.position < position);
        messages.push(question);
        messages.push(MessageView {
            id: answer_id.clone(),
            position: position + 1,
            role: Role::Assistant,
            content: String::new(),
            status: Status::Streaming,
            error: None,
            tool_calls: Vec::new(),
        });
    }
    // Its first tokens may have come before the reply to the send that started it.
    if live.as_ref().is_none_or(|l| l.answer_id != answer_id) {
        *live = Some(LiveText {
            answer_id,
            text: String::new(),
        });
    }
}

/// More of the answer `answer_id`.
pub fn token(live: &mut Option<LiveText>, answer_id: String, text: &str) {
    match live {
        Some(l) if l.answer_id == answer_id => l.text.push_str(text),
        other => {
            *other = Some(LiveText {
                answer_id,
                text: text.to_owned(),
            })
        }
    }
}

/// The answer stops being written (it waits, or ended as `status`): its text is the live one, and
/// its calls read as they do in such an answer.
fn settle(
    messages: &mut [MessageView],
    live: &mut Option<LiveText>,
    answer_id: &str,
    status: Status,
    error: Option<String>,
) {
    let text = match live {
        Some(l) if l.answer_id == answer_id => live.take().map(|l| l.text),
        _ => None,
    };
    if let Some(answer) = find(messages, answer_id) {
        if let Some(text) = text {
            answer.content = text;
        }
        answer.status = status;
        answer.error = error;
        for call in &mut answer.tool_calls {
            call.state = call.state.in_answer(status);
        }
    }
}

fn find<'a>(messages: &'a mut [MessageView], id: &str) -> Option<&'a mut MessageView> {
    messages.iter_mut().rev().find(|m| m.id == id)
}
