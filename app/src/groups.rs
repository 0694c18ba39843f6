//! Groups, for administrators (`/api/admin/groups/...`): every group someone is in, who is in it,
//! and its settings (servers of their own, budget, rate); people put in and taken out here.
//! Limiting a tool server or a model to groups is done on the server's and the models' pages.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// Limits as the pages show and send them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    pub tokens_per_day: Option<i64>,
    pub tokens_per_month: Option<i64>,
    pub answers_per_minute: Option<i32>,
}

/// Someone in a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// Put in here (else by their identity provider, which alone can take them out).
    pub added_here: bool,
}

/// A group as the Groups page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    /// Made or set up here (else only named by an identity provider).
    pub set_up_here: bool,
    pub personal_servers: bool,
    pub limits: LimitsView,
    pub members: Vec<MemberView>,
}

/// `POST /api/admin/groups/list` (administrators): every group, by name.
#[server(endpoint = "admin/groups/list")]
pub async fn list_groups() -> Result<Vec<GroupView>, AppError> {
    let user = crate::ssr::current_user()?;
    let groups = domain::groups::all(&crate::ssr::db()?, &user).await?;
    Ok(groups
        .into_iter()
        .map(|g| GroupView {
            name: g.name,
            set_up_here: g.set_up_here,
            personal_servers: g.personal_servers,
            limits: ssr::limits_view(g.limits),
            members: g
                .members
                .into_iter()
                .map(|m| MemberView {
                    id: m.id.to_string(),
                    name: m.name,
                    email: m.email,
                    added_here: m.added_here,
                })
                .collect(),
        })
        .collect())
}

/// `POST /api/admin/groups/create` with `name`: makes a group here, with no limits
/// (administrators); `409` when one of that name is set up here already.
#[server(endpoint = "admin/groups/create")]
pub async fn create_group(name: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    domain::groups::create(&crate::ssr::db()?, &user, name.trim()).await?;
    Ok(())
}

/// `POST /api/admin/groups/save` with `name`, `personal_servers_off` (`true` switches servers of
/// their own off for its members), and `tokens_per_day`, `tokens_per_month`,
/// `answers_per_minute` (empty: none): makes the group, or changes it (administrators).
#[server(endpoint = "admin/groups/save")]
pub async fn save_group(
    name: String,
    personal_servers_off: Option<String>,
    tokens_per_day: Option<String>,
    tokens_per_month: Option<String>,
    answers_per_minute: Option<String>,
) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let limits = ssr::limits(tokens_per_day, tokens_per_month, answers_per_minute)?;
    let personal_servers = personal_servers_off.is_none_or(|v| v == "false");
    domain::groups::save(
        &crate::ssr::db()?,
        &user,
        name.trim(),
        personal_servers,
        limits,
    )
    .await?;
    Ok(())
}

/// `POST /api/admin/groups/delete` with `name`: removes a group set up here, its settings and the
/// members put in here (administrators); `404` when it was not set up here.
#[server(endpoint = "admin/groups/delete")]
pub async fn delete_group(name: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    if domain::groups::delete(&crate::ssr::db()?, &user, name.trim()).await? {
        Ok(())
    } else {
        Err(AppError::not_found(
            "That group was not set up here: an identity provider's group goes when nobody is in it.",
        ))
    }
}

/// `POST /api/admin/groups/add` with `group` and `person` (an e-mail address or an id): puts
/// someone who has signed in in a group, making it if needed (administrators).
#[server(endpoint = "admin/groups/add")]
pub async fn add_to_group(group: String, person: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    if domain::groups::add_member(&crate::ssr::db()?, &user, group.trim(), &person).await? {
        Ok(())
    } else {
        Err(AppError::new(
            protocol::ErrorKind::Conflict,
            "They are in that group already.",
        ))
    }
}

/// `POST /api/admin/groups/remove` with `group` and `id`: takes someone put in here out of a
/// group (administrators); `404` when they were not put in it here.
#[server(endpoint = "admin/groups/remove")]
pub async fn remove_from_group(group: String, id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let id = crate::people::person_id(&id)?;
    if domain::groups::remove_member(&crate::ssr::db()?, &user, group.trim(), id).await? {
        Ok(())
    } else {
        Err(AppError::not_found(
            "They were not put in that group here (an identity provider's membership is the provider's to change).",
        ))
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use domain::budgets::Limits;

    use super::LimitsView;
    use crate::error::AppError;

    pub fn limits_view(limits: Limits) -> LimitsView {
        LimitsView {
            tokens_per_day: limits.tokens_per_day,
            tokens_per_month: limits.tokens_per_month,
            answers_per_minute: limits.answers_per_minute,
        }
    }

    /// One limit as a form sends it: empty for none, else a whole number (`10,000` and `10 000`
    /// read as 10000).
    fn one<T: std::str::FromStr>(field: Option<String>, what: &str) -> Result<Option<T>, AppError> {
        let text: String = field
            .unwrap_or_default()
            .chars()
            .filter(|c| !matches!(c, ',' | '_' | ' '))
            .collect();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            AppError::invalid(format!(
                "{what} must be a whole number, 0 or more (or empty for none)."
            ))
        })
    }

    /// Limits as a form sends them.
    pub fn limits(
        tokens_per_day: Option<String>,
        tokens_per_month: Option<String>,
        answers_per_minute: Option<String>,
    ) -> Result<Limits, AppError> {
        Ok(Limits {
            tokens_per_day: one(tokens_per_day, "Tokens a day")?,
            tokens_per_month: one(tokens_per_month, "Tokens a month")?,
            answers_per_minute: one(answers_per_minute, "Answers a minute")?,
        })
    }
}
