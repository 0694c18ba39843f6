//! The browser's side of a chat's event stream (`GET /api/chats/{id}/events`): an `EventSource`,
//! which reconnects by itself and sends `Last-Event-ID`, so missed events are replayed.

use serde::Deserialize;

/// The events the page acts on (the server's `domain::runs::EventKind`, as JSON).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    RunStarted {
        answer_id: String,
    },
    Token {
        answer_id: String,
        text: String,
    },
    Snapshot {
        answer_id: String,
        text: String,
    },
    /// A tool call was asked for, decided, or ran: the stored answer has it.
    ToolCall {
        answer_id: String,
    },
    Decision {
        answer_id: String,
    },
    ToolResult {
        answer_id: String,
    },
    /// The answer waits for the person's decisions; nothing is being written now.
    ApprovalNeeded {
        answer_id: String,
    },
    RunFinished {
        answer_id: String,
    },
    /// The server cannot replay what the page missed (it restarted, or is another instance):
    /// the chat is read again.
    Resync,
}

/// Every event type the server sends (`domain::runs::EventKind::name`).
#[cfg(feature = "hydrate")]
const EVENT_NAMES: [&str; 9] = [
    "run_started",
    "token",
    "snapshot",
    "tool_call",
    "approval_needed",
    "decision",
    "tool_result",
    "run_finished",
    "resync",
];

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    use web_sys::{EventSource, MessageEvent};

    use super::{EVENT_NAMES, LiveEvent};

    /// Listens to the chat's events after `after` (the id the page's data was read at) until the
    /// reactive owner (the page) is cleaned up.
    pub fn subscribe(chat_id: &str, after: Option<&str>, on_event: impl Fn(LiveEvent) + 'static) {
        let url = match after {
            Some(id) => format!("/api/chats/{chat_id}/events?last_event_id={id}"),
            None => format!("/api/chats/{chat_id}/events"),
        };
        let Ok(source) = EventSource::new(&url) else {
            return;
        };
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            if let Some(data) = message.data().as_string()
                && let Ok(event) = serde_json::from_str::<LiveEvent>(&data)
            {
                on_event(event);
            }
        });
        for name in EVENT_NAMES {
            let _ = source.add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
        }
        let held = SendWrapper::new((source, handler));
        on_cleanup(move || {
            let (source, _handler) = held.take();
            source.close();
        });
    }
}

#[cfg(feature = "hydrate")]
pub use browser::subscribe;
