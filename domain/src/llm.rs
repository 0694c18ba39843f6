//! The LLM client: OpenAI-compatible Chat Completions with streaming, the one code path for OpenAI,
//! Azure OpenAI, Ollama, vLLM, llama.cpp's server, LiteLLM and OpenRouter.
//!
//! [`LlmClient::stream`] sends a request and yields [`StreamEvent`]s: text as it arrives, then one
//! `Finished` with the tool calls the model asked for, assembled from their deltas. Connection
//! failures, rate limits and 5xx answers before the first token are retried with backoff; every
//! other failure is an [`LlmError`] whose `Display` tells a person what happened and what to do.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::error::chain;

/// One configured endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// Short name used in the model selector (`openai`, `local`).
    pub id: String,
    /// The API's base URL, up to and including `/v1` (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434/v1` for Ollama).
    pub base_url: Url,
    pub api_key: Option<String>,
}

/// A message of the conversation, in the shape Chat Completions takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            with = "wire_tool_calls"
        )]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A tool the model may call: a name, what it does, and a JSON schema of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A call the model asked for. `arguments` is the JSON text the model wrote (it may be invalid
/// JSON: models make mistakes, and the caller decides what to do with them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// What to ask the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    Stop,
    /// The answer hit the model's output limit.
    Length,
    ToolCalls,
    ContentFilter,
    /// The stream ended without saying why (some servers do).
    Unknown,
}

/// What a stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// More of the answer's text.
    Token(String),
    /// The end: why, and the tool calls the model asked for (empty when none).
    Finished {
        reason: FinishReason,
        tool_calls: Vec<ToolCall>,
    },
}

/// What went wrong talking to a provider, each with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error(
        "The model provider '{provider}' refused the API key ({detail}). An administrator should check its API key in the configuration."
    )]
    Unauthorized { provider: String, detail: String },
    #[error(
        "The model '{model}' is not available at '{provider}' ({detail}). Choose another model, or ask an administrator to check the configuration."
    )]
    UnknownModel {
        provider: String,
        model: String,
        detail: String,
    },
    #[error(
        "The model provider '{provider}' is rate-limiting requests ({detail}). Wait a moment and try again."
    )]
    RateLimited { provider: String, detail: String },
    #[error(
        "The model provider '{provider}' failed with HTTP {status} ({detail}). Try again in a moment."
    )]
    Server {
        provider: String,
        status: u16,
        detail: String,
    },
    #[error("The model provider '{provider}' rejected the request with HTTP {status} ({detail}).")]
    Rejected {
        provider: String,
        status: u16,
        detail: String,
    },
    #[error(
        "Cannot reach the model provider '{provider}' ({detail}). It may be down; try again in a moment, and tell your administrator if it persists."
    )]
    Unreachable { provider: String, detail: String },
    #[error(
        "The model provider '{provider}' stopped sending for {seconds} s, so the answer was cut off. Try again."
    )]
    Stalled { provider: String, seconds: u64 },
    #[error(
        "The model provider '{provider}' sent a response Switchboard cannot read ({detail}), so the answer was cut off. Try again; if it keeps happening, tell your administrator."
    )]
    Garbled { provider: String, detail: String },
    #[error(
        "The connection to the model provider '{provider}' broke before the answer was finished ({detail}). Try again."
    )]
    CutOff { provider: String, detail: String },
}

impl LlmError {
    /// Worth another try before anything has been streamed.
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Unreachable { .. } | LlmError::RateLimited { .. } | LlmError::Server { .. }
        )
    }
}

/// Timeouts and retries; the defaults suit real providers, tests shorten them.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Longest silence allowed while waiting for the answer to start, and between chunks after.
    pub idle_timeout: Duration,
    /// Tries before the first token (1 = no retry).
    pub attempts: u32,
    /// The first backoff; it doubles each time.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// Talks to any number of providers; cheap to clone.
#[derive(Clone, Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    options: ClientOptions,
}

impl LlmClient {
    pub fn new(options: ClientOptions) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's settings are valid");
        Self { http, options }
    }

    /// Starts a streamed completion. Errors before the answer starts come back here (after the
    /// retries); errors after, as the stream's last item.
    pub async fn stream(
        &self,
        provider: &Provider,
        request: &Request,
    ) -> Result<EventStream, LlmError> {
        let mut attempt = 1;
        let mut backoff = self.options.backoff;
        loop {
            match self.open(provider, request).await {
                Ok(response) => return Ok(self.events(provider, response)),
                Err(error) if error.is_retryable() && attempt < self.options.attempts => {
                    tracing::warn!(
                        provider = provider.id,
                        attempt,
                        "LLM request failed, retrying: {error}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn open(
        &self,
        provider: &Provider,
        request: &Request,
    ) -> Result<reqwest::Response, LlmError> {
        let url = endpoint(&provider.base_url, "chat/completions");
        let mut body = json!({
            "model": request.model,
            "messages": request.messages,
            "stream": true,
        });
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": t}))
                .collect();
        }
        let mut http = self.http.post(url).json(&body);
        if let Some(key) = &provider.api_key {
            http = http.bearer_auth(key);
        }
        let unreachable = |detail: String| LlmError::Unreachable {
            provider: provider.id.clone(),
            detail,
        };
        let response = tokio::time::timeout(self.options.idle_timeout, http.send())
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer in {} s",
                    self.options.idle_timeout.as_secs()
                ))
            })?
            .map_err(|e| unreachable(chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = tokio::time::timeout(self.options.idle_timeout, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(classify(provider, &request.model, status.as_u16(), &text))
    }

    fn events(&self, provider: &Provider, response: reqwest::Response) -> EventStream {
        let provider = provider.id.clone();
        let idle = self.options.idle_timeout;
        let bytes = response.bytes_stream();
        Box::pin(async_stream::stream! {
            let mut bytes = Box::pin(bytes);
            let mut lines = SseLines::default();
            let mut calls = ToolCallAssembler::default();
            let mut reason = None;
            loop {
                let chunk = match tokio::time::timeout(idle, bytes.next()).await {
                    Err(_) => {
                        yield Err(LlmError::Stalled { provider: provider.clone(), seconds: idle.as_secs() });
                        return;
                    }
                    Ok(None) => {
                        yield Err(LlmError::CutOff { provider: provider.clone(), detail: "the stream ended without [DONE]".into() });
                        return;
                    }
                    Ok(Some(Err(e))) => {
                        yield Err(LlmError::CutOff { provider: provider.clone(), detail: chain(&e) });
                        return;
                    }
                    Ok(Some(Ok(chunk))) => chunk,
                };
                for data in lines.push(&chunk) {
                    if data == "[DONE]" {
                        match calls.finish() {
                            Ok(tool_calls) => {
                                let reason = reason.take().unwrap_or(if tool_calls.is_empty() { FinishReason::Unknown } else { FinishReason::ToolCalls });
                                yield Ok(StreamEvent::Finished { reason, tool_calls });
                            }
                            Err(detail) => yield Err(LlmError::Garbled { provider: provider.clone(), detail }),
                        }
                        return;
                    }
                    match parse_chunk(&data) {
                        Ok(parsed) => {
                            if let Some(error) = parsed.error {
                                yield Err(LlmError::Server { provider: provider.clone(), status: 200, detail: error });
                                return;
                            }
                            for delta in parsed.tool_calls {
                                calls.push(delta);
                            }
                            if let Some(r) = parsed.finish_reason {
                                reason = Some(r);
                            }
                            if !parsed.text.is_empty() {
                                yield Ok(StreamEvent::Token(parsed.text));
                            }
                        }
                        Err(detail) => {
                            yield Err(LlmError::Garbled { provider: provider.clone(), detail });
                            return;
                        }
                    }
                }
            }
        })
    }
}

/// `<base>/<path>`, whether or not the base URL ends in '/'.
fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

/// Maps an HTTP error answer to what it means for a person.
fn classify(provider: &Provider, model: &str, status: u16, body: &str) -> LlmError {
    let detail = error_message(body).unwrap_or_else(|| format!("HTTP {status}"));
    let provider = provider.id.clone();
    let model_unknown = status == 404
        || detail.to_lowercase().contains("model")
            && (detail.contains("not found") || detail.contains("does not exist"));
    match status {
        401 | 403 => LlmError::Unauthorized { provider, detail },
        429 => LlmError::RateLimited { provider, detail },
        _ if model_unknown => LlmError::UnknownModel {
            provider,
            model: model.to_owned(),
            detail,
        },
        500..=599 => LlmError::Server {
            provider,
            status,
            detail,
        },
        _ => LlmError::Rejected {
            provider,
            status,
            detail,
        },
    }
}

/// The message in an OpenAI-style error body (`{"error": {"message": ...}}` or `{"error": "..."}`).
fn error_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())?;
    Some(message.chars().take(300).collect())
}

/// Splits a server-sent-event byte stream into the `data` of each event.
#[derive(Default)]
struct SseLines {
    buffer: Vec<u8>,
    data: String,
}

impl SseLines {
    /// Feeds bytes; returns the events they completed.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data));
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
            // Comments (":"), `event:`, `id:` and `retry:` lines carry nothing we use.
        }
        events
    }
}

/// What one streamed chunk says.
#[derive(Default, Debug, PartialEq)]
struct Chunk {
    text: String,
    tool_calls: Vec<ToolCallDelta>,
    finish_reason: Option<FinishReason>,
    error: Option<String>,
}

#[derive(Debug, Default, PartialEq)]
struct ToolCallDelta {
    index: usize,
    id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
}

fn parse_chunk(data: &str) -> Result<Chunk, String> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        choices: Vec<WireChoice>,
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
        ..Chunk::default()
    };
    if let Some(choice) = wire.choices.into_iter().next() {
        chunk.text = choice.delta.content.unwrap_or_default();
        chunk.tool_calls = choice
            .delta
            .tool_calls
            .into_iter()
            .enumerate()
            .map(|(position, call)| ToolCallDelta {
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

/// Puts tool calls together from their deltas: the first delta of a call brings its id and name,
/// the following ones pieces of its arguments, all under the call's index.
#[derive(Default)]
struct ToolCallAssembler {
    calls: BTreeMap<usize, (Option<String>, String, String)>,
}

impl ToolCallAssembler {
    fn push(&mut self, delta: ToolCallDelta) {
        let entry = self.calls.entry(delta.index).or_default();
        if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
            entry.0 = Some(id);
        }
        if let Some(name) = delta.name {
            entry.1.push_str(&name);
        }
        if let Some(arguments) = delta.arguments {
            entry.2.push_str(&arguments);
        }
    }

    fn finish(&mut self) -> Result<Vec<ToolCall>, String> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, (id, name, arguments))| {
                if name.is_empty() {
                    return Err(format!("tool call {index} has no name"));
                }
                Ok(ToolCall {
                    // A few local servers send no id; the conversation still needs one.
                    id: id.unwrap_or_else(|| format!("call_{index}")),
                    name,
                    arguments: if arguments.trim().is_empty() {
                        "{}".into()
                    } else {
                        arguments
                    },
                })
            })
            .collect()
    }
}

/// Tool calls in the wire shape: `{"id", "type": "function", "function": {"name", "arguments"}}`.
mod wire_tool_calls {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ToolCall;

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
    use super::*;

    #[test]
    fn sse_lines_survive_any_split() {
        let stream =
            b"data: {\"a\":1}\n\n: keep-alive\n\ndata: one\ndata: two\r\n\r\ndata: [DONE]\n\n";
        for split in 1..stream.len() {
            let mut lines = SseLines::default();
            let mut events = lines.push(&stream[..split]);
            events.extend(lines.push(&stream[split..]));
            assert_eq!(
                events,
                ["{\"a\":1}", "one\ntwo", "[DONE]"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn tool_calls_are_assembled_from_deltas() {
        let chunks = [
            r#"{"choices":[{"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_time","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"tz\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"echo","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"UTC\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let mut assembler = ToolCallAssembler::default();
        let mut reason = None;
        for chunk in chunks {
            let parsed = parse_chunk(chunk).unwrap();
            parsed
                .tool_calls
                .into_iter()
                .for_each(|d| assembler.push(d));
            reason = parsed.finish_reason.or(reason);
        }
        assert_eq!(reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            assembler.finish().unwrap(),
            [
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
            ]
        );
    }

    #[test]
    fn messages_serialise_in_the_wire_shape() {
        let assistant = Message::Assistant {
            content: None,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&assistant).unwrap(),
            json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        );
        let back: Message =
            serde_json::from_value(serde_json::to_value(&assistant).unwrap()).unwrap();
        assert_eq!(back, assistant);
        assert_eq!(
            serde_json::to_value(Message::Tool {
                tool_call_id: "c1".into(),
                content: "ok".into()
            })
            .unwrap(),
            json!({"role": "tool", "tool_call_id": "c1", "content": "ok"})
        );
    }

    #[test]
    fn endpoints_join_with_or_without_a_final_slash() {
        for base in ["http://h:1/v1", "http://h:1/v1/"] {
            assert_eq!(
                endpoint(&Url::parse(base).unwrap(), "chat/completions").as_str(),
                "http://h:1/v1/chat/completions"
            );
        }
    }

    #[test]
    fn error_answers_are_classified() {
        let p = Provider {
            id: "p".into(),
            base_url: Url::parse("http://h/v1").unwrap(),
            api_key: None,
        };
        let body = r#"{"error":{"message":"Incorrect API key provided"}}"#;
        assert!(
            matches!(classify(&p, "m", 401, body), LlmError::Unauthorized { detail, .. } if detail == "Incorrect API key provided")
        );
        assert!(matches!(
            classify(&p, "m", 429, "{}"),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(&p, "m", 404, r#"{"error":"model 'x' not found"}"#),
            LlmError::UnknownModel { .. }
        ));
        assert!(matches!(
            classify(&p, "m", 503, "busy"),
            LlmError::Server { status: 503, .. }
        ));
        assert!(matches!(
            classify(&p, "m", 400, "{}"),
            LlmError::Rejected { status: 400, .. }
        ));
    }
}

/// The models on offer: every configured provider's models, aliases such as `fast` or `smart`, and
/// the default. A model is named `<provider>/<model>` (`ollama/llama3.2`); an alias stands for one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub providers: Vec<Provider>,
    /// `(provider id, model name)`, in the order given.
    pub models: Vec<(String, String)>,
    /// Alias → `<provider>/<model>`.
    pub aliases: Vec<(String, String)>,
    /// `<provider>/<model>` or an alias; the first model when unset.
    pub default: Option<String>,
    /// When nothing was configured and a model server on this machine was found instead, a
    /// sentence saying which (`local_models`), for the UI to show.
    pub found: Option<String>,
}

/// Why nothing can answer when no model is configured, and what to do.
pub const NO_MODEL: &str = "No model is configured yet, and none was found running on this machine, so nothing can answer. An administrator adds one with SWITCHBOARD_LLM_PROVIDERS, or starts a model server such as Ollama on this machine, which is then found by itself (see docs/models.md).";

/// A model's full name, `<provider>/<model>`.
pub fn qualified(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

impl Catalog {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The names people choose from: aliases first, then every `<provider>/<model>`.
    pub fn choices(&self) -> Vec<String> {
        self.aliases
            .iter()
            .map(|(alias, _)| alias.clone())
            .chain(self.models.iter().map(|(p, m)| qualified(p, m)))
            .collect()
    }

    /// The provider and model a chat's choice stands for, or why it cannot be answered.
    pub fn for_chat(&self, chosen: Option<&str>) -> crate::Result<(&Provider, &str)> {
        self.resolve(chosen).ok_or_else(|| {
            crate::Error::Unavailable(if self.is_empty() {
                NO_MODEL.into()
            } else {
                format!(
                    "The model '{}' chosen for this chat is no longer offered. Choose another one.",
                    chosen.unwrap_or_default()
                )
            })
        })
    }

    /// The provider and model a name stands for (an alias, `<provider>/<model>`, or nothing for
    /// the default).
    pub fn resolve(&self, name: Option<&str>) -> Option<(&Provider, &str)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(name) => name,
            None => match &self.default {
                Some(default) => default.as_str(),
                None => {
                    let (provider, model) = self.models.first()?;
                    return Some((self.provider(provider)?, model.as_str()));
                }
            },
        };
        let target = self
            .aliases
            .iter()
            .find(|(alias, _)| alias == name)
            .map(|(_, target)| target.as_str())
            .unwrap_or(name);
        let (provider, model) = target.split_once('/')?;
        let (_, model) = self
            .models
            .iter()
            .find(|(p, m)| p == provider && m == model)?;
        Some((self.provider(provider)?, model.as_str()))
    }

    fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Checks that every alias and the default name a configured model.
    pub fn validate(&self) -> Result<(), String> {
        for (alias, target) in &self.aliases {
            if self.resolve(Some(target)).is_none() || target.split_once('/').is_none() {
                return Err(format!(
                    "the alias '{alias}' stands for '{target}', which is not a configured model (models are named <provider>/<model>, from the providers' model lists)"
                ));
            }
        }
        if let Some(default) = &self.default
            && self.resolve(Some(default)).is_none()
        {
            return Err(format!(
                "the default model '{default}' is not a configured model or alias"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod catalog_tests {
    use super::*;

    fn catalog() -> Catalog {
        let provider = |id: &str| Provider {
            id: id.into(),
            base_url: Url::parse("http://h/v1").unwrap(),
            api_key: None,
        };
        Catalog {
            providers: vec![provider("openai"), provider("ollama")],
            models: vec![
                ("openai".into(), "gpt-4o".into()),
                ("ollama".into(), "llama3.2".into()),
            ],
            aliases: vec![("fast".into(), "ollama/llama3.2".into())],
            default: None,
            found: None,
        }
    }

    #[test]
    fn names_aliases_and_the_default_resolve() {
        let mut c = catalog();
        assert_eq!(c.choices(), ["fast", "openai/gpt-4o", "ollama/llama3.2"]);
        let resolved =
            |c: &Catalog, name| c.resolve(name).map(|(p, m)| (p.id.clone(), m.to_owned()));
        assert_eq!(
            resolved(&c, Some("fast")),
            Some(("ollama".into(), "llama3.2".into()))
        );
        assert_eq!(
            resolved(&c, Some("openai/gpt-4o")),
            Some(("openai".into(), "gpt-4o".into()))
        );
        assert_eq!(
            resolved(&c, None),
            Some(("openai".into(), "gpt-4o".into())),
            "the first model"
        );
        assert_eq!(resolved(&c, Some("openai/gpt-5")), None, "not offered");
        c.default = Some("fast".into());
        assert_eq!(
            resolved(&c, None),
            Some(("ollama".into(), "llama3.2".into()))
        );
        assert!(c.validate().is_ok());
        c.aliases.push(("smart".into(), "openai/o9".into()));
        assert!(c.validate().unwrap_err().contains("'smart'"));
    }

    #[test]
    fn an_empty_catalog_resolves_nothing() {
        assert!(Catalog::default().resolve(None).is_none());
        assert!(Catalog::default().is_empty());
    }
}
