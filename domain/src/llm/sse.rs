//! Server-sent events from a provider: the bytes split into events, silences and broken
//! connections turned into errors, and each event handed to the wire format's [`Decoder`].

use std::time::Duration;

use futures_util::StreamExt;

use super::{EventStream, LlmError, StreamEvent};
use crate::error::chain;

/// The most one completion may send (text, thinking, calls and the wire's own overhead together):
/// a provider streaming without end is cut off here.
pub const MAX_COMPLETION_BYTES: usize = 8 << 20;

/// The longest line an event may have.
const MAX_LINE_BYTES: usize = 1 << 20;

/// One event: its `event:` name (Anthropic names them; OpenAI does not) and its `data`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Reads a wire format's events.
pub(super) trait Decoder: Send + 'static {
    /// The provider's id, for errors.
    fn provider(&self) -> &str;

    /// What `event` says; `Ok(true)` once the answer is complete (nothing after it is read).
    fn decode(&mut self, event: Event, out: &mut Vec<StreamEvent>) -> Result<bool, LlmError>;

    /// Why a stream that ended here is incomplete (it ended before the format's last event).
    fn unfinished(&self) -> &'static str;
}

/// The stream of `response`'s events as `decoder` reads them; a silence longer than `idle`, a
/// broken connection or an end before the answer is complete ends it with an error.
pub(super) fn events(
    response: reqwest::Response,
    idle: Duration,
    mut decoder: impl Decoder,
) -> EventStream {
    let bytes = response.bytes_stream();
    Box::pin(async_stream::stream! {
        let mut bytes = Box::pin(bytes);
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let mut received = 0;
        loop {
            let provider = decoder.provider().to_owned();
            let chunk = match tokio::time::timeout(idle, bytes.next()).await {
                Err(_) => {
                    yield Err(LlmError::Stalled { provider, seconds: idle.as_secs() });
                    return;
                }
                Ok(None) => {
                    yield Err(LlmError::CutOff { provider, detail: decoder.unfinished().into() });
                    return;
                }
                Ok(Some(Err(e))) => {
                    yield Err(LlmError::CutOff { provider, detail: chain(&e) });
                    return;
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            received += chunk.len();
            if received > MAX_COMPLETION_BYTES {
                yield Err(LlmError::TooLarge { provider, megabytes: MAX_COMPLETION_BYTES >> 20 });
                return;
            }
            let events = match lines.push(&chunk) {
                Ok(events) => events,
                Err(detail) => {
                    yield Err(LlmError::Garbled { provider, detail });
                    return;
                }
            };
            for event in events {
                let decoded = decoder.decode(event, &mut out);
                for event in out.drain(..) {
                    yield Ok(event);
                }
                match decoded {
                    Ok(false) => {}
                    Ok(true) => return,
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                }
            }
        }
    })
}

/// Splits a server-sent-event byte stream into events.
#[derive(Default)]
pub(super) struct Lines {
    buffer: Vec<u8>,
    event: Event,
}

impl Lines {
    /// Feeds bytes; returns the events they completed, or why no more can be read (a line longer
    /// than [`MAX_LINE_BYTES`]).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buffer[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.buffer[start..start + end]);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                if !self.event.data.is_empty() {
                    events.push(std::mem::take(&mut self.event));
                }
                self.event.name = None;
            } else if let Some(value) = field(line, "data") {
                if !self.event.data.is_empty() {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
            } else if let Some(value) = field(line, "event") {
                self.event.name = Some(value.to_owned());
            }
            // Comments (":"), `id:` and `retry:` lines carry nothing we use.
            start += end + 1;
        }
        self.buffer.drain(..start);
        if self.buffer.len() > MAX_LINE_BYTES {
            return Err(format!(
                "a line of its stream is longer than {} MB",
                MAX_LINE_BYTES >> 20
            ));
        }
        Ok(events)
    }
}

/// The value of a `name: value` line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let value = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_split() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\nevent: ping\ndata: one\ndata: two\r\n\r\ndata: [DONE]\n\n";
        for split in 1..stream.len() {
            let mut lines = Lines::default();
            let mut events = lines.push(&stream[..split]).unwrap();
            events.extend(lines.push(&stream[split..]).unwrap());
            let events: Vec<(Option<&str>, &str)> = events
                .iter()
                .map(|e| (e.name.as_deref(), e.data.as_str()))
                .collect();
            assert_eq!(
                events,
                [
                    (None, "{\"a\":1}"),
                    (Some("ping"), "one\ntwo"),
                    (None, "[DONE]")
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_name_without_data_does_not_name_the_next_event() {
        let mut lines = Lines::default();
        let events = lines.push(b"event: lonely\n\ndata: x\n\n").unwrap();
        assert_eq!(
            events,
            [Event {
                name: None,
                data: "x".into()
            }]
        );
    }

    #[test]
    fn a_line_without_end_is_refused() {
        let mut lines = Lines::default();
        let piece = vec![b'x'; 64 << 10];
        let mut refused = None;
        for _ in 0..20 {
            if let Err(e) = lines.push(&piece) {
                refused = Some(e);
                break;
            }
        }
        assert!(refused.is_some_and(|e| e.contains("longer than 1 MB")));
    }
}
