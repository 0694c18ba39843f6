//! The domain's one error type.

use sqlx::migrate::MigrateError;

/// What can go wrong in the domain. Each variant is one kind of failure, and the layers above answer
/// it by its kind alone (an HTTP status, an `error` word), so the variant chosen here is the whole
/// decision. The messages of the kinds a person meets are theirs to read and act on; the database's
/// own errors are for the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migrations failed: {0}")]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Query(#[from] sqlx::Error),
    /// The input breaks a rule, or decides on something no longer asked; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// The person may not do this (not an administrator); the message says so.
    #[error("{0}")]
    Forbidden(String),
    /// There is no such thing, or it is someone else's (the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// The request is fine but clashes with the state it meets: a chat already answering or waiting
    /// for decisions, a name already taken, a server switched off or not connected.
    #[error("{0}")]
    Conflict(String),
    /// Something Switchboard depends on cannot serve now: a tool server that fails, no model set up.
    #[error("{0}")]
    Unavailable(String),
    /// Something took longer than it may and was given up.
    #[error("{0}")]
    Timeout(String),
    /// The person must sign in to a tool server (again) first; the message says which.
    #[error("{0}")]
    SignIn(String),
    /// The person started as many answers as their rate allows; they may again in `retry_after`
    /// seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// A token budget of the person's is used up until it renews, in `retry_after` seconds.
    #[error("{message}")]
    OverBudget { message: String, retry_after: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes, on one line (`outer: inner: innermost`), for logs and for messages
/// that must say what really happened (a refused connection, a DNS failure).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        current = cause.source();
    }
    text
}
