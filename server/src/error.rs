//! Why the server could not start, each with what to do about it.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::embedded_pg::EmbeddedPgError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    EmbeddedDatabase(#[from] EmbeddedPgError),
    #[error(
        "cannot connect to the PostgreSQL server given by DATABASE_URL ({target}): {cause}. Check DATABASE_URL (host, port, database, user and password), or unset it to use the embedded database."
    )]
    ExternalDatabase { target: String, cause: String },
    #[error(
        "cannot connect to the embedded database: {0}. Its log is postgres.log in SWITCHBOARD_DATA_DIR."
    )]
    EmbeddedConnect(String),
    #[error(
        "database migrations failed: {0}. Each migration runs in a transaction, so the database is as it was before the one that failed; fix the cause and start again."
    )]
    Migrate(String),
    #[error(
        "cannot use the MCP servers file {path}: {cause}. Fix it, or unset SWITCHBOARD_MCP_SERVERS_FILE."
    )]
    McpServers { path: String, cause: String },
    #[error("cannot prepare the local user in the database: {0}")]
    LocalUser(String),
    #[error(
        "cannot bring people's roles in line with SWITCHBOARD_ADMIN_EMAILS and SWITCHBOARD_ADMIN_GROUPS: {0}"
    )]
    Roles(String),
    #[error(
        "cannot listen on {addr}: {source}. Set SWITCHBOARD_LISTEN to a free address and port."
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
