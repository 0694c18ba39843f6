//! The composer's "+" menu: what the person's connected servers offer besides tools. A resource
//! is read and attached to the message being written (a chip above the box; its text goes to the
//! model with the message); a prompt is run, with its arguments asked for in a small form, and its
//! text put in the box to send or change. Typing `/` in an empty box opens the prompts, and what
//! follows the `/` filters them.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::components::icons;
use crate::components::styles::{BUTTON, INPUT};
use crate::offerings::{
    Prompt, ResourceRead, ServerOfferings, offerings, read_resource, run_prompt,
};

const ITEM: &str = "block w-full truncate rounded px-2 py-1 text-left text-xs hover:bg-zinc-100 dark:hover:bg-zinc-800";

#[component]
pub fn AddToMessage(
    draft: RwSignal<String>,
    attached: RwSignal<Vec<ResourceRead>>,
) -> impl IntoView {
    let open = RwSignal::new(false);
    let loaded = RwSignal::new(None::<Result<Vec<ServerOfferings>, String>>);
    let error = RwSignal::new(None::<String>);
    // The prompt whose arguments are being asked for: its server, and it.
    let asking = RwSignal::new(None::<(String, Prompt)>);
    let load = move || {
        spawn_local(async move {
            loaded.set(Some(offerings().await.map_err(|e| e.message)));
        });
    };
    // `/` in an empty box opens the prompts.
    Effect::new(move |_| {
        if draft.with(|d| d.starts_with('/') && !d.contains(char::is_whitespace))
            && !open.get_untracked()
        {
            open.set(true);
            load();
        }
    });
    let filter = move || {
        draft.with(|d| {
            d.strip_prefix('/')
                .filter(|f| !f.contains(char::is_whitespace))
                .map(str::to_lowercase)
        })
    };
    let attach = move |server: String, uri: String, name: String| {
        error.set(None);
        spawn_local(async move {
            match read_resource(server, uri, name).await {
                Ok(read) => {
                    attached.update(|a| {
                        if !a
                            .iter()
                            .any(|r| r.uri == read.uri && r.server_id == read.server_id)
                        {
                            a.push(read)
                        }
                    });
                    open.set(false);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let run = move |server: String, name: String, arguments: String| {
        error.set(None);
        spawn_local(async move {
            match run_prompt(server, name, arguments).await {
                Ok(text) => {
                    draft.set(text);
                    asking.set(None);
                    open.set(false);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let choose_prompt = move |server: String, prompt: Prompt| {
        if prompt.arguments.is_empty() {
            run(server, prompt.name, "{}".into());
        } else {
            asking.set(Some((server, prompt)));
        }
    };

    view! {
        <div class="relative self-end">
            <button
                type="button"
                data-testid="add-to-message"
                aria-label="Attach a resource or run a prompt"
                title="Attach a resource or run a prompt (/)"
                class="inline-flex size-10 items-center justify-center rounded-xl text-zinc-500 hover:bg-zinc-100 dark:hover:bg-zinc-800"
                on:click=move |_| {
                    let now = !open.get_untracked();
                    open.set(now);
                    if now { load() }
                }
            >
                {icons::plus()}
            </button>
            <Show when=move || open.get()>
                <div data-testid="offerings" class="absolute bottom-12 left-0 z-20 max-h-80 w-80 overflow-y-auto rounded-xl border border-zinc-200 bg-white p-2 shadow-lg dark:border-zinc-700 dark:bg-zinc-900">
                    {move || error.get().map(|e| view! { <p data-testid="offerings-error" class="mb-2 text-xs text-red-700 dark:text-red-400">{e}</p> })}
                    {move || match asking.get() {
                        Some((server, prompt)) => view! { <PromptForm server prompt run asking /> }.into_any(),
                        None => match loaded.get() {
                            None => view! { <p class="text-xs text-zinc-500">"Loading…"</p> }.into_any(),
                            Some(Err(e)) => view! { <p class="text-xs text-red-700">{e}</p> }.into_any(),
                            Some(Ok(servers)) if servers.is_empty() => view! {
                                <p class="text-xs text-zinc-500">"No connected server offers resources or prompts. Connect one on the Servers page."</p>
                            }.into_any(),
                            Some(Ok(servers)) => {
                                let only = filter();
                                servers.into_iter().map(|s| {
                                    let prompts: Vec<Prompt> = s.prompts.into_iter()
                                        .filter(|p| only.as_ref().is_none_or(|f| p.name.to_lowercase().starts_with(f.as_str())))
                                        .collect();
                                    let resources = if only.is_some() { Vec::new() } else { s.resources };
                                    let server = s.server_id.clone();
                                    let server_for_resources = s.server_id.clone();
                                    view! {
                                        <section class="mb-2">
                                            <p class="px-2 text-[11px] font-semibold uppercase tracking-wide text-zinc-500">{s.server_name}</p>
                                            {prompts.into_iter().map(|p| {
                                                let (server, chosen) = (server.clone(), p.clone());
                                                view! {
                                                    <button type="button" class=ITEM data-testid="prompt" data-prompt=p.name.clone()
                                                        title=p.description.clone().unwrap_or_default()
                                                        on:click=move |_| choose_prompt(server.clone(), chosen.clone())>
                                                        <span class="font-mono">"/"{p.name.clone()}</span>
                                                        {p.title.clone().map(|t| view! { <span class="text-zinc-500">" · "{t}</span> })}
                                                    </button>
                                                }
                                            }).collect_view()}
                                            {resources.into_iter().map(|r| {
                                                let server = server_for_resources.clone();
                                                let (uri, name) = (r.uri.clone(), r.title.clone().unwrap_or_else(|| r.name.clone()));
                                                let label = name.clone();
                                                view! {
                                                    <button type="button" class=ITEM data-testid="resource" data-uri=r.uri.clone()
                                                        title=r.description.clone().unwrap_or_else(|| r.uri.clone())
                                                        on:click=move |_| attach(server.clone(), uri.clone(), name.clone())>
                                                        "Attach " <span class="font-medium">{label}</span>
                                                    </button>
                                                }
                                            }).collect_view()}
                                        </section>
                                    }
                                }).collect_view().into_any()
                            }
                        },
                    }}
                </div>
            </Show>
        </div>
    }
}

/// Asks for a prompt's arguments (required ones marked), then runs it.
#[component]
fn PromptForm(
    server: String,
    prompt: Prompt,
    run: impl Fn(String, String, String) + Copy + Send + Sync + 'static,
    asking: RwSignal<Option<(String, Prompt)>>,
) -> impl IntoView {
    let values: Vec<(String, bool, RwSignal<String>)> = prompt
        .arguments
        .iter()
        .map(|a| (a.name.clone(), a.required, RwSignal::new(String::new())))
        .collect();
    let missing = RwSignal::new(None::<String>);
    let fields = values.clone();
    let name = prompt.name.clone();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut arguments = serde_json::Map::new();
        for (name, required, value) in &fields {
            let value = value.get_untracked();
            if value.trim().is_empty() {
                if *required {
                    missing.set(Some(format!("Fill in '{name}': this prompt needs it.")));
                    return;
                }
                continue;
            }
            arguments.insert(name.clone(), value.into());
        }
        run(
            server.clone(),
            name.clone(),
            serde_json::Value::Object(arguments).to_string(),
        );
    };
    view! {
        <form data-testid="prompt-form" class="space-y-2" on:submit=submit>
            <p class="text-xs font-medium">"/"{prompt.name.clone()}</p>
            {prompt.description.clone().map(|d| view! { <p class="text-xs text-zinc-500">{d}</p> })}
            {prompt.arguments.iter().zip(values).map(|(a, (_, required, value))| view! {
                <label class="block text-xs">
                    {a.name.clone()}{required.then_some(" *")}
                    <input class=format!("{INPUT} mt-1 w-full") data-testid="prompt-argument" data-argument=a.name.clone()
                        placeholder=a.description.clone().unwrap_or_default()
                        prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev)) />
                </label>
            }).collect_view()}
            {move || missing.get().map(|m| view! { <p class="text-xs text-red-700 dark:text-red-400">{m}</p> })}
            <div class="flex gap-2">
                <button type="submit" class=BUTTON data-testid="use-prompt">"Use prompt"</button>
                <button type="button" class=BUTTON on:click=move |_| asking.set(None)>"Back"</button>
            </div>
        </form>
    }
}

/// The resources attached to the message being written, each with a button to take it off.
#[component]
pub fn Attached(attached: RwSignal<Vec<ResourceRead>>) -> impl IntoView {
    view! {
        <Show when=move || attached.with(|a| !a.is_empty())>
            <div class="mb-2 flex flex-wrap gap-2">
                {move || attached.get().into_iter().map(|r| {
                    let uri = r.uri.clone();
                    view! {
                        <span data-testid="attachment" class="inline-flex items-center gap-1 rounded-lg bg-zinc-100 px-2 py-1 text-xs dark:bg-zinc-800" title=r.uri.clone()>
                            {r.name.clone()}
                            {r.cut.then_some(" (cut to fit)")}
                            <button type="button" aria-label="Remove" class="text-zinc-500 hover:text-zinc-900 dark:hover:text-zinc-100"
                                on:click=move |_| attached.update(|a| a.retain(|x| x.uri != uri))>
                                "×"
                            </button>
                        </span>
                    }
                }).collect_view()}
            </div>
        </Show>
    }
}
