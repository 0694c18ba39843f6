//! Switchboard's domain: everything that is neither HTML nor HTTP.
//!
//! The UI crate (`app`) renders; the `server` crate wires HTTP, configuration and start-up; this
//! crate owns the data and the rules: the database (connection, migrations, readiness), the people
//! who sign in and their API tokens and sessions, chats and their runs, the LLM client, the MCP
//! registry and connections, secrets at rest and the agent graph, each testable without a browser
//! or a web server.

pub mod access;
pub mod agent;
pub mod budgets;
pub mod chats;
pub mod db;
pub mod error;
pub mod groups;
pub mod llm;
pub mod local_models;
pub mod mcp;
pub mod metrics;
pub mod model_admin;
pub mod people;
pub mod runs;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod usage;
pub mod users;

pub use db::{Database, Readiness};
pub use error::{Error, Result};
