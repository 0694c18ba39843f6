//! The chat's title bar: the tools this chat may use (switched on and off here) and its model.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::chats::{ChatData, set_chat_model};
use crate::components::icons;
use crate::mcp::{ChatToolView, ServerView, chat_tools, list_servers, set_chat_tool};
use crate::pages::servers::SignIn;

#[component]
pub(super) fn ModelPicker(
    chat_id: String,
    data: ChatData,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
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
            {data.models.choices.iter().map(|choice| {
                let down = choice
                    .split_once('/')
                    .is_some_and(|(provider, _)| data.models.down.iter().any(|d| d == provider));
                let label = if down { format!("{choice} (down for now)") } else { choice.clone() };
                view! { <option value=choice.clone() selected=*choice == current>{label}</option> }
            }).collect_view()}
        </select>
    }
    .into_any()
}

/// The tools this chat may use: those of the person's connected servers, each switched on until
/// they switch it off here; above them, the servers that wait for the person to sign in.
#[component]
pub(super) fn ChatTools(chat_id: String) -> impl IntoView {
    let open = RwSignal::new(false);
    let changed = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let chat_id = StoredValue::new(chat_id);
    let tools = Resource::new(
        move || (chat_id.get_value(), open.get(), changed.get()),
        |(id, open, _)| async move {
            if open {
                let waiting: Vec<ServerView> = list_servers()
                    .await
                    .map(|list| list.into_iter().filter(|s| s.status == "sign_in").collect())
                    .unwrap_or_default();
                Some((chat_tools(id.clone()).await, waiting, format!("/c/{id}")))
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
                                    let Some((tools, waiting, here)) = tools.await else {
                                        return ().into_any();
                                    };
                                    let sign_ins = (!waiting.is_empty()).then(|| view! {
                                        <ul class="mt-2 flex flex-col gap-2" data-testid="chat-tools-sign-in">
                                            {waiting.into_iter().map(|s| view! {
                                                <li class="rounded-lg bg-amber-50 p-2 text-xs dark:bg-amber-950">
                                                    <p class="mb-1">{s.error.clone().unwrap_or_default()}</p>
                                                    <SignIn id=s.id name=s.name return_to=here.clone() />
                                                </li>
                                            }).collect_view()}
                                        </ul>
                                    });
                                    let list = match tools {
                                        Ok(list) if list.is_empty() => view! {
                                            <p class="mt-2 text-xs" data-testid="no-chat-tools">
                                                "No tool server is connected. "
                                                <a href="/servers" class="text-indigo-600 hover:underline dark:text-indigo-400">"Connect one"</a>
                                                "."
                                            </p>
                                        }.into_any(),
                                        Ok(list) => view! { <ToolSwitches chat_id list changed error /> }.into_any(),
                                        Err(e) => view! { <p role="alert" class="mt-2 text-xs text-red-700 dark:text-red-400">{e.to_string()}</p> }.into_any(),
                                    };
                                    view! { {sign_ins} {list} }.into_any()
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
