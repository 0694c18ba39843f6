//! `GET /api/chats/{id}/events`: a chat's event stream (server-sent events).
//!
//! Each event has an id (`<epoch>-<seq>`) and a type (`run_started`, `token`, `snapshot`,
//! `tool_call`, `approval_needed`, `decision`, `tool_result`, `run_finished`, `resync`); its data
//! is the event as JSON. A client that reconnects with `Last-Event-ID`
//! (browsers do it by themselves; scripts may also pass `?last_event_id=`) gets exactly the events
//! it missed, then the live ones, or `resync` when this instance cannot replay them. Runs on other
//! instances of the same database are followed too. Comments every 15 s keep proxies from closing
//! an idle stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::runs::{ChatEvent, EventId};
use domain::users::User;
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

use crate::AppState;
use crate::auth::middleware::{Credential, api_error};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub struct EventsQuery {
    last_event_id: Option<String>,
}

fn no_chat() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such chat: it may have been deleted.",
    )
}

pub async fn chat_events(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Extension(credential): Extension<Credential>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(chat_id) = id.parse::<Uuid>() else {
        return no_chat();
    };
    let Some(slot) = state.streams.open(user.id) else {
        return api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            &format!(
                "You have {} chats open and following their answers already, the most Switchboard allows one person. Close some tabs (or stop scripts that follow chats), then reload.",
                state.streams.most()
            ),
        );
    };
    match domain::chats::get(&state.db, user.id, chat_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_chat(),
        Err(e) => {
            tracing::error!("cannot check a chat for its event stream: {e}");
            return api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Switchboard cannot reach its database right now. Try again in a moment.",
            );
        }
    }
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id)
        .and_then(|id| id.parse::<EventId>().ok());
    let subscription = state.runs.subscribe(chat_id, last_seen);
    let stream = events(subscription.missed, subscription.receiver)
        // At shutdown the stream ends; browsers reconnect to whichever instance serves next.
        .take_until(state.runs.closing())
        // So does a stream whose token is revoked, or whose person is deactivated.
        .take_until(no_longer_valid(state.db.clone(), user.id, credential))
        // Counted as open for as long as it is.
        .map(move |event| {
            let _open = &slot;
            event
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// How often a stream's credential is checked again even when no change was heard of (the
/// instance may not be hearing of changes right now).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// Resolves once `credential` (of `user_id`) no longer vouches for an active person: checked
/// again at each change heard of that may concern them, and every [`RECHECK_EVERY`].
async fn no_longer_valid(db: domain::Database, user_id: Uuid, credential: Credential) {
    use tokio::sync::broadcast::error::RecvError;
    if matches!(credential, Credential::Local) {
        return std::future::pending().await;
    }
    let mut changes = domain::tokens::changes(&db);
    let mut every = tokio::time::interval(RECHECK_EVERY);
    every.tick().await;
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) if !change.concerns(user_id) => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return std::future::pending().await,
            },
            _ = every.tick() => {}
        }
        if !credential.still_valid(&db).await {
            tracing::info!(
                ?credential,
                "event stream ended: its credential is no longer valid"
            );
            return;
        }
    }
}

fn events(
    missed: Vec<ChatEvent>,
    receiver: tokio::sync::broadcast::Receiver<std::sync::Arc<ChatEvent>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let after = missed.last().map(|e| e.id);
    let live = BroadcastStream::new(receiver)
        // A subscriber that fell too far behind is cut off; its browser reconnects with the last
        // id it saw and gets the rest from the log.
        .take_while(|item| {
            std::future::ready(!matches!(item, Err(BroadcastStreamRecvError::Lagged(_))))
        })
        .filter_map(move |item| {
            // Events already sent as missed ones can also arrive live; skip them.
            std::future::ready(item.ok().filter(|e| after.is_none_or(|a| e.id > a)))
        });
    stream::iter(missed.into_iter().map(std::sync::Arc::new))
        .chain(live)
        .map(|event| Ok(to_sse(&event)))
}

fn to_sse(event: &ChatEvent) -> Event {
    Event::default()
        .id(event.id.to_string())
        .event(event.kind.name())
        .data(serde_json::to_string(event).unwrap_or_default())
}
