//! The PostgreSQL database: connecting, migrating and telling whether it is ready to serve.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

use crate::Error;
use crate::tokens::TokenCache;

/// The migrations in `migrations/`, embedded in the binary at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A handle to the database, cheap to clone (it wraps the connection pool, the API tokens this
/// instance has checked lately, see [`crate::tokens::watch`]).
#[derive(Clone, Debug)]
pub struct Database {
    pool: PgPool,
    tokens: Arc<TokenCache>,
}

/// What `/readyz` reports about the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// The deployment's id, the same on every instance that shares this database.
    pub instance_id: Option<Uuid>,
    /// Migrations this binary knows of.
    pub migrations_expected: usize,
    /// Of those, the ones applied successfully in the database.
    pub migrations_applied: usize,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.instance_id.is_some() && self.migrations_applied == self.migrations_expected
    }
}

/// A pooled connection idle for this long is checked before it is used again.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(5);

impl Database {
    /// Connects with a pool of at most `max_connections`, failing fast if the server cannot be reached.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self, Error> {
        // One plain connection first: a pool only reports "timed out" when the server refuses, and
        // a person needs the real cause (refused, unknown host, bad password, no such database).
        let probe = options.connect().await.map_err(Error::Connect)?;
        let _ = probe.close().await;
        let pool = Self::pool_options(max_connections)
            .connect_with(options)
            .await
            .map_err(Error::Connect)?;
        Ok(Self::from_pool(pool))
    }

    /// How the pool is run. A connection is checked (a round trip) before use only if it has been
    /// idle for a while: checking every one, sqlx's default, would add a round trip to every query,
    /// and a connection in steady use has just shown it works.
    pub fn pool_options(max_connections: u32) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IF_IDLE_FOR {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
    }

    /// A database of its own named `name`, made fresh (dropped if it was there, created, migrated)
    /// on the server `url` points to, with the pool the server runs (16 connections). For the
    /// benchmarks, which must not share a database with anything.
    pub async fn fresh(url: &str, name: &str) -> Result<Self, Error> {
        use sqlx::Executor;
        use std::str::FromStr;
        let server = PgConnectOptions::from_str(url).map_err(Error::Connect)?;
        let mut admin = server.connect().await.map_err(Error::Connect)?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{name}\"").as_str())
            .await?;
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        let _ = admin.close().await;
        let pool = Self::pool_options(16)
            .connect_with(server.database(name))
            .await
            .map_err(Error::Connect)?;
        let db = Self::from_pool(pool);
        db.migrate().await?;
        Ok(db)
    }

    /// Wraps an existing pool (tests get theirs from `#[sqlx::test]`).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            tokens: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn token_cache(&self) -> &TokenCache {
        &self.tokens
    }

    /// Whether [`crate::tokens::watch`] is hearing of revoked tokens, so that checked ones are kept.
    pub fn hears_token_changes(&self) -> bool {
        self.tokens.is_listening()
    }

    /// Applies every pending migration. Safe to run from several instances at once: sqlx takes an
    /// advisory lock for the duration.
    pub async fn migrate(&self) -> Result<(), Error> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database answers and every migration this binary knows of has been applied.
    pub async fn readiness(&self) -> Result<Readiness, Error> {
        let applied: Vec<i64> = sqlx::query_scalar!(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version"
        )
        .fetch_all(&self.pool)
        .await?;
        let expected: Vec<i64> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        let migrations_applied = expected.iter().filter(|v| applied.contains(v)).count();
        let instance_id = if migrations_applied == expected.len() {
            sqlx::query_scalar!("SELECT id FROM instance")
                .fetch_optional(&self.pool)
                .await?
        } else {
            None
        };
        Ok(Readiness {
            instance_id,
            migrations_expected: expected.len(),
            migrations_applied,
        })
    }
}
