//! One message of a chat: a question (which can be edited and sent again) or an answer (its tool
//! calls, the model's thinking folded, its text, a notice when it was stopped, failed or was cut
//! off, and, on hover, the model that wrote it and what it used).

use leptos::prelude::*;

use super::stream::StreamingAnswer;
use super::tool_calls::ToolCalls;
use crate::chats::{LiveText, MessageView, Offered, Role, Status, Usage};
use crate::components::icons;
use crate::markdown;
use crate::offerings::split_attachments;

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
    let thinking = m.thinking.clone();
    let meta = (!is_user)
        .then(|| written_by(m.model.as_deref(), m.usage.as_ref()))
        .flatten();
    let trimmed = m.usage.as_ref().and_then(|u| u.trimmed).map(|n| {
        format!(
            "The {n} oldest message{} of this chat {} left out: the conversation is longer than the model takes at once.",
            if n == 1 { "" } else { "s" },
            if n == 1 { "was" } else { "were" }
        )
    });
    let fallback = m.usage.as_ref().and_then(|u| u.fallback.clone()).map(|f| {
        format!(
            "{} could not answer ({}), so {} wrote this answer.",
            f.instead_of, f.why, f.model
        )
    });
    let offered = m
        .usage
        .as_ref()
        .map(|u| u.offered.clone())
        .unwrap_or_default();
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
                                    <UserText content=content.clone() />
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
                                <LiveThinking live answer_id=id.clone() />
                                <StreamingAnswer live answer_id=id.clone() testid=Some("live-answer") />
                                <p class="mt-1 animate-pulse text-xs text-zinc-500">"Writing…"</p>
                            }.into_any()
                        } else {
                            view! {
                                <Thinking text=thinking.clone() />
                                <div class="prose-chat" inner_html=markdown::render(&content)></div>
                            }.into_any()
                        }}
                    }.into_any()
                }}
                {notice.map(|(text, bad)| view! {
                    <p data-testid="message-notice" class=if bad { "mt-2 text-xs text-red-700 dark:text-red-400" } else { "mt-2 text-xs text-zinc-500" }>{text}</p>
                })}
                {trimmed.map(|text| view! {
                    <p data-testid="trimmed-notice" class="mt-2 text-xs text-zinc-500">{text}</p>
                })}
                {fallback.map(|text| view! {
                    <p data-testid="fallback-notice" class="mt-2 text-xs text-amber-700 dark:text-amber-400">{text}</p>
                })}
                {(!offered.is_empty()).then(|| view! { <ToolsOffered offered /> })}
                {meta.map(|line| {
                    let title = line.clone();
                    view! {
                        <p data-testid="answer-meta" tabindex="0" title=title class="mt-1 text-xs text-zinc-400 opacity-0 group-hover:opacity-100 focus:opacity-100">{line}</p>
                    }
                })}
        </article>
    }
}

const THINKING: &str = "mb-2 rounded-lg border border-zinc-200 px-3 py-1 dark:border-zinc-800";
const THINKING_TITLE: &str = "cursor-pointer select-none text-xs font-medium text-zinc-500";
const THINKING_TEXT: &str = "mt-1 whitespace-pre-wrap text-xs text-zinc-600 dark:text-zinc-400";

/// What the model thought before answering, folded under "Thinking": plain text, never HTML.
#[component]
fn Thinking(text: String) -> impl IntoView {
    (!text.trim().is_empty()).then(|| {
        view! {
            <details data-testid="thinking" class=THINKING>
                <summary class=THINKING_TITLE>"Thinking"</summary>
                <div class=THINKING_TEXT>{text}</div>
            </details>
        }
    })
}

/// The live answer's thinking so far, folded as [`Thinking`] is (opening it while the model
/// thinks shows the thoughts as they come).
#[component]
pub(super) fn LiveThinking(live: RwSignal<Option<LiveText>>, answer_id: String) -> impl IntoView {
    let text = Signal::derive(move || {
        live.with(|l| {
            l.as_ref()
                .filter(|l| l.answer_id == answer_id)
                .map(|l| l.thinking.clone())
                .unwrap_or_default()
        })
    });
    view! {
        <Show when=move || text.with(|t| !t.trim().is_empty())>
            <details data-testid="thinking" class=THINKING>
                <summary class=THINKING_TITLE>"Thinking…"</summary>
                <div class=THINKING_TEXT>{move || text.get()}</div>
            </details>
        </Show>
    }
}

/// A person's message: their words, and each resource they attached folded under them.
#[component]
fn UserText(content: String) -> impl IntoView {
    let (text, attached) = split_attachments(&content);
    view! {
        <div class="max-w-[85%] whitespace-pre-wrap rounded-2xl bg-zinc-100 px-4 py-2 text-sm dark:bg-zinc-800">
            {text}
            {attached.into_iter().map(|(name, body)| view! {
                <details data-testid="attached-resource" class="mt-2 text-xs">
                    <summary class="cursor-pointer text-zinc-500">"Attached: "{name}</summary>
                    <pre class="mt-1 max-h-48 overflow-auto whitespace-pre-wrap">{body}</pre>
                </details>
            }).collect_view()}
        </div>
    }
}

/// Which of the chat's many tools each model call of the answer was offered (the others it could
/// find with the tool search), folded.
#[component]
fn ToolsOffered(offered: Vec<Offered>) -> impl IntoView {
    let of = offered.first().map_or(0, |o| o.of);
    view! {
        <details data-testid="tools-offered" class="mt-2 text-xs text-zinc-500">
            <summary class="cursor-pointer">{format!("Offered a few of the chat's {of} tools, and a tool search")}</summary>
            <ul class="mt-1 space-y-1">
                {offered.into_iter().map(|o| view! {
                    <li>{format!("Model call {}: {}", o.turn, if o.tools.is_empty() { "none but the search".to_owned() } else { o.tools.join(", ") })}</li>
                }).collect_view()}
            </ul>
        </details>
    }
}

/// "Written by <model> · 120 tokens in, 45 out · first token 0.4 s · 1.2 s", from what is known.
fn written_by(model: Option<&str>, usage: Option<&Usage>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(model) = model {
        parts.push(format!("Written by {model}"));
    }
    if let Some(u) = usage {
        let about = if u.estimated { "about " } else { "" };
        parts.push(format!(
            "{about}{} tokens in, {} out",
            u.input_tokens, u.output_tokens
        ));
        if let Some(ms) = u.first_token_ms {
            parts.push(format!("first token {}", seconds(ms)));
        }
        parts.push(format!("{} writing", seconds(u.duration_ms)));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// `850 ms`, `1.2 s`.
fn seconds(ms: u32) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", f64::from(ms) / 1000.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_answer_used_reads_as_a_sentence() {
        let usage = Usage {
            input_tokens: 120,
            output_tokens: 45,
            estimated: false,
            first_token_ms: Some(380),
            duration_ms: 1240,
            fallback: None,
            trimmed: None,
            offered: Vec::new(),
        };
        assert_eq!(
            written_by(Some("claude/sonnet"), Some(&usage)).as_deref(),
            Some(
                "Written by claude/sonnet · 120 tokens in, 45 out · first token 380 ms · 1.2 s writing"
            )
        );
        let estimated = Usage {
            estimated: true,
            first_token_ms: None,
            ..usage.clone()
        };
        assert_eq!(
            written_by(None, Some(&estimated)).as_deref(),
            Some("about 120 tokens in, 45 out · 1.2 s writing")
        );
        assert_eq!(written_by(None, None), None);
    }
}
