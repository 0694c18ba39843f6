//! One message of a chat: a question (which can be edited and sent again) or an answer (its tool
//! calls, its text, and a notice when it was stopped, failed or was cut off).

use leptos::prelude::*;

use super::stream::StreamingAnswer;
use super::tool_calls::ToolCalls;
use crate::chats::{LiveText, MessageView, Role, Status};
use crate::components::icons;
use crate::markdown;

#[component]
pub(super) fn Message(
    m: MessageView,
    live: RwSignal<Option<LiveText>>,
    edit: Callback<(i32, String)>,
    chat_id: String,
) -> impl IntoView {
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(m.content.clone());
    let is_user = m.role == Role::User;
    let id = m.id.clone();
    // While this answer is being written, the live copy of its text is shown.
    let writing = Memo::new({
        let id = id.clone();
        move |_| live.with(|l| l.as_ref().is_some_and(|l| l.answer_id == id))
    });
    let notice = match m.status {
        Status::Stopped => Some(("Stopped.".to_owned(), false)),
        Status::Failed => Some((m.error.clone().unwrap_or_else(|| "The answer failed.".into()), true)),
        Status::Interrupted => Some(("Interrupted: the server stopped while writing this answer. What it had written is kept; regenerate to try again.".to_owned(), true)),
        Status::Waiting => Some(("Waiting for your decision on the tool calls above.".to_owned(), false)),
        Status::Complete | Status::Streaming => None,
    };
    let position = m.position;
    let content = m.content.clone();
    view! {
        <article
            data-role=m.role.as_str()
            data-testid="message"
            class=if is_user { "group flex flex-col items-end" } else { "group" }
        >
                {if is_user {
                    let content = content.clone();
                    view! {
                        <Show
                            when=move || editing.get()
                            fallback={
                                let content = content.clone();
                                move || view! {
                                    <div class="max-w-[85%] whitespace-pre-wrap rounded-2xl bg-zinc-100 px-4 py-2 text-sm dark:bg-zinc-800">{content.clone()}</div>
                                    <button
                                        type="button"
                                        data-testid="edit-message"
                                        class="mt-1 inline-flex items-center gap-1 rounded px-1 text-xs text-zinc-500 opacity-0 hover:text-zinc-900 group-hover:opacity-100 focus:opacity-100 dark:hover:text-zinc-100"
                                        on:click=move |_| editing.set(true)
                                    >
                                        {icons::pencil()} "Edit"
                                    </button>
                                }
                            }
                        >
                            <div class="flex w-full max-w-[85%] flex-col gap-2">
                                <textarea
                                    data-testid="edit-box"
                                    class="min-h-20 w-full rounded-xl border border-zinc-300 bg-white p-2 text-sm dark:border-zinc-700 dark:bg-zinc-900"
                                    prop:value=move || draft.get()
                                    on:input=move |ev| draft.set(event_target_value(&ev))
                                ></textarea>
                                <div class="flex justify-end gap-2">
                                    <button type="button" class="rounded-lg px-3 py-1 text-xs hover:bg-zinc-100 dark:hover:bg-zinc-800" on:click=move |_| editing.set(false)>"Cancel"</button>
                                    <button
                                        type="button"
                                        data-testid="save-edit"
                                        class="rounded-lg bg-zinc-900 px-3 py-1 text-xs font-medium text-white dark:bg-zinc-100 dark:text-zinc-900"
                                        on:click=move |_| {
                                            editing.set(false);
                                            edit.run((position, draft.get_untracked()));
                                        }
                                    >
                                        "Send"
                                    </button>
                                </div>
                            </div>
                        </Show>
                    }.into_any()
                } else {
                    let calls = m.tool_calls.clone();
                    let answer_id = m.id.clone();
                    view! {
                        {(!calls.is_empty()).then(|| view! { <ToolCalls chat_id answer_id calls /> })}
                        {move || if writing.get() {
                            view! {
                                <StreamingAnswer live answer_id=id.clone() testid=Some("live-answer") />
                                <p class="mt-1 animate-pulse text-xs text-zinc-500">"Writing…"</p>
                            }.into_any()
                        } else {
                            view! { <div class="prose-chat" inner_html=markdown::render(&content)></div> }.into_any()
                        }}
                    }.into_any()
                }}
                {notice.map(|(text, bad)| view! {
                    <p data-testid="message-notice" class=if bad { "mt-2 text-xs text-red-700 dark:text-red-400" } else { "mt-2 text-xs text-zinc-500" }>{text}</p>
                })}
        </article>
    }
}

/// Copies a code block when its Copy button is clicked (the buttons come from rendered Markdown,
/// so one listener on the message list serves them all).
pub(super) fn copy_code(ev: leptos::ev::MouseEvent) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let Some(button) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|e| e.closest("[data-copy-code]").ok().flatten())
        else {
            return;
        };
        let code = button
            .closest(".code-block")
            .ok()
            .flatten()
            .and_then(|block| block.query_selector("code").ok().flatten())
            .and_then(|code| code.text_content());
        if let Some(code) = code {
            let _ = window().navigator().clipboard().write_text(&code);
            button.set_text_content(Some("Copied"));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = ev;
}
