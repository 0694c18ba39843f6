//! A chat's messages as every client sees them (`chats/get` returns them; the events change
//! them), and [`ChatState::apply`], how the events change them: a page that applies every event
//! to what it read holds what a fresh read would return.

use serde::{Deserialize, Serialize};

use crate::{CallStatus, CallView, Event};

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
    /// The model that wrote an answer (`<provider>/<model>`).
    #[serde(default)]
    pub model: Option<String>,
    /// What the model thought before answering (reasoning models); not part of `content`.
    #[serde(default)]
    pub thinking: String,
    /// What an answer used, once its model was asked.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// What an answer used: tokens in and out, and how long its model took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The tokens the model was given, all its calls for the answer together.
    pub input_tokens: u32,
    /// The tokens it wrote (thinking included).
    pub output_tokens: u32,
    /// Some counts are Switchboard's estimates (about four characters a token): the provider
    /// reported none.
    #[serde(default)]
    pub estimated: bool,
    /// From asking the model to its first token or thought (the answer's first model call).
    pub first_token_ms: Option<u32>,
    /// The model's writing time, all its calls for the answer together (the time the answer
    /// waited for the person and ran tools is not counted).
    pub duration_ms: u32,
    /// Another model than the one chosen wrote (the last part of) the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// The oldest messages of the conversation left out, to fit the model's context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trimmed: Option<u32>,
    /// The chat had more tools than are offered at once: which each model call was offered
    /// (besides the tool search).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<Offered>,
}

/// The tools one model call of an answer was offered, out of the chat's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    /// The model call (1 for the answer's first).
    pub turn: u32,
    /// How many tools the chat has.
    pub of: u32,
    /// The tools offered (`<server>__<tool>`).
    pub tools: Vec<String>,
}

/// The model chosen could not answer (down, failing, overloaded, marked down), so the next of its
/// alias's list did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    /// The model that wrote it (`<provider>/<model>`).
    pub model: String,
    /// The model asked first.
    pub instead_of: String,
    /// Why that one could not answer, in words for a person.
    pub why: String,
}

/// An answer being written, as far as it has come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveText {
    pub answer_id: String,
    pub text: String,
    /// Its model's thinking so far.
    #[serde(default)]
    pub thinking: String,
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
            model,
        } => started(messages, live, question, answer_id, model),
        Event::Token { answer_id, text } => token(live, answer_id, &text),
        Event::Thinking { answer_id, text } => thinking(live, answer_id, &text),
        Event::Snapshot {
            answer_id,
            text,
            thinking,
        } => {
            if let Some(answer) = find(messages, &answer_id) {
                answer.status = Status::Streaming;
            }
            *live = Some(LiveText {
                answer_id,
                text,
                thinking,
            });
        }
        Event::ToolCall { answer_id, call }
        | Event::Decision { answer_id, call }
        | Event::ToolResult { answer_id, call } => {
            if let Some(answer) = find(messages, &answer_id) {
                match answer.tool_calls.iter_mut().find(|c| c.id == call.id) {
                    Some(known) => {
                        // A question shown goes with its own events (answered, expired), not with
                        // the call's, while the call is not settled.
                        let question = known.question.take();
                        *known = call;
                        let open = matches!(
                            known.state,
                            CallStatus::Waiting | CallStatus::Approved | CallStatus::Running
                        );
                        if known.question.is_none() && open {
                            known.question = question;
                        }
                    }
                    None => answer.tool_calls.push(call),
                }
            }
        }
        Event::ToolProgress {
            answer_id,
            call_id,
            progress,
        } => {
            if let Some(call) = find_call(messages, &answer_id, &call_id) {
                call.progress = Some(progress);
            }
        }
        Event::Question {
            answer_id,
            call_id,
            question,
        } => {
            if let Some(call) = find_call(messages, &answer_id, &call_id) {
                call.question = Some(question);
            }
        }
        Event::QuestionAnswered {
            answer_id,
            call_id,
            id,
            ..
        } => {
            if let Some(call) = find_call(messages, &answer_id, &call_id)
                && call.question.as_ref().is_some_and(|q| q.id == id)
            {
                call.question = None;
            }
        }
        Event::ApprovalNeeded {
            answer_id, usage, ..
        } => {
            settle(messages, live, &answer_id, Status::Waiting, None, usage);
        }
        Event::RunFinished {
            answer_id,
            status,
            error,
            usage,
        } => settle(messages, live, &answer_id, status, error, usage),
        Event::Resync => return Applied::Resync,
    }
    Applied::Done
}

/// A call of an answer.
fn find_call<'a>(
    messages: &'a mut [MessageView],
    answer_id: &str,
    call_id: &str,
) -> Option<&'a mut crate::CallView> {
    find(messages, answer_id)?
        .tool_calls
        .iter_mut()
        .find(|c| c.id == call_id)
}

/// A send started an answer: `question` replaces what followed its position, and the answer
/// `answer_id` follows it, being written. Told twice (the send's reply and its event), it does
/// the same once.
pub fn started(
    messages: &mut Vec<MessageView>,
    live: &mut Option<LiveText>,
    question: MessageView,
    answer_id: String,
    model: String,
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
            model: Some(model),
            thinking: String::new(),
            usage: None,
        });
    }
    // Its first tokens may have come before the reply to the send that started it.
    live_of(live, answer_id);
}

/// More of the answer `answer_id`.
pub fn token(live: &mut Option<LiveText>, answer_id: String, text: &str) {
    live_of(live, answer_id).text.push_str(text);
}

/// More of the thinking of the answer `answer_id`.
pub fn thinking(live: &mut Option<LiveText>, answer_id: String, text: &str) {
    live_of(live, answer_id).thinking.push_str(text);
}

/// The live answer `answer_id` (a new, empty one when another was live).
fn live_of(live: &mut Option<LiveText>, answer_id: String) -> &mut LiveText {
    if live.as_ref().is_none_or(|l| l.answer_id != answer_id) {
        *live = Some(LiveText {
            answer_id,
            text: String::new(),
            thinking: String::new(),
        });
    }
    live.as_mut().expect("set above")
}

/// The answer stops being written (it waits, or ended as `status`): its text is the live one, and
/// its calls read as they do in such an answer.
fn settle(
    messages: &mut [MessageView],
    live: &mut Option<LiveText>,
    answer_id: &str,
    status: Status,
    error: Option<String>,
    usage: Option<Usage>,
) {
    let written = match live {
        Some(l) if l.answer_id == answer_id => live.take(),
        _ => None,
    };
    if let Some(answer) = find(messages, answer_id) {
        if let Some(written) = written {
            answer.content = written.text;
            // A later turn's thinking follows the earlier turns', as the stored answer joins them.
            if !written.thinking.is_empty() {
                if !answer.thinking.is_empty() {
                    answer.thinking.push_str("\n\n");
                }
                answer.thinking.push_str(&written.thinking);
            }
        }
        if let Some(usage) = usage {
            if let Some(fallback) = &usage.fallback {
                answer.model = Some(fallback.model.clone());
            }
            answer.usage = Some(usage);
        }
        answer.status = status;
        answer.error = error;
        let ended = !matches!(status, Status::Streaming | Status::Waiting);
        for call in &mut answer.tool_calls {
            call.state = call.state.in_answer(status);
            // An answer that ended (stopped, say) waits for no reply any more.
            if ended {
                call.question = None;
            }
        }
    }
}

fn find<'a>(messages: &'a mut [MessageView], id: &str) -> Option<&'a mut MessageView> {
    messages.iter_mut().rev().find(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(state: &str) -> CallView {
        serde_json::from_value(json!({
            "id": "c1", "turn": 1, "server": "later", "tool": "greet", "arguments": "{}",
            "edited": false, "read_only": false, "destructive": false, "open_world": false,
            "state": state, "decided_by": "you", "reason": null, "result": null,
            "duration_ms": null
        }))
        .unwrap()
    }

    /// A question a call's server asked stays on its card while the call's card is replaced
    /// (the answer pauses for the reply: the call shows approved), and goes once the call settles.
    #[test]
    fn a_question_stays_with_its_call_until_the_call_settles() {
        let mut messages = vec![MessageView {
            id: "a1".into(),
            position: 1,
            role: Role::Assistant,
            content: String::new(),
            status: Status::Streaming,
            error: None,
            tool_calls: vec![call("running")],
            model: None,
            thinking: String::new(),
            usage: None,
        }];
        let mut live = None;
        let question: crate::QuestionView = serde_json::from_value(json!({
            "id": "q1", "server": "later", "message": "Name?", "schema": null, "url": null
        }))
        .unwrap();
        let asked = Event::Question {
            answer_id: "a1".into(),
            call_id: "c1".into(),
            question: question.clone(),
        };
        apply(&mut messages, &mut live, asked);
        let paused = Event::Decision {
            answer_id: "a1".into(),
            call: call("approved"),
        };
        apply(&mut messages, &mut live, paused);
        let shown = &messages[0].tool_calls[0];
        assert_eq!(shown.state, CallStatus::Approved);
        assert_eq!(shown.question, Some(question));

        let mut stopped = messages.clone();
        let mut none = None;
        let stop = Event::RunFinished {
            answer_id: "a1".into(),
            status: Status::Stopped,
            error: None,
            usage: None,
        };
        apply(&mut stopped, &mut none, stop);
        assert_eq!(
            stopped[0].tool_calls[0].question, None,
            "a stopped answer asks nothing"
        );

        let settled = Event::ToolResult {
            answer_id: "a1".into(),
            call: call("ok"),
        };
        apply(&mut messages, &mut live, settled);
        let shown = &messages[0].tool_calls[0];
        assert_eq!(shown.state, CallStatus::Ok);
        assert_eq!(shown.question, None, "a settled call asks nothing");
    }
}
