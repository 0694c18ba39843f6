//! Groups as administrators manage them (`/admin/groups`): every group someone is in (named by an
//! identity provider, or made in the app), who is in each and why, and each group's settings:
//! whether its members may use servers of their own, and its budget and rate (see [`budgets`]).
//! Adding someone to a group, or taking them out, is recorded in `admin_actions`.
//!
//! [`budgets`]: crate::budgets

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::check_group_name;
use crate::budgets::Limits;
use crate::users::User;
use crate::{Database, Error, Result};

/// What only administrators may do here.
const MANAGE: &str = "see and manage groups";

/// A group as the Groups page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// Made in the app, or set up here (a provider's group gets a row when something is set on
    /// it).
    pub set_up_here: bool,
    pub personal_servers: bool,
    pub limits: Limits,
    pub members: Vec<Member>,
}

/// Someone in a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    /// Put in by an administrator here (else their identity provider says so, and only it can
    /// take them out).
    pub added_here: bool,
}

/// Every group, by name: those set up here and those people's identity providers name.
pub async fn all(db: &Database, actor: &User) -> Result<Vec<Group>> {
    actor.must_be_admin(MANAGE)?;
    let groups = sqlx::query!(
        r#"WITH names AS (
               SELECT name FROM groups UNION SELECT DISTINCT unnest(groups) FROM users
           )
           SELECT n.name AS "name!", g.name IS NOT NULL AS "set_up_here!",
                  coalesce(g.personal_servers, true) AS "personal_servers!",
                  g.tokens_per_day, g.tokens_per_month, g.answers_per_minute
           FROM names n LEFT JOIN groups g ON g.name = n.name
           ORDER BY lower(n.name), n.name"#
    )
    .fetch_all(db.pool())
    .await?;
    let members = sqlx::query!(
        r#"SELECT x.group_name AS "group_name!", u.id, u.name, u.email,
                  bool_or(x.here) AS "added_here!"
           FROM (SELECT m.group_name, m.user_id, true AS here FROM group_members m
                 UNION ALL
                 SELECT unnest(u.groups), u.id, false FROM users u) AS x
           JOIN users u ON u.id = x.user_id
           GROUP BY x.group_name, u.id ORDER BY lower(u.name), u.id"#
    )
    .fetch_all(db.pool())
    .await?;
    Ok(groups
        .into_iter()
        .map(|g| Group {
            members: members
                .iter()
                .filter(|m| m.group_name == g.name)
                .map(|m| Member {
                    id: m.id,
                    name: m.name.clone(),
                    email: m.email.clone(),
                    added_here: m.added_here,
                })
                .collect(),
            name: g.name,
            set_up_here: g.set_up_here,
            personal_servers: g.personal_servers,
            limits: Limits {
                tokens_per_day: g.tokens_per_day,
                tokens_per_month: g.tokens_per_month,
                answers_per_minute: g.answers_per_minute,
            },
        })
        .collect())
}

/// Makes a group here, with no limits. A group of that name set up here already is a conflict
/// (an identity provider's group that was not is set up by this).
pub async fn create(db: &Database, actor: &User, name: &str) -> Result<()> {
    actor.must_be_admin(MANAGE)?;
    check_group_name(name)?;
    let made = sqlx::query!(
        "INSERT INTO groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        name
    )
    .execute(db.pool())
    .await?
    .rows_affected()
        == 1;
    if made {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "There is a group named '{name}' already: change it below."
        )))
    }
}

/// Sets a group's settings, making it here if it was not (an identity provider's group, or a
/// new one).
pub async fn save(
    db: &Database,
    actor: &User,
    name: &str,
    personal_servers: bool,
    limits: Limits,
) -> Result<()> {
    actor.must_be_admin(MANAGE)?;
    check_group_name(name)?;
    limits.check()?;
    sqlx::query!(
        "INSERT INTO groups (name, personal_servers, tokens_per_day, tokens_per_month,
                             answers_per_minute)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET personal_servers = $2, tokens_per_day = $3,
             tokens_per_month = $4, answers_per_minute = $5",
        name,
        personal_servers,
        limits.tokens_per_day,
        limits.tokens_per_month,
        limits.answers_per_minute
    )
    .execute(db.pool())
    .await?;
    tracing::info!(admin = %actor.id, group = name, "a group's settings changed");
    Ok(())
}

/// Removes a group set up here: its settings, and the members added here (those its identity
/// provider names stay in it, with no settings). False when it was not set up here.
pub async fn delete(db: &Database, actor: &User, name: &str) -> Result<bool> {
    actor.must_be_admin(MANAGE)?;
    let mut tx = db.pool().begin().await?;
    // Those put in here leave with it, on the record.
    let members = sqlx::query_scalar!(
        "SELECT user_id FROM group_members WHERE group_name = $1",
        name
    )
    .fetch_all(&mut *tx)
    .await?;
    let done = sqlx::query!("DELETE FROM groups WHERE name = $1", name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    for member in members {
        crate::people::record(&mut tx, actor.id, member, "leave", Some(name)).await?;
    }
    tx.commit().await?;
    if done {
        tracing::info!(admin = %actor.id, group = name, "a group was removed");
    }
    Ok(done)
}

/// The one person `who` names: their id, or an e-mail address (case-insensitive) one person
/// has.
async fn person(db: &Database, who: &str) -> Result<Uuid> {
    let who = who.trim();
    if let Ok(id) = who.parse::<Uuid>() {
        let known = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS "known!""#,
            id
        )
        .fetch_one(db.pool())
        .await?;
        return if known {
            Ok(id)
        } else {
            Err(Error::NotFound("There is nobody with that id.".into()))
        };
    }
    let ids = sqlx::query_scalar!(
        "SELECT id FROM users WHERE lower(email) = lower($1) LIMIT 2",
        who
    )
    .fetch_all(db.pool())
    .await?;
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(Error::NotFound(format!(
            "Nobody who signed in has the address '{who}'. They can be added once they have signed in."
        ))),
        _ => Err(Error::Conflict(format!(
            "Several people have the address '{who}': add them from the People page, by id."
        ))),
    }
}

/// Puts someone (by id or e-mail address) in a group, making the group here if it was not.
/// Recorded. False when they were in it by the app already.
pub async fn add_member(db: &Database, actor: &User, group: &str, who: &str) -> Result<bool> {
    actor.must_be_admin(MANAGE)?;
    check_group_name(group)?;
    let user_id = person(db, who).await?;
    let mut tx = db.pool().begin().await?;
    sqlx::query!(
        "INSERT INTO groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        group
    )
    .execute(&mut *tx)
    .await?;
    let added = sqlx::query!(
        "INSERT INTO group_members (group_name, user_id)
         SELECT $1, id FROM users WHERE id = $2
         ON CONFLICT DO NOTHING",
        group,
        user_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if added {
        crate::people::record(&mut tx, actor.id, user_id, "join", Some(group)).await?;
    }
    tx.commit().await?;
    Ok(added)
}

/// Takes someone out of a group they were put in here (an identity provider's membership is
/// its to change). Recorded. False when they were not in it by the app.
pub async fn remove_member(
    db: &Database,
    actor: &User,
    group: &str,
    user_id: Uuid,
) -> Result<bool> {
    actor.must_be_admin(MANAGE)?;
    let mut tx = db.pool().begin().await?;
    let removed = sqlx::query!(
        "DELETE FROM group_members WHERE group_name = $1 AND user_id = $2",
        group,
        user_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if removed {
        crate::people::record(&mut tx, actor.id, user_id, "leave", Some(group)).await?;
    }
    tx.commit().await?;
    Ok(removed)
}
