//! Anthropic's Messages API on the wire: the request (`POST <base>/messages`, streamed, with the
//! system prompt apart, tool calls and results as content blocks, and extended thinking when the
//! provider has a budget for it) and its events read back (`message_start`, `content_block_*`,
//! `message_delta`, `message_stop`, `error`).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::sse::{self, Event};
use super::{
    CallPiece, FinishReason, LlmError, Message, Provider, Request, StreamEvent, ToolCallAssembler,
    Usage, endpoint,
};

/// The API version Switchboard speaks (`anthropic-version`).
const VERSION: &str = "2023-06-01";

/// The most an answer may write (the API requires a limit); thinking's budget comes on top.
const MAX_TOKENS: u32 = 8192;

/// The smallest thinking budget the API takes.
const MIN_THINKING: u32 = 1024;

/// How a note of Switchboard's to the model (a system message after the conversation began, such
/// as "the person declined every tool call") is written in the person's turn, the only place the
/// Messages API takes it.
pub(super) const NOTE: &str = "Note from Switchboard, not written by the person: ";

/// The streamed request for `request`.
pub(super) fn request(
    http: &reqwest::Client,
    provider: &Provider,
    request: &Request,
) -> reqwest::RequestBuilder {
    let tools = !request.tools.is_empty();
    let thinking = provider.thinking_budget.map(|b| b.max(MIN_THINKING));
    let (system, messages) = conversation(&request.messages, tools, thinking.is_some());
    let mut body = json!({
        "model": request.model,
        "max_tokens": MAX_TOKENS + thinking.unwrap_or(0),
        "messages": messages,
        "stream": true,
    });
    if let Some(system) = system {
        body["system"] = json!(system);
    }
    if tools {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    if let Some(budget) = thinking {
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
    }
    let http = http
        .post(endpoint(&provider.base_url, "messages"))
        .header("anthropic-version", VERSION)
        .json(&body);
    match &provider.api_key {
        Some(key) => http.header("x-api-key", key),
        None => http,
    }
}

/// The system prompt and the turns, as the Messages API takes them: the leading system messages
/// become the system prompt; later ones, notes in the person's turn; tool calls and results,
/// content blocks (or, in a request that offers no tools, which the API then refuses them in,
/// sentences); turns of the same role, one turn. Thinking goes back only where the API asks for
/// it: signed, to a model thinking now.
fn conversation(messages: &[Message], tools: bool, thinking: bool) -> (Option<String>, Vec<Value>) {
    let mut system = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, block: Value| match turns.last_mut() {
        Some((last, blocks)) if *last == role => blocks.push(block),
        _ => turns.push((role, vec![block])),
    };
    let text = |text: &str| json!({"type": "text", "text": text});
    let mut begun = false;
    for message in messages {
        begun |= !matches!(message, Message::System { .. });
        match message {
            Message::System { content } if !begun => {
                system.push(content.as_str());
            }
            Message::System { content } => push("user", text(&format!("{NOTE}{content}"))),
            Message::User { content } if !content.is_empty() => push("user", text(content)),
            Message::User { .. } => {}
            Message::Assistant {
                content,
                tool_calls,
                reasoning,
            } => {
                if let Some(reasoning) = reasoning.as_ref().filter(|_| thinking && tools)
                    && let Some(signature) = &reasoning.signature
                {
                    push(
                        "assistant",
                        json!({"type": "thinking", "thinking": reasoning.text, "signature": signature}),
                    );
                }
                if let Some(content) = content.as_deref().filter(|c| !c.trim().is_empty()) {
                    push("assistant", text(content));
                }
                for call in tool_calls {
                    push(
                        "assistant",
                        if tools {
                            json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input(&call.arguments)})
                        } else {
                            text(&format!(
                                "(I asked to run the tool {} with {}: call {}.)",
                                call.name, call.arguments, call.id
                            ))
                        },
                    );
                }
            }
            Message::Tool {
                tool_call_id,
                content,
            } => push(
                "user",
                if tools {
                    json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": content})
                } else {
                    text(&format!("(The result of call {tool_call_id}: {content})"))
                },
            ),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    let turns = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    (system, turns)
}

/// A call's arguments as the object `tool_use` takes (what the model wrote that is no object, it
/// gets back as `{}`: its call could not have run with it).
fn input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => Value::Object(Map::new()),
    }
}

/// Reads the events of one message.
pub(super) struct Decoder {
    provider: String,
    calls: ToolCallAssembler,
    reason: Option<FinishReason>,
    usage: Option<Usage>,
    signature: Option<String>,
}

impl Decoder {
    pub fn new(provider: String) -> Self {
        Self {
            provider,
            calls: ToolCallAssembler::default(),
            reason: None,
            usage: None,
            signature: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    MessageStart {
        message: WireMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: WireDelta,
    },
    MessageDelta {
        delta: WireStop,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    /// `ping`, `content_block_stop`, and what later versions add.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    input_tokens: Option<u32>,
    cache_creation_input_tokens: Option<u32>,
    cache_read_input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireStop {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl sse::Decoder for Decoder {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn decode(&mut self, event: Event, out: &mut Vec<StreamEvent>) -> Result<bool, LlmError> {
        let provider = self.provider.clone();
        let wire: Wire = serde_json::from_str(&event.data).map_err(|e| LlmError::Garbled {
            provider: provider.clone(),
            detail: format!(
                "an event is not valid JSON: {e}: {}",
                event.data.chars().take(120).collect::<String>()
            ),
        })?;
        match wire {
            Wire::MessageStart { message } => {
                let u = message.usage;
                let input = u.input_tokens.unwrap_or(0)
                    + u.cache_creation_input_tokens.unwrap_or(0)
                    + u.cache_read_input_tokens.unwrap_or(0);
                self.usage = Some(Usage {
                    input_tokens: input,
                    output_tokens: u.output_tokens.unwrap_or(0),
                });
            }
            Wire::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } if !text.is_empty() => out.push(StreamEvent::Token(text)),
                WireBlock::Thinking { thinking } if !thinking.is_empty() => {
                    out.push(StreamEvent::Thinking(thinking));
                }
                WireBlock::ToolUse { id, name } => self.calls.push(CallPiece {
                    index,
                    id: Some(id),
                    name: Some(name),
                    arguments: None,
                }),
                _ => {}
            },
            Wire::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } if !text.is_empty() => {
                    out.push(StreamEvent::Token(text));
                }
                WireDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    out.push(StreamEvent::Thinking(thinking));
                }
                WireDelta::InputJsonDelta { partial_json } => self.calls.push(CallPiece {
                    index,
                    arguments: Some(partial_json),
                    ..CallPiece::default()
                }),
                WireDelta::SignatureDelta { signature } => self.signature = Some(signature),
                _ => {}
            },
            Wire::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.reason = Some(match reason.as_str() {
                        "end_turn" | "stop_sequence" => FinishReason::Stop,
                        "max_tokens" => FinishReason::Length,
                        "tool_use" => FinishReason::ToolCalls,
                        "refusal" => FinishReason::ContentFilter,
                        _ => FinishReason::Unknown,
                    });
                }
                if let (Some(usage), Some(output)) =
                    (self.usage.as_mut(), usage.and_then(|u| u.output_tokens))
                {
                    usage.output_tokens = output;
                }
            }
            Wire::MessageStop => {
                let tool_calls = self.calls.finish().map_err(|detail| LlmError::Garbled {
                    provider: provider.clone(),
                    detail,
                })?;
                out.push(StreamEvent::Finished {
                    reason: self.reason.take().unwrap_or(FinishReason::Unknown),
                    tool_calls,
                    usage: self.usage,
                    signature: self.signature.take(),
                });
                return Ok(true);
            }
            Wire::Error { error } => {
                let detail = if error.message.is_empty() {
                    error.kind.clone()
                } else {
                    error.message
                };
                return Err(match error.kind.as_str() {
                    "overloaded_error" => LlmError::Overloaded { provider, detail },
                    "rate_limit_error" => LlmError::RateLimited { provider, detail },
                    _ => LlmError::Server {
                        provider,
                        status: 500,
                        detail,
                    },
                });
            }
            Wire::Other => {}
        }
        Ok(false)
    }

    fn unfinished(&self) -> &'static str {
        "the stream ended before message_stop"
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::Decoder as _;
    use super::super::{Reasoning, ToolCall};
    use super::*;

    fn decode(events: &[Value]) -> (Vec<StreamEvent>, Option<LlmError>) {
        let mut decoder = Decoder::new("claude".into());
        let mut out = Vec::new();
        for data in events {
            let event = Event {
                name: data["type"].as_str().map(str::to_owned),
                data: data.to_string(),
            };
            match decoder.decode(event, &mut out) {
                Ok(false) => {}
                Ok(true) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[test]
    fn thinking_text_and_a_tool_call_in_pieces() {
        let (events, error) = decode(&[
            json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The time, "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "then."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig=="}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let me look."}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"tz\": "}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"UTC\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42}}),
            json!({"type": "message_stop"}),
        ]);
        assert_eq!(error, None);
        assert_eq!(
            events,
            [
                StreamEvent::Thinking("The time, ".into()),
                StreamEvent::Thinking("then.".into()),
                StreamEvent::Token("Let me look.".into()),
                StreamEvent::Finished {
                    reason: FinishReason::ToolCalls,
                    tool_calls: vec![ToolCall {
                        id: "toolu_1".into(),
                        name: "get_time".into(),
                        arguments: r#"{"tz": "UTC"}"#.into()
                    }],
                    usage: Some(Usage {
                        input_tokens: 30,
                        output_tokens: 42
                    }),
                    signature: Some("sig==".into()),
                }
            ]
        );
    }

    #[test]
    fn an_overloaded_error_mid_stream_ends_it() {
        let (events, error) = decode(&[
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]);
        assert_eq!(events, [StreamEvent::Token("Hel".into())]);
        assert_eq!(
            error,
            Some(LlmError::Overloaded {
                provider: "claude".into(),
                detail: "Overloaded".into()
            })
        );
    }

    #[test]
    fn events_of_later_versions_are_passed_over() {
        let (events, error) = decode(&[
            json!({"type": "message_start", "message": {}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "x"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta"}}),
            json!({"type": "something_new"}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
            json!({"type": "message_stop"}),
        ]);
        assert_eq!(error, None);
        assert!(matches!(
            events.as_slice(),
            [StreamEvent::Finished {
                reason: FinishReason::Stop,
                ..
            }]
        ));
    }

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "echo".into(),
            arguments: r#"{"m":"hi"}"#.into(),
        }
    }

    #[test]
    fn the_conversation_takes_the_messages_api_shape() {
        let messages = vec![
            Message::System {
                content: "Be brief.".into(),
            },
            Message::User {
                content: "echo hi".into(),
            },
            Message::Assistant {
                content: Some("Sure.".into()),
                tool_calls: vec![call("c1"), call("c2")],
                reasoning: Some(Reasoning {
                    text: "They want an echo.".into(),
                    signature: Some("sig".into()),
                }),
            },
            Message::Tool {
                tool_call_id: "c1".into(),
                content: "hi".into(),
            },
            Message::Tool {
                tool_call_id: "c2".into(),
                content: "hi".into(),
            },
            Message::System {
                content: "The person declined.".into(),
            },
        ];
        let (system, turns) = conversation(&messages, true, true);
        assert_eq!(system.as_deref(), Some("Be brief."));
        assert_eq!(
            Value::Array(turns),
            json!([
                {"role": "user", "content": [{"type": "text", "text": "echo hi"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "They want an echo.", "signature": "sig"},
                    {"type": "text", "text": "Sure."},
                    {"type": "tool_use", "id": "c1", "name": "echo", "input": {"m": "hi"}},
                    {"type": "tool_use", "id": "c2", "name": "echo", "input": {"m": "hi"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "hi"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": "hi"},
                    {"type": "text", "text": format!("{NOTE}The person declined.")},
                ]},
            ])
        );
        // Without tools offered (the API refuses tool blocks then) and without thinking, the
        // same exchange is told in sentences, and the thinking is not given back.
        let (_, turns) = conversation(&messages, false, false);
        let told = Value::Array(turns).to_string();
        assert!(
            !told.contains("tool_use") && !told.contains("tool_result"),
            "{told}"
        );
        assert!(!told.contains("They want an echo"), "{told}");
        assert!(
            told.contains("(I asked to run the tool echo with {\\\"m\\\":\\\"hi\\\"}: call c1.)"),
            "{told}"
        );
        assert!(told.contains("(The result of call c2: hi)"), "{told}");
    }

    #[test]
    fn arguments_that_are_no_object_go_back_as_an_empty_one() {
        assert_eq!(input(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(input("not json"), json!({}));
        assert_eq!(input("[1]"), json!({}));
    }
}
