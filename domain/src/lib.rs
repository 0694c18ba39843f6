//! Switchboard's domain: everything that is neither HTML nor HTTP.
//!
//! The UI crate (`app`) renders; the `server` crate wires HTTP, configuration and start-up; this
//! crate owns the data and the rules: the database (connection, migrations, readiness), the people
//! who sign in and their API tokens, and the LLM client. The agent graph, the LLM client and the MCP connections will
//! live here too, so that each can be tested without a browser or a web server.

pub mod agent;
pub mod chats;
pub mod db;
pub mod error;
pub mod llm;
pub mod mcp;
pub mod runs;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod users;

pub use db::{Database, Readiness};
pub use error::{Error, Result};
