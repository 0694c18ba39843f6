//! The message box: Enter sends, Shift+Enter starts a new line, Esc stops the answer being written;
//! "+" (or `/`) attaches a server's resource or runs its prompt (see [`AddToMessage`]). Its text is
//! the page's draft: the page puts it back when a send fails.

use leptos::prelude::*;

use crate::components::add_to_message::{AddToMessage, Attached};
use crate::components::icons;
use crate::offerings::{ResourceRead, with_attachments};

#[component]
pub fn Composer(
    /// What is typed: cleared when a send is taken, put back by the page if the send fails.
    draft: RwSignal<String>,
    /// Called with the text to send; the box is cleared once it returns true.
    on_send: Callback<String, bool>,
    /// Called to stop the answer being written.
    on_stop: Callback<()>,
    /// Whether an answer is being written (the button becomes "Stop").
    #[prop(into)]
    live: Signal<bool>,
    /// Why nothing can be sent right now (no model configured, ...), shown instead of the box.
    #[prop(into)]
    blocked: Signal<Option<String>>,
    #[prop(into, optional)] placeholder: Option<String>,
) -> impl IntoView {
    let text = draft;
    let attached = RwSignal::new(Vec::<ResourceRead>::new());
    let send = move || {
        let value = text.get_untracked();
        if value.trim().is_empty() || live.get_untracked() {
            return;
        }
        let message = attached.with_untracked(|a| with_attachments(&value, a));
        if on_send.run(message) {
            text.set(String::new());
            attached.set(Vec::new());
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        } else if ev.key() == "Escape" && live.get_untracked() {
            ev.prevent_default();
            on_stop.run(());
        }
    };
    let placeholder = placeholder.unwrap_or_else(|| "Message Switchboard".into());

    view! {
        <div class="mx-auto w-full max-w-3xl px-4 pb-4">
            {move || match blocked.get() {
                Some(reason) => view! {
                    <p data-testid="composer-blocked" class="rounded-xl border border-amber-300 bg-amber-50 px-4 py-3 text-sm text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-200">
                        {reason}
                    </p>
                }.into_any(),
                None => view! {
                    <Attached attached />
                    <form
                        class="flex items-end gap-2 rounded-2xl border border-zinc-300 bg-white p-2 shadow-sm focus-within:border-indigo-400 dark:border-zinc-700 dark:bg-zinc-900"
                        on:submit=move |ev| {
                            ev.prevent_default();
                            if live.get_untracked() { on_stop.run(()) } else { send() }
                        }
                    >
                        <AddToMessage draft attached />
                        <label for="composer" class="sr-only">"Message"</label>
                        <textarea
                            id="composer"
                            data-testid="composer"
                            rows="1"
                            placeholder=placeholder.clone()
                            class="max-h-48 min-h-10 flex-1 resize-none bg-transparent px-2 py-2 text-sm outline-none [field-sizing:content]"
                            prop:value=move || text.get()
                            on:input=move |ev| text.set(event_target_value(&ev))
                            on:keydown=on_keydown
                        ></textarea>
                        <button
                            type="submit"
                            data-testid=move || if live.get() { "stop" } else { "send" }
                            aria-label=move || if live.get() { "Stop the answer (Esc)" } else { "Send (Enter)" }
                            title=move || if live.get() { "Stop (Esc)" } else { "Send (Enter)" }
                            class="inline-flex size-10 shrink-0 items-center justify-center rounded-xl bg-zinc-900 text-white hover:bg-zinc-700 disabled:opacity-40 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300"
                            disabled=move || !live.get() && text.get().trim().is_empty()
                        >
                            {move || if live.get() { icons::stop().into_any() } else { icons::send().into_any() }}
                        </button>
                    </form>
                }.into_any(),
            }}
            <p class="mt-2 text-center text-xs text-zinc-500 dark:text-zinc-400">
                "Enter to send · Shift+Enter for a new line · / for a prompt · Esc to stop"
            </p>
        </div>
    }
}
