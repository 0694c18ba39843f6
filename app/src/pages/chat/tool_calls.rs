//! An answer's tool calls: a card per call, and the person's decisions on the calls that wait.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::question::QuestionCard;
use crate::agent::{CallStatus, CallView, DecisionInput, ResultPart, decide};
use crate::pages::servers::SignIn;

const RESULT: &str = "mt-1 max-h-64 overflow-auto whitespace-pre-wrap rounded bg-zinc-50 p-2 text-xs dark:bg-zinc-900";

/// What changes when a message's tool calls do (for the list's keys).
pub(super) fn calls_key(calls: &[CallView]) -> String {
    calls
        .iter()
        .map(|c| {
            let progress = c.progress.as_ref().map(|p| p.words()).unwrap_or_default();
            let question = c
                .question
                .as_ref()
                .map(|q| q.id.as_str())
                .unwrap_or_default();
            let sign_in = if c.sign_in.is_some() { "s" } else { "" };
            format!(
                "{}:{}:{progress}:{question}:{sign_in}",
                c.id,
                c.state.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An answer's tool calls: a card per call. Calls waiting for the person have their decisions
/// (approve, reject with a reason, edit the arguments, always allow), sent for this answer and the
/// turn its cards show (the server refuses them once that turn no longer waits); the chat's events
/// then bring the decisions and what follows. The other calls show what came of them, folded.
#[component]
pub(super) fn ToolCalls(chat_id: String, answer_id: String, calls: Vec<CallView>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let turn = calls
        .iter()
        .filter(|c| c.is_waiting())
        .map(|c| c.turn)
        .max()
        .unwrap_or_default();
    let target = StoredValue::new((chat_id, answer_id));
    let send = move |decisions: Vec<DecisionInput>| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            let (chat_id, answer_id) = target.get_value();
            match decide(chat_id, Some(answer_id), Some(turn), decisions).await {
                // The chat's events bring the decisions (these cards are then drawn again); until
                // then the buttons stay disabled.
                Ok(()) => {}
                // Nothing changed: the card keeps what the person typed.
                Err(e) => {
                    busy.set(false);
                    error.set(Some(e.to_string()));
                }
            }
        });
    };
    let waiting: Vec<String> = calls
        .iter()
        .filter(|c| c.is_waiting())
        .map(|c| c.id.clone())
        .collect();
    let all = (waiting.len() > 1).then(|| {
        let (approve_ids, reject_ids) = (waiting.clone(), waiting.clone());
        view! {
            <div class="flex items-center gap-2 text-xs" data-testid="decide-all">
                <span class="text-zinc-600 dark:text-zinc-400">{format!("{} tool calls wait for you:", waiting.len())}</span>
                <button type="button" data-testid="approve-all" class=BUTTON_PRIMARY prop:disabled=move || busy.get()
                    on:click=move |_| send(approve_ids.iter().map(|id| approval(id, None, None)).collect())>
                    "Approve all"
                </button>
                <button type="button" data-testid="reject-all" class=BUTTON prop:disabled=move || busy.get()
                    on:click=move |_| send(reject_ids.iter().map(|id| rejection(id, None)).collect())>
                    "Reject all"
                </button>
            </div>
        }
    });
    view! {
        <div class="mb-3 flex flex-col gap-2" data-testid="tool-calls">
            {all}
            {calls.into_iter().map(|call| {
                let question = call.question.clone().map(|question| {
                    let chat_id = target.get_value().0;
                    view! { <QuestionCard chat_id question /> }
                });
                // Its server's sign-in expired when it was to run: sign in again, then approve.
                let sign_in = call.sign_in.clone().map(|why| {
                    let here = format!("/c/{}", target.get_value().0);
                    view! {
                        <div class="flex flex-wrap items-center gap-2 rounded-xl border border-amber-300 bg-amber-50 p-3 text-xs dark:border-amber-800 dark:bg-amber-950" data-testid="sign-in-again">
                            <p class="min-w-0 flex-1">{why}" Once you have, approve it below to run it."</p>
                            <SignIn id=call.server.clone() name=call.server.clone() return_to=here />
                        </div>
                    }
                });
                view! { {sign_in} <ToolCallCard call send busy /> {question} }
            }).collect_view()}
            {move || error.get().map(|e| view! {
                <p role="alert" data-testid="decide-error" class="rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-xs text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200">{e}</p>
            })}
        </div>
    }
}

const BUTTON: &str = "rounded-lg border border-zinc-200 px-2 py-1 text-xs hover:bg-zinc-100 disabled:opacity-50 dark:border-zinc-700 dark:hover:bg-zinc-800";

const BUTTON_PRIMARY: &str = "rounded-lg bg-zinc-900 px-2 py-1 text-xs font-medium text-white hover:bg-zinc-700 disabled:opacity-50 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300";

fn approval(id: &str, arguments: Option<serde_json::Value>, always: Option<&str>) -> DecisionInput {
    DecisionInput {
        call_id: id.to_owned(),
        approve: true,
        reason: None,
        arguments,
        always: always.map(str::to_owned),
    }
}

fn rejection(id: &str, reason: Option<String>) -> DecisionInput {
    DecisionInput {
        call_id: id.to_owned(),
        approve: false,
        reason,
        arguments: None,
        always: None,
    }
}

#[component]
fn ToolCallCard(
    call: CallView,
    send: impl Fn(Vec<DecisionInput>) + Copy + Send + Sync + 'static,
    busy: RwSignal<bool>,
) -> impl IntoView {
    let badges = [
        (call.read_only, "read-only", "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300"),
        (call.destructive, "destructive", "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300"),
        (call.open_world, "open-world", "bg-sky-100 text-sky-800 dark:bg-sky-950 dark:text-sky-300"),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, label, tone)| view! { <span class=format!("rounded px-1.5 py-0.5 text-[10px] font-medium {tone}")>{label}</span> })
    .collect_view();
    let header = view! {
        <code class="font-medium">{call.tool.clone()}</code>
        <span class="text-zinc-500 dark:text-zinc-400">{if call.server.is_empty() { "built into Switchboard".to_owned() } else { format!("on {}", call.server) }}</span>
        {badges}
    };
    if !call.is_waiting() {
        let (label, tone) = match call.state {
            CallStatus::Ok => ("Ran".to_owned(), "text-emerald-700 dark:text-emerald-400"),
            CallStatus::Error => ("Failed".to_owned(), "text-red-700 dark:text-red-400"),
            CallStatus::Rejected => ("Rejected".to_owned(), "text-zinc-600 dark:text-zinc-400"),
            CallStatus::Running => (
                match &call.progress {
                    Some(p) => format!("Running… {}", p.words()),
                    None => "Running…".to_owned(),
                },
                "animate-pulse text-zinc-600 dark:text-zinc-400",
            ),
            CallStatus::Approved => ("Approved".to_owned(), "text-zinc-600 dark:text-zinc-400"),
            CallStatus::Interrupted => (
                "Interrupted: the server stopped while it ran; it was not run again".to_owned(),
                "text-amber-700 dark:text-amber-400",
            ),
            _ => ("Not run".to_owned(), "text-zinc-600 dark:text-zinc-400"),
        };
        let decided = call
            .decided_by
            .clone()
            .map(|by| format!(" · approved by {by}"));
        let decided = if call.state == CallStatus::Rejected {
            Some(format!(
                " · rejected{}",
                call.reason
                    .clone()
                    .map(|r| format!(": “{r}”"))
                    .unwrap_or_default()
            ))
        } else {
            decided
        };
        return view! {
            <details class="rounded-xl border border-zinc-200 px-3 py-2 text-sm dark:border-zinc-800" data-testid="tool-call" data-state=call.state.as_str() data-call-id=call.id.clone()>
                <summary class="flex cursor-pointer flex-wrap items-center gap-2">
                    {header}
                    <span class=format!("text-xs {tone}") data-testid="tool-call-state">{label}</span>
                    <span class="text-xs text-zinc-500">{decided}{call.duration_ms.map(|d| format!(" · {d} ms"))}{call.edited.then_some(" · arguments edited")}</span>
                </summary>
                <p class="mt-2 text-xs font-medium text-zinc-500">"Arguments"</p>
                <pre class="mt-1 overflow-x-auto rounded bg-zinc-50 p-2 text-xs dark:bg-zinc-900">{call.arguments.clone()}</pre>
                {call.result.clone().map(|r| {
                    let parts = call.parts.clone();
                    view! {
                        <p class="mt-2 text-xs font-medium text-zinc-500">{if call.state == CallStatus::Error { "Error" } else { "Result" }}</p>
                        {if parts.is_empty() {
                            view! { <pre class=RESULT data-testid="tool-result">{r}</pre> }.into_any()
                        } else {
                            view! { <div class="mt-1 space-y-2" data-testid="tool-result"><ResultParts parts/></div> }.into_any()
                        }}
                    }
                })}
            </details>
        }
        .into_any();
    }

    let id = StoredValue::new(call.id.clone());
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(call.arguments.clone());
    let rejecting = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    let local_error = RwSignal::new(None::<String>);
    let original =
        StoredValue::new(serde_json::from_str::<serde_json::Value>(&call.arguments).ok());
    // The arguments to approve with: None when unedited (or edited back to the model's); an error
    // when the edit is not JSON.
    let edited = move || -> Result<Option<serde_json::Value>, String> {
        if !editing.get_untracked() {
            return Ok(None);
        }
        let value = serde_json::from_str::<serde_json::Value>(&draft.get_untracked())
            .map_err(|e| format!("The arguments are not valid JSON: {e}."))?;
        let unchanged = original.with_value(|o| o.as_ref() == Some(&value));
        Ok((!unchanged).then_some(value))
    };
    let approve = move |always: Option<&'static str>| match edited() {
        Ok(arguments) => {
            local_error.set(None);
            send(vec![approval(&id.get_value(), arguments, always)]);
        }
        Err(e) => local_error.set(Some(e)),
    };
    let arguments = call.arguments.clone();
    view! {
        <div class="rounded-xl border border-amber-300 bg-amber-50/50 p-3 text-sm dark:border-amber-800 dark:bg-amber-950/30" data-testid="approval-card" data-call-id=call.id.clone()>
            <div class="flex flex-wrap items-center gap-2">
                {header}
                <span class="ml-auto text-xs text-amber-800 dark:text-amber-300">"Wants to run"</span>
            </div>
            <Show
                when=move || editing.get()
                fallback={
                    let arguments = arguments.clone();
                    move || view! { <pre class="mt-2 overflow-x-auto rounded bg-white p-2 text-xs dark:bg-zinc-900" data-testid="call-arguments">{arguments.clone()}</pre> }
                }
            >
                <label class="mt-2 block text-xs text-zinc-600 dark:text-zinc-400" for=format!("args-{}", id.get_value())>"Arguments (JSON, checked against the tool's schema)"</label>
                <textarea
                    id=format!("args-{}", id.get_value())
                    data-testid="edit-arguments"
                    class="mt-1 min-h-24 w-full rounded-lg border border-zinc-300 bg-white p-2 font-mono text-xs dark:border-zinc-700 dark:bg-zinc-900"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                ></textarea>
            </Show>
            <Show when=move || rejecting.get()>
                <div class="mt-2 flex flex-col gap-1">
                    <label class="text-xs text-zinc-600 dark:text-zinc-400" for=format!("reason-{}", id.get_value())>"Why not? (optional; the model is told)"</label>
                    <input
                        id=format!("reason-{}", id.get_value())
                        data-testid="reject-reason"
                        class="rounded-lg border border-zinc-300 bg-white px-2 py-1 text-xs dark:border-zinc-700 dark:bg-zinc-900"
                        prop:value=move || reason.get()
                        on:input=move |ev| reason.set(event_target_value(&ev))
                    />
                </div>
            </Show>
            {move || local_error.get().map(|e| view! { <p role="alert" class="mt-2 text-xs text-red-700 dark:text-red-400">{e}</p> })}
            <div class="mt-2 flex flex-wrap gap-2">
                <Show
                    when=move || rejecting.get()
                    fallback=move || view! {
                        <button type="button" data-testid="approve" class=BUTTON_PRIMARY prop:disabled=move || busy.get() on:click=move |_| approve(None)>
                            {move || if editing.get() { "Approve with these arguments" } else { "Approve" }}
                        </button>
                        <button type="button" data-testid="reject" class=BUTTON prop:disabled=move || busy.get() on:click=move |_| rejecting.set(true)>"Reject"</button>
                        <button type="button" data-testid="edit" class=BUTTON on:click=move |_| editing.update(|e| *e = !*e)>
                            {move || if editing.get() { "Cancel edit" } else { "Edit arguments" }}
                        </button>
                        <button type="button" data-testid="always-tool" class=BUTTON prop:disabled=move || busy.get() on:click=move |_| approve(Some("tool"))>"Always allow this tool"</button>
                        <button type="button" data-testid="always-server" class=BUTTON prop:disabled=move || busy.get() on:click=move |_| approve(Some("server"))>"Always allow this server"</button>
                    }
                >
                    <button type="button" data-testid="confirm-reject" class=BUTTON_PRIMARY prop:disabled=move || busy.get()
                        on:click=move |_| {
                            let why = reason.get_untracked();
                            let why = (!why.trim().is_empty()).then_some(why);
                            send(vec![rejection(&id.get_value(), why)]);
                        }>
                        "Reject"
                    </button>
                    <button type="button" class=BUTTON on:click=move |_| rejecting.set(false)>"Cancel"</button>
                </Show>
            </div>
        </div>
    }
    .into_any()
}

/// What a call returned, part by part: text as it is, media inline (the server checked their kind
/// and encoding), links shown but followed only when they are web links, structured content as
/// pretty JSON.
#[component]
fn ResultParts(parts: Vec<ResultPart>) -> impl IntoView {
    parts
        .into_iter()
        .map(|part| match part {
            ResultPart::Text { text } => view! { <pre class=RESULT>{text}</pre> }.into_any(),
            ResultPart::Image { mime_type, data } => view! {
                <img class="max-h-80 max-w-full rounded border border-zinc-200 dark:border-zinc-800" data-testid="tool-image"
                    alt="An image the tool returned" src=format!("data:{mime_type};base64,{data}")/>
            }
            .into_any(),
            ResultPart::Audio { mime_type, data } => view! {
                <audio controls data-testid="tool-audio" src=format!("data:{mime_type};base64,{data}")></audio>
            }
            .into_any(),
            ResultPart::Resource { uri, text, .. } => view! {
                <div>
                    <p class="text-xs text-zinc-500">"Resource " <code>{uri}</code></p>
                    <pre class=RESULT>{text}</pre>
                </div>
            }
            .into_any(),
            ResultPart::Link { uri, name, description } => {
                let web = uri.starts_with("https://") || uri.starts_with("http://");
                view! {
                    <p class="text-xs" data-testid="tool-link">
                        "Link: "
                        {if web {
                            view! { <a class="underline" href=uri.clone() target="_blank" rel="noopener noreferrer nofollow">{name}</a> }.into_any()
                        } else {
                            view! { <span class="font-medium">{name}</span> }.into_any()
                        }}
                        " " <code class="text-zinc-500">{uri}</code>
                        {description.map(|d| format!(" · {d}"))}
                    </p>
                }
                .into_any()
            }
            ResultPart::Structured { json } => view! {
                <div>
                    <p class="text-xs text-zinc-500">"Structured content"</p>
                    <pre class=RESULT data-testid="tool-structured">{json}</pre>
                </div>
            }
            .into_any(),
            ResultPart::Note { text } => view! { <p class="text-xs italic text-zinc-500">{text}</p> }.into_any(),
        })
        .collect_view()
}
