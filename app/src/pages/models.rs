//! The Models page, for administrators: the providers on offer (the environment's read-only, the
//! app's added, changed and removed here), each model tried with a tiny request, models
//! discovered from a provider's list, and the aliases and default model. API keys are never shown
//! back: a key field left empty keeps the stored one.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::styles::{BUTTON, INPUT, PAGE_ERROR, PRIMARY};
use crate::models::{
    ModelsAdmin, ProviderView, RemoveProvider, SaveModelLimits, SaveModelSettings, SaveProvider,
    TestModel, admin_models, discover_models,
};

const ALERT: &str = "mt-3 text-sm text-red-700 dark:text-red-400";

#[component]
pub fn ModelsPage() -> impl IntoView {
    let save = ServerAction::<SaveProvider>::new();
    let remove = ServerAction::<RemoveProvider>::new();
    let settings = ServerAction::<SaveModelSettings>::new();
    let test = ServerAction::<TestModel>::new();
    let limits = ServerAction::<SaveModelLimits>::new();
    let data = Resource::new(
        move || {
            (
                save.version().get(),
                remove.version().get(),
                settings.version().get(),
                limits.version().get(),
            )
        },
        |_| admin_models(),
    );
    // The provider being changed (None: a new one).
    let editing = RwSignal::new(None::<ProviderView>);
    Effect::new(move |_| {
        if let Some(Ok(())) = save.value().get() {
            editing.set(None);
        }
    });

    view! {
        <Title text="Models · Switchboard" />
        <div class="mx-auto max-w-3xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"Models"</h1>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "The model providers everyone here may choose from. A change is on offer at once, on every instance. Providers set in the environment are listed read-only."
            </p>
            {move || remove.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" class=ALERT>{e.to_string()}</p>
            })}
            <TestResult test />
            <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading the models…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(models) => view! { <Loaded models editing save remove settings test limits /> }.into_any(),
                        Err(e) => view! {
                            <p role="alert" data-testid="admin-error" class=PAGE_ERROR>{e.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

/// What the last "Test" of a model gave.
#[component]
fn TestResult(test: ServerAction<TestModel>) -> impl IntoView {
    let tried = move || test.input().get().map(|t| t.name);
    view! {
        <div aria-live="polite">
            {move || tried().map(|name| view! {
                <p data-testid="test-result" class="mt-4 rounded-lg border border-zinc-200 px-3 py-2 text-sm dark:border-zinc-800">{format!("Trying {name}…")}</p>
            })}
            {move || (test.input().get().is_none()).then(|| test.value().get()).flatten().map(|done| match done {
                Ok(text) => view! {
                    <p data-testid="test-result" data-ok="true" class="mt-4 rounded-lg border border-emerald-200 bg-emerald-50 px-3 py-2 text-sm text-emerald-900 dark:border-emerald-900 dark:bg-emerald-950 dark:text-emerald-200">{format!("It answered: {text}")}</p>
                }.into_any(),
                Err(e) => view! {
                    <p data-testid="test-result" data-ok="false" role="alert" class="mt-4 rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">{e.to_string()}</p>
                }.into_any(),
            })}
        </div>
    }
}

#[component]
fn Loaded(
    models: ModelsAdmin,
    editing: RwSignal<Option<ProviderView>>,
    save: ServerAction<SaveProvider>,
    remove: ServerAction<RemoveProvider>,
    settings: ServerAction<SaveModelSettings>,
    test: ServerAction<TestModel>,
    limits: ServerAction<SaveModelLimits>,
) -> impl IntoView {
    let ModelsAdmin {
        providers,
        aliases,
        default,
        choices,
        down,
        limits: limited,
    } = models;
    view! {
        <ul class="mt-6 flex flex-col gap-3" data-testid="providers">
            {providers.is_empty().then(|| view! {
                <li class="text-sm text-zinc-500">"No provider yet: add one below."</li>
            })}
            {providers.into_iter().map(|provider| {
                let down = down.contains(&provider.id);
                view! { <ProviderRow provider down editing remove test /> }
            }).collect_view()}
        </ul>
        <section class="mt-10" aria-labelledby="provider-form-heading">
            {move || view! { <ProviderForm initial=editing.get() save editing /> }}
        </section>
        <section class="mt-10" aria-labelledby="settings-heading">
            <h2 id="settings-heading" class="text-lg font-semibold">"Aliases and the default model"</h2>
            <ActionForm action=settings attr:class="mt-4 grid gap-3" attr:data-testid="settings-form">
                <label class="flex flex-col gap-1 text-sm">"Aliases (alias=provider/model, separated by commas)"
                    <input name="aliases" class=INPUT value=aliases placeholder="fast=ollama/llama3.2, smart=claude/claude-sonnet-4-5" />
                </label>
                <label class="flex flex-col gap-1 text-sm">"The default model for new chats"
                    <select name="default" class=INPUT data-testid="default-model">
                        <option value="" selected=default.is_none()>"The environment's, or the first model"</option>
                        {choices.into_iter().map(|c| {
                            let selected = default.as_deref() == Some(c.as_str());
                            view! { <option value=c.clone() selected=selected>{c.clone()}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <div><button type="submit" class=PRIMARY disabled=move || settings.pending().get()>"Save"</button></div>
            </ActionForm>
            {move || settings.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" data-testid="settings-error" class=ALERT>{e.to_string()}</p>
            })}
        </section>
        <section class="mt-10" aria-labelledby="limits-heading">
            <h2 id="limits-heading" class="text-lg font-semibold">"Models for some groups only"</h2>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "A model listed here is seen and used only by its groups' members (and administrators); an alias follows its models. Groups are managed on the Groups page."
            </p>
            <ActionForm action=limits attr:class="mt-4 grid gap-3" attr:data-testid="limits-form">
                <label class="flex flex-col gap-1 text-sm">"One “provider/model: group, group” a line"
                    <textarea name="limits" rows="3" class=INPUT placeholder="openai/gpt-4o: research, ops" data-testid="model-limits">{limited}</textarea>
                </label>
                <div><button type="submit" class=PRIMARY disabled=move || limits.pending().get()>"Save"</button></div>
            </ActionForm>
            {move || limits.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" data-testid="limits-error" class=ALERT>{e.to_string()}</p>
            })}
        </section>
    }
}

#[component]
fn ProviderRow(
    provider: ProviderView,
    /// Marked down now, after failing repeatedly.
    down: bool,
    editing: RwSignal<Option<ProviderView>>,
    remove: ServerAction<RemoveProvider>,
    test: ServerAction<TestModel>,
) -> impl IntoView {
    let kind = if provider.kind == "anthropic" {
        "Anthropic Messages API"
    } else {
        "OpenAI-compatible"
    };
    let key = if provider.has_api_key {
        "API key stored encrypted"
    } else {
        "no API key"
    };
    let to_edit = provider.clone();
    let id = provider.id.clone();
    let from_environment = provider.from_environment;
    view! {
        <li class="rounded-xl border border-zinc-200 p-4 dark:border-zinc-800" data-testid="provider" data-provider=provider.id.clone()>
            <div class="flex flex-wrap items-start gap-3">
                <div class="min-w-0 flex-1">
                    <p class="flex flex-wrap items-center gap-2 font-medium">
                        <code>{provider.id.clone()}</code>
                        {from_environment.then(|| view! { <span class="rounded-full bg-zinc-100 px-2 py-0.5 text-xs text-zinc-600 dark:bg-zinc-800 dark:text-zinc-400">"From the environment"</span> })}
                        {down.then(|| view! { <span data-testid="provider-down" class="rounded-full bg-amber-100 px-2 py-0.5 text-xs text-amber-800 dark:bg-amber-950 dark:text-amber-300" title="It failed several times in a row: it is not asked for a minute, then tried again.">"Down for now"</span> })}
                    </p>
                    <p class="mt-0.5 break-all text-xs text-zinc-500 dark:text-zinc-400">{format!("{kind} · {} · {key}", provider.base_url)}</p>
                </div>
                {(!from_environment).then(|| view! {
                    <div class="flex items-center gap-2">
                        <button type="button" class=BUTTON data-testid="edit-provider" on:click=move |_| editing.set(Some(to_edit.clone()))>"Edit"</button>
                        <ActionForm action=remove>
                            <input type="hidden" name="id" value=id.clone() />
                            <button type="submit" class=BUTTON data-testid="remove-provider">"Remove"</button>
                        </ActionForm>
                    </div>
                })}
            </div>
            <ul class="mt-3 flex flex-wrap gap-2">
                {provider.models.iter().map(|model| {
                    let name = format!("{}/{model}", provider.id);
                    let label = format!("Test {name}");
                    view! {
                        <li class="flex items-center gap-1 rounded-lg bg-zinc-100 py-0.5 pl-2 pr-1 text-xs dark:bg-zinc-800">
                            <span>{model.clone()}</span>
                            <button
                                type="button"
                                class="rounded px-1.5 py-0.5 font-medium text-zinc-600 hover:bg-zinc-200 disabled:opacity-50 dark:text-zinc-300 dark:hover:bg-zinc-700"
                                data-testid="test-model"
                                aria-label=label
                                disabled=move || test.pending().get()
                                on:click=move |_| { test.dispatch(TestModel { name: name.clone() }); }
                            >"Test"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </li>
    }
}

#[component]
fn ProviderForm(
    initial: Option<ProviderView>,
    save: ServerAction<SaveProvider>,
    editing: RwSignal<Option<ProviderView>>,
) -> impl IntoView {
    let is_edit = initial.is_some();
    let p = initial.unwrap_or_else(|| ProviderView {
        kind: "openai".into(),
        ..ProviderView::default()
    });
    let id = RwSignal::new(p.id.clone());
    let kind = RwSignal::new(p.kind.clone());
    let base_url = RwSignal::new(p.base_url.clone());
    let api_key = RwSignal::new(String::new());
    let models = RwSignal::new(p.models.join(", "));
    // Discovering the provider's models from what the form holds (its stored key when no new one
    // is typed).
    let discover = Action::new(move |_: &()| {
        let (kind, base_url, api_key) = (
            kind.get_untracked(),
            base_url.get_untracked(),
            api_key.get_untracked(),
        );
        let id = is_edit.then(|| id.get_untracked());
        async move { discover_models(kind, base_url, Some(api_key), id).await }
    });
    Effect::new(move |_| {
        if let Some(Ok(found)) = discover.value().get() {
            models.set(found.join(", "));
        }
    });
    view! {
        <h2 id="provider-form-heading" class="text-lg font-semibold">
            {if is_edit { format!("Change “{}”", p.id) } else { "Add a provider".to_owned() }}
        </h2>
        <ActionForm action=save attr:class="mt-4 grid gap-3 sm:grid-cols-2" attr:data-testid="provider-form">
            <input type="hidden" name="previous" value=if is_edit { p.id.clone() } else { String::new() } />
            <label class="flex flex-col gap-1 text-sm">"Id (a-z, 0-9, -; models are named id/model)"
                <input name="id" required maxlength="32" pattern="[a-z0-9-]+" class=INPUT prop:value=move || id.get() on:input=move |ev| id.set(event_target_value(&ev)) />
            </label>
            <label class="flex flex-col gap-1 text-sm">"API"
                <select name="kind" class=INPUT on:change=move |ev| kind.set(event_target_value(&ev))>
                    <option value="openai" selected=p.kind == "openai">"OpenAI-compatible (OpenAI, Ollama, vLLM, LiteLLM, …)"</option>
                    <option value="anthropic" selected=p.kind == "anthropic">"Anthropic Messages API"</option>
                </select>
            </label>
            <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Base URL (up to /v1)"
                <input name="base_url" required class=INPUT placeholder="https://api.openai.com/v1" prop:value=move || base_url.get() on:input=move |ev| base_url.set(event_target_value(&ev)) />
            </label>
            <label class="flex flex-col gap-1 text-sm">{if p.has_api_key { "API key (stored; empty keeps it)" } else { "API key (if it needs one)" }}
                <input name="api_key" type="password" autocomplete="off" class=INPUT prop:value=move || api_key.get() on:input=move |ev| api_key.set(event_target_value(&ev)) />
            </label>
            {p.has_api_key.then(|| view! {
                <label class="flex items-center gap-2 self-end text-sm">
                    <input type="checkbox" name="remove_api_key" value="true" />
                    "Remove the key"
                </label>
            })}
            <Show when=move || kind.get() == "anthropic">
                <label class="flex flex-col gap-1 text-sm">"Thinking budget (tokens, 1024 or more; empty: no extended thinking)"
                    <input name="thinking_budget" inputmode="numeric" class=INPUT value=p.thinking_budget.map(|b| b.to_string()).unwrap_or_default() />
                </label>
            </Show>
            <label class="flex flex-col gap-1 text-sm">"Context window (tokens; empty: unknown, nothing is trimmed)"
                <input name="context_window" inputmode="numeric" class=INPUT value=p.context_window.map(|w| w.to_string()).unwrap_or_default() />
            </label>
            <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Models (separated by commas)"
                <textarea name="models" rows="2" required class=INPUT prop:value=move || models.get() on:input=move |ev| models.set(event_target_value(&ev))></textarea>
            </label>
            <div class="flex flex-wrap items-center gap-2 sm:col-span-2">
                <button type="button" class=BUTTON data-testid="discover-models" disabled=move || discover.pending().get() on:click=move |_| { discover.dispatch(()); }>
                    {move || if discover.pending().get() { "Asking the provider…" } else { "Discover its models" }}
                </button>
                {move || discover.value().get().and_then(Result::err).map(|e| view! {
                    <span role="alert" data-testid="discover-error" class="text-xs text-red-700 dark:text-red-400">{e.to_string()}</span>
                })}
            </div>
            <div class="flex gap-2 sm:col-span-2">
                <button type="submit" class=PRIMARY data-testid="save-provider" disabled=move || save.pending().get()>
                    {if is_edit { "Save changes" } else { "Add provider" }}
                </button>
                {is_edit.then(|| view! {
                    <button type="button" class=BUTTON on:click=move |_| editing.set(None)>"Cancel"</button>
                })}
            </div>
        </ActionForm>
        {move || save.value().get().and_then(Result::err).map(|e| view! {
            <p role="alert" data-testid="save-error" class=ALERT>{e.to_string()}</p>
        })}
    }
}
