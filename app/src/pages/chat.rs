use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::agent::{CallView, DecisionInput, decide};
use crate::chats::{
    ChatData, ChatListVersion, LiveText, MessageView, get_chat, send_message, set_chat_model,
    stop_answer,
};
use crate::components::composer::Composer;
use crate::components::error_page::ErrorPage;
use crate::components::icons;
use crate::error::ErrorKind;
use crate::markdown;
use crate::mcp::{ChatToolView, chat_tools, set_chat_tool};

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
    let refresh = refresher(chat_id.clone(), messages, live, error);

    #[cfg(feature = "hydrate")]
    {
        use crate::live::LiveEvent;
        crate::live::subscribe(
            &chat_id,
            data.last_event_id.as_deref(),
            move |event| match event {
                LiveEvent::RunStarted { answer_id } => start_live(live, answer_id),
                LiveEvent::Token { answer_id, text } => live.update(|l| match l {
                    Some(l) if l.answer_id == answer_id => l.text.push_str(&text),
                    other => {
                        *other = Some(LiveText { answer_id, text });
                    }
                }),
                LiveEvent::Snapshot { answer_id, text } => {
                    live.set(Some(LiveText { answer_id, text }))
                }
                LiveEvent::ToolCall { .. }
                | LiveEvent::Decision { .. }
                | LiveEvent::ToolResult { .. }
                | LiveEvent::Resync => refresh.run(()),
                LiveEvent::ApprovalNeeded { .. } => {
                    live.set(None);
                    refresh.run(());
                }
                LiveEvent::RunFinished { .. } => {
                    // The stored answer replaces the live one when the chat has been read again (the
                    // live copy stays until then, so nothing blinks).
                    refresh.run(());
                    list_version.bump();
                }
            },
        );
        follow_the_stream(live, messages);
    }

    // An answer waiting for decisions can be stopped too.
    let is_live = Signal::derive(move || {
        live.with(Option::is_some) || messages.with(|all| all.iter().any(|m| m.status == "waiting"))
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
                        messages.update(|all| {
                            all.retain(|m| m.position < sent.question.position);
                            all.push(sent.question);
                        });
                        start_live(live, sent.answer_id);
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
                .find(|m| m.role == "user");
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
                        key=|m| (m.id.clone(), m.content.len(), m.status.clone(), calls_key(&m.tool_calls))
                        children={
                            let chat_id = chat_id.clone();
                            move |m| view! { <Message m live edit chat_id=chat_id.clone() refresh /> }
                        }
                    />
                    // A new answer not read with the chat yet.
                    {move || live.get().filter(|l| !messages.with(|all| all.iter().any(|m| m.id == l.answer_id))).map(|l| view! {
                        <article class="group" data-testid="live-answer" data-role="assistant">
                            <div class="prose-chat" inner_html=markdown::render(&l.text)></div>
                            <p class="mt-1 animate-pulse text-xs text-zinc-500">"Writing…"</p>
                        </article>
                    })}
                    {move || {
                        let last_is_answer = messages.with(|all| all.last().is_some_and(|m| m.role == "assistant"));
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

/// Reads the chat's messages again, in place (the rest of the page stays as it is). An answer
/// that is no longer being written replaces its live copy; only the latest read counts.
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
                                .any(|m| m.id == l.answer_id && m.status != "streaming")
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

/// Shows that `answer_id` is being written, unless it already is (its first tokens may have come
/// on the event stream before the answer to the send that started it).
fn start_live(live: RwSignal<Option<LiveText>>, answer_id: String) {
    live.update(|l| {
        if l.as_ref().is_none_or(|l| l.answer_id != answer_id) {
            *l = Some(LiveText {
                answer_id,
                text: String::new(),
            });
        }
    });
}

/// What changes when a message's tool calls do (for the list's keys).
fn calls_key(calls: &[CallView]) -> String {
    calls
        .iter()
        .map(|c| format!("{}:{}", c.id, c.state))
        .collect::<Vec<_>>()
        .join(",")
}

#[component]
fn Message(
    m: MessageView,
    live: RwSignal<Option<LiveText>>,
    edit: Callback<(i32, String)>,
    chat_id: String,
    refresh: Callback<()>,
) -> impl IntoView {
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(m.content.clone());
    let is_user = m.role == "user";
    let id = m.id.clone();
    // While this answer is being written, the live copy of its text is shown.
    let live_text = move || {
        live.with(|l| {
            l.as_ref()
                .filter(|l| l.answer_id == id)
                .map(|l| l.text.clone())
        })
    };
    let notice = match m.status.as_str() {
        "stopped" => Some(("Stopped.".to_owned(), false)),
        "failed" => Some((m.error.clone().unwrap_or_else(|| "The answer failed.".into()), true)),
        "interrupted" => Some(("Interrupted: the server stopped while writing this answer. What it had written is kept; regenerate to try again.".to_owned(), true)),
        "waiting" => Some(("Waiting for your decision on the tool calls above.".to_owned(), false)),
        _ => None,
    };
    let position = m.position;
    let content = m.content.clone();
    view! {
        <article
            data-role=m.role.clone()
            data-testid="message"
            class=if is_user { "group flex flex-col items-end" } else { "group" }
        >
                {if is_user {
                    let content = content.clone();
                    view! {
                        <Show
                            when=move || editing.get()
                            fallback={
                                let content = content.clone();
                                move || view! {
                                    <div class="max-w-[85%] whitespace-pre-wrap rounded-2xl bg-zinc-100 px-4 py-2 text-sm dark:bg-zinc-800">{content.clone()}</div>
                                    <button
                                        type="button"
                                        data-testid="edit-message"
                                        class="mt-1 inline-flex items-center gap-1 rounded px-1 text-xs text-zinc-500 opacity-0 hover:text-zinc-900 group-hover:opacity-100 focus:opacity-100 dark:hover:text-zinc-100"
                                        on:click=move |_| editing.set(true)
                                    >
                                        {icons::pencil()} "Edit"
                                    </button>
                                }
                            }
                        >
                            <div class="flex w-full max-w-[85%] flex-col gap-2">
                                <textarea
                                    data-testid="edit-box"
                                    class="min-h-20 w-full rounded-xl border border-zinc-300 bg-white p-2 text-sm dark:border-zinc-700 dark:bg-zinc-900"
                                    prop:value=move || draft.get()
                                    on:input=move |ev| draft.set(event_target_value(&ev))
                                ></textarea>
                                <div class="flex justify-end gap-2">
                                    <button type="button" class="rounded-lg px-3 py-1 text-xs hover:bg-zinc-100 dark:hover:bg-zinc-800" on:click=move |_| editing.set(false)>"Cancel"</button>
                                    <button
                                        type="button"
                                        data-testid="save-edit"
                                        class="rounded-lg bg-zinc-900 px-3 py-1 text-xs font-medium text-white dark:bg-zinc-100 dark:text-zinc-900"
                                        on:click=move |_| {
                                            editing.set(false);
                                            edit.run((position, draft.get_untracked()));
                                        }
                                    >
                                        "Send"
                                    </button>
                                </div>
                            </div>
                        </Show>
                    }.into_any()
                } else {
                    let calls = m.tool_calls.clone();
                    let answer_id = m.id.clone();
                    view! {
                        {(!calls.is_empty()).then(|| view! { <ToolCalls chat_id answer_id calls refresh /> })}
                        {move || match live_text() {
                            Some(text) => view! {
                                <div class="prose-chat" data-testid="live-answer" inner_html=markdown::render(&text)></div>
                                <p class="mt-1 animate-pulse text-xs text-zinc-500">"Writing…"</p>
                            }.into_any(),
                            None => view! { <div class="prose-chat" inner_html=markdown::render(&content)></div> }.into_any(),
                        }}
                    }.into_any()
                }}
                {notice.map(|(text, bad)| view! {
                    <p data-testid="message-notice" class=if bad { "mt-2 text-xs text-red-700 dark:text-red-400" } else { "mt-2 text-xs text-zinc-500" }>{text}</p>
                })}
        </article>
    }
}

#[component]
fn ModelPicker(chat_id: String, data: ChatData, error: RwSignal<Option<String>>) -> impl IntoView {
    if data.models.choices.is_empty() {
        return ().into_any();
    }
    let current = data.model.clone().unwrap_or_default();
    let default_label = format!(
        "Default ({})",
        data.models.default.clone().unwrap_or_default()
    );
    view! {
        <label class="sr-only" for="model">"Model"</label>
        <select
            id="model"
            data-testid="model-picker"
            class="rounded-lg border border-zinc-200 bg-white px-2 py-1 text-xs dark:border-zinc-700 dark:bg-zinc-900"
            on:change=move |ev| {
                let chosen = event_target_value(&ev);
                let chat_id = chat_id.clone();
                spawn_local(async move {
                    let model = (!chosen.is_empty()).then_some(chosen);
                    match set_chat_model(chat_id, model).await {
                        Ok(()) => error.set(None),
                        Err(e) => error.set(Some(format!("The model was not changed: {e}"))),
                    }
                });
            }
        >
            <option value="" selected=current.is_empty()>{default_label}</option>
            {data.models.choices.iter().map(|choice| view! {
                <option value=choice.clone() selected=*choice == current>{choice.clone()}</option>
            }).collect_view()}
        </select>
    }
    .into_any()
}

/// The tools this chat may use: those of the person's connected servers, each switched on until
/// they switch it off here.
#[component]
fn ChatTools(chat_id: String) -> impl IntoView {
    let open = RwSignal::new(false);
    let changed = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let chat_id = StoredValue::new(chat_id);
    let tools = Resource::new(
        move || (chat_id.get_value(), open.get(), changed.get()),
        |(id, open, _)| async move {
            if open {
                Some(chat_tools(id).await)
            } else {
                None
            }
        },
    );
    view! {
        <div class="relative">
            <button
                type="button"
                data-testid="chat-tools"
                aria-expanded=move || open.get().to_string()
                class="inline-flex items-center gap-1 rounded-lg border border-zinc-200 px-2 py-1 text-xs hover:bg-zinc-100 dark:border-zinc-700 dark:hover:bg-zinc-800"
                on:click=move |_| open.update(|o| *o = !*o)
            >
                {icons::wrench()} "Tools"
            </button>
            <Show when=move || open.get()>
                <div class="fixed inset-0 z-40" aria-hidden="true" on:click=move |_| open.set(false)></div>
                <div class="absolute right-0 z-50 mt-2 max-h-96 w-80 overflow-y-auto rounded-xl border border-zinc-200 bg-white p-3 text-sm shadow-lg dark:border-zinc-700 dark:bg-zinc-900" data-testid="chat-tools-panel">
                    <p class="text-xs text-zinc-500 dark:text-zinc-400">"Tools this chat may use. Every call still asks for your approval."</p>
                    {move || error.get().map(|e| view! { <p role="alert" class="mt-2 text-xs text-red-700 dark:text-red-400">{e}</p> })}
                    <Transition fallback=|| view! { <p class="mt-2 text-xs text-zinc-500">"Loading…"</p> }>
                        {
                            move || {
                                let chat_id = chat_id.get_value();
                                Suspend::new(async move {
                                    match tools.await {
                                        None => ().into_any(),
                                        Some(Ok(list)) if list.is_empty() => view! {
                                            <p class="mt-2 text-xs" data-testid="no-chat-tools">
                                                "No tool server is connected. "
                                                <a href="/servers" class="text-indigo-600 hover:underline dark:text-indigo-400">"Connect one"</a>
                                                "."
                                            </p>
                                        }.into_any(),
                                        Some(Ok(list)) => view! { <ToolSwitches chat_id list changed error /> }.into_any(),
                                        Some(Err(e)) => view! { <p role="alert" class="mt-2 text-xs text-red-700 dark:text-red-400">{e.to_string()}</p> }.into_any(),
                                    }
                                })
                            }
                        }
                    </Transition>
                </div>
            </Show>
        </div>
    }
}

#[component]
fn ToolSwitches(
    chat_id: String,
    list: Vec<ChatToolView>,
    changed: RwSignal<u32>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    view! {
        <ul class="mt-2 flex flex-col gap-1">
            {list.into_iter().map(|t| {
                let chat_id = chat_id.clone();
                let (server, tool) = (t.server_id.clone(), t.tool.name.clone());
                view! {
                    <li>
                        <label class="flex items-start gap-2 rounded px-1 py-1 hover:bg-zinc-50 dark:hover:bg-zinc-800" data-testid="chat-tool">
                            <input
                                type="checkbox"
                                class="mt-0.5"
                                checked=t.enabled
                                on:change=move |ev| {
                                    let enabled = event_target_checked(&ev);
                                    let (chat_id, server, tool) = (chat_id.clone(), server.clone(), tool.clone());
                                    spawn_local(async move {
                                        match set_chat_tool(chat_id, server, tool, enabled).await {
                                            Ok(()) => error.set(None),
                                            Err(e) => error.set(Some(e.to_string())),
                                        }
                                        changed.update(|c| *c += 1);
                                    });
                                }
                            />
                            <span class="min-w-0">
                                <code class="text-xs">{t.tool.name.clone()}</code>
                                <span class="block truncate text-xs text-zinc-500 dark:text-zinc-400">{t.server_name.clone()}</span>
                            </span>
                        </label>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

/// Copies a code block when its Copy button is clicked (the buttons come from rendered Markdown,
/// so one listener on the message list serves them all).
fn copy_code(ev: leptos::ev::MouseEvent) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let Some(button) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|e| e.closest("[data-copy-code]").ok().flatten())
        else {
            return;
        };
        let code = button
            .closest(".code-block")
            .ok()
            .flatten()
            .and_then(|block| block.query_selector("code").ok().flatten())
            .and_then(|code| code.text_content());
        if let Some(code) = code {
            let _ = window().navigator().clipboard().write_text(&code);
            button.set_text_content(Some("Copied"));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = ev;
}

/// Keeps the newest text in view while it streams, unless the person has scrolled up to read.
#[cfg(feature = "hydrate")]
fn follow_the_stream(live: RwSignal<Option<LiveText>>, messages: RwSignal<Vec<MessageView>>) {
    Effect::new(move |_| {
        live.track();
        messages.track();
        let Some(scroller) = document().get_element_by_id("chat-scroll") else {
            return;
        };
        let distance = scroller.scroll_height() - scroller.scroll_top() - scroller.client_height();
        // 120 px: the height the newest chunk of text may have added since the last frame.
        if distance < 120 {
            scroller.set_scroll_top(scroller.scroll_height());
        }
    });
}

/// An answer's tool calls: a card per call. Calls waiting for the person have their decisions
/// (approve, reject with a reason, edit the arguments, always allow), sent for this answer and the
/// turn its cards show (the server refuses them once that turn no longer waits); the others show
/// what came of them, folded.
#[component]
fn ToolCalls(
    chat_id: String,
    answer_id: String,
    calls: Vec<CallView>,
    refresh: Callback<()>,
) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let turn = calls
        .iter()
        .filter(|c| c.state == "waiting")
        .map(|c| c.turn)
        .max()
        .unwrap_or_default();
    let target = StoredValue::new((chat_id, answer_id));
    let send = move |decisions: Vec<DecisionInput>| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            let (chat_id, answer_id) = target.get_value();
            let decided = decide(chat_id, Some(answer_id), Some(turn), decisions).await;
            busy.set(false);
            match decided {
                // The chat is read again: the cards show the decisions.
                Ok(()) => refresh.run(()),
                // Nothing changed: the card keeps what the person typed.
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    let waiting: Vec<String> = calls
        .iter()
        .filter(|c| c.state == "waiting")
        .map(|c| c.id.clone())
        .collect();
    let all = (waiting.len() > 1).then(|| {
        let (approve_ids, reject_ids) = (waiting.clone(), waiting.clone());
        view! {
            <div class="flex items-center gap-2 text-xs" data-testid="decide-all">
                <span class="text-zinc-600 dark:text-zinc-400">{format!("{} tool calls wait for you:", waiting.len())}</span>
                <button type="button" data-testid="approve-all" class=BUTTON_PRIMARY prop:disabled=move || busy.get()
                    on:click=move |_| send(approve_ids.iter().map(|id| approval(id, None, None)).collect())>
                    "Approve all"
                </button>
                <button type="button" data-testid="reject-all" class=BUTTON prop:disabled=move || busy.get()
                    on:click=move |_| send(reject_ids.iter().map(|id| rejection(id, None)).collect())>
                    "Reject all"
                </button>
            </div>
        }
    });
    view! {
        <div class="mb-3 flex flex-col gap-2" data-testid="tool-calls">
            {all}
            {calls.into_iter().map(|call| view! { <ToolCallCard call send busy /> }).collect_view()}
            {move || error.get().map(|e| view! {
                <p role="alert" data-testid="decide-error" class="rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-xs text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">{e}</p>
            })}
        </div>
    }
}

const BUTTON: &str = "rounded-lg border border-zinc-200 px-2 py-1 text-xs hover:bg-zinc-100 disabled:opacity-50 dark:border-zinc-700 dark:hover:bg-zinc-800";
const BUTTON_PRIMARY: &str = "rounded-lg bg-zinc-900 px-2 py-1 text-xs font-medium text-white hover:bg-zinc-700 disabled:opacity-50 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300";

fn approval(id: &str, arguments: Option<serde_json::Value>, always: Option<&str>) -> DecisionInput {
    DecisionInput {
        call_id: id.to_owned(),
        approve: true,
        reason: None,
        arguments,
        always: always.map(str::to_owned),
    }
}

fn rejection(id: &str, reason: Option<String>) -> DecisionInput {
    DecisionInput {
        call_id: id.to_owned(),
        approve: false,
        reason,
        arguments: None,
        always: None,
    }
}

#[component]
fn ToolCallCard(
    call: CallView,
    send: impl Fn(Vec<DecisionInput>) + Copy + Send + Sync + 'static,
    busy: RwSignal<bool>,
) -> impl IntoView {
    let badges = [
        (call.read_only, "read-only", "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300"),
        (call.destructive, "destructive", "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300"),
        (call.open_world, "open-world", "bg-sky-100 text-sky-800 dark:bg-sky-950 dark:text-sky-300"),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, label, tone)| view! { <span class=format!("rounded px-1.5 py-0.5 text-[10px] font-medium {tone}")>{label}</span> })
    .collect_view();
    let header = view! {
        <code class="font-medium">{call.tool.clone()}</code>
        <span class="text-zinc-500 dark:text-zinc-400">"on " {call.server.clone()}</span>
        {badges}
    };
    if call.state != "waiting" {
        let (label, tone) = match call.state.as_str() {
            "ok" => ("Ran", "text-emerald-700 dark:text-emerald-400"),
            "error" => ("Failed", "text-red-700 dark:text-red-400"),
            "rejected" => ("Rejected", "text-zinc-600 dark:text-zinc-400"),
            "running" => ("Running…", "animate-pulse text-zinc-600 dark:text-zinc-400"),
            "approved" => ("Approved", "text-zinc-600 dark:text-zinc-400"),
            "interrupted" => (
                "Interrupted: the server stopped while it ran; it was not run again",
                "text-amber-700 dark:text-amber-400",
            ),
            _ => ("Not run", "text-zinc-600 dark:text-zinc-400"),
        };
        let decided = call
            .decided_by
            .clone()
            .map(|by| format!(" · approved by {by}"));
        let decided = if call.state == "rejected" {
            Some(format!(
                " · rejected{}",
                call.reason
                    .clone()
                    .map(|r| format!(": “{r}”"))
                    .unwrap_or_default()
            ))
        } else {
            decided
        };
        return view! {
            <details class="rounded-xl border border-zinc-200 px-3 py-2 text-sm dark:border-zinc-800" data-testid="tool-call" data-state=call.state.clone() data-call-id=call.id.clone()>
                <summary class="flex cursor-pointer flex-wrap items-center gap-2">
                    {header}
                    <span class=format!("text-xs {tone}") data-testid="tool-call-state">{label}</span>
                    <span class="text-xs text-zinc-500">{decided}{call.duration_ms.map(|d| format!(" · {d} ms"))}{call.edited.then_some(" · arguments edited")}</span>
                </summary>
                <p class="mt-2 text-xs font-medium text-zinc-500">"Arguments"</p>
                <pre class="mt-1 overflow-x-auto rounded bg-zinc-50 p-2 text-xs dark:bg-zinc-900">{call.arguments.clone()}</pre>
                {call.result.clone().map(|r| view! {
                    <p class="mt-2 text-xs font-medium text-zinc-500">{if call.state == "error" { "Error" } else { "Result" }}</p>
                    <pre class="mt-1 max-h-64 overflow-auto whitespace-pre-wrap rounded bg-zinc-50 p-2 text-xs dark:bg-zinc-900" data-testid="tool-result">{r}</pre>
                })}
            </details>
        }
        .into_any();
    }

    let id = StoredValue::new(call.id.clone());
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(call.arguments.clone());
    let rejecting = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    let local_error = RwSignal::new(None::<String>);
    let original =
        StoredValue::new(serde_json::from_str::<serde_json::Value>(&call.arguments).ok());
    // The arguments to approve with: None when unedited (or edited back to the model's); an error
    // when the edit is not JSON.
    let edited = move || -> Result<Option<serde_json::Value>, String> {
        if !editing.get_untracked() {
            return Ok(None);
        }
        let value = serde_json::from_str::<serde_json::Value>(&draft.get_untracked())
            .map_err(|e| format!("The arguments are not valid JSON: {e}."))?;
        let unchanged = original.with_value(|o| o.as_ref() == Some(&value));
        Ok((!unchanged).then_some(value))
    };
    let approve = move |always: Option<&'static str>| match edited() {
        Ok(arguments) => {
            local_error.set(None);
            send(vec![approval(&id.get_value(), arguments, always)]);
        }
        Err(e) => local_error.set(Some(e)),
    };
    let arguments = call.arguments.clone();
    view! {
        <div class="rounded-xl border border-amber-300 bg-amber-50/50 p-3 text-sm dark:border-amber-800 dark:bg-amber-950/30" data-testid="approval-card" data-call-id=call.id.clone()>
            <div class="flex flex-wrap items-center gap-2">
                {header}
                <span class="ml-auto text-xs text-amber-800 dark:text-amber-300">"Wants to run"</span>
            </div>
            <Show
                when=move || editing.get()
                fallback={
                    let arguments = arguments.clone();
                    move || view! { <pre class="mt-2 overflow-x-auto rounded bg-white p-2 text-xs dark:bg-zinc-900" data-testid="call-arguments">{arguments.clone()}</pre> }
                }
            >
                <label class="mt-2 block text-xs text-zinc-600 dark:text-zinc-400" for=format!("args-{}", id.get_value())>"Arguments (JSON, checked against the tool's schema)"</label>
                <textarea
                    id=format!("args-{}", id.get_value())
                    data-testid="edit-arguments"
                    class="mt-1 min-h-24 w-full rounded-lg border border-zinc-300 bg-white p-2 font-mono text-xs dark:border-zinc-700 dark:bg-zinc-900"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                ></textarea>
            </Show>
            <Show when=move || rejecting.get()>
                <div class="mt-2 flex flex-col gap-1">
                    <label class="text-xs text-zinc-600 dark:text-zinc-400" for=format!("reason-{}", id.get_value())>"Why not? (optional; the model is told)"</label>
                    <input
                        id=format!("reason-{}", id.get_value())
                        data-testid="reject-reason"
                        class="rounded-lg border border-zinc-300 bg-white px-2 py-1 text-xs dark:border-zinc-700 dark:bg-zinc-900"
                        prop:value=move || reason.get()
                        on:input=move |ev| reason.set(event_target_value(&ev))
                    />
                </div>
            </Show>
            {move || local_error.get().map(|e| view! { <p role="alert" class="mt-2 text-xs text-red-700 dark:text-red-400">{e}</p> })}
            <div class="mt-2 flex flex-wrap gap-2">
                <Show
                    when=move || rejecting.get()
                    fallback=move || view! {
                        <button type="button" data-testid="approve" class=BUTTON_PRIMARY prop:disabled=move || busy.get() on:click=move |_| approve(None)>
                            {move || if editing.get() { "Approve with these arguments" } else { "Approve" }}
                        </button>
                        <button type="button" data-testid="reject" class=BUTTON prop:disabled=move || busy.get() on:click=move |_| rejecting.set(true)>"Reject"</button>
                        <button type="button" data-testid="edit" class=BUTTON on:click=move |_| editing.update(|e| *e = !*e)>
                            {move || if editing.get() { "Cancel edit" } else { "Edit arguments" }}
                        </button>
                        <button type="button" data-testid="always-tool" class=BUTTON prop:disabled=move || busy.get() on:click=move |_| approve(Some("tool"))>"Always allow this tool"</button>
                        <button type="button" data-testid="always-server" class=BUTTON prop:disabled=move || busy.get() on:click=move |_| approve(Some("server"))>"Always allow this server"</button>
                    }
                >
                    <button type="button" data-testid="confirm-reject" class=BUTTON_PRIMARY prop:disabled=move || busy.get()
                        on:click=move |_| {
                            let why = reason.get_untracked();
                            let why = (!why.trim().is_empty()).then_some(why);
                            send(vec![rejection(&id.get_value(), why)]);
                        }>
                        "Reject"
                    </button>
                    <button type="button" class=BUTTON on:click=move |_| rejecting.set(false)>"Cancel"</button>
                </Show>
            </div>
        </div>
    }
    .into_any()
}
