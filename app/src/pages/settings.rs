use leptos::prelude::*;
use leptos_meta::Title;

use leptos::task::spawn_local;

use crate::agent::{AgentSettingsView, agent_settings, revoke_tool, save_agent_settings};
use crate::auth::{CreateToken, RevokeToken, TokenView, list_tokens, me};

/// Settings: the account, and personal API tokens.
#[component]
pub fn SettingsPage() -> impl IntoView {
    view! {
        <Title text="Settings · Switchboard" />
        <div class="mx-auto max-w-3xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"Settings"</h1>
            <AccountSection />
            <UsageSection />
            <ToolApprovals />
            <ApiTokens />
        </div>
    }
}

/// What the person used today and this month, and the limits that apply to them.
#[component]
fn UsageSection() -> impl IntoView {
    let usage = Resource::new(|| (), |_| crate::usage::my_usage());
    view! {
        <section class="mt-8" aria-labelledby="usage-heading">
            <h2 id="usage-heading" class="text-lg font-semibold">"Usage"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match usage.await {
                        Ok(u) => view! {
                            <p class="mt-2 text-sm" data-testid="my-usage">
                                {format!("{} tokens today, {} this month (UTC).", u.used_today, u.used_this_month)}
                            </p>
                            <ul class="mt-1 text-sm text-zinc-600 dark:text-zinc-400" data-testid="my-limits">
                                {u.limits.is_empty().then(|| view! { <li>"No budget or rate limits apply to you."</li> })}
                                {u.limits.into_iter().map(|l| {
                                    let what = match l.limit.as_str() {
                                        "tokens_per_day" => "tokens a day",
                                        "tokens_per_month" => "tokens a month",
                                        _ => "answers a minute",
                                    };
                                    let used = l.used.map(|u| format!(": {u} used")).unwrap_or_default();
                                    view! { <li>{format!("At most {} {what} ({}){used}.", l.most, l.set_by)}</li> }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! { <p role="alert" class="mt-2 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn AccountSection() -> impl IntoView {
    let user = Resource::new_blocking(|| (), |_| me());
    view! {
        <section class="mt-8" aria-labelledby="account-heading">
            <h2 id="account-heading" class="text-lg font-semibold">"Account"</h2>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    user.await.ok().map(|me| view! {
                        <dl class="mt-3 grid grid-cols-[8rem_1fr] gap-y-2 text-sm">
                            <dt class="text-zinc-500 dark:text-zinc-400">"Name"</dt>
                            <dd data-testid="account-name">{me.name.clone()}</dd>
                            <dt class="text-zinc-500 dark:text-zinc-400">"E-mail"</dt>
                            <dd>{me.email.clone().unwrap_or_else(|| "—".into())}</dd>
                            <dt class="text-zinc-500 dark:text-zinc-400">"Role"</dt>
                            <dd>{if me.is_admin { "Admin" } else { "Member" }}</dd>
                        </dl>
                        <p class="mt-3 text-xs text-zinc-500 dark:text-zinc-400">
                            {if me.is_local {
                                "Local mode: this instance has no sign-in provider, and you are its local admin."
                            } else {
                                "Your name, e-mail and picture come from your identity provider and are refreshed each time you sign in."
                            }}
                        </p>
                    })
                })}
            </Suspense>
        </section>
    }
}

/// When tools may run without asking, and how far one answer may go.
#[component]
fn ToolApprovals() -> impl IntoView {
    let changed = RwSignal::new(0u32);
    let settings = Resource::new(move || changed.get(), |_| agent_settings());
    let error = RwSignal::new(None::<String>);
    view! {
        <section class="mt-10" aria-labelledby="approvals-heading" data-testid="tool-approvals">
            <h2 id="approvals-heading" class="text-lg font-semibold">"Tool approvals"</h2>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "Every tool call asks for your approval in the chat, unless one of these allows it. "
                <a href="/activity" class="text-indigo-600 hover:underline dark:text-indigo-400">"See every tool call"</a>
                "."
            </p>
            {move || error.get().map(|e| view! {
                <p role="alert" class="mt-2 text-sm text-red-700 dark:text-red-400">{e}</p>
            })}
            <Transition fallback=|| view! { <p class="mt-3 text-sm text-zinc-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match settings.await {
                        Ok(s) => view! { <ApprovalSettings s changed error /> }.into_any(),
                        Err(e) => view! { <p role="alert" class="mt-3 text-sm text-red-700">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ApprovalSettings(
    s: AgentSettingsView,
    changed: RwSignal<u32>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let read_only = RwSignal::new(s.auto_approve_read_only);
    let max_steps = RwSignal::new(s.max_steps.to_string());
    let saved = RwSignal::new(false);
    let save = move || {
        let steps = max_steps.get_untracked().trim().parse::<i32>();
        let Ok(steps) = steps else {
            error.set(Some(
                "The most model calls per answer is a whole number, from 1 to 50.".into(),
            ));
            return;
        };
        let read_only = read_only.get_untracked();
        spawn_local(async move {
            match save_agent_settings(read_only, steps).await {
                Ok(()) => {
                    error.set(None);
                    saved.set(true);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <div class="mt-4 flex flex-col gap-3 text-sm">
            <label class="flex items-start gap-2">
                <input
                    type="checkbox"
                    data-testid="auto-read-only"
                    class="mt-1"
                    prop:checked=move || read_only.get()
                    on:change=move |ev| {
                        read_only.set(event_target_checked(&ev));
                        saved.set(false);
                    }
                />
                <span>
                    "Run tools that declare themselves read-only without asking"
                    <span class="block text-xs text-zinc-500 dark:text-zinc-400">"A tool's own claim: a server you do not trust could mislabel a tool."</span>
                </span>
            </label>
            <label class="flex items-center gap-2">
                <span>"Most model calls per answer"</span>
                <input
                    type="number"
                    min="1"
                    max="50"
                    data-testid="max-steps"
                    class="w-20 rounded-lg border border-zinc-300 bg-white px-2 py-1 dark:border-zinc-700 dark:bg-zinc-900"
                    prop:value=move || max_steps.get()
                    on:input=move |ev| {
                        max_steps.set(event_target_value(&ev));
                        saved.set(false);
                    }
                />
            </label>
            <div class="flex items-center gap-3">
                <button
                    type="button"
                    data-testid="save-approvals"
                    class="rounded-lg bg-zinc-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-zinc-700 dark:bg-zinc-100 dark:text-zinc-900"
                    on:click=move |_| save()
                >
                    "Save"
                </button>
                <Show when=move || saved.get()>
                    <span class="text-xs text-emerald-700 dark:text-emerald-400" data-testid="approvals-saved">"Saved."</span>
                </Show>
            </div>
            <h3 class="mt-4 font-medium">"Always allowed"</h3>
            {if s.allowed.is_empty() {
                view! {
                    <p class="text-zinc-500 dark:text-zinc-400" data-testid="no-allowed">
                        "Nothing yet. Choose “Always allow” on a tool call's card to add a tool or a server here."
                    </p>
                }.into_any()
            } else {
                view! {
                    <ul class="flex flex-col divide-y divide-zinc-100 rounded-lg border border-zinc-200 dark:divide-zinc-800 dark:border-zinc-800">
                        {s.allowed.into_iter().map(|a| {
                            let label = match &a.tool {
                                Some(tool) => format!("{tool} on {}", a.server_id),
                                None => format!("Every tool of {}", a.server_id),
                            };
                            view! {
                                <li class="flex items-center justify-between gap-2 px-3 py-2" data-testid="allowed">
                                    <span>{label}</span>
                                    <button
                                        type="button"
                                        class="rounded px-2 py-1 text-xs text-red-700 hover:bg-red-50 dark:text-red-400 dark:hover:bg-red-950"
                                        on:click=move |_| {
                                            let (server, tool) = (a.server_id.clone(), a.tool.clone());
                                            spawn_local(async move {
                                                match revoke_tool(server, tool).await {
                                                    Ok(_) => error.set(None),
                                                    Err(e) => error.set(Some(e.to_string())),
                                                }
                                                changed.update(|c| *c += 1);
                                            });
                                        }
                                    >
                                        "Ask again"
                                    </button>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </div>
    }
}

#[component]
fn ApiTokens() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_tokens(),
    );
    // Once a token is created, the name field is ready for the next one.
    let name_input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get()
            && let Some(input) = name_input.get()
        {
            input.set_value("");
        }
    });

    view! {
        <section class="mt-10" aria-labelledby="tokens-heading">
            <h2 id="tokens-heading" class="text-lg font-semibold">"API tokens"</h2>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "Scripts and other programs use a token to act as you: send it as "
                <code class="rounded bg-zinc-100 px-1 dark:bg-zinc-800">"Authorization: Bearer <token>"</code>
                " to any " <code class="rounded bg-zinc-100 px-1 dark:bg-zinc-800">"/api/"</code>
                " endpoint. Treat it like a password."
            </p>

            <ActionForm action=create attr:class="mt-4 flex flex-col gap-2 sm:flex-row" attr:data-testid="create-token-form">
                <label class="sr-only" for="token-name">"Token name"</label>
                <input
                    node_ref=name_input
                    id="token-name"
                    name="name"
                    required
                    maxlength="100"
                    placeholder="What is it for? (e.g. nightly report script)"
                    class="min-w-0 flex-1 rounded-lg border border-zinc-300 bg-white px-3 py-2 text-sm dark:border-zinc-700 dark:bg-zinc-900"
                />
                <button
                    type="submit"
                    data-testid="create-token"
                    class="rounded-lg bg-zinc-900 px-4 py-2 text-sm font-medium text-white hover:bg-zinc-700 disabled:opacity-50 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300"
                    disabled=move || create.pending().get()
                >
                    "Create token"
                </button>
            </ActionForm>

            {move || create.value().get().map(|result| match result {
                Ok(new) => view! { <NewTokenNotice secret=new.secret name=new.token.name /> }.into_any(),
                Err(e) => view! {
                    <p role="alert" class="mt-3 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
                }.into_any(),
            })}
            {move || revoke.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" class="mt-3 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
            })}

            <Transition fallback=|| view! { <p class="mt-4 text-sm text-zinc-500">"Loading tokens…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="mt-4 text-sm text-zinc-500 dark:text-zinc-400" data-testid="no-tokens">"You have no API tokens."</p>
                        }.into_any(),
                        Ok(list) => view! { <TokenList list revoke /> }.into_any(),
                        Err(e) => view! {
                            <p role="alert" class="mt-4 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn NewTokenNotice(secret: String, name: String) -> impl IntoView {
    let copied = RwSignal::new(false);
    let to_copy = secret.clone();
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let _ = window().navigator().clipboard().write_text(&to_copy);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &to_copy;
        copied.set(true);
    };
    view! {
        <div class="mt-4 rounded-lg border border-emerald-300 bg-emerald-50 p-4 dark:border-emerald-800 dark:bg-emerald-950" role="status">
            <p class="text-sm font-medium text-emerald-900 dark:text-emerald-200">
                {format!("Token “{name}” created. Copy it now: it will not be shown again.")}
            </p>
            <div class="mt-2 flex items-center gap-2">
                <code data-testid="new-token" class="min-w-0 flex-1 break-all rounded bg-white px-2 py-1 font-mono text-xs dark:bg-zinc-900">
                    {secret}
                </code>
                <button
                    type="button"
                    on:click=copy
                    class="rounded-lg border border-emerald-300 px-3 py-1 text-xs font-medium hover:bg-emerald-100 dark:border-emerald-800 dark:hover:bg-emerald-900"
                >
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </div>
        </div>
    }
}

#[component]
fn TokenList(list: Vec<TokenView>, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    // The token whose "Revoke" was clicked once, waiting for the confirmation click.
    let confirming = RwSignal::new(None::<String>);
    view! {
        <ul class="mt-4 divide-y divide-zinc-200 rounded-lg border border-zinc-200 dark:divide-zinc-800 dark:border-zinc-800" data-testid="token-list">
            {list.into_iter().map(|token| {
                let id = token.id.clone();
                let id_confirm = token.id.clone();
                let id_form = token.id.clone();
                let is_confirming = move || confirming.get().as_deref() == Some(id_confirm.as_str());
                view! {
                    <li class="flex flex-wrap items-center gap-3 px-4 py-3" data-testid="token-row">
                        <div class="min-w-0 flex-1">
                            <p class="truncate text-sm font-medium">{token.name.clone()}</p>
                            <p class="text-xs text-zinc-500 dark:text-zinc-400">
                                <code>{format!("{}…", token.prefix)}</code>
                                {format!(" · created {} · {}", token.created, token.last_used.map(|at| format!("last used {at}")).unwrap_or_else(|| "never used".into()))}
                            </p>
                        </div>
                        <Show
                            when=is_confirming
                            fallback=move || {
                                let id = id.clone();
                                view! {
                                    <button
                                        type="button"
                                        data-testid="revoke-token"
                                        class="rounded-lg border border-zinc-300 px-3 py-1 text-xs font-medium hover:bg-zinc-100 dark:border-zinc-700 dark:hover:bg-zinc-800"
                                        on:click=move |_| confirming.set(Some(id.clone()))
                                    >
                                        "Revoke"
                                    </button>
                                }
                            }
                        >
                            <ConfirmRevoke id=id_form.clone() revoke confirming />
                        </Show>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

#[component]
fn ConfirmRevoke(
    id: String,
    revoke: ServerAction<RevokeToken>,
    confirming: RwSignal<Option<String>>,
) -> impl IntoView {
    view! {
        <span class="text-xs text-zinc-600 dark:text-zinc-300">"Programs using it will stop working."</span>
        <ActionForm action=revoke>
            <input type="hidden" name="id" value=id />
            <button
                type="submit"
                data-testid="confirm-revoke"
                class="rounded-lg bg-red-600 px-3 py-1 text-xs font-medium text-white hover:bg-red-500"
            >
                "Revoke"
            </button>
        </ActionForm>
        <button
            type="button"
            class="rounded-lg px-3 py-1 text-xs hover:bg-zinc-100 dark:hover:bg-zinc-800"
            on:click=move |_| confirming.set(None)
        >
            "Cancel"
        </button>
    }
}
