//! The gate every request passes: it finds out who is asking (API token, session, or the local
//! user) and turns away whoever may not see what they asked for.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use domain::users::{self, User};
use http::{Method, StatusCode, header};
use serde_json::json;
use tower_sessions::{Expiry, Session};
use uuid::Uuid;

use super::keys;
use crate::AppState;

/// Paths that need no signed-in user. Everything else does.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/login" | "/api/auth/providers" | crate::tool_sign_in::CLIENT_DOCUMENT
    ) || path.starts_with("/auth/")
}

/// Static files and health checks: answered without looking at the session at all.
pub fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/pkg/")
        || matches!(path, "/favicon.svg" | "/healthz" | "/readyz" | "/metrics")
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// What vouched for a request's user, kept with the request so that a long-lived response (an
/// event stream) can check again that it still does.
#[derive(Clone)]
pub enum Credential {
    /// A personal API token (the secret as sent).
    Token(String),
    /// A browser session of this user.
    Session(Uuid),
    /// Local mode.
    Local,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::Session(id) => write!(f, "Session({id})"),
            Credential::Local => f.write_str("Local"),
        }
    }
}

impl Credential {
    /// Whether it still vouches for an active person: a revoked token or a deactivated person no
    /// longer does. A database that does not answer is given the benefit of the doubt.
    pub async fn still_valid(&self, db: &domain::Database) -> bool {
        let result = match self {
            Credential::Token(secret) => domain::tokens::authenticate(db, secret)
                .await
                .map(|user| user.is_some()),
            Credential::Session(id) => users::find(db, *id)
                .await
                .map(|user| user.is_some_and(|u| u.is_active())),
            Credential::Local => Ok(true),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!("cannot check a credential again: {e}");
            true
        })
    }
}

/// A JSON error for API clients: `{"error": code, "message": what to do}`.
pub fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

pub async fn authenticate(
    State(state): State<AppState>,
    session: Session,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if is_infrastructure(&path) {
        return next.run(request).await;
    }

    // An address that keeps sending made-up tokens or stale session cookies is refused before
    // they are looked up.
    let cookie = state.auth.session_cookie();
    let has_session = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(';')
                .any(|c| c.trim().starts_with(&format!("{cookie}=")))
        });
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let address = crate::limits::address_of(&request);
    let limit = state.rate_limit.as_deref();
    if (has_session || authorization.is_some())
        && let Some(limit) = limit
        && let Some(wait) = limit.blocked(&address)
    {
        return crate::limits::too_many(limit.settings(), wait, is_api(&path));
    }
    let presented = authorization.is_some() || (has_session && state.auth.local_user().is_none());
    let user = match identify(&state, &session, authorization).await {
        Ok(user) => user,
        Err(response) => {
            if let Some(limit) = limit {
                limit.failed(address);
            }
            return response;
        }
    };
    if user.is_none()
        && presented
        && let Some(limit) = limit
    {
        limit.failed(address);
    }

    match user {
        Some((user, credential)) => {
            if path == "/login" {
                // Already signed in (or in local mode): go where the login page would have led.
                return Redirect::to(&safe_next(query_param(&request, "next").as_deref()))
                    .into_response();
            }
            // The request's span (and so its trace) says whose it is.
            tracing::Span::current().record("user", tracing::field::display(user.id));
            request.extensions_mut().insert(user);
            request.extensions_mut().insert(credential);
            next.run(request).await
        }
        None if is_public(&path) => next.run(request).await,
        None if is_api(&path) => api_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Sign in first, or send a personal API token as `Authorization: Bearer <token>` (create one in Settings → API tokens).",
        ),
        None if request.method() == Method::GET || request.method() == Method::HEAD => {
            let next_path = request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            let mut login = url::form_urlencoded::Serializer::new(String::new());
            if next_path != "/" {
                login.append_pair("next", &next_path);
            }
            if has_session {
                login.append_pair("reason", "expired");
            }
            let query = login.finish();
            let target = if query.is_empty() {
                "/login".to_owned()
            } else {
                format!("/login?{query}")
            };
            Redirect::to(&target).into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "Sign in first.").into_response(),
    }
}

/// Who is asking, and what vouches for them: the owner of a valid API token, the signed-in user of
/// the session, or the local user. An invalid token is an error of its own: a script should hear
/// that its token is wrong, not get a login page.
async fn identify(
    state: &AppState,
    session: &Session,
    authorization: Option<http::HeaderValue>,
) -> Result<Option<(User, Credential)>, Response> {
    if let Some(value) = authorization {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let user = match token {
            Some(token) => domain::tokens::authenticate(&state.db, token)
                .await
                .map_err(internal)?
                .map(|user| (user, Credential::Token(token.to_owned()))),
            None => None,
        };
        return match user {
            Some(user) => Ok(Some(user)),
            None => Err(api_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "This API token is not valid: it may have been revoked or mistyped, or its owner's account deactivated. Create a new one in Settings → API tokens.",
            )),
        };
    }
    if let Some(local) = state.auth.local_user() {
        return Ok(Some((local.clone(), Credential::Local)));
    }
    let user = session_user(state, session).await?;
    Ok(user.map(|user| {
        let id = user.id;
        (user, Credential::Session(id))
    }))
}

async fn session_user(state: &AppState, session: &Session) -> Result<Option<User>, Response> {
    let user_id: Option<Uuid> = session.get(keys::USER_ID).await.map_err(internal)?;
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    let settings = state.auth.settings();
    let signed_in_at: i64 = session
        .get(keys::SIGNED_IN_AT)
        .await
        .map_err(internal)?
        .unwrap_or(0);
    let age = chrono::Utc::now().timestamp().saturating_sub(signed_in_at);
    if age < 0 || age as u64 > settings.session_max_age.as_secs() {
        session.flush().await.map_err(internal)?;
        return Ok(None);
    }
    // Someone deactivated since they signed in is signed out.
    let Some(user) = users::find(&state.db, user_id)
        .await
        .map_err(internal)?
        .filter(User::is_active)
    else {
        session.flush().await.map_err(internal)?;
        return Ok(None);
    };
    // Sliding idle expiry, written at most once a minute rather than on every request.
    let idle = super::idle(settings.session_idle);
    if session.expiry_age() < idle - time::Duration::minutes(1) {
        session.set_expiry(Some(Expiry::OnInactivity(idle)));
    }
    Ok(Some(user))
}

fn internal(error: impl std::fmt::Display) -> Response {
    tracing::error!("authentication failed: {error}");
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Switchboard cannot check who you are right now (its database is not answering). Try again in a moment.",
    )
}

fn query_param(request: &Request<Body>, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A place on this site to go after sign-in; anything else (another site, `//evil`, `/\evil`)
/// becomes `/`.
pub fn safe_next(next: Option<&str>) -> String {
    const MAX_NEXT: usize = 1024;
    match next {
        Some(n)
            if n.starts_with('/')
                && n.len() <= MAX_NEXT
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/login")
                && !n.starts_with("/auth/")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/settings?tab=tokens")),
            "/settings?tab=tokens"
        );
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/login?next=/x")), "/");
        assert_eq!(safe_next(Some("/a\r\nLocation: x")), "/");
        assert_eq!(safe_next(Some(&format!("/c/{}", "x".repeat(2000)))), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn only_the_login_flow_is_public() {
        assert!(is_public("/login"));
        assert!(is_public("/auth/callback/company"));
        assert!(!is_public("/"));
        assert!(!is_public("/settings"));
        assert!(!is_public("/api/tokens/list"));
        assert!(!is_public("/loginx"));
    }
}
