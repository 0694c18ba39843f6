//! People (`/admin/people`), for administrators: those waiting for approval, each let in or refused
//! here; and everyone who signed in (provider, role, groups, last sign-in, tokens this month), each
//! deactivated or reactivated, promoted or demoted, and given limits of their own here.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::styles::{BUTTON, PAGE_ERROR};
use crate::pages::groups::LimitFields;
use crate::people::{
    AdmitPerson, PersonView, SetAccess, SetPersonLimits, SetRole, list_people, waiting_people,
};

#[component]
pub fn PeoplePage() -> impl IntoView {
    let admit = ServerAction::<AdmitPerson>::new();
    let waiting = Resource::new(move || admit.version().get(), |_| waiting_people());
    view! {
        <Title text="People · Switchboard" />
        <div class="mx-auto max-w-3xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"People"</h1>
            {move || admit.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" class="mt-4 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
            })}
            <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match waiting.await {
                        // Shown only while someone waits (new people wait only when approval is on).
                        Ok(people) if people.is_empty() => ().into_any(),
                        Ok(people) => view! {
                            <h2 class="mt-8 text-lg font-semibold tracking-tight">"Waiting for approval"</h2>
                            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                                "New people wait here after their first sign-in until you let them in. Someone refused cannot sign in."
                            </p>
                            <ul class="mt-4 flex flex-col gap-3" data-testid="waiting-people">
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
                        Err(e) => not_loaded(e),
                    }
                })}
            </Transition>
            <Everyone />
        </div>
    }
}

/// Everyone who signed in, each with Deactivate or Reactivate.
#[component]
fn Everyone() -> impl IntoView {
    let access = ServerAction::<SetAccess>::new();
    let role = ServerAction::<SetRole>::new();
    let limits = ServerAction::<SetPersonLimits>::new();
    let people = Resource::new(
        move || {
            (
                access.version().get(),
                role.version().get(),
                limits.version().get(),
            )
        },
        |_| list_people(),
    );
    // What the action done last said, if it failed (a success clears it).
    let failed = RwSignal::new(None::<String>);
    let said = move |result: Option<Result<(), crate::error::AppError>>| {
        if let Some(result) = result {
            failed.set(result.err().map(|e| e.to_string()));
        }
    };
    Effect::new(move |_| said(access.value().get()));
    Effect::new(move |_| said(role.value().get()));
    Effect::new(move |_| said(limits.value().get()));
    view! {
        <h2 class="mt-10 text-lg font-semibold tracking-tight">"Everyone"</h2>
        <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
            "Everyone who has signed in. Deactivating someone ends their sessions, API tokens and open chats at once, and they cannot sign in until reactivated."
        </p>
        {move || failed.get().map(|e| view! {
            <p role="alert" class="mt-4 text-sm text-red-700 dark:text-red-400" data-testid="access-error">{e}</p>
        })}
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match people.await {
                    Ok(people) => view! {
                        <ul class="mt-4 flex flex-col gap-2" data-testid="everyone">
                            {people.into_iter().map(|p| view! { <PersonRow person=p access role limits /> }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(e) => not_loaded(e),
                }
            })}
        </Transition>
    }
}

/// What a list that could not be read shows.
fn not_loaded(e: crate::error::AppError) -> AnyView {
    view! {
        <p role="alert" class=PAGE_ERROR>{e.to_string()}</p>
    }
    .into_any()
}

#[component]
fn PersonRow(
    person: PersonView,
    access: ServerAction<SetAccess>,
    role: ServerAction<SetRole>,
    limits: ServerAction<SetPersonLimits>,
) -> impl IntoView {
    let id = person.id.clone();
    let role_id = person.id.clone();
    let active = person.status == "active";
    let admin = person.role == "admin";
    let groups: Vec<String> = person
        .groups
        .iter()
        .cloned()
        .chain(person.groups_here.iter().map(|g| format!("{g} (here)")))
        .collect();
    let own = person.limits.clone();
    let own_limits = [
        own.tokens_per_day.map(|n| format!("{n} tokens a day")),
        own.tokens_per_month.map(|n| format!("{n} tokens a month")),
        own.answers_per_minute
            .map(|n| format!("{n} answers a minute")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let details = [
        Some(person.provider.clone()),
        Some(if person.role_set_here {
            format!("{} (set here)", person.role)
        } else {
            person.role.clone()
        }),
        (!groups.is_empty()).then(|| groups.join(", ")),
        Some(format!(
            "last signed in {}",
            person.last_sign_in.get(..10).unwrap_or_default()
        )),
        Some(format!("{} tokens this month", person.tokens_this_month)),
        (!own_limits.is_empty()).then(|| format!("own limits: {}", own_limits.join(", "))),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    let limits_id = person.id.clone();
    view! {
        <li class="rounded-lg border border-zinc-200 px-4 py-3 dark:border-zinc-800" data-testid="person" data-status=person.status.clone() data-email=person.email.clone().unwrap_or_default()>
            <div class="flex items-center justify-between gap-3">
                <div class="min-w-0">
                    <p class="truncate font-medium">
                        {person.name.clone()}
                        {(!active).then(|| view! { <span class="ml-2 rounded-full bg-zinc-100 px-2 py-0.5 text-xs text-zinc-600 dark:bg-zinc-800 dark:text-zinc-400">{person.status.clone()}</span> })}
                    </p>
                    <p class="truncate text-sm text-zinc-600 dark:text-zinc-400">{person.email.clone().unwrap_or_default()}</p>
                    <p class="text-xs text-zinc-500">{details}</p>
                </div>
                {(person.status != "pending").then(|| view! {
                    <div class="flex shrink-0 gap-2">
                        <button class=BUTTON data-testid="set-role" hidden=person.provider == "local" on:click=move |_| { role.dispatch(SetRole { id: role_id.clone(), role: if admin { "user".into() } else { "admin".into() } }); }>
                            {if admin { "Make user" } else { "Make admin" }}
                        </button>
                        <button class=BUTTON data-testid="set-access" on:click=move |_| { access.dispatch(SetAccess { id: id.clone(), active: !active }); }>
                            {if active { "Deactivate" } else { "Reactivate" }}
                        </button>
                    </div>
                })}
            </div>
            <details class="mt-2 text-sm">
                <summary class="cursor-pointer text-xs text-zinc-600 dark:text-zinc-400">"Limits of their own"</summary>
                <ActionForm action=limits attr:class="mt-2 grid gap-2 sm:grid-cols-4" attr:data-testid="person-limits">
                    <input type="hidden" name="id" value=limits_id />
                    <LimitFields limits=own.clone() unset="their groups'" />
                    <div class="self-end"><button type="submit" class=BUTTON>"Save"</button></div>
                </ActionForm>
            </details>
        </li>
    }
}
