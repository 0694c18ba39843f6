//! Storage of browser sessions: an opaque id (from the cookie), its data as JSON, and an expiry.
//! The server's session layer decides what goes in; this module only keeps it.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Database, Result};

/// Stores a new session; false when the id is taken (the caller picks another).
pub async fn create(db: &Database, id: &str, data: &Value, expires: DateTime<Utc>) -> Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO sessions (id, data, expiry_date) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        id,
        data,
        expires
    )
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a session, replacing what was kept under its id.
pub async fn save(db: &Database, id: &str, data: &Value, expires: DateTime<Utc>) -> Result<()> {
    sqlx::query!(
        "INSERT INTO sessions (id, data, expiry_date) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, expiry_date = EXCLUDED.expiry_date",
        id,
        data,
        expires
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The session's data and expiry, unless it has expired or never existed.
pub async fn load(db: &Database, id: &str) -> Result<Option<(Value, DateTime<Utc>)>> {
    let row = sqlx::query!(
        "SELECT data, expiry_date FROM sessions WHERE id = $1 AND expiry_date > now()",
        id
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| (r.data, r.expiry_date)))
}

pub async fn delete(db: &Database, id: &str) -> Result<()> {
    sqlx::query!("DELETE FROM sessions WHERE id = $1", id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Removes expired sessions; returns how many.
pub async fn delete_expired(db: &Database) -> Result<u64> {
    let done = sqlx::query!("DELETE FROM sessions WHERE expiry_date <= now()")
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}
