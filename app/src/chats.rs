//! The chat server functions (`/api/chats/...`) and the types the chat pages show. The live answer
//! arrives on the chat's event stream, `GET /api/chats/{id}/events` (served by the server crate).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A chat in the sidebar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSummary {
    pub id: String,
    pub title: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
    /// Where the sidebar lists it: `Today`, `Yesterday`, `Previous 7 days` or `Older` (by UTC day).
    pub group: String,
}

pub use protocol::{LiveText, MessageView, Offered, Role, Status, Usage};

/// Everything the chat page needs at first render.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatData {
    pub chat: ChatSummary,
    /// The model chosen for this chat; None: the default.
    pub model: Option<String>,
    pub messages: Vec<MessageView>,
    /// The answer being written right now, as far as it has come.
    pub live: Option<LiveText>,
    /// Subscribe to the chat's events after this one (`?last_event_id=`), so that nothing that
    /// happens after this read is missed.
    pub last_event_id: Option<String>,
    pub models: Models,
}

/// The models on offer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Models {
    pub choices: Vec<String>,
    /// What "default" stands for, or None when no model is configured.
    pub default: Option<String>,
    /// Why nothing can answer (no model is configured), for the composer to say.
    pub unavailable: Option<String>,
    /// Which model server on this machine answers, when none was configured.
    pub found: Option<String>,
    /// The providers marked down now, after failing repeatedly (tried again after a cool-off).
    #[serde(default)]
    pub down: Vec<String>,
}

/// What sending a message started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub question: MessageView,
    pub answer_id: String,
    pub model: String,
}

/// Bumped whenever the chat list may have changed (a chat created, renamed, answered, deleted), so
/// the sidebar fetches it again. Provided by the app for every page.
#[derive(Clone, Copy)]
pub struct ChatListVersion(pub RwSignal<u32>);

impl ChatListVersion {
    pub fn bump(self) {
        self.0.update(|v| *v += 1);
    }
}

/// `POST /api/chats/list` with optional `search`: the caller's chats, most recent first.
#[server(endpoint = "chats/list")]
pub async fn list_chats(search: Option<String>) -> Result<Vec<ChatSummary>, AppError> {
    let user = crate::ssr::current_user()?;
    let chats = domain::chats::list(&crate::ssr::db()?, user.id, search.as_deref()).await?;
    Ok(chats.into_iter().map(ssr::summary).collect())
}

/// `POST /api/models/list`: the models on offer and what the default stands for.
#[server(endpoint = "models/list")]
pub async fn list_models() -> Result<Models, AppError> {
    let user = crate::ssr::current_user()?;
    ssr::models(&crate::ssr::runs()?, user.id).await
}

/// `POST /api/chats/create` with optional `model`: a new, empty chat.
#[server(endpoint = "chats/create")]
pub async fn create_chat(model: Option<String>) -> Result<ChatSummary, AppError> {
    let user = crate::ssr::current_user()?;
    let runs = crate::ssr::runs()?;
    let model = ssr::checked_model(&runs, user.id, model).await?;
    let chat = domain::chats::create(&crate::ssr::db()?, user.id, model.as_deref()).await?;
    Ok(ssr::summary(chat))
}

/// `POST /api/chats/get` with `id`: the chat, its messages and the models on offer.
#[server(endpoint = "chats/get")]
pub async fn get_chat(id: String) -> Result<ChatData, AppError> {
    let user = crate::ssr::current_user()?;
    let db = crate::ssr::db()?;
    let runs = crate::ssr::runs()?;
    let chat_id = ssr::chat_id(&id)?;
    // The position first: a message stored after it is also read below, and the events after it
    // are replayed to the page, so nothing falls between the two. (It reveals nothing: without
    // the chat, the answer is "no such chat".)
    let (last_event_id, live) = runs.position(user.id, chat_id).await?;
    let conversation = domain::chats::conversation(&db, user.id, chat_id, None)
        .await?
        .ok_or_else(ssr::no_chat)?;
    let chat = conversation.chat;
    // A call whose server asks the person something shows the question.
    let mut questions = runs.waiting_questions(user.id, chat_id).await?;
    let mut messages: Vec<MessageView> =
        conversation.history.into_iter().map(|m| m.view()).collect();
    // (Only a call still running, or approved in an answer that waits for the person's reply,
    // waits: one its answer left behind was interrupted.)
    for call in messages.iter_mut().flat_map(|m| m.tool_calls.iter_mut()) {
        if matches!(
            call.state,
            protocol::CallStatus::Running | protocol::CallStatus::Approved
        ) {
            call.question = questions.remove(&call.id);
        }
    }
    Ok(ChatData {
        model: chat.model.clone(),
        chat: ssr::summary(chat),
        messages,
        live,
        last_event_id: last_event_id.map(|id| id.to_string()),
        models: ssr::models(&runs, user.id).await?,
    })
}

/// `POST /api/chats/rename` with `id`, `title`.
#[server(endpoint = "chats/rename")]
pub async fn rename_chat(id: String, title: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let found =
        domain::chats::rename(&crate::ssr::db()?, user.id, ssr::chat_id(&id)?, &title).await?;
    found.then_some(()).ok_or_else(ssr::no_chat)
}

/// `POST /api/chats/model` with `id` and optional `model` (none: the default).
#[server(endpoint = "chats/model")]
pub async fn set_chat_model(id: String, model: Option<String>) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let model = ssr::checked_model(&crate::ssr::runs()?, user.id, model).await?;
    let found = domain::chats::set_model(
        &crate::ssr::db()?,
        user.id,
        ssr::chat_id(&id)?,
        model.as_deref(),
    )
    .await?;
    found.then_some(()).ok_or_else(ssr::no_chat)
}

/// `POST /api/chats/delete` with `id`: deletes the chat and its messages (stopping its answer).
#[server(endpoint = "chats/delete")]
pub async fn delete_chat(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let chat_id = ssr::chat_id(&id)?;
    let found = domain::chats::delete(&crate::ssr::db()?, user.id, chat_id).await?;
    if found {
        crate::ssr::runs()?.stop(chat_id);
    }
    found.then_some(()).ok_or_else(ssr::no_chat)
}

/// `POST /api/chats/send` with `id`, `text` and optional `from_position` (edit or regenerate from
/// there): stores the message and starts the answer, which streams on the chat's events.
#[server(endpoint = "chats/send")]
pub async fn send_message(
    id: String,
    text: String,
    from_position: Option<i32>,
) -> Result<Sent, AppError> {
    let user = crate::ssr::current_user()?;
    crate::ssr::check_length(&text)?;
    let started = crate::ssr::runs()?
        .start(user.id, ssr::chat_id(&id)?, &text, from_position)
        .await?
        .ok_or_else(ssr::no_chat)?;
    Ok(Sent {
        question: started.question.view(),
        answer_id: started.answer_id.to_string(),
        model: started.model,
    })
}

/// `POST /api/chats/stop` with `id`: stops the answer being written, keeping what it wrote, or
/// the one waiting for decisions on its tool calls (which then do not run).
#[server(endpoint = "chats/stop")]
pub async fn stop_answer(id: String) -> Result<bool, AppError> {
    let user = crate::ssr::current_user()?;
    crate::ssr::runs()?
        .stop_chat(user.id, ssr::chat_id(&id)?)
        .await?
        .ok_or_else(ssr::no_chat)
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use domain::runs::Runs;
    use uuid::Uuid;

    use super::{ChatSummary, Models};
    use crate::error::AppError;

    pub fn no_chat() -> AppError {
        AppError::not_found("There is no such chat: it may have been deleted.")
    }

    pub fn chat_id(id: &str) -> Result<Uuid, AppError> {
        id.trim().parse().map_err(|_| no_chat())
    }

    /// A model name offered to the person, or None for the default. One limited to groups they
    /// are not in is not found, as a thing that is not theirs.
    pub async fn checked_model(
        runs: &Runs,
        user_id: Uuid,
        model: Option<String>,
    ) -> Result<Option<String>, AppError> {
        let Some(m) = model.filter(|m| !m.trim().is_empty()) else {
            return Ok(None);
        };
        let mine = runs.offered_to(user_id).await?;
        if mine.offers(&m) {
            Ok(Some(m))
        } else if runs.models().offers(&m) {
            Err(AppError::not_found(format!(
                "The model '{m}' is not available to you. Choose one of: {}.",
                mine.choices().join(", ")
            )))
        } else {
            Err(AppError::invalid(format!(
                "The model '{m}' is not offered here. Choose one of: {}.",
                mine.choices().join(", ")
            )))
        }
    }

    /// The models on offer to the person (this machine searched again for a model server while
    /// there are none).
    pub async fn models(runs: &Runs, user_id: Uuid) -> Result<Models, AppError> {
        let catalog = runs.offered_to(user_id).await?;
        Ok(Models {
            choices: catalog.choices(),
            default: catalog
                .resolve(None)
                .map(|(p, m)| domain::llm::qualified(&p.id, m)),
            unavailable: catalog.is_empty().then(|| domain::llm::NO_MODEL.to_owned()),
            found: catalog.found.clone(),
            down: runs.llm().down(),
        })
    }

    pub fn summary(chat: domain::chats::Chat) -> ChatSummary {
        let days = (chrono::Utc::now().date_naive() - chat.updated_at.date_naive()).num_days();
        let group = match days {
            ..=0 => "Today",
            1 => "Yesterday",
            2..=7 => "Previous 7 days",
            _ => "Older",
        };
        ChatSummary {
            id: chat.id.to_string(),
            title: chat.title,
            updated_at: chat.updated_at.to_rfc3339(),
            group: group.into(),
        }
    }
}
