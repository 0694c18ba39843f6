use leptos::prelude::*;

use crate::components::icons;

/// The start page: where a new chat begins.
#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <section class="mx-auto flex h-full max-w-2xl flex-col items-center justify-center px-6 py-16 text-center">
            <div class="mb-4 rounded-2xl bg-indigo-50 p-3 text-indigo-600 dark:bg-indigo-950 dark:text-indigo-400">
                {icons::chat()}
            </div>
            <h1 class="text-2xl font-semibold tracking-tight sm:text-3xl">"What can I help with?"</h1>
            <p class="mt-3 text-zinc-600 dark:text-zinc-400">
                "Switchboard is your team's AI chat, with tools from MCP servers that run only with your approval."
            </p>
            <p class="mt-8 rounded-lg border border-dashed border-zinc-300 px-4 py-3 text-sm text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
                "Chatting is not available in this version yet: chats and tools come next."
            </p>
        </section>
    }
}
