//! Who is signed in, as the UI sees it, and the server functions behind the login page, the user
//! menu and the API-token settings.
//!
//! The server's sign-in gate has already checked every request by the time a server function runs:
//! it puts the signed-in user into the request, and [`ssr::current_user`] takes it from there.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A sign-in button on the login page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderButton {
    pub id: String,
    pub label: String,
}

/// What the login page offers (nothing secret: it is public).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginOptions {
    pub providers: Vec<ProviderButton>,
}

/// The signed-in person, for the user menu.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub is_admin: bool,
    /// Local mode: there is no sign-in, so no sign-out either.
    pub is_local: bool,
}

impl Account {
    /// One or two letters for the avatar when there is no picture.
    pub fn initials(&self) -> String {
        let mut letters = self
            .name
            .split_whitespace()
            .filter_map(|w| w.chars().next())
            .flat_map(char::to_uppercase);
        let first = letters.next();
        let last = letters.last();
        first.into_iter().chain(last).collect()
    }
}

/// A personal API token in the settings list (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    /// Already formatted for display, in UTC.
    pub created: String,
    pub last_used: Option<String>,
}

/// A token just created: the only time its secret is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    pub token: TokenView,
    pub secret: String,
}

/// `POST /api/auth/providers`: the sign-in providers (public).
#[server(endpoint = "auth/providers")]
pub async fn login_providers() -> Result<LoginOptions, AppError> {
    Ok(use_context::<LoginOptions>().unwrap_or_default())
}

/// `POST /api/auth/me`: who is signed in.
#[server(endpoint = "auth/me")]
pub async fn me() -> Result<Account, AppError> {
    let user = crate::ssr::current_user()?;
    Ok(Account {
        is_admin: user.is_admin(),
        is_local: user.is_local(),
        name: user.name,
        email: user.email,
        avatar_url: user.avatar_url,
    })
}

/// `POST /api/tokens/list`: the signed-in user's API tokens, newest first.
#[server(endpoint = "tokens/list")]
pub async fn list_tokens() -> Result<Vec<TokenView>, AppError> {
    let user = crate::ssr::current_user()?;
    let tokens = domain::tokens::list(&crate::ssr::db()?, user.id).await?;
    Ok(tokens.into_iter().map(ssr::token_view).collect())
}

/// `POST /api/tokens/create` with `name`: a new token; its secret is in this answer only.
#[server(endpoint = "tokens/create")]
pub async fn create_token(name: String) -> Result<NewToken, AppError> {
    let user = crate::ssr::current_user()?;
    let created = domain::tokens::create(&crate::ssr::db()?, user.id, &name).await?;
    Ok(NewToken {
        token: ssr::token_view(created.token),
        secret: created.secret,
    })
}

/// `POST /api/tokens/revoke` with `id`: revokes one of the signed-in user's tokens.
#[server(endpoint = "tokens/revoke")]
pub async fn revoke_token(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let not_found = || AppError::not_found("There is no such token (it may already be revoked).");
    let id = id.parse().map_err(|_| not_found())?;
    if domain::tokens::revoke(&crate::ssr::db()?, user.id, id).await? {
        Ok(())
    } else {
        Err(not_found())
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::TokenView;

    pub fn token_view(token: domain::tokens::ApiToken) -> TokenView {
        let format =
            |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
        TokenView {
            id: token.id.to_string(),
            name: token.name,
            prefix: token.prefix,
            created: format(token.created_at),
            last_used: token.last_used_at.map(format),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_of_one_two_and_three_names() {
        let me = |name: &str| Account {
            name: name.into(),
            email: None,
            avatar_url: None,
            is_admin: false,
            is_local: false,
        };
        assert_eq!(me("alice").initials(), "A");
        assert_eq!(me("Alice Anderson").initials(), "AA");
        assert_eq!(me("Jean Luc Picard").initials(), "JP");
        assert_eq!(me("").initials(), "");
    }
}
