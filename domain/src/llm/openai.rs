//! OpenAI's Chat Completions on the wire: the request (`POST <base>/chat/completions`, streamed,
//! with usage asked for) and its chunks read back: text, `reasoning_content` / `reasoning` deltas
//! (DeepSeek, vLLM, llama.cpp, Ollama, OpenRouter), tool-call deltas, the finish reason and usage.

use serde::Deserialize;
use serde_json::{Value, json};

use super::sse::{self, Event};
use super::{
    CallPiece, FinishReason, LlmError, Message, Provider, Request, StreamEvent, ToolCallAssembler,
    Usage, endpoint,
};

/// The streamed request for `request`, asking for the tokens used when `usage`.
pub(super) fn request(
    http: &reqwest::Client,
    provider: &Provider,
    request: &Request,
    usage: bool,
) -> reqwest::RequestBuilder {
    let mut body = json!({
        "model": request.model,
        "messages": request.messages.iter().map(message).collect::<Vec<_>>(),
        "stream": true,
    });
    if usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": t}))
            .collect();
    }
    let http = http
        .post(endpoint(&provider.base_url, "chat/completions"))
        .json(&body);
    match &provider.api_key {
        Some(key) => http.bearer_auth(key),
        None => http,
    }
}

/// A message as Chat Completions takes it; the model's thinking is not given back.
fn message(message: &Message) -> Value {
    match message {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Assistant {
            content,
            tool_calls,
            reasoning: _,
        } => {
            let mut wire = json!({"role": "assistant"});
            if let Some(content) = content {
                wire["content"] = json!(content);
            }
            if !tool_calls.is_empty() {
                wire["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            wire
        }
        Message::Tool {
            tool_call_id,
            content,
        } => json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}),
    }
}

/// Reads the chunks of one completion.
pub(super) struct Decoder {
    provider: String,
    calls: ToolCallAssembler,
    reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl Decoder {
    pub fn new(provider: String) -> Self {
        Self {
            provider,
            calls: ToolCallAssembler::default(),
            reason: None,
            usage: None,
        }
    }
}

impl sse::Decoder for Decoder {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn decode(&mut self, event: Event, out: &mut Vec<StreamEvent>) -> Result<bool, LlmError> {
        let provider = || self.provider.clone();
        if event.data == "[DONE]" {
            let tool_calls = self.calls.finish().map_err(|detail| LlmError::Garbled {
                provider: provider(),
                detail,
            })?;
            let reason = self.reason.take().unwrap_or(if tool_calls.is_empty() {
                FinishReason::Unknown
            } else {
                FinishReason::ToolCalls
            });
            out.push(StreamEvent::Finished {
                reason,
                tool_calls,
                usage: self.usage,
                signature: None,
            });
            return Ok(true);
        }
        let chunk = parse_chunk(&event.data).map_err(|detail| LlmError::Garbled {
            provider: provider(),
            detail,
        })?;
        if let Some(detail) = chunk.error {
            return Err(LlmError::Server {
                provider: provider(),
                status: 200,
                detail,
            });
        }
        for piece in chunk.tool_calls {
            self.calls.push(piece);
        }
        self.reason = chunk.finish_reason.or(self.reason.take());
        self.usage = chunk.usage.or(self.usage);
        if !chunk.reasoning.is_empty() {
            out.push(StreamEvent::Thinking(chunk.reasoning));
        }
        if !chunk.text.is_empty() {
            out.push(StreamEvent::Token(chunk.text));
        }
        Ok(false)
    }

    fn unfinished(&self) -> &'static str {
        "the stream ended without [DONE]"
    }
}

/// What one streamed chunk says.
#[derive(Default, Debug, PartialEq)]
struct Chunk {
    text: String,
    reasoning: String,
    tool_calls: Vec<CallPiece>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    error: Option<String>,
}

fn parse_chunk(data: &str) -> Result<Chunk, String> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        choices: Vec<WireChoice>,
        usage: Option<WireUsage>,
        error: Option<Value>,
    }
    #[derive(Deserialize)]
    struct WireChoice {
        #[serde(default)]
        delta: WireDelta,
        finish_reason: Option<String>,
    }
    #[derive(Deserialize, Default)]
    struct WireDelta {
        content: Option<String>,
        reasoning_content: Option<String>,
        reasoning: Option<String>,
        #[serde(default)]
        tool_calls: Vec<WireToolCall>,
    }
    #[derive(Deserialize)]
    struct WireToolCall {
        index: Option<usize>,
        id: Option<String>,
        function: Option<WireFunction>,
    }
    #[derive(Deserialize)]
    struct WireFunction {
        name: Option<String>,
        arguments: Option<String>,
    }
    #[derive(Deserialize)]
    struct WireUsage {
        #[serde(default)]
        prompt_tokens: u32,
        #[serde(default)]
        completion_tokens: u32,
    }

    let wire: Wire = serde_json::from_str(data).map_err(|e| {
        format!(
            "a chunk is not valid JSON: {e}: {}",
            data.chars().take(120).collect::<String>()
        )
    })?;
    let mut chunk = Chunk {
        error: wire.error.map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string())
        }),
        usage: wire.usage.map(|u| Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }),
        ..Chunk::default()
    };
    if let Some(choice) = wire.choices.into_iter().next() {
        chunk.text = choice.delta.content.unwrap_or_default();
        chunk.reasoning = choice
            .delta
            .reasoning_content
            .or(choice.delta.reasoning)
            .unwrap_or_default();
        chunk.tool_calls = choice
            .delta
            .tool_calls
            .into_iter()
            .enumerate()
            .map(|(position, call)| CallPiece {
                // Some servers leave out `index` when there is one call per chunk.
                index: call.index.unwrap_or(position),
                id: call.id,
                name: call.function.as_ref().and_then(|f| f.name.clone()),
                arguments: call.function.and_then(|f| f.arguments),
            })
            .collect();
        chunk.finish_reason = choice.finish_reason.map(|r| match r.as_str() {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Unknown,
        });
    }
    Ok(chunk)
}

/// Tool calls in the wire shape: `{"id", "type": "function", "function": {"name", "arguments"}}`,
/// also how checkpoints keep them.
pub(super) mod wire_tool_calls {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::super::ToolCall;

    #[derive(Serialize, Deserialize)]
    struct Wire {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        function: Function,
    }
    #[derive(Serialize, Deserialize)]
    struct Function {
        name: String,
        arguments: String,
    }

    pub fn serialize<S: Serializer>(calls: &[ToolCall], serializer: S) -> Result<S::Ok, S::Error> {
        calls
            .iter()
            .map(|c| Wire {
                id: c.id.clone(),
                kind: "function".into(),
                function: Function {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
            })
            .collect::<Vec<_>>()
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<ToolCall>, D::Error> {
        Ok(Vec::<Wire>::deserialize(deserializer)?
            .into_iter()
            .map(|w| ToolCall {
                id: w.id,
                name: w.function.name,
                arguments: w.function.arguments,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::Decoder as _;
    use super::super::{Reasoning, ToolCall};
    use super::*;

    fn decode(chunks: &[&str]) -> Vec<StreamEvent> {
        let mut decoder = Decoder::new("p".into());
        let mut out = Vec::new();
        for data in chunks {
            let event = Event {
                name: None,
                data: (*data).into(),
            };
            if decoder.decode(event, &mut out).unwrap() {
                break;
            }
        }
        out
    }

    #[test]
    fn tool_calls_are_assembled_from_deltas() {
        let events = decode(&[
            r#"{"choices":[{"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_time","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"tz\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"echo","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"UTC\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ]);
        assert_eq!(
            events,
            [StreamEvent::Finished {
                reason: FinishReason::ToolCalls,
                tool_calls: vec![
                    ToolCall {
                        id: "call_a".into(),
                        name: "get_time".into(),
                        arguments: r#"{"tz":"UTC"}"#.into()
                    },
                    ToolCall {
                        id: "call_b".into(),
                        name: "echo".into(),
                        arguments: "{}".into()
                    },
                ],
                usage: None,
                signature: None,
            }]
        );
    }

    #[test]
    fn reasoning_deltas_are_thinking_and_usage_comes_last() {
        let events = decode(&[
            r#"{"choices":[{"delta":{"role":"assistant","reasoning_content":"Let me "}}]}"#,
            r#"{"choices":[{"delta":{"reasoning":"see."}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#,
            "[DONE]",
        ]);
        assert_eq!(
            events,
            [
                StreamEvent::Thinking("Let me ".into()),
                StreamEvent::Thinking("see.".into()),
                StreamEvent::Token("Hi".into()),
                StreamEvent::Finished {
                    reason: FinishReason::Stop,
                    tool_calls: vec![],
                    usage: Some(Usage {
                        input_tokens: 12,
                        output_tokens: 5
                    }),
                    signature: None,
                },
            ]
        );
    }

    #[test]
    fn messages_are_written_in_the_wire_shape_without_thinking() {
        let assistant = Message::Assistant {
            content: None,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            reasoning: Some(Reasoning {
                text: "secret plan".into(),
                signature: None,
            }),
        };
        assert_eq!(
            message(&assistant),
            json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        );
        assert_eq!(
            message(&Message::Tool {
                tool_call_id: "c1".into(),
                content: "ok".into()
            }),
            json!({"role": "tool", "tool_call_id": "c1", "content": "ok"})
        );
        // Checkpoints keep the thinking, and read back what older ones stored.
        let kept = serde_json::to_value(&assistant).unwrap();
        assert_eq!(kept["reasoning"]["text"], "secret plan");
        let back: Message = serde_json::from_value(kept).unwrap();
        assert_eq!(back, assistant);
        let older: Message =
            serde_json::from_value(json!({"role": "assistant", "content": "hi"})).unwrap();
        assert_eq!(older, Message::assistant(Some("hi".into()), vec![]));
    }
}
