//! Personal API tokens: how scripts act as a person (`Authorization: Bearer sb_...`).
//!
//! A token is `sb_` and 256 random bits in base64url. Only its SHA-256 is stored, so a copy of the
//! database does not hand out working tokens; the secret is shown once, when it is created.
//!
//! A script sends its token with every request, and checking it is a query. So each instance keeps
//! the tokens it has checked in the last minute in memory ([`TokenCache`]), but only while it hears
//! of every change that could make one of them wrong: [`watch`] listens for what the database's
//! triggers send when a token is revoked or a user changes, and forgets that person's tokens at
//! each. While it is not listening (at start, or its connection is lost), every request asks the
//! database.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::users::{Role, Status, User};
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
        return Err(Error::Conflict(format!(
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
    // Other instances hear of it from the database; this one need not wait for that.
    db.token_cache().forget(Change::Person(user_id));
    Ok(done.rows_affected() == 1)
}

/// The user a secret belongs to, if it is a live token of an active person.
pub async fn authenticate(db: &Database, secret: &str) -> Result<Option<User>> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let key = hash(secret);
    let cache = db.token_cache();
    if let Some(user) = cache.get(&key) {
        return Ok(Some(user));
    }
    let seen = cache.generation();
    let found = sqlx::query!(
        r#"SELECT t.id AS token_id, t.last_used_at,
                  u.id, u.issuer, u.subject, u.name, u.email, u.avatar_url, u.role AS "role: Role",
                  u.status AS "status: Status"
           FROM api_tokens t JOIN users u ON u.id = t.user_id
           WHERE t.secret_hash = $1 AND u.status = 'active'"#,
        &key
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
    let user = User {
        id: row.id,
        issuer: row.issuer,
        subject: row.subject,
        name: row.name,
        email: row.email,
        avatar_url: row.avatar_url,
        role: row.role,
        status: row.status,
    };
    cache.keep(key, user.clone(), seen);
    Ok(Some(user))
}

/// What may have changed about who is signed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A token of this person was revoked, or the person changed (role, status, deleted).
    Person(Uuid),
    /// Anything: this instance stopped or started hearing of changes.
    Anyone,
}

impl Change {
    /// Whether the change may be about `user_id`.
    pub fn concerns(self, user_id: Uuid) -> bool {
        match self {
            Change::Person(id) => id == user_id,
            Change::Anyone => true,
        }
    }
}

/// The changes of tokens and people as this instance hears of them (see
/// [`TokenCache::changes`]).
pub fn changes(db: &Database) -> tokio::sync::broadcast::Receiver<Change> {
    db.token_cache().changes()
}

/// The channel the triggers of migration `20261203000001` notify when a token is revoked or a user
/// is changed or deleted.
const AUTH_CHANGED: &str = "switchboard_auth_changed";
/// How long a checked token is trusted without asking again, at most; also how often its "last
/// used" is brought up to date.
const KEEP_FOR: Duration = Duration::from_secs(60);
/// How long to wait before listening again after the connection was lost, doubling up to the
/// longest while the database does not answer.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);
const RELISTEN_AFTER_AT_MOST: Duration = Duration::from_secs(30);

/// The API tokens this instance has checked lately, by the hash of their secret.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<Vec<u8>, (User, Instant)>>,
    /// Counts the times everything was forgotten, so that a check that began before one does not
    /// keep what it read.
    generation: AtomicU64,
    /// Whether changes are being heard; without that nothing is kept.
    listening: AtomicBool,
    /// Told of each change forgotten: what was signed in may no longer be.
    changes: tokio::sync::broadcast::Sender<Change>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            generation: AtomicU64::default(),
            listening: AtomicBool::default(),
            changes: tokio::sync::broadcast::Sender::new(1024),
        }
    }
}

impl TokenCache {
    /// Each token revoked and person changed (their role, their status) on any instance, and
    /// [`Change::Anyone`] when this instance stops or starts hearing of such changes: whoever holds
    /// on to a signed-in request (an event stream) checks it again then. A receiver that falls
    /// behind should take it as a change of anyone.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn get(&self, key: &[u8]) -> Option<User> {
        if !self.is_listening() {
            return None;
        }
        let entries = self.entries.lock().expect("token cache poisoned");
        let (user, at) = entries.get(key)?;
        (at.elapsed() < KEEP_FOR).then(|| user.clone())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps what a check read, unless everything was forgotten since it began.
    fn keep(&self, key: Vec<u8>, user: User, seen: u64) {
        let mut entries = self.entries.lock().expect("token cache poisoned");
        if self.is_listening() && self.generation() == seen {
            entries.retain(|_, (_, at)| at.elapsed() < KEEP_FOR);
            entries.insert(key, (user, Instant::now()));
        }
    }

    /// Forgets what `change` may have made wrong, and tells whoever listens.
    pub(crate) fn forget(&self, change: Change) {
        let mut entries = self.entries.lock().expect("token cache poisoned");
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, (user, _)| !change.concerns(user.id));
        // Nobody may be listening.
        let _ = self.changes.send(change);
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn set_listening(&self, listening: bool) {
        self.forget(Change::Anyone);
        self.listening.store(listening, Ordering::Release);
    }
}

/// Listens for revoked tokens and changed users, so that `db`'s token cache can be used, until the
/// pool is closed. Spawn it once per instance; a lost connection is listened on again.
pub async fn watch(db: Database) {
    let cache = db.token_cache();
    let closed = db.pool().close_event();
    let mut closed = std::pin::pin!(closed);
    let mut wait = RELISTEN_AFTER;
    loop {
        let heard = closed.as_mut().do_until(listen(&db, cache)).await;
        if cache.is_listening() {
            // It was heard from before it failed: the database answers, so try again soon.
            wait = RELISTEN_AFTER;
        }
        cache.set_listening(false);
        match heard {
            Err(_closed) => return,
            Ok(Err(e)) => tracing::warn!(
                "not hearing of revoked API tokens, so each request checks its token: {e}"
            ),
        }
        if closed
            .as_mut()
            .do_until(tokio::time::sleep(wait))
            .await
            .is_err()
        {
            return;
        }
        wait = (wait * 2).min(RELISTEN_AFTER_AT_MOST);
    }
}

/// Forgets the cache at every change it hears of, until the connection is lost.
async fn listen(db: &Database, cache: &TokenCache) -> Result<Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(db.pool()).await?;
    listener.listen(AUTH_CHANGED).await?;
    cache.set_listening(true);
    loop {
        match listener.try_recv().await? {
            // The triggers name the person; anything else is taken as a change of anyone.
            Some(notice) => cache.forget(
                notice
                    .payload()
                    .parse()
                    .map_or(Change::Anyone, Change::Person),
            ),
            None => return Err(sqlx::Error::Protocol("the connection was lost".into())),
        }
    }
}
