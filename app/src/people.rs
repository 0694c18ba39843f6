//! People, for administrators (`/api/admin/people/...`): everyone who signed in, deactivated and
//! reactivated here; and, when new people must be approved (`SWITCHBOARD_APPROVE_NEW_USERS`), those
//! waiting after their first sign-in.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A person waiting for approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingView {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// RFC 3339, UTC.
    pub signed_up_at: String,
}

/// `POST /api/admin/people/waiting`: the people waiting for approval, oldest first
/// (administrators only).
#[server(endpoint = "admin/people/waiting")]
pub async fn waiting_people() -> Result<Vec<WaitingView>, AppError> {
    let user = crate::ssr::current_user()?;
    let people = domain::users::waiting(&crate::ssr::db()?, &user).await?;
    Ok(people
        .into_iter()
        .map(|p| WaitingView {
            id: p.id.to_string(),
            name: p.name,
            email: p.email,
            signed_up_at: p.signed_up_at.to_rfc3339(),
        })
        .collect())
}

/// `POST /api/admin/people/admit` with `id` and `approve` (`true` lets them in, `false` refuses
/// them): administrators only; `404` when nobody with that id is waiting.
#[server(endpoint = "admin/people/admit")]
pub async fn admit_person(id: String, approve: bool) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let id = id
        .parse()
        .map_err(|_| AppError::not_found("Nobody with that id is waiting."))?;
    if domain::users::admit(&crate::ssr::db()?, &user, id, approve).await? {
        Ok(())
    } else {
        Err(AppError::not_found(
            "Nobody with that id is waiting: they may have been let in or refused already.",
        ))
    }
}

/// A person as the People page lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonView {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// The identity provider's host (`local` in local mode).
    pub provider: String,
    /// `admin` or `user`.
    pub role: String,
    /// The role was set here (it stands over the configured admin rule).
    pub role_set_here: bool,
    /// `active`, `pending` or `deactivated`.
    pub status: String,
    /// Their identity provider's groups.
    pub groups: Vec<String>,
    /// The groups they were put in here.
    pub groups_here: Vec<String>,
    /// Their own limits (empty: their groups').
    pub limits: crate::groups::LimitsView,
    /// RFC 3339, UTC.
    pub last_sign_in: String,
    pub tokens_this_month: i64,
}

/// `POST /api/admin/people/list`: everyone who signed in, most recently first (administrators
/// only).
#[server(endpoint = "admin/people/list")]
pub async fn list_people() -> Result<Vec<PersonView>, AppError> {
    let user = crate::ssr::current_user()?;
    let people = domain::people::everyone(&crate::ssr::db()?, &user).await?;
    Ok(people
        .into_iter()
        .map(|p| PersonView {
            id: p.id.to_string(),
            name: p.name,
            email: p.email,
            // `https://id.example.com/realms/x` reads as `id.example.com`.
            provider: p
                .issuer
                .split_once("://")
                .and_then(|(_, rest)| rest.split('/').next())
                .map(str::to_owned)
                .unwrap_or(p.issuer),
            role: p.role.as_str().into(),
            role_set_here: p.role_set_here,
            status: p.status.as_str().into(),
            groups: p.groups,
            groups_here: p.groups_here,
            limits: crate::groups::ssr::limits_view(p.limits),
            last_sign_in: p.last_sign_in.to_rfc3339(),
            tokens_this_month: p.tokens_this_month,
        })
        .collect())
}

/// `POST /api/admin/people/access` with `id` and `active` (`false` deactivates: their sessions,
/// tokens and event streams stop at once; `true` reactivates): administrators only, never
/// themselves; `404` when nobody with that id is in the state to change.
#[server(endpoint = "admin/people/access")]
pub async fn set_access(id: String, active: bool) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let id = crate::people::person_id(&id)?;
    if domain::people::set_active(&crate::ssr::db()?, &user, id, active).await? {
        Ok(())
    } else {
        Err(AppError::not_found(if active {
            "Nobody with that id is deactivated."
        } else {
            "Nobody with that id is active (the local user cannot be deactivated)."
        }))
    }
}

/// `POST /api/admin/people/role` with `id` and `role` (`admin` or `user`): promotes or demotes
/// someone (administrators, never themselves). The role then stays as set here whatever the
/// configured admin rule says. `404` when nobody with that id has another role.
#[server(endpoint = "admin/people/role")]
pub async fn set_role(id: String, role: String) -> Result<(), AppError> {
    use domain::users::Role;
    let user = crate::ssr::current_user()?;
    let role = match role.trim() {
        "admin" => Role::Admin,
        "user" => Role::User,
        other => {
            return Err(AppError::invalid(format!(
                "'{other}' is not a role: use admin or user."
            )));
        }
    };
    let id = id
        .trim()
        .parse()
        .map_err(|_| AppError::not_found("There is nobody with that id."))?;
    if domain::people::set_role(&crate::ssr::db()?, &user, id, role).await? {
        Ok(())
    } else {
        Err(AppError::not_found(
            "Nobody with that id has another role (the local user's cannot change).",
        ))
    }
}

/// `POST /api/admin/people/limits` with `id`, `tokens_per_day`, `tokens_per_month` and
/// `answers_per_minute` (empty: their groups' apply): sets someone's own limits
/// (administrators).
#[server(endpoint = "admin/people/limits")]
pub async fn set_person_limits(
    id: String,
    tokens_per_day: Option<String>,
    tokens_per_month: Option<String>,
    answers_per_minute: Option<String>,
) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let limits = crate::groups::ssr::limits(tokens_per_day, tokens_per_month, answers_per_minute)?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| AppError::not_found("There is nobody with that id."))?;
    if domain::people::set_limits(&crate::ssr::db()?, &user, id, limits).await? {
        Ok(())
    } else {
        Err(AppError::not_found("There is nobody with that id."))
    }
}

#[cfg(feature = "ssr")]
/// A person's id as a request gives it; one that cannot be an id is nobody's (`404`).
pub fn person_id(id: &str) -> Result<uuid::Uuid, AppError> {
    id.trim()
        .parse()
        .map_err(|_| AppError::not_found("There is nobody with that id."))
}
