use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;

use crate::chats::{ChatListVersion, create_chat, list_models, send_message};
use crate::components::composer::Composer;
use crate::components::icons;

/// The start page: where a new chat begins. The first message creates the chat and opens it.
#[component]
pub fn HomePage() -> impl IntoView {
    let models = Resource::new_blocking(|| (), |_| list_models());
    let version = expect_context::<ChatListVersion>();
    let navigate = use_navigate();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // What the composer holds; a send that fails puts its text back.
    let draft = RwSignal::new(String::new());
    let on_send = Callback::new(move |text: String| {
        if busy.get_untracked() {
            return false;
        }
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        spawn_local(async move {
            let result = async {
                let chat = create_chat(None).await?;
                send_message(chat.id.clone(), text.clone(), None).await?;
                Ok::<_, crate::error::AppError>(chat.id)
            }
            .await;
            busy.set(false);
            match result {
                Ok(id) => {
                    version.bump();
                    navigate(&format!("/c/{id}"), Default::default());
                }
                Err(e) => {
                    error.set(Some(e.to_string()));
                    draft.update(|d| {
                        if d.is_empty() {
                            *d = text;
                        }
                    });
                }
            }
        });
        true
    });
    let blocked = Signal::derive(move || {
        models
            .get()
            .and_then(Result::ok)
            .and_then(|m| m.unavailable)
    });

    let found = move || models.get().and_then(Result::ok).and_then(|m| m.found);

    view! {
        <section class="flex h-full flex-col">
            <div class="mx-auto flex max-w-2xl flex-1 flex-col items-center justify-center px-6 py-16 text-center">
                <div class="mb-4 rounded-2xl bg-indigo-50 p-3 text-indigo-600 dark:bg-indigo-950 dark:text-indigo-400">
                    {icons::chat()}
                </div>
                <h1 class="text-2xl font-semibold tracking-tight sm:text-3xl">"What can I help with?"</h1>
                <p class="mt-3 text-zinc-600 dark:text-zinc-400">
                    "Switchboard is your team's AI chat, with tools from MCP servers that run only with your approval."
                </p>
                <Suspense fallback=|| ()>
                    {move || found().map(|f| view! {
                        <p data-testid="found-models" class="mt-4 text-sm text-zinc-500 dark:text-zinc-400">{f}</p>
                    })}
                </Suspense>
                {move || error.get().map(|e| view! {
                    <p role="alert" class="mt-6 rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">{e}</p>
                })}
            </div>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let _ = models.await;
                    view! { <Composer draft on_send on_stop=Callback::new(|()| {}) live=Signal::derive(move || busy.get()) blocked /> }
                })}
            </Suspense>
        </section>
    }
}
