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
use http::{HeaderMap, header};
use serde::Deserialize;
use tower_sessions::Session;

use super::keys;
use super::middleware::safe_next;
use super::providers::{PendingSignIn, SignInError};
use crate::AppState;

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
    headers: HeaderMap,
) -> Response {
    if state.auth.local_user().is_some() {
        return Redirect::to("/").into_response();
    }
    let next = safe_next(query.next.as_deref());
    match state.auth.providers().begin(&provider, next).await {
        Ok((url, pending)) => {
            let cookie = state.auth.pending();
            let mut all = cookie.read(&headers);
            all.push(pending);
            let mut response = Redirect::to(url.as_str()).into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.write(all));
            response
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
    headers: HeaderMap,
    session: Session,
) -> Response {
    // The sign-in this callback finishes is used up whatever happens next.
    let mut under_way = state.auth.pending().read(&headers);
    let taken = take_pending(&mut under_way, &provider, query.state.as_deref());
    let mut response = finish_sign_in(&state, &provider, query, taken, &session).await;
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.auth.pending().write(under_way));
    response
}

async fn finish_sign_in(
    state: &AppState,
    provider: &str,
    query: CallbackQuery,
    taken: Result<PendingSignIn, SignInError>,
    session: &Session,
) -> Response {
    let result = async {
        let pending = taken?;
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
            }
            .into());
        }
        let code = query
            .code
            .ok_or_else(|| SignInError::ProviderError("the callback has no code".into()))?;
        let next = pending.next.clone();
        let signed_in = state.auth.providers().finish(pending, code).await?;
        let settings = state.auth.settings();
        let allowed = settings
            .provider(provider)
            .is_some_and(|p| p.allowed.allows(&signed_in.identity));
        if !allowed {
            return Err(SignInError::NotAllowed.into());
        }
        let decision = settings.admins.decide(&signed_in.identity);
        let user =
            users::sign_in_with(&state.db, &signed_in.identity, decision, settings.admission)
                .await
                .map_err(Failed::Database)?;
        match user.status {
            users::Status::Active => Ok((signed_in, user, next)),
            users::Status::Pending => Err(SignInError::AwaitingApproval.into()),
            users::Status::Deactivated => Err(SignInError::Deactivated.into()),
        }
    }
    .await;

    match result {
        Ok((signed_in, user, next)) => {
            // A new session id at sign-in: an id planted before (session fixation) is worthless.
            let stored = async {
                session.cycle_id().await?;
                session.insert(keys::USER_ID, user.id).await?;
                session
                    .insert(keys::SIGNED_IN_AT, chrono::Utc::now().timestamp())
                    .await?;
                session.insert(keys::PROVIDER, provider).await?;
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
        Err(Failed::Database(e)) => session_unavailable(e),
        Err(Failed::SignIn(error)) => {
            // The session is left as it was: someone signed in stays so (a stray callback must
            // not sign them out), and nobody else has one.
            tracing::warn!(provider, "sign-in failed: {error}");
            to_login_page(provider, &error)
        }
    }
}

/// Why a sign-in did not end with a session.
enum Failed {
    SignIn(SignInError),
    Database(domain::Error),
}

impl From<SignInError> for Failed {
    fn from(error: SignInError) -> Self {
        Failed::SignIn(error)
    }
}

/// Removes and returns the sign-in under way that `state` names; it can be used once only.
fn take_pending(
    under_way: &mut Vec<PendingSignIn>,
    provider: &str,
    state: Option<&str>,
) -> Result<PendingSignIn, SignInError> {
    let state = state.filter(|s| !s.is_empty()).ok_or(SignInError::State)?;
    let position = under_way
        .iter()
        .position(|p| p.provider == provider && constant_time_eq(&p.state, state))
        .ok_or(SignInError::State)?;
    Ok(under_way.remove(position))
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
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
    let target = match (provider, id_token) {
        (Some(provider), Some(id_token)) => state
            .auth
            .providers()
            .end_session_url(&provider, &id_token)
            .await
            .map(|url| url.to_string()),
        _ => None,
    };
    let mut response =
        Redirect::to(target.as_deref().unwrap_or("/login?signed_out=1")).into_response();
    if state.auth.settings().secure_cookies() {
        // tower-sessions 0.15 removes the cookie without `Secure`, which browsers ignore for a
        // `__Host-` cookie: remove it properly.
        let removal = tower_sessions::cookie::Cookie::build((state.auth.session_cookie(), ""))
            .path("/")
            .secure(true)
            .http_only(true)
            .max_age(time::Duration::ZERO)
            .build();
        if let Ok(value) = http::HeaderValue::from_str(&removal.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
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
