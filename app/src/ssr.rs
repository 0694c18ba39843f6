//! What a server function takes from its request: the signed-in user (put there by the server's
//! sign-in gate), the database, the runs and the MCP connections (provided by the server for every
//! request).

use domain::Database;
use domain::mcp::Mcp;
use domain::runs::Runs;
use domain::users::User;
use leptos::prelude::use_context;

use crate::error::AppError;

/// The signed-in user of this request.
pub fn current_user() -> Result<User, AppError> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<User>().cloned())
        .ok_or_else(AppError::unauthenticated)
}

pub fn db() -> Result<Database, AppError> {
    provided("database")
}

pub fn runs() -> Result<Runs, AppError> {
    provided("runs")
}

pub fn mcp() -> Result<Mcp, AppError> {
    provided("MCP connections")
}

/// The longest message a person may send, in characters (`SWITCHBOARD_MAX_MESSAGE_CHARS`).
#[derive(Clone, Copy, Debug)]
pub struct MessageLimit(pub usize);

/// Refuses a message longer than the server takes, saying by how much.
pub fn check_length(text: &str) -> Result<(), AppError> {
    let MessageLimit(most) = provided("message limit")?;
    let length = text.chars().count();
    if length > most {
        let (_, attached) = crate::offerings::split_attachments(text);
        let with = if attached.is_empty() {
            ""
        } else {
            " with the resources attached to it"
        };
        return Err(AppError::invalid(format!(
            "Your message is {length} characters long{with}; Switchboard takes at most {most} in one message. Shorten it, attach fewer resources, or send it in parts."
        )));
    }
    Ok(())
}

fn provided<T: Clone + Send + Sync + 'static>(what: &str) -> Result<T, AppError> {
    use_context::<T>().ok_or_else(|| {
        tracing::error!("the {what} is missing from the server function's context");
        AppError::internal()
    })
}
