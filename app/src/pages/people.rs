//! People waiting for an administrator's approval (`/admin/people`), each let in or refused here.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::people::{AdmitPerson, waiting_people};

const BUTTON: &str = "rounded-lg border border-zinc-300 px-3 py-1 text-xs font-medium hover:bg-zinc-100 dark:border-zinc-700 dark:hover:bg-zinc-800";

#[component]
pub fn PeoplePage() -> impl IntoView {
    let admit = ServerAction::<AdmitPerson>::new();
    let waiting = Resource::new(move || admit.version().get(), |_| waiting_people());
    view! {
        <Title text="People waiting · Switchboard" />
        <div class="mx-auto max-w-3xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"People waiting for approval"</h1>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "New people wait here after their first sign-in until you let them in. Someone refused cannot sign in."
            </p>
            {move || admit.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" class="mt-4 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
            })}
            <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match waiting.await {
                        Ok(people) => view! {
                            <ul class="mt-6 flex flex-col gap-3" data-testid="waiting-people">
                                {people.is_empty().then(|| view! { <li class="text-sm text-zinc-500">"Nobody is waiting."</li> })}
                                {people.into_iter().map(|p| {
                                    let (approve_id, refuse_id) = (p.id.clone(), p.id.clone());
                                    view! {
                                        <li class="flex items-center justify-between gap-3 rounded-lg border border-zinc-200 px-4 py-3 dark:border-zinc-800">
                                            <div class="min-w-0">
                                                <p class="truncate font-medium">{p.name.clone()}</p>
                                                <p class="truncate text-sm text-zinc-600 dark:text-zinc-400">{p.email.clone().unwrap_or_default()}</p>
                                            </div>
                                            <div class="flex shrink-0 gap-2">
                                                <button class=BUTTON on:click=move |_| { admit.dispatch(AdmitPerson { id: approve_id.clone(), approve: true }); }>"Let in"</button>
                                                <button class=BUTTON on:click=move |_| { admit.dispatch(AdmitPerson { id: refuse_id.clone(), approve: false }); }>"Refuse"</button>
                                            </div>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! {
                            <p role="alert" class="mt-6 rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">{e.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}
