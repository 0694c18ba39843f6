//! The UI layer's one error type: what a server function tells the page (and an API client) when it
//! cannot do what was asked. Over HTTP it is `{"error": kind, "message": text}`, the same shape as
//! the sign-in gate's errors. The message is always safe to show; internal detail stays in the log.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

pub use protocol::ErrorKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub error: ErrorKind,
    pub message: String,
    /// For a limit reached: the seconds until it lets the request through (sent as `Retry-After`
    /// too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(error: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
            retry_after: None,
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

impl AppError {
    /// The HTTP status that answers this error: it follows from the kind alone (the server answers
    /// every server function's error with it, see the server's `api_errors`; an error page with it).
    pub fn status(&self) -> u16 {
        self.error.status()
    }
}

#[cfg(feature = "ssr")]
impl From<domain::Error> for AppError {
    fn from(error: domain::Error) -> Self {
        use domain::Error as E;
        let kind = match &error {
            E::Invalid(_) => ErrorKind::Invalid,
            E::Forbidden(_) => ErrorKind::Forbidden,
            E::NotFound(_) => ErrorKind::NotFound,
            E::Conflict(_) => ErrorKind::Conflict,
            E::Unavailable(_) => ErrorKind::Unavailable,
            E::Timeout(_) => ErrorKind::Timeout,
            E::SignIn(_) => ErrorKind::Conflict,
            E::RateLimited { retry_after, .. } | E::OverBudget { retry_after, .. } => {
                let kind = if matches!(error, E::RateLimited { .. }) {
                    ErrorKind::RateLimited
                } else {
                    ErrorKind::OverBudget
                };
                let retry_after = Some(*retry_after);
                return Self {
                    retry_after,
                    ..Self::new(kind, error.to_string())
                };
            }
            E::Connect(_) | E::Migrate(_) | E::Query(_) => {
                tracing::error!("server function failed: {}", domain::error::chain(&error));
                return Self::internal();
            }
        };
        Self::new(kind, error.to_string())
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn each_domain_error_is_answered_with_the_status_its_kind_means() {
        use domain::Error as E;
        let said = || "what happened".to_owned();
        let cases = [
            (E::Invalid(said()), "invalid", 422),
            (E::Forbidden(said()), "forbidden", 403),
            (E::NotFound(said()), "not_found", 404),
            (E::Conflict(said()), "conflict", 409),
            (E::Unavailable(said()), "unavailable", 503),
            (E::Timeout(said()), "timeout", 504),
            (E::SignIn(said()), "conflict", 409),
            (
                E::RateLimited {
                    message: said(),
                    retry_after: 5,
                },
                "rate_limited",
                429,
            ),
            (
                E::OverBudget {
                    message: said(),
                    retry_after: 5,
                },
                "over_budget",
                429,
            ),
            (E::Query(sqlx::Error::PoolTimedOut), "internal", 500),
        ];
        for (domain_error, word, status) in cases {
            let error = AppError::from(domain_error);
            assert_eq!(error.status(), status, "{word}");
            let json = serde_json::to_value(&error).unwrap();
            assert_eq!(json["error"], word);
            if word == "internal" {
                assert!(
                    !json["message"].as_str().unwrap().contains("pool"),
                    "{json}"
                );
            } else {
                assert_eq!(json["message"], "what happened");
            }
        }
    }
}
