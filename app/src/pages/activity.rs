use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;

use crate::agent::{AuditView, audit, policy_words};

/// Tool activity: every tool call the person's agent asked for, what was decided and by whom,
/// and what came of it; newest first.
#[component]
pub fn ActivityPage() -> impl IntoView {
    let first = Resource::new_blocking(|| (), |_| audit(None));
    view! {
        <Title text="Tool activity · Switchboard" />
        <div class="mx-auto max-w-4xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"Tool activity"</h1>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "Every tool call your agent asked for: who decided, with which arguments, and what it returned. "
                <a href="/settings" class="text-indigo-600 hover:underline dark:text-indigo-400">"Approval settings"</a>
            </p>
            <Suspense fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match first.await {
                        Ok(entries) => view! { <AuditList entries /> }.into_any(),
                        Err(e) => view! { <p role="alert" class="mt-6 text-sm text-red-700">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn AuditList(entries: Vec<AuditView>) -> impl IntoView {
    let more = entries.len() == 50;
    let entries = RwSignal::new(entries);
    let has_more = RwSignal::new(more);
    let error = RwSignal::new(None::<String>);
    let load_more = move || {
        let before = entries.with_untracked(|e| e.last().map(|l| l.id));
        spawn_local(async move {
            match audit(before).await {
                Ok(next) => {
                    has_more.set(next.len() == 50);
                    entries.update(|e| e.extend(next));
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <Show
            when=move || entries.with(|e| !e.is_empty())
            fallback=|| view! {
                <p class="mt-6 text-sm text-zinc-500 dark:text-zinc-400" data-testid="no-activity">
                    "No tool calls yet. Connect a tool server, then ask something that needs it."
                </p>
            }
        >
            <ul class="mt-6 flex flex-col gap-3" data-testid="audit">
                <For
                    each=move || entries.get()
                    key=|e| e.id
                    children=move |e| view! { <AuditEntry e /> }
                />
            </ul>
        </Show>
        {move || error.get().map(|e| view! { <p role="alert" class="mt-3 text-sm text-red-700">{e}</p> })}
        <Show when=move || has_more.get()>
            <button
                type="button"
                class="mt-4 rounded-lg border border-zinc-200 px-3 py-1.5 text-sm hover:bg-zinc-100 dark:border-zinc-700 dark:hover:bg-zinc-800"
                on:click=move |_| load_more()
            >
                "Older"
            </button>
        </Show>
    }
}

#[component]
fn AuditEntry(e: AuditView) -> impl IntoView {
    let (badge, tone) = match (e.decision.as_deref(), e.outcome.as_str()) {
        (_, "ok") => (
            "Ran",
            "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300",
        ),
        (_, "error") => (
            "Failed",
            "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300",
        ),
        (_, "interrupted") => (
            "Interrupted",
            "bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
        ),
        (Some("rejected"), _) => (
            "Rejected",
            "bg-zinc-200 text-zinc-800 dark:bg-zinc-800 dark:text-zinc-200",
        ),
        _ => (
            "Not run",
            "bg-zinc-200 text-zinc-800 dark:bg-zinc-800 dark:text-zinc-200",
        ),
    };
    let decided = match (&e.decision, e.decided_by.as_deref()) {
        (Some(d), Some("person")) => format!("{d} by you"),
        (Some(d), Some(by)) => match by.strip_prefix("policy:") {
            Some(policy) => format!("{d} by {}", policy_words(policy)),
            None => format!("{d} by {by}"),
        },
        _ => "no decision".into(),
    };
    let when = e
        .created_at
        .get(..16)
        .unwrap_or(&e.created_at)
        .replace('T', " ");
    let chat = e
        .chat_title
        .clone()
        .map(|title| (title, format!("/c/{}", e.chat_id)));
    view! {
        <li class="rounded-xl border border-zinc-200 p-3 text-sm dark:border-zinc-800" data-testid="audit-entry" data-outcome=e.outcome.clone()>
            <div class="flex flex-wrap items-center gap-2">
                <span class=format!("rounded px-1.5 py-0.5 text-xs font-medium {tone}")>{badge}</span>
                <code class="font-medium">{e.tool.clone()}</code>
                <span class="text-zinc-500 dark:text-zinc-400">"on " {e.server_id.clone()}</span>
                <span class="ml-auto text-xs text-zinc-500 dark:text-zinc-400">{when} " UTC"</span>
            </div>
            <p class="mt-1 text-xs text-zinc-600 dark:text-zinc-400">
                {decided}
                {e.reason.clone().map(|r| format!(" — “{r}”"))}
                {e.duration_ms.map(|d| format!(" · {d} ms"))}
                {chat.map(|(title, href)| view! { " · in " <a class="text-indigo-600 hover:underline dark:text-indigo-400" href=href>{title}</a> })}
            </p>
            <details class="mt-2">
                <summary class="cursor-pointer text-xs text-zinc-500">"Arguments and result"</summary>
                <pre class="mt-1 overflow-x-auto rounded bg-zinc-50 p-2 text-xs dark:bg-zinc-900">{e.arguments.clone()}</pre>
                {e.result.clone().map(|r| view! { <pre class="mt-1 max-h-64 overflow-auto whitespace-pre-wrap rounded bg-zinc-50 p-2 text-xs dark:bg-zinc-900">{r}</pre> })}
            </details>
        </li>
    }
}
