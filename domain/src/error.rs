//! The domain's one error type.

use sqlx::migrate::MigrateError;

/// What can go wrong in the domain: the database, or a request that breaks a rule.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migrations failed: {0}")]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Query(#[from] sqlx::Error),
    /// The input breaks a rule; the message says which, in words a person can act on.
    #[error("{0}")]
    Invalid(String),
    /// The person may not do this (not an administrator); the message says so.
    #[error("{0}")]
    Forbidden(String),
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
