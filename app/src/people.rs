//! People waiting to be let in, for administrators (`/api/admin/people/...`): when new people must
//! be approved (`SWITCHBOARD_APPROVE_NEW_USERS`), they wait here after their first sign-in.

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
