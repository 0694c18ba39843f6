//! The header's user menu: who is signed in, Settings, Sign out.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::auth::{Account, me};

#[component]
pub fn UserMenu() -> impl IntoView {
    let user = Resource::new_blocking(|| (), |_| me());
    view! {
        <Transition fallback=|| view! { <span class="size-9" /> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(me) => view! { <Menu me /> }.into_any(),
                    // The gate in front of every page makes this rare (the session ended between
                    // the page and this call); the way out is to sign in again.
                    Err(_) => view! {
                        <a rel="external" href="/login" class="text-sm font-medium text-indigo-600 hover:underline dark:text-indigo-400">
                            "Sign in"
                        </a>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Menu(me: Account) -> impl IntoView {
    let open = RwSignal::new(false);
    // Following a link in the menu closes it.
    let location = use_location();
    Effect::new(move |_| {
        location.pathname.track();
        open.set(false);
    });
    let initials = me.initials();
    let avatar = me.avatar_url.clone();
    let role = if me.is_admin { "Admin" } else { "Member" };
    view! {
        <div class="relative">
            <button
                type="button"
                data-testid="user-menu"
                aria-haspopup="menu"
                aria-expanded=move || open.get().to_string()
                aria-label=format!("Account: {}", me.name)
                title=me.name.clone()
                on:click=move |_| open.update(|o| *o = !*o)
                class="inline-flex size-9 items-center justify-center overflow-hidden rounded-full bg-indigo-100 text-sm font-semibold text-indigo-700 hover:ring-2 hover:ring-indigo-300 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-indigo-500 dark:bg-indigo-950 dark:text-indigo-300"
            >
                {match avatar {
                    Some(src) => view! { <img src=src alt="" class="size-full object-cover" /> }.into_any(),
                    None => view! { <span aria-hidden="true">{initials}</span> }.into_any(),
                }}
            </button>
            <Show when=move || open.get()>
                <div class="fixed inset-0 z-40" aria-hidden="true" on:click=move |_| open.set(false)></div>
            </Show>
            <div
                role="menu"
                data-testid="user-menu-panel"
                class=move || {
                    format!(
                        "absolute right-0 z-50 mt-2 w-64 rounded-xl border border-zinc-200 bg-white p-2 shadow-lg dark:border-zinc-700 dark:bg-zinc-900 {}",
                        if open.get() { "" } else { "hidden" },
                    )
                }
            >
                <div class="px-3 py-2">
                    <p class="truncate text-sm font-medium" data-testid="user-name">{me.name.clone()}</p>
                    {me.email.clone().map(|email| view! {
                        <p class="truncate text-xs text-zinc-500 dark:text-zinc-400">{email}</p>
                    })}
                    <p class="mt-1 text-xs text-zinc-500 dark:text-zinc-400">{role}</p>
                </div>
                <div class="my-1 border-t border-zinc-200 dark:border-zinc-700"></div>
                <A
                    href="/settings"
                    attr:role="menuitem"
                    attr:data-testid="settings-link"
                    attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                >
                    "Settings"
                </A>
                <A
                    href="/servers"
                    attr:role="menuitem"
                    attr:data-testid="servers-link"
                    attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                >
                    "Tool servers"
                </A>
                <A
                    href="/activity"
                    attr:role="menuitem"
                    attr:data-testid="activity-link"
                    attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                >
                    "Tool activity"
                </A>
                {me.is_admin.then(|| view! {
                    <A
                        href="/admin/models"
                        attr:role="menuitem"
                        attr:data-testid="models-link"
                        attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                    >
                        "Models"
                    </A>
                    <A
                        href="/admin/servers"
                        attr:role="menuitem"
                        attr:data-testid="registry-link"
                        attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                    >
                        "Tool server registry"
                    </A>
                    <A
                        href="/admin/people"
                        attr:role="menuitem"
                        attr:data-testid="people-link"
                        attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                    >
                        "People"
                    </A>
                    <A
                        href="/admin/groups"
                        attr:role="menuitem"
                        attr:data-testid="groups-link"
                        attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                    >
                        "Groups"
                    </A>
                    <A
                        href="/admin/usage"
                        attr:role="menuitem"
                        attr:data-testid="usage-link"
                        attr:class="block rounded-lg px-3 py-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                    >
                        "Usage"
                    </A>
                })}
                {if me.is_local {
                    view! {
                        <p class="px-3 py-2 text-xs text-zinc-500 dark:text-zinc-400">
                            "Local mode: no sign-in is configured, so there is nothing to sign out of."
                        </p>
                    }
                    .into_any()
                } else {
                    view! {
                        // A form, not a link: signing out changes state, so it is a POST (and a
                        // page from another site cannot trigger it).
                        <form method="post" action="/auth/logout">
                            <button
                                type="submit"
                                role="menuitem"
                                data-testid="sign-out"
                                class="block w-full rounded-lg px-3 py-2 text-left text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800"
                            >
                                "Sign out"
                            </button>
                        </form>
                    }
                    .into_any()
                }}
            </div>
        </div>
    }
}
