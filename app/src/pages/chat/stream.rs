//! The chat's event stream on the page (`GET /api/chats/{id}/events`, through an `EventSource`,
//! which reconnects by itself and sends `Last-Event-ID`, so missed events are replayed), each event
//! applied to the page's state, and the answer while it is written: its Markdown rendered a part at
//! a time, the newest text kept in view.

use leptos::prelude::*;

#[cfg(feature = "hydrate")]
use crate::chats::ChatListVersion;
use crate::chats::{LiveText, MessageView};
use crate::markdown;

/// Follows the chat's event stream from `last_event_id` (where the page's read of the chat stood),
/// applying each event to the page's state as the protocol says ([`protocol::chat::apply`]): a
/// token changes only the live answer, the others the messages too. The chat is read again only
/// when the server cannot replay what the page missed (`resync`).
#[cfg(feature = "hydrate")]
pub(super) fn follow(
    chat_id: &str,
    last_event_id: Option<&str>,
    live: RwSignal<Option<LiveText>>,
    messages: RwSignal<Vec<MessageView>>,
    refresh: Callback<()>,
    list_version: ChatListVersion,
) {
    use protocol::Event;
    use protocol::chat::{Applied, apply, thinking, token};
    subscribe(chat_id, last_event_id, move |event| {
        // What streams changes only the live answer.
        match event {
            Event::Token { answer_id, text } => {
                live.update(|l| token(l, answer_id, &text));
                return;
            }
            Event::Thinking { answer_id, text } => {
                live.update(|l| thinking(l, answer_id, &text));
                return;
            }
            _ => {}
        }
        let ended = matches!(event, Event::RunFinished { .. } | Event::RunStarted { .. });
        let mut now = live.get_untracked();
        let mut applied = Applied::Done;
        messages.update(|all| applied = apply(all, &mut now, event));
        live.set(now);
        if applied == Applied::Resync {
            refresh.run(());
        }
        if ended {
            // A new chat's title, and the order of the chat list.
            list_version.bump();
        }
    });
    follow_the_stream(live, messages);
}

/// Listens to the chat's events after `after` (the id the page's data was read at) until the
/// reactive owner (the page) is cleaned up.
#[cfg(feature = "hydrate")]
fn subscribe(chat_id: &str, after: Option<&str>, on_event: impl Fn(protocol::Event) + 'static) {
    use protocol::Event;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    use web_sys::{EventSource, MessageEvent};

    let url = match after {
        Some(id) => format!("/api/chats/{chat_id}/events?last_event_id={id}"),
        None => format!("/api/chats/{chat_id}/events"),
    };
    let Ok(source) = EventSource::new(&url) else {
        return;
    };
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
        if let Some(data) = message.data().as_string()
            && let Ok(event) = serde_json::from_str::<Event>(&data)
        {
            on_event(event);
        }
    });
    for name in Event::NAMES {
        let _ = source.add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
    }
    let held = SendWrapper::new((source, handler));
    on_cleanup(move || {
        let (source, _handler) = held.take();
        source.close();
    });
}

/// Shows that the send of `question` started the answer `answer_id` (see
/// [`protocol::chat::started`]: its event may come first, or second).
pub(super) fn start_live(
    messages: RwSignal<Vec<MessageView>>,
    live: RwSignal<Option<LiveText>>,
    question: MessageView,
    answer_id: String,
    model: String,
) {
    let mut now = live.get_untracked();
    messages.update(|all| protocol::chat::started(all, &mut now, question, answer_id, model));
    live.set(now);
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
