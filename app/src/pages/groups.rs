//! Groups (`/admin/groups`), for administrators: every group someone is in (their identity
//! provider's, or made here), who is in each, and each group's settings: servers of their own,
//! tokens a day and a month, answers a minute. People are put in and taken out here; tool servers
//! and models are limited to groups on their own pages.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::styles::{BUTTON, INPUT, PAGE_ERROR, PRIMARY};
use crate::groups::{
    AddToGroup, CreateGroup, DeleteGroup, GroupView, LimitsView, RemoveFromGroup, SaveGroup,
    list_groups,
};

const ALERT: &str = "mt-3 text-sm text-red-700 dark:text-red-400";

#[component]
pub fn GroupsPage() -> impl IntoView {
    let create = ServerAction::<CreateGroup>::new();
    let save = ServerAction::<SaveGroup>::new();
    let delete = ServerAction::<DeleteGroup>::new();
    let add = ServerAction::<AddToGroup>::new();
    let remove = ServerAction::<RemoveFromGroup>::new();
    let groups = Resource::new(
        move || {
            (
                create.version().get(),
                save.version().get(),
                delete.version().get(),
                add.version().get(),
                remove.version().get(),
            )
        },
        |_| list_groups(),
    );
    // What the action done last said, if it failed (a success clears it).
    let failed = RwSignal::new(None::<String>);
    let said = move |result: Option<Result<(), crate::error::AppError>>| {
        if let Some(result) = result {
            failed.set(result.err().map(|e| e.to_string()));
        }
    };
    Effect::new(move |_| said(create.value().get()));
    Effect::new(move |_| said(save.value().get()));
    Effect::new(move |_| said(delete.value().get()));
    Effect::new(move |_| said(add.value().get()));
    Effect::new(move |_| said(remove.value().get()));
    view! {
        <Title text="Groups · Switchboard" />
        <div class="mx-auto max-w-3xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"Groups"</h1>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "A person is in a group when their identity provider says so, or when you put them in here. A group's budget and rate apply to each member (the most generous of a person's groups, unless the People page sets their own). Limit tool servers and models to groups on their pages."
            </p>
            {move || failed.get().map(|e| view! { <p role="alert" data-testid="groups-error" class=ALERT>{e}</p> })}
            <ActionForm action=create attr:class="mt-6 flex flex-wrap items-end gap-2" attr:data-testid="new-group">
                <label class="flex flex-col gap-1 text-sm">"New group"
                    <input name="name" required maxlength="100" class=INPUT placeholder="research" />
                </label>
                <button type="submit" class=PRIMARY>"Make group"</button>
            </ActionForm>
            <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match groups.await {
                        Ok(list) => view! {
                            <ul class="mt-6 flex flex-col gap-4" data-testid="groups">
                                {list.is_empty().then(|| view! { <li class="text-sm text-zinc-500">"Nobody is in a group yet."</li> })}
                                {list.into_iter().map(|group| view! { <GroupRow group save delete add remove /> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! { <p role="alert" class=PAGE_ERROR>{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn GroupRow(
    group: GroupView,
    save: ServerAction<SaveGroup>,
    delete: ServerAction<DeleteGroup>,
    add: ServerAction<AddToGroup>,
    remove: ServerAction<RemoveFromGroup>,
) -> impl IntoView {
    let limits = group.limits.clone();
    let name = group.name.clone();
    let (add_to, save_as) = (group.name.clone(), group.name.clone());
    view! {
        <li class="rounded-xl border border-zinc-200 p-4 dark:border-zinc-800" data-testid="group" data-group=group.name.clone()>
            <div class="flex flex-wrap items-center justify-between gap-2">
                <p class="font-medium">{group.name.clone()}
                    {(!group.set_up_here).then(|| view! { <span class="ml-2 rounded-full bg-zinc-100 px-2 py-0.5 text-xs text-zinc-600 dark:bg-zinc-800 dark:text-zinc-400">"from the identity provider"</span> })}
                </p>
                {group.set_up_here.then(|| view! {
                    <ActionForm action=delete>
                        <input type="hidden" name="name" value=name.clone() />
                        <button type="submit" class=BUTTON data-testid="delete-group">"Remove group"</button>
                    </ActionForm>
                })}
            </div>
            <ul class="mt-2 flex flex-wrap gap-2 text-xs" data-testid="members">
                {group.members.is_empty().then(|| view! { <li class="text-zinc-500">"Nobody is in it."</li> })}
                {group.members.into_iter().map(|m| {
                    let group_name = group.name.clone();
                    view! {
                        <li class="flex items-center gap-1 rounded-full bg-zinc-100 px-2 py-0.5 dark:bg-zinc-800" data-testid="member">
                            {m.email.clone().unwrap_or_else(|| m.name.clone())}
                            {m.added_here.then(|| view! {
                                <ActionForm action=remove attr:class="inline">
                                    <input type="hidden" name="group" value=group_name.clone() />
                                    <input type="hidden" name="id" value=m.id.clone() />
                                    <button type="submit" class="px-1 text-zinc-500 hover:text-red-700" aria-label=format!("Take {} out", m.name)>"×"</button>
                                </ActionForm>
                            })}
                        </li>
                    }
                }).collect_view()}
            </ul>
            <ActionForm action=add attr:class="mt-3 flex flex-wrap items-end gap-2" attr:data-testid="add-member">
                <input type="hidden" name="group" value=add_to />
                <label class="flex flex-col gap-1 text-xs">"Put someone in (their e-mail address)"
                    <input name="person" required class=INPUT placeholder="ann@example.com" />
                </label>
                <button type="submit" class=BUTTON>"Add"</button>
            </ActionForm>
            <ActionForm action=save attr:class="mt-3 grid gap-2 sm:grid-cols-4" attr:data-testid="group-settings">
                <input type="hidden" name="name" value=save_as />
                <LimitFields limits=limits.clone() unset="no limit" />
                <label class="flex items-center gap-2 self-end text-xs">
                    <input type="checkbox" name="personal_servers_off" value="true" checked=!group.personal_servers />
                    "No servers of their own"
                </label>
                <div class="sm:col-span-4"><button type="submit" class=BUTTON data-testid="save-group">"Save settings"</button></div>
            </ActionForm>
        </li>
    }
}

/// The three limits of a group or a person, as form fields (`tokens_per_day`, `tokens_per_month`,
/// `answers_per_minute`); an empty one reads `unset`.
#[component]
pub fn LimitFields(limits: LimitsView, unset: &'static str) -> impl IntoView {
    let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    view! {
        <label class="flex flex-col gap-1 text-xs">"Tokens a day"
            <input name="tokens_per_day" inputmode="numeric" class=INPUT value=number(limits.tokens_per_day) placeholder=unset />
        </label>
        <label class="flex flex-col gap-1 text-xs">"Tokens a month"
            <input name="tokens_per_month" inputmode="numeric" class=INPUT value=number(limits.tokens_per_month) placeholder=unset />
        </label>
        <label class="flex flex-col gap-1 text-xs">"Answers a minute"
            <input name="answers_per_minute" inputmode="numeric" class=INPUT value=number(limits.answers_per_minute.map(i64::from)) placeholder=unset />
        </label>
    }
}
