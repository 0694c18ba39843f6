//! The kinds of error every endpoint answers with, as `{"error": kind, "message": text}`.

use serde::{Deserialize, Serialize};

/// What kind of failure an error is; the HTTP status follows from it ([`ErrorKind::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Unauthenticated,
    NotFound,
    /// Only an administrator may do this.
    Forbidden,
    /// The request breaks a rule.
    Invalid,
    /// The request clashes with the state it meets (a chat already answering, a name taken).
    Conflict,
    /// Something Switchboard depends on cannot serve now (a tool server, no model set up).
    Unavailable,
    /// Something took longer than it may and was given up.
    Timeout,
    /// Too many requests or answers in a while; `retry_after` says when to try again.
    RateLimited,
    /// A token budget is used up; the message says which, and `retry_after` when it renews.
    OverBudget,
    Internal,
    /// The request could not reach the server, or its answer was unreadable (said by a client).
    Transport,
}

impl ErrorKind {
    /// The HTTP status an error of this kind is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Unauthenticated => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::Forbidden => 403,
            ErrorKind::Invalid => 422,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::RateLimited | ErrorKind::OverBudget => 429,
            ErrorKind::Internal | ErrorKind::Transport => 500,
        }
    }
}
