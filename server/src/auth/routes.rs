//! The sign-in endpoints: start at a provider, come back from it, sign out.
//!
//! - `GET /auth/login/{provider}?next=/path` redirects to the provider.
//! - `GET /auth/callback/{provider}` is where the provider sends people back (register
//!   `<public URL>/auth/callback/<id>` as the redirect URI).
//! - `POST /auth/logout` ends the session, and the provider's session where it supports
//!   RP-initiated logout (register `<public URL>/auth/signed-out` as the post-logout redirect URI).
//!
//! A failed sign-in leads to `/login?error=<code>`, which explains it; the detail goes to the log.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use domain::users;
use serde::Deserialize;
use tower_sessions::Session;

use super::keys;
use super::middleware::safe_next;
use super::providers::{PendingSignIn, SignInError};
use crate::AppState;

/// How long a person has to finish signing in at the provider.
const PENDING_TTL_SECS: i64 = 15 * 60;
/// Sign-ins kept at once per session (several tabs); the oldest go first.
const MAX_PENDING: usize = 5;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login/{provider}", get(login))
        .route("/auth/callback/{provider}", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/signed-out", get(signed_out))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

fn to_login_page(provider: &str, error: &SignInError) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("error", error.code())
        .append_pair("provider", provider)
        .finish();
    Redirect::to(&format!("/login?{query}")).into_response()
}

async fn login(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<LoginQuery>,
    session: Session,
) -> Response {
    if state.auth.local_user().is_some() {
        return Redirect::to("/").into_response();
    }
    let next = safe_next(query.next.as_deref());
    match state.auth.providers().begin(&provider, next).await {
        Ok((url, pending)) => {
            let now = chrono::Utc::now().timestamp();
            let mut all: Vec<PendingSignIn> = match session.get(keys::PENDING).await {
                Ok(all) => all.unwrap_or_default(),
                Err(e) => return session_unavailable(e),
            };
            all.retain(|p| now - p.started_at < PENDING_TTL_SECS);
            all.push(pending);
            let excess = all.len().saturating_sub(MAX_PENDING);
            all.drain(..excess);
            if let Err(e) = session.insert(keys::PENDING, all).await {
                return session_unavailable(e);
            }
            Redirect::to(url.as_str()).into_response()
        }
        Err(error) => {
            tracing::warn!(provider, "cannot start sign-in: {error}");
            to_login_page(&provider, &error)
        }
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
    session: Session,
) -> Response {
    let result = async {
        let pending = take_pending(&session, &provider, query.state.as_deref()).await?;
        // Only now, with the state matched, is an error from the provider believed to be about
        // this sign-in.
        if let Some(error) = query.error {
            let detail = match query.error_description {
                Some(d) => format!("{error}: {d}"),
                None => error.clone(),
            };
            return Err(if error == "access_denied" {
                SignInError::Denied(detail)
            } else {
                SignInError::ProviderError(detail)
            });
        }
        let code = query
            .code
            .ok_or_else(|| SignInError::ProviderError("the callback has no code".into()))?;
        let next = pending.next.clone();
        let signed_in = state.auth.providers().finish(pending, code).await?;
        Ok((signed_in, next))
    }
    .await;

    match result {
        Ok((signed_in, next)) => {
            let decision = state.auth.settings().admins.decide(&signed_in.identity);
            let user = match users::sign_in(&state.db, &signed_in.identity, decision).await {
                Ok(user) => user,
                Err(e) => return session_unavailable(e),
            };
            // A new session id at sign-in: an id planted before (session fixation) is worthless.
            let stored = async {
                session.cycle_id().await?;
                session.remove_value(keys::PENDING).await?;
                session.insert(keys::USER_ID, user.id).await?;
                session
                    .insert(keys::SIGNED_IN_AT, chrono::Utc::now().timestamp())
                    .await?;
                session.insert(keys::PROVIDER, &provider).await?;
                session.insert(keys::ID_TOKEN, signed_in.id_token).await?;
                Ok::<_, tower_sessions::session::Error>(())
            }
            .await;
            if let Err(e) = stored {
                return session_unavailable(e);
            }
            tracing::info!(provider, user_id = %user.id, role = user.role.as_str(), "signed in");
            Redirect::to(&next).into_response()
        }
        Err(error) => {
            tracing::warn!(provider, "sign-in failed: {error}");
            // Leave nothing behind, unless the session already belongs to someone signed in (a
            // stray callback must not sign them out).
            let signed_in = matches!(session.get::<uuid::Uuid>(keys::USER_ID).await, Ok(Some(_)));
            if !signed_in && let Err(e) = session.flush().await {
                return session_unavailable(e);
            }
            to_login_page(&provider, &error)
        }
    }
}

/// Removes and returns the pending sign-in that `state` names; it can be used once only.
async fn take_pending(
    session: &Session,
    provider: &str,
    state: Option<&str>,
) -> Result<PendingSignIn, SignInError> {
    let state = state.filter(|s| !s.is_empty()).ok_or(SignInError::State)?;
    let mut all: Vec<PendingSignIn> = session
        .get(keys::PENDING)
        .await
        .map_err(|e| SignInError::ProviderError(format!("session store: {e}")))?
        .unwrap_or_default();
    let position = all
        .iter()
        .position(|p| p.provider == provider && constant_time_eq(&p.state, state))
        .ok_or(SignInError::State)?;
    let pending = all.remove(position);
    session
        .insert(keys::PENDING, all)
        .await
        .map_err(|e| SignInError::ProviderError(format!("session store: {e}")))?;
    if chrono::Utc::now().timestamp() - pending.started_at >= PENDING_TTL_SECS {
        return Err(SignInError::State);
    }
    Ok(pending)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn logout(State(state): State<AppState>, session: Session) -> Response {
    if state.auth.local_user().is_some() {
        return Redirect::to("/").into_response();
    }
    let provider: Option<String> = session.get(keys::PROVIDER).await.ok().flatten();
    let id_token: Option<String> = session.get(keys::ID_TOKEN).await.ok().flatten();
    if let Err(e) = session.flush().await {
        return session_unavailable(e);
    }
    if let (Some(provider), Some(id_token)) = (provider, id_token)
        && let Some(url) = state
            .auth
            .providers()
            .end_session_url(&provider, &id_token)
            .await
    {
        return Redirect::to(url.as_str()).into_response();
    }
    Redirect::to("/login?signed_out=1").into_response()
}

async fn signed_out() -> Redirect {
    Redirect::to("/login?signed_out=1")
}

fn session_unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!("sign-in could not use the database: {error}");
    crate::error_page(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        "Switchboard cannot reach its database right now, so it cannot sign you in or out. Try again in a moment; if it keeps happening, tell your administrator.",
    )
}
