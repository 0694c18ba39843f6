//! A tool call of an answer as every client sees it: on its card, in `chats/get`, and in the
//! events that say it was asked for, decided, or ran.

use serde::{Deserialize, Serialize};

use crate::Status;

/// Where a call stands, in the answer it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Waiting for the person's decision.
    Waiting,
    /// Approved, and about to run (or waiting for the turn's other calls to be decided).
    Approved,
    Running,
    /// It ran, and returned `result`.
    Ok,
    /// It ran and failed, or could not run; `result` says why.
    Error,
    Rejected,
    /// It was running when the server stopped: it may or may not have had its effect.
    Interrupted,
    /// The answer ended before it ran.
    NotRun,
}

impl CallStatus {
    /// The call's status once its answer is `status`: an answer that is no longer being written
    /// (nor waits) runs nothing more, so a call it left running was cut off, and one it had not
    /// run yet never will be. The server's read and a page's events agree through this.
    pub fn in_answer(self, status: Status) -> CallStatus {
        let live = matches!(status, Status::Streaming | Status::Waiting);
        match self {
            CallStatus::Running if status != Status::Streaming => CallStatus::Interrupted,
            CallStatus::Approved | CallStatus::Waiting if !live => CallStatus::NotRun,
            CallStatus::Waiting if status != Status::Waiting => CallStatus::NotRun,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Waiting => "waiting",
            CallStatus::Approved => "approved",
            CallStatus::Running => "running",
            CallStatus::Ok => "ok",
            CallStatus::Error => "error",
            CallStatus::Rejected => "rejected",
            CallStatus::Interrupted => "interrupted",
            CallStatus::NotRun => "not_run",
        }
    }
}

/// A tool call of an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallView {
    pub id: String,
    /// The turn of the answer that asked for it: a decision names it (with the answer).
    pub turn: u32,
    pub server: String,
    pub tool: String,
    /// The arguments it runs (ran) with, pretty-printed JSON: the person's edit, or the model's.
    pub arguments: String,
    /// The person changed the model's arguments.
    pub edited: bool,
    pub read_only: bool,
    pub destructive: bool,
    pub open_world: bool,
    pub state: CallStatus,
    /// Who decided: `you`, or the policy (`your policy: always allow this tool`, ...).
    pub decided_by: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// What it returned (or the error), as the model was told it.
    pub result: Option<String>,
    /// What it returned, part by part, as the person is shown it (images inline, structured
    /// content pretty-printed); empty for a call that did not run, or ran before parts were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ResultPart>,
    /// How far it has come while it runs, when its server says (from `tool_progress` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// A question its server asks the person while it runs, waiting for their answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<QuestionView>,
    /// It waits for the person to sign in to its server again (their sign-in expired when it was
    /// to run): why, in words. Deciding it again (once signed in) runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<String>,
    pub duration_ms: Option<u64>,
}

/// A tool server's question to the person during a call (MCP elicitation): a form of simple
/// fields (`schema`, a JSON Schema), or a web page to open (`url`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionView {
    pub id: String,
    pub server: String,
    /// The server's words.
    pub message: String,
    pub schema: Option<serde_json::Value>,
    pub url: Option<String>,
}

/// How far a running call has come, as its server said (MCP progress notifications).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    /// The server's words, cut to [`Progress::MAX_MESSAGE`] characters.
    pub message: Option<String>,
}

// Progress figures are finite: servers' NaNs do not pass serde_json.
impl Eq for Progress {}

impl Progress {
    /// The longest message of a server's kept.
    pub const MAX_MESSAGE: usize = 200;

    /// In words: the server's message, else "3 of 5", else "3".
    pub fn words(&self) -> String {
        if let Some(message) = self.message.as_ref().filter(|m| !m.trim().is_empty()) {
            return message.clone();
        }
        match self.total {
            Some(total) => format!("{} of {}", self.progress, total),
            None => format!("{}", self.progress),
        }
    }
}

/// One part of what a tool returned, as the person is shown it. Media come checked: an image is
/// PNG, JPEG, GIF or WebP (never SVG, which can hold scripts) and `data` is base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResultPart {
    Text {
        text: String,
    },
    Image {
        mime_type: String,
        data: String,
    },
    Audio {
        mime_type: String,
        data: String,
    },
    /// A resource the server embedded: its text, or a note of what it is when it is binary.
    Resource {
        uri: String,
        mime_type: Option<String>,
        text: String,
    },
    /// A link to a resource the server has (any scheme: shown, not followed).
    Link {
        uri: String,
        name: String,
        description: Option<String>,
    },
    /// The server's structured content, pretty-printed JSON.
    Structured {
        json: String,
    },
    /// Something that cannot be shown (an SVG, an unknown kind), in words.
    Note {
        text: String,
    },
}

impl CallView {
    /// Whether the call waits for the person's decision.
    pub fn is_waiting(&self) -> bool {
        self.state == CallStatus::Waiting
    }
}

/// A policy that decides calls (`tool`, `server`, `read_only`), in the person's words: what a
/// call's `decided_by` and the activity log say.
pub fn policy_words(policy: &str) -> String {
    match policy {
        "tool" => "your policy: always allow this tool".into(),
        "server" => "your policy: always allow this server".into(),
        "read_only" => "your policy: read-only tools run without asking".into(),
        other => format!("policy {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_left_behind_by_an_ended_answer_reads_as_cut_off_or_not_run() {
        use CallStatus::*;
        for ended in [
            Status::Complete,
            Status::Stopped,
            Status::Failed,
            Status::Interrupted,
        ] {
            assert_eq!(Running.in_answer(ended), Interrupted);
            assert_eq!(Approved.in_answer(ended), NotRun);
            assert_eq!(Waiting.in_answer(ended), NotRun);
            for kept in [Ok, Error, Rejected, Interrupted, NotRun] {
                assert_eq!(kept.in_answer(ended), kept);
            }
        }
        assert_eq!(Running.in_answer(Status::Streaming), Running);
        assert_eq!(Approved.in_answer(Status::Waiting), Approved);
        assert_eq!(Waiting.in_answer(Status::Waiting), Waiting);
        assert_eq!(Waiting.in_answer(Status::Streaming), NotRun);
        let json = serde_json::to_string(&NotRun).unwrap();
        assert_eq!(json, format!("\"{}\"", NotRun.as_str()));
    }
}
