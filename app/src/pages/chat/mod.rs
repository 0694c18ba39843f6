//! A chat's page: its messages, rendered on the server, then the live answer over the event
//! stream. The page's state (its messages, the live answer, the last error) lives here and is
//! shared with the parts, each in a module of its own:
//!
//! | module | owns |
//! |---|---|
//! | [`header`] | the title bar: the chat's tools and its model |
//! | [`message`] | one message: its text, editing a question, its notice |
//! | [`tool_calls`] | an answer's tool calls: the cards, and the decisions on them |
//! | [`stream`] | the event stream, and the answer while it is written |

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::chats::{ChatData, ChatListVersion, Role, Status, get_chat, send_message, stop_answer};
#[cfg(feature = "hydrate")]
use crate::chats::{LiveText, MessageView};
use crate::components::composer::Composer;
use crate::components::error_page::ErrorPage;
use crate::components::icons;
use crate::error::ErrorKind;

mod header;
mod message;
mod question;
mod stream;
mod tool_calls;

use header::{ChatTools, ModelPicker};
use message::LiveThinking;
use message::{Message, copy_code};
use stream::{StreamingAnswer, start_live};
use tool_calls::calls_key;

/// A chat: its messages, rendered on the server, then the live answer over the event stream.
#[component]
pub fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let chat_id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let page = Resource::new_blocking(move || chat_id.get(), get_chat);
    view! {
        <Transition fallback=|| view! { <p class="p-8 text-sm text-zinc-500">"Loading the chat…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(data) => view! { <ChatView data /> }.into_any(),
                    Err(e) if e.error == ErrorKind::NotFound => view! {
                        <Title text="Chat not found · Switchboard" />
                        <ErrorPage status=404 title="Chat not found" detail=e.to_string() />
                    }.into_any(),
                    Err(e) => view! {
                        <Title text="Chat unavailable · Switchboard" />
                        <ErrorPage status=e.status() title="This chat cannot be shown" detail=e.to_string() />
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ChatView(data: ChatData) -> impl IntoView {
    let chat_id = data.chat.id.clone();
    let list_version = expect_context::<ChatListVersion>();
    // A page loaded mid-answer starts from the text so far; the events after it follow.
    let live = RwSignal::new(data.live.clone());
    let error = RwSignal::new(None::<String>);
    let messages = RwSignal::new(data.messages.clone());
    #[cfg(feature = "hydrate")]
    let refresh = refresher(chat_id.clone(), messages, live, error);

    #[cfg(feature = "hydrate")]
    stream::follow(
        &chat_id,
        data.last_event_id.as_deref(),
        live,
        messages,
        refresh,
        list_version,
    );

    // An answer waiting for decisions can be stopped too.
    let is_live = Signal::derive(move || {
        live.with(Option::is_some)
            || messages.with(|all| all.iter().any(|m| m.status == Status::Waiting))
    });
    let blocked = Signal::derive({
        let unavailable = data.models.unavailable.clone();
        move || unavailable.clone()
    });

    // What the composer holds; a send from it that fails puts its text back.
    let draft = RwSignal::new(String::new());
    let send = {
        let chat_id = chat_id.clone();
        move |text: String, from_position: Option<i32>, from_composer: bool| {
            let chat_id = chat_id.clone();
            error.set(None);
            spawn_local(async move {
                match send_message(chat_id, text.clone(), from_position).await {
                    Ok(sent) => {
                        // Show the question at once; the stream brings the answer.
                        start_live(messages, live, sent.question, sent.answer_id, sent.model);
                        list_version.bump();
                    }
                    Err(e) => {
                        error.set(Some(e.to_string()));
                        // Nothing typed is lost (unless something new was typed meanwhile).
                        if from_composer {
                            draft.update(|d| {
                                if d.is_empty() {
                                    *d = text;
                                }
                            });
                        }
                    }
                }
            });
        }
    };
    let stop = {
        let chat_id = chat_id.clone();
        move || {
            let chat_id = chat_id.clone();
            spawn_local(async move {
                if let Err(e) = stop_answer(chat_id).await {
                    error.set(Some(e.to_string()));
                }
            });
        }
    };
    let on_send = Callback::new({
        let send = send.clone();
        move |text: String| {
            send(text, None, true);
            true
        }
    });
    let on_stop = Callback::new(move |()| stop());

    // Regenerate: the last question again, replacing its answer.
    let regenerate = {
        let send = send.clone();
        move || {
            let last_question = messages
                .get_untracked()
                .into_iter()
                .rev()
                .find(|m| m.role == Role::User);
            if let Some(q) = last_question {
                send(q.content, Some(q.position), false);
            }
        }
    };
    let edit = Callback::new({
        let send = send.clone();
        move |(position, text): (i32, String)| send(text, Some(position), false)
    });

    let title = data.chat.title.clone();
    view! {
        <Title text=format!("{title} · Switchboard") />
        <div class="flex h-full flex-col">
            <div class="flex items-center justify-between gap-2 border-b border-zinc-100 px-4 py-2 dark:border-zinc-900">
                <h1 class="min-w-0 truncate text-sm font-medium" data-testid="chat-title">{title.clone()}</h1>
                <div class="flex items-center gap-2">
                    <ChatTools chat_id=chat_id.clone() />
                    <ModelPicker chat_id=chat_id.clone() data=data.clone() error />
                </div>
            </div>
            <div class="min-h-0 flex-1 overflow-y-auto" id="chat-scroll" data-testid="messages" on:click=copy_code>
                <div class="mx-auto flex max-w-3xl flex-col gap-6 px-4 py-6">
                    <For
                        each=move || messages.get()
                        key=|m| (m.id.clone(), m.content.len(), m.status, calls_key(&m.tool_calls), m.thinking.len(), m.usage.as_ref().map(|u| (u.input_tokens, u.output_tokens, u.duration_ms)))
                        children={
                            let chat_id = chat_id.clone();
                            move |m| view! { <Message m live edit chat_id=chat_id.clone() /> }
                        }
                    />
                    // A new answer not read with the chat yet.
                    {move || live.get().filter(|l| !messages.with(|all| all.iter().any(|m| m.id == l.answer_id))).map(|l| view! {
                        <article class="group" data-testid="live-answer" data-role="assistant">
                            <LiveThinking live answer_id=l.answer_id.clone() />
                            <StreamingAnswer live answer_id=l.answer_id testid=None />
                            <p class="mt-1 animate-pulse text-xs text-zinc-500">"Writing…"</p>
                        </article>
                    })}
                    {move || {
                        let last_is_answer = messages.with(|all| all.last().is_some_and(|m| m.role == Role::Assistant));
                        (last_is_answer && !is_live.get()).then(|| {
                            let regenerate = regenerate.clone();
                            view! {
                                <div>
                                    <button
                                        type="button"
                                        data-testid="regenerate"
                                        class="inline-flex items-center gap-1 rounded-lg px-2 py-1 text-xs text-zinc-600 hover:bg-zinc-100 dark:text-zinc-400 dark:hover:bg-zinc-800"
                                        on:click=move |_| regenerate()
                                    >
                                        {icons::refresh()} "Regenerate"
                                    </button>
                                </div>
                            }
                        })
                    }}
                    {move || error.get().map(|e| view! {
                        <p role="alert" data-testid="chat-error" class="rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">{e}</p>
                    })}
                </div>
            </div>
            <Composer draft on_send on_stop live=is_live blocked />
        </div>
    }
}

#[cfg(feature = "hydrate")]
/// Reads the chat's messages again, in place (the rest of the page stays as it is), when its
/// events cannot be followed (`resync`). An answer that is no longer being written replaces its
/// live copy; only the latest read counts.
fn refresher(
    chat_id: String,
    messages: RwSignal<Vec<MessageView>>,
    live: RwSignal<Option<LiveText>>,
    error: RwSignal<Option<String>>,
) -> Callback<()> {
    let latest = StoredValue::new(0u64);
    Callback::new(move |()| {
        let ticket = latest.get_value() + 1;
        latest.set_value(ticket);
        let chat_id = chat_id.clone();
        spawn_local(async move {
            let read = get_chat(chat_id).await;
            if latest.get_value() != ticket {
                return;
            }
            match read {
                Ok(fresh) => {
                    live.update(|l| {
                        let ended = l.as_ref().is_some_and(|l| {
                            fresh
                                .messages
                                .iter()
                                .any(|m| m.id == l.answer_id && m.status != Status::Streaming)
                        });
                        if ended {
                            *l = None;
                        }
                    });
                    messages.set(fresh.messages);
                }
                Err(e) => error.set(Some(format!(
                    "The chat could not be read again ({e}). Reload the page to see where it stands."
                ))),
            }
        });
    })
}
