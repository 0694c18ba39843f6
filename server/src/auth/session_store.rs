//! tower-sessions' store on our own `sessions` table (the SQL is in `domain::sessions`).
//!
//! Our own rather than `tower-sessions-sqlx-store`: that crate's current release is built for an
//! older tower-sessions, and it would switch sqlx's `time` feature on for the whole workspace.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::Database;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

#[derive(Clone, Debug)]
pub struct PgSessionStore {
    db: Database,
}

impl PgSessionStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Deletes expired sessions every `period`, for as long as the server runs.
    pub fn spawn_cleanup(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                match domain::sessions::delete_expired(&db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(sessions = n, "deleted expired sessions"),
                    Err(e) => tracing::warn!("could not delete expired sessions: {e}"),
                }
            }
        })
    }
}

fn backend(e: domain::Error) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn encode(record: &Record) -> session_store::Result<(String, serde_json::Value, DateTime<Utc>)> {
    let data = serde_json::to_value(&record.data)
        .map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let nanos = record.expiry_date.unix_timestamp_nanos();
    let expires = DateTime::from_timestamp_nanos(nanos.clamp(0, i64::MAX as i128) as i64);
    Ok((record.id.to_string(), data, expires))
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let (id, data, expires) = encode(record)?;
            if domain::sessions::create(&self.db, &id, &data, expires)
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            // 128 random bits collided: astronomically unlikely, but never overwrite a session.
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (id, data, expires) = encode(record)?;
        domain::sessions::save(&self.db, &id, &data, expires)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some((data, expires)) = domain::sessions::load(&self.db, &id.to_string())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_value(data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
            expires.timestamp_nanos_opt().unwrap_or(i64::MAX),
        ))
        .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        domain::sessions::delete(&self.db, &id.to_string())
            .await
            .map_err(backend)
    }
}
