//! Personal API tokens: how scripts act as a person (`Authorization: Bearer sb_...`).
//!
//! A token is `sb_` and 256 random bits in base64url. Only its SHA-256 is stored, so a copy of the
//! database does not hand out working tokens; the secret is shown once, when it is created.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::users::{Role, User};
use crate::{Database, Error, Result};

/// What every token starts with, so that secret scanners and people can recognise one.
pub const TOKEN_PREFIX: &str = "sb_";
/// How many of the secret's characters the token list shows.
const SHOWN_CHARS: usize = TOKEN_PREFIX.len() + 6;
/// Tokens a person may hold at once.
pub const MAX_TOKENS_PER_USER: i64 = 50;
pub const MAX_NAME_CHARS: usize = 100;

/// A token as its owner sees it in the list (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the secret, e.g. `sb_Xy12ab`.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just created, with its secret, which is never available again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: String,
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates a token named `name` for `user_id`.
pub async fn create(db: &Database, user_id: Uuid, name: &str) -> Result<CreatedToken> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Invalid(
            "Give the token a name, so you can tell it apart later.".into(),
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::Invalid(format!(
            "A token name has at most {MAX_NAME_CHARS} characters."
        )));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix = secret[..SHOWN_CHARS].to_owned();

    let mut tx = db.pool().begin().await?;
    // Locking the user's row serialises their token creation, so the limit holds under
    // concurrent requests.
    sqlx::query!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
        .fetch_one(&mut *tx)
        .await?;
    let held = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM api_tokens WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if held >= MAX_TOKENS_PER_USER {
        return Err(Error::Invalid(format!(
            "You already have {MAX_TOKENS_PER_USER} tokens. Revoke one you no longer use first."
        )));
    }
    let token = sqlx::query_as!(
        ApiToken,
        r#"INSERT INTO api_tokens (user_id, name, prefix, secret_hash) VALUES ($1, $2, $3, $4)
           RETURNING id, name, prefix, created_at, last_used_at"#,
        user_id,
        name,
        prefix,
        hash(&secret),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CreatedToken { token, secret })
}

/// The user's tokens, newest first.
pub async fn list(db: &Database, user_id: Uuid) -> Result<Vec<ApiToken>> {
    let tokens = sqlx::query_as!(
        ApiToken,
        r#"SELECT id, name, prefix, created_at, last_used_at FROM api_tokens
           WHERE user_id = $1 ORDER BY created_at DESC"#,
        user_id
    )
    .fetch_all(db.pool())
    .await?;
    Ok(tokens)
}

/// Revokes one of the user's tokens; false when they have no token with that id.
pub async fn revoke(db: &Database, user_id: Uuid, token_id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM api_tokens WHERE id = $1 AND user_id = $2",
        token_id,
        user_id
    )
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The user a secret belongs to, if it is a live token.
pub async fn authenticate(db: &Database, secret: &str) -> Result<Option<User>> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let found = sqlx::query!(
        r#"SELECT t.id AS token_id, t.last_used_at,
                  u.id, u.issuer, u.subject, u.name, u.email, u.avatar_url, u.role AS "role: Role"
           FROM api_tokens t JOIN users u ON u.id = t.user_id
           WHERE t.secret_hash = $1"#,
        hash(secret)
    )
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = found else {
        return Ok(None);
    };
    // "Last used" to the minute is enough, and spares a write on every call.
    if row
        .last_used_at
        .is_none_or(|at| Utc::now() - at > chrono::TimeDelta::minutes(1))
    {
        sqlx::query!(
            "UPDATE api_tokens SET last_used_at = now() WHERE id = $1",
            row.token_id
        )
        .execute(db.pool())
        .await?;
    }
    Ok(Some(User {
        id: row.id,
        issuer: row.issuer,
        subject: row.subject,
        name: row.name,
        email: row.email,
        avatar_url: row.avatar_url,
        role: row.role,
    }))
}
