//! Everyone who signed in, as administrators see them (`/admin/people`), and what administrators
//! do to them: deactivate (their sessions, tokens and event streams stop at once) and reactivate.
//! Each action is recorded in `admin_actions` (who, to whom, when).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::users::{LOCAL_ISSUER, Role, Status, User};
use crate::{Database, Error, Result};

/// The most people one list shows, most recently signed in first.
pub const MAX_LISTED: i64 = 1000;

/// A person as an administrator sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    /// Who vouches for them: the identity provider's issuer (`local` in local mode).
    pub issuer: String,
    pub role: Role,
    pub status: Status,
    /// Their groups at the identity provider, as of their last sign-in.
    pub groups: Vec<String>,
    pub last_sign_in: chrono::DateTime<chrono::Utc>,
    /// Tokens their answers used this calendar month (UTC), as the providers counted them or as
    /// estimated.
    pub tokens_this_month: i64,
}

fn admins_only() -> Error {
    Error::Forbidden("Only administrators can see and manage people.".into())
}

/// Everyone who signed in, most recently first (at most [`MAX_LISTED`]); administrators only.
pub async fn everyone(db: &Database, actor: &User) -> Result<Vec<Person>> {
    if !actor.is_admin() {
        return Err(admins_only());
    }
    Ok(sqlx::query_as!(
        Person,
        r#"SELECT u.id, u.name, u.email, u.issuer, u.role AS "role: Role", u.status AS "status: Status",
                  u.groups, u.last_login_at AS last_sign_in,
                  coalesce((SELECT sum(coalesce(m.input_tokens, 0) + coalesce(m.output_tokens, 0))
                            FROM messages m JOIN chats c ON c.id = m.chat_id
                            WHERE c.user_id = u.id
                              AND m.created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
                           0)::bigint AS "tokens_this_month!"
           FROM users u ORDER BY u.last_login_at DESC LIMIT $1"#,
        MAX_LISTED
    )
    .fetch_all(db.pool())
    .await?)
}

/// Deactivates (`active` false) or reactivates a person; administrators only, never themselves
/// nor the local user. False when there is no such person, or they are already so. Recorded.
pub async fn set_active(db: &Database, actor: &User, id: Uuid, active: bool) -> Result<bool> {
    if !actor.is_admin() {
        return Err(admins_only());
    }
    if id == actor.id {
        return Err(Error::Invalid(
            "You cannot deactivate yourself: ask another administrator.".into(),
        ));
    }
    let (to, from, action) = if active {
        (Status::Active, Status::Deactivated, "reactivate")
    } else {
        (Status::Deactivated, Status::Active, "deactivate")
    };
    let mut tx = db.pool().begin().await?;
    let done = sqlx::query!(
        "UPDATE users SET status = $2 WHERE id = $1 AND status = $3 AND issuer <> $4",
        id,
        to as Status,
        from as Status,
        LOCAL_ISSUER
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if done {
        record(&mut tx, actor.id, id, action).await?;
    }
    tx.commit().await?;
    // Other instances hear of it from the database; this one need not wait for that.
    db.token_cache().forget(crate::tokens::Change::Person(id));
    if done {
        tracing::info!(admin = %actor.id, user = %id, action, "a person's access changed");
    }
    Ok(done)
}

/// Records what an administrator did to a person.
pub(crate) async fn record(
    tx: &mut sqlx::PgConnection,
    actor: Uuid,
    subject: Uuid,
    action: &str,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO admin_actions (actor_id, subject_id, action) VALUES ($1, $2, $3)",
        actor,
        subject,
        action
    )
    .execute(tx)
    .await?;
    Ok(())
}
