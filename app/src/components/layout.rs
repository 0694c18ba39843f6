//! The app shell: a sidebar (the chat list and "New chat"), a header (room for the user menu) and the
//! main pane. On a phone-sized screen the sidebar becomes a drawer opened from the header.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::components::chat_list::ChatList;
use crate::components::icons;
use crate::components::theme_toggle::ThemeToggle;
use crate::components::user_menu::UserMenu;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let nav_open = RwSignal::new(false);

    // Following a link inside the drawer closes it.
    let location = use_location();
    Effect::new(move |_| {
        location.pathname.track();
        nav_open.set(false);
    });

    view! {
        <div class="flex h-dvh overflow-hidden">
            <Show when=move || nav_open.get()>
                <div
                    class="fixed inset-0 z-30 bg-zinc-950/40 md:hidden"
                    aria-hidden="true"
                    on:click=move |_| nav_open.set(false)
                ></div>
            </Show>
            <Sidebar open=nav_open />
            <div class="flex min-w-0 flex-1 flex-col">
                <Header nav_open />
                <main id="main" class="min-h-0 flex-1 overflow-y-auto">
                    {children()}
                </main>
            </div>
        </div>
    }
}

#[component]
fn Sidebar(open: RwSignal<bool>) -> impl IntoView {
    view! {
        <aside
            id="sidebar"
            data-testid="sidebar"
            aria-label="Chats"
            class=move || {
                format!(
                    "fixed inset-y-0 left-0 z-40 flex w-72 flex-col border-r border-zinc-200 bg-zinc-50 transition-transform duration-200 dark:border-zinc-800 dark:bg-zinc-900 md:static md:translate-x-0 {}",
                    if open.get() { "translate-x-0" } else { "-translate-x-full" },
                )
            }
        >
            <div class="flex h-14 items-center justify-between px-4">
                <A href="/" attr:class="flex items-center gap-2 font-semibold tracking-tight">
                    <img src="/favicon.svg" alt="" class="size-6" />
                    "Switchboard"
                </A>
                <button
                    type="button"
                    class="inline-flex size-9 items-center justify-center rounded-lg text-zinc-500 hover:bg-zinc-200 md:hidden dark:hover:bg-zinc-800"
                    aria-label="Close the chat list"
                    on:click=move |_| open.set(false)
                >
                    {icons::close()}
                </button>
            </div>
            <div class="px-3">
                <A
                    href="/"
                    attr:data-testid="new-chat"
                    attr:class="flex w-full items-center gap-2 rounded-lg border border-zinc-200 bg-white px-3 py-2 text-sm font-medium shadow-xs hover:bg-zinc-100 dark:border-zinc-700 dark:bg-zinc-800 dark:hover:bg-zinc-700"
                >
                    {icons::plus()}
                    "New chat"
                </A>
            </div>
            <ChatList />
            <div class="px-3 pb-2">
                <A
                    href="/servers"
                    attr:data-testid="sidebar-servers"
                    attr:class="flex w-full items-center gap-2 rounded-lg px-3 py-2 text-sm text-zinc-700 hover:bg-zinc-200 dark:text-zinc-300 dark:hover:bg-zinc-800"
                >
                    {icons::plug()}
                    "Tool servers"
                </A>
            </div>
            <div class="border-t border-zinc-200 px-4 py-3 text-xs text-zinc-500 dark:border-zinc-800 dark:text-zinc-400">
                {concat!("Switchboard ", env!("CARGO_PKG_VERSION"))}
            </div>
        </aside>
    }
}

#[component]
fn Header(nav_open: RwSignal<bool>) -> impl IntoView {
    view! {
        <header class="flex h-14 shrink-0 items-center gap-2 border-b border-zinc-200 px-3 dark:border-zinc-800 md:px-6">
            <button
                type="button"
                data-testid="open-sidebar"
                class="inline-flex size-9 items-center justify-center rounded-lg text-zinc-600 hover:bg-zinc-100 md:hidden dark:text-zinc-400 dark:hover:bg-zinc-800"
                aria-label="Open the chat list"
                aria-controls="sidebar"
                aria-expanded=move || nav_open.get().to_string()
                on:click=move |_| nav_open.set(true)
            >
                {icons::menu()}
            </button>
            <div class="min-w-0 flex-1 truncate text-sm font-medium text-zinc-600 dark:text-zinc-300">
                "Switchboard"
            </div>
            <div class="flex items-center gap-1" data-testid="user-menu-slot">
                <ThemeToggle />
                <UserMenu />
            </div>
        </header>
    }
}
