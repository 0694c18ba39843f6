//! The UI layer's one error type: what a server function tells the page (and an API client) when it
//! cannot do what was asked. Over HTTP it is `{"error": kind, "message": text}`, the same shape as
//! the sign-in gate's errors. The message is always safe to show; internal detail stays in the log.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Unauthenticated,
    NotFound,
    /// Only an administrator may do this.
    Forbidden,
    /// The request breaks a rule.
    Invalid,
    Internal,
    /// The request could not reach the server function, or its answer was unreadable.
    Transport,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub error: ErrorKind,
    pub message: String,
}

impl AppError {
    pub fn new(error: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorKind::Unauthenticated,
            "You are not signed in. Sign in again, then retry.",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorKind::Internal,
            "Something went wrong on the server. Try again in a moment; if it keeps happening, tell your administrator.",
        )
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(message) | ServerFnErrorErr::MissingArg(message) => {
                Self::invalid(format!("The request is malformed: {message}"))
            }
            other => Self::new(
                ErrorKind::Transport,
                format!(
                    "Switchboard could not be reached ({other}). Check your connection and try again."
                ),
            ),
        }
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self.error {
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Internal | ErrorKind::Transport => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Sets the HTTP status of the server function's response to match this error.
    pub fn respond(self) -> Self {
        if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(self.status());
        }
        self
    }
}

#[cfg(feature = "ssr")]
impl From<domain::Error> for AppError {
    fn from(error: domain::Error) -> Self {
        match error {
            domain::Error::Invalid(message) => Self::invalid(message),
            domain::Error::Forbidden(message) => Self::new(ErrorKind::Forbidden, message),
            other => {
                tracing::error!("server function failed: {other}");
                Self::internal()
            }
        }
        .respond()
    }
}
