//! Switchboard's domain: everything that is neither HTML nor HTTP.
//!
//! The UI crate (`app`) renders; the `server` crate wires HTTP, configuration and start-up; this
//! crate owns the data and the rules. Today that is the database (connection, migrations,
//! readiness); the agent graph, the LLM client and the MCP connections will live here too, so that
//! each can be tested without a browser or a web server.

pub mod db;

pub use db::{Database, DbError, Readiness};
