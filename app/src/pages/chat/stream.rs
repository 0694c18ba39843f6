//! The chat's event stream on the page, and the answer while it is written: its Markdown rendered
//! a part at a time, the newest text kept in view.

use leptos::prelude::*;

use crate::chats::LiveText;
#[cfg(feature = "hydrate")]
use crate::chats::{ChatListVersion, MessageView};
use crate::markdown;

/// Follows the chat's event stream from `last_event_id` (where the page's read of the chat stood):
/// tokens go to the live answer; the other events read the chat again.
#[cfg(feature = "hydrate")]
pub(super) fn follow(
    chat_id: &str,
    last_event_id: Option<&str>,
    live: RwSignal<Option<LiveText>>,
    messages: RwSignal<Vec<MessageView>>,
    refresh: Callback<()>,
    list_version: ChatListVersion,
) {
    use crate::live::LiveEvent;
    crate::live::subscribe(chat_id, last_event_id, move |event| match event {
        LiveEvent::RunStarted { answer_id } => start_live(live, answer_id),
        LiveEvent::Token { answer_id, text } => live.update(|l| match l {
            Some(l) if l.answer_id == answer_id => l.text.push_str(&text),
            other => {
                *other = Some(LiveText { answer_id, text });
            }
        }),
        LiveEvent::Snapshot { answer_id, text } => live.set(Some(LiveText { answer_id, text })),
        LiveEvent::ToolCall { .. }
        | LiveEvent::Decision { .. }
        | LiveEvent::ToolResult { .. }
        | LiveEvent::Resync => refresh.run(()),
        LiveEvent::ApprovalNeeded { .. } => {
            live.set(None);
            refresh.run(());
        }
        LiveEvent::RunFinished { .. } => {
            // The stored answer replaces the live one when the chat has been read again (the
            // live copy stays until then, so nothing blinks).
            refresh.run(());
            list_version.bump();
        }
    });
    follow_the_stream(live, messages);
}

/// Shows that `answer_id` is being written, unless it already is (its first tokens may have come
/// on the event stream before the answer to the send that started it).
pub(super) fn start_live(live: RwSignal<Option<LiveText>>, answer_id: String) {
    live.update(|l| {
        if l.as_ref().is_none_or(|l| l.answer_id != answer_id) {
            *l = Some(LiveText {
                answer_id,
                text: String::new(),
            });
        }
    });
}

/// The answer `answer_id` while it is written, as Markdown rendered a part at a time (see
/// [`markdown::LiveMarkdown`]): a completed part is added once, and only the part still being
/// written is rendered again as tokens come.
#[component]
pub(super) fn StreamingAnswer(
    live: RwSignal<Option<LiveText>>,
    answer_id: String,
    testid: Option<&'static str>,
) -> impl IntoView {
    let renderer = StoredValue::new(markdown::LiveMarkdown::default());
    let advance = move || {
        live.with_untracked(|l| {
            let text = l
                .as_ref()
                .filter(|l| l.answer_id == answer_id)
                .map_or("", |l| l.text.as_str());
            renderer
                .try_update_value(|r| r.advance(text))
                .unwrap_or_default()
        })
    };
    let (first, tail) = advance.clone()();
    let parts = RwSignal::new(first.into_iter().collect::<Vec<_>>());
    let tail = RwSignal::new(tail);
    Effect::new(move |_| {
        live.track();
        let (completed, now) = advance();
        if let Some(html) = completed {
            parts.update(|p| p.push(html));
        }
        tail.set(now);
    });
    view! {
        <div class="prose-chat" data-testid=testid>
            <For
                each=move || 0..parts.with(Vec::len)
                key=|i| *i
                children=move |i| view! { <div class="md-part" inner_html=parts.with_untracked(|p| p[i].clone())></div> }
            />
            <div class="md-part" inner_html=move || tail.get()></div>
        </div>
    }
}

/// Keeps the newest text in view while it streams, unless the person has scrolled up to read.
#[cfg(feature = "hydrate")]
fn follow_the_stream(live: RwSignal<Option<LiveText>>, messages: RwSignal<Vec<MessageView>>) {
    Effect::new(move |_| {
        live.track();
        messages.track();
        let Some(scroller) = document().get_element_by_id("chat-scroll") else {
            return;
        };
        let distance = scroller.scroll_height() - scroller.scroll_top() - scroller.client_height();
        // 120 px: the height the newest chunk of text may have added since the last frame.
        if distance < 120 {
            scroller.set_scroll_top(scroller.scroll_height());
        }
    });
}
