//! The sidebar's chat list: newest first, grouped by day, searchable, with rename in place and
//! delete with confirmation.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_location, use_navigate};

use crate::chats::{ChatListVersion, ChatSummary, delete_chat, list_chats, rename_chat};
use crate::components::icons;

#[component]
pub fn ChatList() -> impl IntoView {
    let version = expect_context::<ChatListVersion>();
    let search = RwSignal::new(String::new());
    // Which row is being renamed or asked to confirm a delete, and the title being written: kept
    // here, not in the rows, so that the list reloading under them (an answer's end renames or
    // moves a chat) does not close them.
    let open = RwSignal::new(None::<(String, Mode)>);
    let draft = RwSignal::new(String::new());
    let chats = Resource::new(
        move || (version.0.get(), search.get()),
        |(_, search)| list_chats((!search.trim().is_empty()).then_some(search)),
    );
    view! {
        <div class="px-3 pt-3">
            <label class="relative block">
                <span class="sr-only">"Search chats"</span>
                <span class="pointer-events-none absolute left-2 top-1/2 -translate-y-1/2 text-zinc-400">{icons::search()}</span>
                <input
                    type="search"
                    data-testid="chat-search"
                    placeholder="Search chats"
                    class="w-full rounded-lg border border-zinc-200 bg-white py-1.5 pl-9 pr-2 text-sm dark:border-zinc-700 dark:bg-zinc-800"
                    prop:value=move || search.get()
                    on:input=move |ev| search.set(event_target_value(&ev))
                />
            </label>
        </div>
        <nav class="mt-2 min-h-0 flex-1 overflow-y-auto px-3 pb-3" aria-label="Chat history" data-testid="chat-list">
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match chats.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="px-3 py-2 text-sm text-zinc-500 dark:text-zinc-400">
                                {if search.get_untracked().trim().is_empty() { "No chats yet." } else { "No chat matches." }}
                            </p>
                        }.into_any(),
                        Ok(list) => groups(list).into_iter().map(|(group, items)| view! {
                            <h2 class="px-3 pb-1 pt-3 text-xs font-medium text-zinc-500 dark:text-zinc-400">{group}</h2>
                            <ul>
                                {items.into_iter().map(|chat| view! { <ChatItem chat version open draft /> }).collect_view()}
                            </ul>
                        }).collect_view().into_any(),
                        Err(e) => view! {
                            <p role="alert" class="px-3 py-2 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </nav>
    }
}

/// The chats under their group headings, in the server's order (newest first).
fn groups(list: Vec<ChatSummary>) -> Vec<(String, Vec<ChatSummary>)> {
    let mut groups: Vec<(String, Vec<ChatSummary>)> = Vec::new();
    for chat in list {
        match groups.last_mut() {
            Some((group, items)) if *group == chat.group => items.push(chat),
            _ => groups.push((chat.group.clone(), vec![chat])),
        }
    }
    groups
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Show,
    Rename,
    ConfirmDelete,
}

#[component]
fn ChatItem(
    chat: ChatSummary,
    version: ChatListVersion,
    open: RwSignal<Option<(String, Mode)>>,
    draft: RwSignal<String>,
) -> impl IntoView {
    let key = StoredValue::new(chat.id.clone());
    let mode = move || match open.get() {
        Some((id, mode)) if key.with_value(|key| *key == id) => mode,
        _ => Mode::Show,
    };
    let set_mode =
        move |mode: Mode| open.set((mode != Mode::Show).then(|| (key.get_value(), mode)));
    let start_rename = {
        let title = StoredValue::new(chat.title.clone());
        move || {
            draft.set(title.get_value());
            set_mode(Mode::Rename);
        }
    };
    let error = RwSignal::new(None::<String>);
    let href = format!("/c/{}", chat.id);
    let location = use_location();
    let current = {
        let href = href.clone();
        move || location.pathname.get() == href
    };
    let id = chat.id.clone();
    let save = move || {
        let (id, title) = (id.clone(), draft.get_untracked());
        spawn_local(async move {
            match rename_chat(id, title).await {
                Ok(()) => {
                    set_mode(Mode::Show);
                    version.bump();
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    let id = chat.id.clone();
    let navigate = use_navigate();
    let remove = {
        let href = href.clone();
        move || {
            let (id, href, navigate) = (id.clone(), href.clone(), navigate.clone());
            let was_open = location.pathname.get_untracked() == href;
            spawn_local(async move {
                match delete_chat(id).await {
                    Ok(()) => {
                        set_mode(Mode::Show);
                        version.bump();
                        if was_open {
                            navigate("/", Default::default());
                        }
                    }
                    Err(e) => error.set(Some(e.to_string())),
                }
            });
        }
    };
    let title = chat.title.clone();
    view! {
        <li data-testid="chat-item" class="group relative">
            {move || match mode() {
                Mode::Rename => {
                    let save = save.clone();
                    view! {
                        <input
                            data-testid="rename-input"
                            class="w-full rounded-lg border border-indigo-400 bg-white px-3 py-1.5 text-sm dark:bg-zinc-800"
                            prop:value=move || draft.get()
                            on:input=move |ev| draft.set(event_target_value(&ev))
                            on:keydown=move |ev| match ev.key().as_str() {
                                "Enter" => save(),
                                "Escape" => set_mode(Mode::Show),
                                _ => {}
                            }
                            autofocus
                        />
                    }.into_any()
                }
                Mode::ConfirmDelete => {
                    let remove = remove.clone();
                    let title_to_delete = title.clone();
                    view! {
                        <div class="flex items-center gap-1 rounded-lg bg-red-50 px-3 py-1.5 text-sm dark:bg-red-950">
                            <span class="min-w-0 flex-1 truncate">{format!("Delete “{}”?", title_to_delete)}</span>
                            <button type="button" data-testid="confirm-delete" class="rounded bg-red-600 px-2 py-0.5 text-xs font-medium text-white" on:click=move |_| remove()>"Delete"</button>
                            <button type="button" class="rounded px-2 py-0.5 text-xs hover:bg-red-100 dark:hover:bg-red-900" on:click=move |_| set_mode(Mode::Show)>"Cancel"</button>
                        </div>
                    }.into_any()
                }
                Mode::Show => {
                    let current = current.clone();
                    let title = title.clone();
                    view! {
                        <A
                            href=href.clone()
                            attr:data-testid="chat-link"
                            attr:class=move || format!(
                                "block truncate rounded-lg py-1.5 pl-3 pr-16 text-sm hover:bg-zinc-200 dark:hover:bg-zinc-800 {}",
                                if current() { "bg-zinc-200 font-medium dark:bg-zinc-800" } else { "" },
                            )
                        >
                            {title}
                        </A>
                        <div class="absolute right-1 top-1/2 flex -translate-y-1/2 gap-0.5 opacity-0 group-hover:opacity-100 focus-within:opacity-100">
                            <button type="button" data-testid="rename-chat" aria-label="Rename" title="Rename" class="rounded p-1 text-zinc-500 hover:bg-zinc-300 dark:hover:bg-zinc-700" on:click=move |_| start_rename()>{icons::pencil()}</button>
                            <button type="button" data-testid="delete-chat" aria-label="Delete" title="Delete" class="rounded p-1 text-zinc-500 hover:bg-zinc-300 dark:hover:bg-zinc-700" on:click=move |_| set_mode(Mode::ConfirmDelete)>{icons::trash()}</button>
                        </div>
                    }.into_any()
                }
            }}
            {move || error.get().map(|e| view! { <p role="alert" class="px-3 text-xs text-red-700 dark:text-red-400">{e}</p> })}
        </li>
    }
}
