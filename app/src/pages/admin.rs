//! The tool server registry, for administrators: the servers everyone may connect to. Servers from
//! the servers file are listed read-only; the rest are added, changed, switched off and removed
//! here. Secret values are never shown back: a secret field left empty keeps what is stored.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::styles::{BUTTON, INPUT, PAGE_ERROR, PRIMARY};
use crate::mcp::{AdminServerView, DeleteServer, SaveServer, admin_servers};

#[component]
pub fn AdminServersPage() -> impl IntoView {
    let save = ServerAction::<SaveServer>::new();
    let delete = ServerAction::<DeleteServer>::new();
    let servers = Resource::new(
        move || (save.version().get(), delete.version().get()),
        |_| admin_servers(),
    );
    // The server being edited (None: a new one).
    let editing = RwSignal::new(None::<AdminServerView>);
    Effect::new(move |_| {
        if let Some(Ok(())) = save.value().get() {
            editing.set(None);
        }
    });

    view! {
        <Title text="Tool server registry · Switchboard" />
        <div class="mx-auto max-w-3xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"Tool server registry"</h1>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "The MCP servers everyone here may connect to. Each person connects on their own, with a connection of their own."
            </p>
            {move || delete.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" class="mt-4 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
            })}
            <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading the registry…"</p> }>
                {move || Suspend::new(async move {
                    match servers.await {
                        Ok(list) => view! {
                            <ul class="mt-6 flex flex-col gap-3" data-testid="registry">
                                {list.is_empty().then(|| view! { <li class="text-sm text-zinc-500">"The registry is empty."</li> })}
                                {list.into_iter().map(|server| view! { <RegistryRow server editing delete /> }).collect_view()}
                            </ul>
                            <section class="mt-10" aria-labelledby="server-form-heading">
                                {move || view! { <ServerForm initial=editing.get() save editing /> }}
                            </section>
                        }.into_any(),
                        Err(e) => view! {
                            <p role="alert" data-testid="admin-error" class=PAGE_ERROR>{e.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn RegistryRow(
    server: AdminServerView,
    editing: RwSignal<Option<AdminServerView>>,
    delete: ServerAction<DeleteServer>,
) -> impl IntoView {
    let from_file = server.source == "file";
    let summary = if server.transport == "stdio" {
        format!(
            "stdio · {} {}",
            server.command.clone().unwrap_or_default(),
            server.args.join(" ")
        )
    } else {
        format!(
            "Streamable HTTP · {}",
            server.url.clone().unwrap_or_default()
        )
    };
    let secrets: Vec<String> = server
        .secret_env
        .iter()
        .chain(server.headers.iter())
        .cloned()
        .chain(server.bearer_token.then(|| "bearer token".to_owned()))
        .collect();
    let to_edit = server.clone();
    let id = server.id.clone();
    view! {
        <li class="rounded-xl border border-zinc-200 p-4 dark:border-zinc-800" data-testid="registry-server" data-server=server.id.clone()>
            <div class="flex flex-wrap items-start gap-3">
                <div class="min-w-0 flex-1">
                    <p class="flex flex-wrap items-center gap-2 font-medium">
                        {server.name.clone()}
                        {(!server.enabled).then(|| view! { <span class="rounded-full bg-zinc-100 px-2 py-0.5 text-xs dark:bg-zinc-800">"Off"</span> })}
                        {from_file.then(|| view! { <span class="rounded-full bg-zinc-100 px-2 py-0.5 text-xs text-zinc-600 dark:bg-zinc-800 dark:text-zinc-400">"From the servers file"</span> })}
                    </p>
                    <p class="mt-0.5 break-all text-xs text-zinc-500 dark:text-zinc-400"><code>{server.id.clone()}</code>" · "{summary}</p>
                    {(!secrets.is_empty()).then(|| view! {
                        <p class="mt-0.5 text-xs text-zinc-500 dark:text-zinc-400" data-testid="secret-names">{format!("Secrets (stored encrypted): {}", secrets.join(", "))}</p>
                    })}
                    {(!server.groups.is_empty()).then(|| view! {
                        <p class="mt-0.5 text-xs text-zinc-500 dark:text-zinc-400" data-testid="server-limited-to">{format!("Only for: {}", server.groups.join(", "))}</p>
                    })}
                    {server.problem.clone().map(|p| view! { <p class="mt-1 text-sm text-red-700 dark:text-red-400">{p}</p> })}
                </div>
                {(!from_file).then(|| view! {
                    <div class="flex items-center gap-2">
                        <button type="button" class=BUTTON data-testid="edit-server" on:click=move |_| editing.set(Some(to_edit.clone()))>"Edit"</button>
                        <ActionForm action=delete>
                            <input type="hidden" name="id" value=id.clone() />
                            <button type="submit" class=BUTTON data-testid="delete-server">"Remove"</button>
                        </ActionForm>
                    </div>
                })}
            </div>
        </li>
    }
}

#[component]
fn ServerForm(
    initial: Option<AdminServerView>,
    save: ServerAction<SaveServer>,
    editing: RwSignal<Option<AdminServerView>>,
) -> impl IntoView {
    let is_edit = initial.is_some();
    let s = initial.unwrap_or_else(|| AdminServerView {
        enabled: true,
        source: "admin".into(),
        transport: "http".into(),
        ..AdminServerView::default()
    });
    let transport = RwSignal::new(s.transport.clone());
    let env = s
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n");
    // Secrets are shown by name only; an empty value keeps the stored one.
    let secret_env = s
        .secret_env
        .iter()
        .map(|k| format!("{k}="))
        .collect::<Vec<_>>()
        .join("\n");
    let headers = s
        .headers
        .iter()
        .map(|k| format!("{k}:"))
        .collect::<Vec<_>>()
        .join("\n");
    view! {
        <h2 id="server-form-heading" class="text-lg font-semibold">
            {if is_edit { format!("Change “{}”", s.name) } else { "Add a server".to_owned() }}
        </h2>
        {is_edit.then(|| view! {
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">"Secret values are not shown: leave one empty to keep it, or type a new one."</p>
        })}
        <ActionForm action=save attr:class="mt-4 grid gap-3 sm:grid-cols-2" attr:data-testid="server-form">
            <input type="hidden" name="previous" value=if is_edit { s.id.clone() } else { String::new() } />
            <label class="flex flex-col gap-1 text-sm">"Id (a-z, 0-9, -)"
                <input name="id" required maxlength="40" pattern="[a-z0-9-]+" class=INPUT value=s.id.clone() />
            </label>
            <label class="flex flex-col gap-1 text-sm">"Name"
                <input name="name" required maxlength="100" class=INPUT value=s.name.clone() />
            </label>
            <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Description"
                <input name="description" maxlength="1000" class=INPUT value=s.description.clone() />
            </label>
            <label class="flex flex-col gap-1 text-sm">"Transport"
                <select name="transport" class=INPUT on:change=move |ev| transport.set(event_target_value(&ev))>
                    <option value="http" selected=s.transport == "http">"Streamable HTTP"</option>
                    <option value="stdio" selected=s.transport == "stdio">"stdio (a process on this server)"</option>
                </select>
            </label>
            <label class="flex items-center gap-2 self-end text-sm">
                <input type="checkbox" name="disabled" value="true" checked=!s.enabled />
                "Switched off (listed, but nobody can connect)"
            </label>
            <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Only for these groups (comma-separated; empty: everyone)"
                <input name="groups" maxlength="2000" class=INPUT value=s.groups.join(", ") placeholder="research, ops" data-testid="server-groups" />
            </label>
            <Show when=move || transport.get() == "http">
                <label class="flex flex-col gap-1 text-sm sm:col-span-2">"URL"
                    <input name="url" class=INPUT value=s.url.clone().unwrap_or_default() placeholder="https://mcp.example.com/mcp" />
                </label>
                <label class="flex flex-col gap-1 text-sm">{if s.bearer_token { "Bearer token (set; empty keeps it)" } else { "Bearer token (optional)" }}
                    <input name="bearer_token" type="password" autocomplete="off" class=INPUT />
                </label>
                {s.bearer_token.then(|| view! {
                    <label class="flex items-center gap-2 self-end text-sm">
                        <input type="checkbox" name="remove_bearer_token" value="true" />
                        "Remove the token"
                    </label>
                })}
                <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Headers (secret; one “Name: value” a line)"
                    <textarea name="headers" rows="2" class=INPUT>{headers.clone()}</textarea>
                </label>
                <label class="flex flex-col gap-1 text-sm">"OAuth client id (only if its sign-in service takes no registrations)"
                    <input name="oauth_client_id" autocomplete="off" class=INPUT value=s.oauth_client_id.clone().unwrap_or_default() />
                </label>
                <label class="flex flex-col gap-1 text-sm">{if s.oauth_client_secret { "OAuth client secret (set; empty keeps it)" } else { "OAuth client secret (optional)" }}
                    <input name="oauth_client_secret" type="password" autocomplete="off" class=INPUT />
                </label>
            </Show>
            <Show when=move || transport.get() == "stdio">
                <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Command"
                    <input name="command" class=INPUT value=s.command.clone().unwrap_or_default() placeholder="npx" />
                </label>
                <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Arguments (one a line)"
                    <textarea name="args" rows="3" class=INPUT>{s.args.join("\n")}</textarea>
                </label>
                <label class="flex flex-col gap-1 text-sm">"Environment (NAME=value lines)"
                    <textarea name="env" rows="3" class=INPUT>{env.clone()}</textarea>
                </label>
                <label class="flex flex-col gap-1 text-sm">"Secret environment (NAME=value lines)"
                    <textarea name="secret_env" rows="3" class=INPUT>{secret_env.clone()}</textarea>
                </label>
            </Show>
            <div class="flex gap-2 sm:col-span-2">
                <button type="submit" class=PRIMARY data-testid="save-server" disabled=move || save.pending().get()>
                    {if is_edit { "Save changes" } else { "Add server" }}
                </button>
                {is_edit.then(|| view! {
                    <button type="button" class=BUTTON on:click=move |_| editing.set(None)>"Cancel"</button>
                })}
            </div>
        </ActionForm>
        {move || save.value().get().and_then(Result::err).map(|e| view! {
            <p role="alert" data-testid="save-error" class="mt-3 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
        })}
    }
}
