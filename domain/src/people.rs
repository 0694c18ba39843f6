//! Everyone who signed in, as administrators see them (`/admin/people`), and what administrators
//! do to them: deactivate (their sessions, tokens and event streams stop at once) and reactivate,
//! promote and demote, and set their own limits. Each action is recorded in `admin_actions` (who,
//! to whom, when).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::budgets::Limits;
use crate::users::{LOCAL_ISSUER, Role, Status, User};
use crate::{Database, Error, Result};

/// What only administrators may do here.
const MANAGE: &str = "see and manage people";

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
    /// Their role was set here by an administrator (it stands over the configured admin rule).
    pub role_set_here: bool,
    pub status: Status,
    /// Their groups at the identity provider, as of their last sign-in.
    pub groups: Vec<String>,
    /// The groups administrators put them in here.
    pub groups_here: Vec<String>,
    /// Their own limits (replacing their groups').
    pub limits: Limits,
    pub last_sign_in: chrono::DateTime<chrono::Utc>,
    /// Tokens their answers used this calendar month (UTC), as the providers counted them or as
    /// estimated.
    pub tokens_this_month: i64,
}

/// Everyone who signed in, most recently first (at most [`MAX_LISTED`]); administrators only.
pub async fn everyone(db: &Database, actor: &User) -> Result<Vec<Person>> {
    actor.must_be_admin(MANAGE)?;
    let rows = sqlx::query!(
        r#"SELECT u.id, u.name, u.email, u.issuer, u.role AS "role: Role",
                  u.role_set_in_app, u.status AS "status: Status", u.groups,
                  array(SELECT m.group_name FROM group_members m WHERE m.user_id = u.id
                        ORDER BY m.group_name) AS "groups_here!",
                  u.tokens_per_day, u.tokens_per_month, u.answers_per_minute,
                  u.last_login_at AS last_sign_in,
                  coalesce((SELECT sum(d.input_tokens + d.output_tokens) FROM usage_days d
                            WHERE d.user_id = u.id
                              AND d.day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date),
                           0)::bigint AS "tokens_this_month!"
           FROM users u ORDER BY u.last_login_at DESC LIMIT $1"#,
        MAX_LISTED
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Person {
            id: r.id,
            name: r.name,
            email: r.email,
            issuer: r.issuer,
            role: r.role,
            role_set_here: r.role_set_in_app,
            status: r.status,
            groups: r.groups,
            groups_here: r.groups_here,
            limits: Limits {
                tokens_per_day: r.tokens_per_day,
                tokens_per_month: r.tokens_per_month,
                answers_per_minute: r.answers_per_minute,
            },
            last_sign_in: r.last_sign_in,
            tokens_this_month: r.tokens_this_month,
        })
        .collect())
}

/// Makes a person an administrator or not; administrators only, never themselves nor the local
/// user. Their role then stays as set here, whatever SWITCHBOARD_ADMIN_EMAILS and _GROUPS say
/// at their next sign-in or the next start. False when there is no such person, or they have
/// that role already. Recorded.
pub async fn set_role(db: &Database, actor: &User, id: Uuid, role: Role) -> Result<bool> {
    actor.must_be_admin(MANAGE)?;
    if id == actor.id {
        return Err(Error::Invalid(
            "You cannot change your own role: ask another administrator.".into(),
        ));
    }
    let mut tx = db.pool().begin().await?;
    let done = sqlx::query!(
        "UPDATE users SET role = $2, role_set_in_app = true
         WHERE id = $1 AND role <> $2 AND issuer <> $3",
        id,
        role as Role,
        LOCAL_ISSUER
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let action = match role {
        Role::Admin => "promote",
        Role::User => "demote",
    };
    if done {
        record(&mut tx, actor.id, id, action, None).await?;
    }
    tx.commit().await?;
    db.token_cache().forget(crate::tokens::Change::Person(id));
    if done {
        tracing::info!(admin = %actor.id, user = %id, action, "a person's role changed");
    }
    Ok(done)
}

/// Sets a person's own limits (empty ones: their groups' apply); administrators only. False when
/// there is no such person. Recorded.
pub async fn set_limits(db: &Database, actor: &User, id: Uuid, limits: Limits) -> Result<bool> {
    actor.must_be_admin(MANAGE)?;
    limits.check()?;
    let mut tx = db.pool().begin().await?;
    let done = sqlx::query!(
        "UPDATE users SET tokens_per_day = $2, tokens_per_month = $3, answers_per_minute = $4
         WHERE id = $1",
        id,
        limits.tokens_per_day,
        limits.tokens_per_month,
        limits.answers_per_minute
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if done {
        let detail = serde_json::to_string(&limits).expect("serialisable");
        record(&mut tx, actor.id, id, "limits", Some(&detail)).await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// Deactivates (`active` false) or reactivates a person; administrators only, never themselves
/// nor the local user. False when there is no such person, or they are already so. Recorded.
pub async fn set_active(db: &Database, actor: &User, id: Uuid, active: bool) -> Result<bool> {
    actor.must_be_admin(MANAGE)?;
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
        record(&mut tx, actor.id, id, action, None).await?;
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
    detail: Option<&str>,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO admin_actions (actor_id, subject_id, action, detail) VALUES ($1, $2, $3, $4)",
        actor,
        subject,
        action,
        detail
    )
    .execute(tx)
    .await?;
    Ok(())
}
