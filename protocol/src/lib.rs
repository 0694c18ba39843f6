//! The shapes that cross the wire between Switchboard's server and its pages (and any client that
//! follows `docs/api.md`): a chat's messages and their tool calls as `chats/get` returns them
//! ([`chat`]), the events of a chat's stream ([`Event`]), and the kinds of error ([`ErrorKind`]).
//! Built for the server and for the browser alike, with serde alone; a page keeps a chat's state
//! by applying the events to what it read ([`ChatState::apply`]), the same rules the server's
//! read follows, so the two agree.

mod calls;
pub mod chat;
mod errors;
mod events;
mod offerings;

pub use calls::{CallStatus, CallView, Progress, QuestionView, ResultPart, policy_words};
pub use chat::{Applied, ChatState, Fallback, LiveText, MessageView, Offered, Role, Status, Usage};
pub use errors::ErrorKind;
pub use events::Event;
pub use offerings::{Prompt, PromptArgument, Resource};
