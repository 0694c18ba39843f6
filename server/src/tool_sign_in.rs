//! The two addresses of signing people in to tool servers (MCP authorization) that live outside
//! the app's pages:
//!
//! - `POST /mcp/oauth/start` (a form: `id`, `return_to`) begins the person's sign-in to a server
//!   and sends their browser to its sign-in page (a POST, so that another site cannot start one).
//! - `GET /mcp/oauth/callback` is where a tool server's authorization server sends the person back
//!   (`code`, `state`, `iss`, or `error`): the sign-in they began is finished (see
//!   `domain::mcp::sign_in`) and they go back where they were; a failure is a page that says what
//!   happened and what to do.
//! - `GET /oauth/client.json` is Switchboard's OAuth client metadata document, which an
//!   authorization server that takes one reads instead of a registration (only with an https
//!   public URL: the document's address is the client's id).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{
    Extension, Form, Json, Router,
    routing::{get, post},
};
use domain::users::User;
use http::StatusCode;
use serde::Deserialize;

use crate::AppState;
use crate::auth::middleware::safe_next;

/// The path a sign-in starts at.
pub const START: &str = "/mcp/oauth/start";
/// The path authorization servers send people back to.
pub const CALLBACK: &str = "/mcp/oauth/callback";
/// The path of the client metadata document.
pub const CLIENT_DOCUMENT: &str = "/oauth/client.json";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(START, post(start))
        .route(CALLBACK, get(callback))
        .route(CLIENT_DOCUMENT, get(client_document))
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Words from the authorization server, as a page may show them: short, one line.
fn cut(text: &str) -> String {
    let one_line: String = text.chars().filter(|c| !c.is_control()).collect();
    domain::mcp::limits::cut(&one_line, 300)
}

#[derive(Deserialize)]
struct StartForm {
    id: String,
    return_to: Option<String>,
}

async fn start(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(form): Form<StartForm>,
) -> Response {
    let back = safe_next(form.return_to.as_deref());
    match state
        .mcp
        .begin_sign_in(user.id, form.id.trim(), &back)
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => {
            tracing::warn!(
                server = form.id,
                "cannot start a sign-in to a tool server: {e}"
            );
            let status = match e {
                domain::Error::NotFound(_) => StatusCode::NOT_FOUND,
                domain::Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                domain::Error::Conflict(_) => StatusCode::CONFLICT,
                _ => StatusCode::BAD_GATEWAY,
            };
            crate::error_page(
                status,
                "Cannot sign in to the tool server now",
                &format!("{e} Go back to Servers (/servers) to try again."),
            )
        }
    }
}

async fn callback(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let failed = |detail: String| {
        crate::error_page(
            StatusCode::BAD_REQUEST,
            "You are not signed in to the tool server",
            &format!("{detail} Go back to Servers (/servers) to try again."),
        )
    };
    let Some(flow) = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return failed(
            "The sign-in page sent you back without saying which sign-in this was.".into(),
        );
    };
    if let Some(error) = query.error.as_deref() {
        // Only the sign-in this names is over; nothing else changes. The service's words are
        // shown only for a sign-in of this person's that was under way: anyone can make a link
        // to this page, with any words in it.
        if !state.mcp.abandon_sign_in(user.id, flow).await {
            return failed("This sign-in is not one you started, or it is over.".into());
        }
        let detail = match query.error_description.as_deref() {
            Some(d) => format!("{}: {}", cut(error), cut(d)),
            None => cut(error),
        };
        return failed(if error == "access_denied" {
            format!("The sign-in was declined ({detail}).")
        } else {
            format!("The sign-in service said: {detail}.")
        });
    }
    let Some(code) = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        return failed("The sign-in page sent you back without a code.".into());
    };
    match state
        .mcp
        .finish_sign_in(user.id, flow, code, query.iss.as_deref())
        .await
    {
        Ok(finished) => Redirect::to(&safe_next(Some(&finished.return_to))).into_response(),
        Err(e) => {
            tracing::warn!("a sign-in to a tool server failed: {e}");
            failed(e.to_string())
        }
    }
}

async fn client_document(State(state): State<AppState>) -> Response {
    let settings = state.mcp.settings();
    let (Some(id), Some(redirect)) = (&settings.client_document, &settings.sign_in_redirect) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    Json(serde_json::json!({
        "client_id": id,
        "client_name": "Switchboard",
        "client_uri": state.auth.settings().public_url.as_str(),
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    }))
    .into_response()
}
