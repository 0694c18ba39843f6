//! Tool servers: the registry's servers and the person's own, with their connection (Connect,
//! Disconnect, status) and, once connected, their tools, resources and prompts. A form adds a personal server.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::mcp::{
    AddPersonalServer, ConnectServer, DeletePersonalServer, DisconnectServer, ServerView,
    SignOutOfServer, ToolView, list_servers,
};

#[component]
pub fn ServersPage() -> impl IntoView {
    let connect = ServerAction::<ConnectServer>::new();
    let disconnect = ServerAction::<DisconnectServer>::new();
    let add = ServerAction::<AddPersonalServer>::new();
    let remove = ServerAction::<DeletePersonalServer>::new();
    let sign_out = ServerAction::<SignOutOfServer>::new();
    // Bumped while a connection is on its way, so its status is read again.
    let tick = RwSignal::new(0u32);
    let servers = Resource::new(
        move || {
            (
                connect.version().get(),
                disconnect.version().get(),
                add.version().get(),
                remove.version().get(),
                sign_out.version().get(),
                tick.get(),
            )
        },
        |_| list_servers(),
    );

    #[cfg(feature = "hydrate")]
    {
        // Once a second while some connection is still being made (or retried).
        let handle = set_interval_with_handle(
            move || {
                let settling = servers.get_untracked().is_some_and(|r| {
                    r.is_ok_and(|list| {
                        list.iter()
                            .any(|s| matches!(s.status.as_str(), "connecting" | "failed"))
                    })
                });
                if settling {
                    tick.update(|t| *t += 1);
                }
            },
            std::time::Duration::from_millis(1000),
        );
        if let Ok(handle) = handle {
            on_cleanup(move || handle.clear());
        }
    }

    let action_error = move || {
        [
            connect.value().get().and_then(Result::err),
            disconnect.value().get().and_then(Result::err),
            remove.value().get().and_then(Result::err),
            sign_out.value().get().and_then(Result::err),
        ]
        .into_iter()
        .flatten()
        .next()
    };

    view! {
        <Title text="Tool servers · Switchboard" />
        <div class="mx-auto max-w-3xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"Tool servers"</h1>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "Connect the MCP servers your assistant may use. Your connections are your own, and every tool call waits for your approval."
            </p>
            {move || action_error().map(|e| view! {
                <p role="alert" class="mt-4 rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">{e.to_string()}</p>
            })}
            <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading tool servers…"</p> }>
                {move || Suspend::new(async move {
                    match servers.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="mt-6 text-sm text-zinc-500 dark:text-zinc-400" data-testid="no-servers">
                                "No tool servers are available yet. An administrator adds them to the registry; you can add your own below."
                            </p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="mt-6 flex flex-col gap-3" data-testid="server-list">
                                {list.into_iter().map(|server| view! { <ServerCard server connect disconnect remove sign_out /> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! {
                            <p role="alert" class="mt-6 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
            <AddPersonal add />
        </div>
    }
}

fn status_badge(status: &str) -> (&'static str, &'static str) {
    match status {
        "connected" => (
            "Connected",
            "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300",
        ),
        "connecting" => (
            "Connecting…",
            "bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
        ),
        "idle" => (
            "Idle",
            "bg-sky-100 text-sky-800 dark:bg-sky-950 dark:text-sky-300",
        ),
        "failed" => (
            "Failed",
            "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300",
        ),
        "sign_in" => (
            "Sign-in needed",
            "bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
        ),
        _ => (
            "Not connected",
            "bg-zinc-100 text-zinc-700 dark:bg-zinc-800 dark:text-zinc-300",
        ),
    }
}

/// "Sign in to <server>": a plain form, so that the browser goes on to the server's sign-in page
/// (and comes back to `return_to`).
#[component]
pub fn SignIn(id: String, name: String, #[prop(into)] return_to: String) -> impl IntoView {
    view! {
        <form method="post" action="/mcp/oauth/start" data-testid="sign-in-form">
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="return_to" value=return_to />
            <button type="submit" class=PRIMARY data-testid="sign-in">{format!("Sign in to {name}")}</button>
        </form>
    }
}

const BUTTON: &str = "rounded-lg border border-zinc-300 px-3 py-1 text-xs font-medium hover:bg-zinc-100 disabled:opacity-50 dark:border-zinc-700 dark:hover:bg-zinc-800";
const PRIMARY: &str = "rounded-lg bg-zinc-900 px-3 py-1 text-xs font-medium text-white hover:bg-zinc-700 disabled:opacity-50 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300";

#[component]
fn ServerCard(
    server: ServerView,
    connect: ServerAction<ConnectServer>,
    disconnect: ServerAction<DisconnectServer>,
    remove: ServerAction<DeletePersonalServer>,
    sign_out: ServerAction<SignOutOfServer>,
) -> impl IntoView {
    let (label, badge) = status_badge(&server.status);
    let needs_sign_in = server.status == "sign_in";
    let wanted = server.status != "disconnected";
    let personal = server.source == "personal";
    let tool_count = server.tools.len();
    let (id, remove_id) = (server.id.clone(), server.id.clone());
    let (sign_in_id, sign_out_id) = (server.id.clone(), server.id.clone());
    view! {
        <li class="rounded-xl border border-zinc-200 p-4 dark:border-zinc-800" data-testid="server" data-server=server.id.clone() data-status=server.status.clone()>
            <div class="flex flex-wrap items-start gap-3">
                <div class="min-w-0 flex-1">
                    <p class="flex flex-wrap items-center gap-2 font-medium">
                        {server.name.clone()}
                        <span class=format!("rounded-full px-2 py-0.5 text-xs font-medium {badge}") data-testid="server-status">{label}</span>
                        {personal.then(|| view! { <span class="rounded-full bg-indigo-100 px-2 py-0.5 text-xs text-indigo-800 dark:bg-indigo-950 dark:text-indigo-300">"Yours"</span> })}
                        {(!server.enabled).then(|| view! { <span class="rounded-full bg-zinc-100 px-2 py-0.5 text-xs text-zinc-600 dark:bg-zinc-800 dark:text-zinc-400">"Switched off by an administrator"</span> })}
                    </p>
                    <p class="mt-0.5 text-xs text-zinc-500 dark:text-zinc-400">
                        <code>{server.id.clone()}</code>
                        {format!(" · {}", if server.transport == "stdio" { "runs on the server" } else { "Streamable HTTP" })}
                        {server.url.clone().map(|url| format!(" · {url}"))}
                    </p>
                    {(!server.description.is_empty()).then(|| view! {
                        <p class="mt-1 text-sm text-zinc-700 dark:text-zinc-300">{server.description.clone()}</p>
                    })}
                    {server.error.clone().filter(|_| !needs_sign_in).map(|e| view! {
                        <p class="mt-1 text-sm text-red-700 dark:text-red-400" data-testid="server-error">{e}" Switchboard keeps retrying while you stay connected."</p>
                    })}
                    {needs_sign_in.then(|| view! {
                        <p class="mt-1 text-sm text-amber-800 dark:text-amber-300" data-testid="server-sign-in-reason">
                            {server.error.clone().unwrap_or_default()}" Its tools are ready once you have."
                        </p>
                    })}
                    {(server.status == "idle").then(|| view! {
                        <p class="mt-1 text-xs text-zinc-500">"Closed while unused; it reconnects by itself the next time a tool is used."</p>
                    })}
                </div>
                <div class="flex items-center gap-2">
                    {needs_sign_in.then(|| view! { <SignIn id=sign_in_id.clone() name=server.name.clone() return_to="/servers" /> })}
                    {server.signed_in.then(|| view! {
                        <ActionForm action=sign_out>
                            <input type="hidden" name="id" value=sign_out_id.clone() />
                            <button type="submit" class=BUTTON data-testid="sign-out">{format!("Sign out of {}", server.name)}</button>
                        </ActionForm>
                    })}
                    {if wanted {
                        view! {
                            <ActionForm action=disconnect>
                                <input type="hidden" name="id" value=id.clone() />
                                <button type="submit" class=BUTTON data-testid="disconnect">"Disconnect"</button>
                            </ActionForm>
                        }.into_any()
                    } else {
                        view! {
                            <ActionForm action=connect>
                                <input type="hidden" name="id" value=id.clone() />
                                <button type="submit" class=PRIMARY data-testid="connect" disabled=!server.enabled>"Connect"</button>
                            </ActionForm>
                        }.into_any()
                    }}
                    {personal.then(|| view! {
                        <ActionForm action=remove>
                            <input type="hidden" name="id" value=remove_id.clone() />
                            <button type="submit" class=BUTTON data-testid="remove-server">"Remove"</button>
                        </ActionForm>
                    })}
                </div>
            </div>
            {(tool_count > 0).then(|| view! {
                <details class="mt-3" data-testid="tools" open=server.status == "connected">
                    <summary class="cursor-pointer text-sm font-medium text-zinc-700 dark:text-zinc-300">
                        {format!("{tool_count} tool{}", if tool_count == 1 { "" } else { "s" })}
                    </summary>
                    <ul class="mt-2 flex flex-col divide-y divide-zinc-100 dark:divide-zinc-800">
                        {server.tools.clone().into_iter().map(|tool| view! { <ToolItem tool /> }).collect_view()}
                    </ul>
                </details>
            })}
            {(!server.resources.is_empty()).then(|| view! {
                <details class="mt-2" data-testid="resources">
                    <summary class="cursor-pointer text-sm font-medium text-zinc-700 dark:text-zinc-300">
                        {format!("{} resource{}", server.resources.len(), if server.resources.len() == 1 { "" } else { "s" })}
                        <span class="font-normal text-zinc-500">" · attach them to a message with + in the composer"</span>
                    </summary>
                    <ul class="mt-2 space-y-1 text-xs">
                        {server.resources.clone().into_iter().map(|r| view! {
                            <li data-testid="resource-item"><span class="font-medium">{r.title.clone().unwrap_or(r.name.clone())}</span>" "<code class="text-zinc-500">{r.uri}</code>
                                {r.description.map(|d| view! { <span class="text-zinc-500">" · "{d}</span> })}</li>
                        }).collect_view()}
                    </ul>
                </details>
            })}
            {(!server.prompts.is_empty()).then(|| view! {
                <details class="mt-2" data-testid="prompts">
                    <summary class="cursor-pointer text-sm font-medium text-zinc-700 dark:text-zinc-300">
                        {format!("{} prompt{}", server.prompts.len(), if server.prompts.len() == 1 { "" } else { "s" })}
                        <span class="font-normal text-zinc-500">" · run them with / in the composer"</span>
                    </summary>
                    <ul class="mt-2 space-y-1 text-xs">
                        {server.prompts.clone().into_iter().map(|p| view! {
                            <li data-testid="prompt-item"><code class="font-medium">"/"{p.name.clone()}</code>
                                {p.description.map(|d| view! { <span class="text-zinc-500">" · "{d}</span> })}
                                {(!p.arguments.is_empty()).then(|| view! { <span class="text-zinc-500">{format!(" ({})", p.arguments.iter().map(|a| a.name.clone()).collect::<Vec<_>>().join(", "))}</span> })}
                            </li>
                        }).collect_view()}
                    </ul>
                </details>
            })}
        </li>
    }
}

#[component]
pub fn ToolItem(tool: ToolView) -> impl IntoView {
    let arguments = tool.arguments();
    let hints = tool.hints();
    view! {
        <li class="py-2" data-testid="tool" data-tool=tool.name.clone()>
            <p class="flex flex-wrap items-center gap-2 text-sm">
                <code class="font-medium">{tool.name.clone()}</code>
                {tool.title.clone().map(|t| view! { <span class="text-zinc-600 dark:text-zinc-400">{t}</span> })}
                {hints.into_iter().map(|hint| view! {
                    <span class=format!(
                        "rounded px-1.5 py-0.5 text-[0.7rem] {}",
                        if hint == "destructive" { "bg-red-50 text-red-700 dark:bg-red-950 dark:text-red-300" }
                        else if hint == "read-only" { "bg-emerald-50 text-emerald-700 dark:bg-emerald-950 dark:text-emerald-300" }
                        else { "bg-zinc-100 text-zinc-600 dark:bg-zinc-800 dark:text-zinc-400" }
                    ) data-testid="tool-hint">{hint}</span>
                }).collect_view()}
            </p>
            {tool.description.clone().map(|d| view! { <p class="mt-0.5 text-xs text-zinc-600 dark:text-zinc-400">{d}</p> })}
            {(!arguments.is_empty()).then(|| view! {
                <ul class="mt-1 flex flex-col gap-0.5 text-xs text-zinc-600 dark:text-zinc-400">
                    {arguments.into_iter().map(|a| view! {
                        <li data-testid="tool-argument">
                            <code class="text-zinc-800 dark:text-zinc-200">{a.name}</code>
                            {format!(": {}{}", a.kind, if a.required { "" } else { " (optional)" })}
                            {a.description.map(|d| format!(" — {d}"))}
                        </li>
                    }).collect_view()}
                </ul>
            })}
        </li>
    }
}

const INPUT: &str = "min-w-0 rounded-lg border border-zinc-300 bg-white px-3 py-2 text-sm dark:border-zinc-700 dark:bg-zinc-900";

#[component]
fn AddPersonal(add: ServerAction<AddPersonalServer>) -> impl IntoView {
    let form = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = add.value().get()
            && let Some(form) = form.get()
        {
            form.reset();
        }
    });
    view! {
        <section class="mt-10" aria-labelledby="personal-heading">
            <h2 id="personal-heading" class="text-lg font-semibold">"Add your own server"</h2>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "A Streamable HTTP MCP server only you can see and use. Its token and headers are stored encrypted and never shown again."
            </p>
            <ActionForm action=add node_ref=form attr:class="mt-4 grid gap-3 sm:grid-cols-2" attr:data-testid="add-server-form">
                <label class="flex flex-col gap-1 text-sm">"Name"
                    <input name="name" required maxlength="100" class=INPUT placeholder="My notes" />
                </label>
                <label class="flex flex-col gap-1 text-sm">"URL"
                    <input name="url" required type="url" class=INPUT placeholder="https://mcp.example.com/mcp" />
                </label>
                <label class="flex flex-col gap-1 text-sm sm:col-span-2">"Description (optional)"
                    <input name="description" maxlength="1000" class=INPUT />
                </label>
                <label class="flex flex-col gap-1 text-sm">"Bearer token (optional)"
                    <input name="bearer_token" type="password" autocomplete="off" class=INPUT />
                </label>
                <label class="flex flex-col gap-1 text-sm">"Headers (optional, one “Name: value” a line)"
                    <textarea name="headers" rows="2" class=INPUT placeholder="X-Api-Key: …"></textarea>
                </label>
                <div class="sm:col-span-2">
                    <button type="submit" class=PRIMARY data-testid="add-server" disabled=move || add.pending().get()>"Add server"</button>
                </div>
            </ActionForm>
            {move || add.value().get().and_then(Result::err).map(|e| view! {
                <p role="alert" data-testid="add-server-error" class="mt-3 text-sm text-red-700 dark:text-red-400">{e.to_string()}</p>
            })}
        </section>
    }
}
