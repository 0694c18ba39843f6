//! The LLM client: one streaming interface over the providers' own wire formats. A provider's
//! [`ProviderKind`] says which it speaks: OpenAI's Chat Completions ([`openai`]: OpenAI, Azure
//! OpenAI, Ollama, vLLM, llama.cpp's server, LM Studio, LiteLLM, OpenRouter) or Anthropic's
//! Messages API ([`anthropic`]).
//!
//! [`LlmClient::stream`] sends a [`Request`] and yields [`StreamEvent`]s: the answer's text and
//! the model's thinking as they arrive, then one `Finished` with the tool calls the model asked
//! for (assembled from their pieces) and what the answer used. Connection failures, rate limits and
//! 5xx answers before the first token are retried with backoff; every other failure is an
//! [`LlmError`] whose `Display` tells a person what happened and what to do.

mod anthropic;
mod breaker;
mod catalog;
mod openai;
mod sse;

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

pub use catalog::{Catalog, NO_MODEL, qualified};

use crate::error::chain;

/// The wire format a provider speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI's Chat Completions, which most servers speak.
    #[default]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Anthropic];

    /// The setting's value: `openai` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One configured endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// Short name used in the model selector (`openai`, `local`).
    pub id: String,
    pub kind: ProviderKind,
    /// The API's base URL, up to and including `/v1` (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434/v1` for Ollama, `https://api.anthropic.com/v1`).
    pub base_url: Url,
    pub api_key: Option<String>,
    /// Tokens an Anthropic model may think for before it answers (extended thinking); None: it
    /// answers without. OpenAI-compatible reasoning models think by themselves.
    pub thinking_budget: Option<u32>,
    /// The tokens its models take in one request (their context window), when known: a longer
    /// conversation is trimmed to fit before it is sent.
    pub context_window: Option<u32>,
}

impl Provider {
    /// An OpenAI-compatible provider without extended thinking.
    pub fn new(id: impl Into<String>, base_url: Url, api_key: Option<String>) -> Self {
        Self {
            id: id.into(),
            kind: ProviderKind::OpenAi,
            base_url,
            api_key,
            thinking_budget: None,
            context_window: None,
        }
    }

    pub fn with_kind(mut self, kind: ProviderKind) -> Self {
        self.kind = kind;
        self
    }
}

/// A message of the conversation, as Switchboard keeps it (in checkpoints too); each wire format
/// writes it its own way.
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
            with = "openai::wire_tool_calls"
        )]
        tool_calls: Vec<ToolCall>,
        /// What the model thought before this turn: never given back as answer text (Anthropic
        /// gets its signed thinking back within a tool exchange, as it requires).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasoning: Option<Reasoning>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl Message {
    /// An assistant turn of text and calls, with no thinking.
    pub fn assistant(content: Option<String>, tool_calls: Vec<ToolCall>) -> Self {
        Message::Assistant {
            content,
            tool_calls,
            reasoning: None,
        }
    }
}

/// A model turn's thinking: its text, and the signature Anthropic puts on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reasoning {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
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

/// The tokens one completion used, as the provider counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// What a stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// More of the answer's text.
    Token(String),
    /// More of the model's thinking, before or between its text.
    Thinking(String),
    /// The end: why, the tool calls the model asked for (empty when none), the tokens used when
    /// the provider said, and the signature of the thinking (Anthropic's).
    Finished {
        reason: FinishReason,
        tool_calls: Vec<ToolCall>,
        usage: Option<Usage>,
        signature: Option<String>,
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
    #[error(
        "The model provider '{provider}' is overloaded ({detail}). Try again in a moment, or choose another model."
    )]
    Overloaded { provider: String, detail: String },
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
    #[error(
        "The model provider '{provider}' sent more than {megabytes} MB for one answer, so it was cut off there. Try again, or ask for a shorter answer."
    )]
    TooLarge { provider: String, megabytes: usize },
    #[error(
        "The model provider '{provider}' is marked down after failing repeatedly; it is tried again in {seconds} s. Choose another model, or try again then."
    )]
    Down { provider: String, seconds: u64 },
}

impl LlmError {
    /// The provider could not answer now (down, failing, overloaded, rate-limited, marked down):
    /// another model may answer instead.
    pub fn is_outage(&self) -> bool {
        self.is_retryable() || matches!(self, LlmError::Down { .. })
    }

    /// Worth another try before anything has been streamed.
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Unreachable { .. }
                | LlmError::RateLimited { .. }
                | LlmError::Server { .. }
                | LlmError::Overloaded { .. }
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
    /// How long a provider that kept failing is marked down (see [`breaker`]).
    pub cool_off: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            attempts: 3,
            backoff: Duration::from_millis(500),
            cool_off: Duration::from_secs(60),
        }
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// Talks to any number of providers; cheap to clone.
#[derive(Clone, Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    options: ClientOptions,
    breaker: breaker::Breaker,
}

impl LlmClient {
    pub fn new(options: ClientOptions) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's settings are valid");
        let breaker = breaker::Breaker::new(options.cool_off);
        Self {
            http,
            options,
            breaker,
        }
    }

    /// The providers marked down now, after failing repeatedly.
    pub fn down(&self) -> Vec<String> {
        self.breaker.down()
    }

    /// Starts a streamed completion. Errors before the answer starts come back here (after the
    /// retries); errors after, as the stream's last item. A provider marked down is not asked.
    pub async fn stream(
        &self,
        provider: &Provider,
        request: &Request,
    ) -> Result<EventStream, LlmError> {
        if let Some(left) = self.breaker.down_for(&provider.id) {
            return Err(LlmError::Down {
                provider: provider.id.clone(),
                seconds: left.as_secs().max(1),
            });
        }
        let opened = self.open_with_retries(provider, request).await;
        match &opened {
            Ok(_) => self.breaker.succeeded(&provider.id),
            Err(e) if e.is_retryable() => self.breaker.failed(&provider.id),
            // A refused key or an unknown model is no outage.
            Err(_) => {}
        }
        opened
    }

    async fn open_with_retries(
        &self,
        provider: &Provider,
        request: &Request,
    ) -> Result<EventStream, LlmError> {
        let mut attempt = 1;
        let mut backoff = self.options.backoff;
        loop {
            match self.open(provider, request).await {
                Ok(response) => {
                    let idle = self.options.idle_timeout;
                    let id = provider.id.clone();
                    return Ok(match provider.kind {
                        ProviderKind::OpenAi => {
                            sse::events(response, idle, openai::Decoder::new(id))
                        }
                        ProviderKind::Anthropic => {
                            sse::events(response, idle, anthropic::Decoder::new(id))
                        }
                    });
                }
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
        match provider.kind {
            ProviderKind::Anthropic => {
                let http = anthropic::request(&self.http, provider, request);
                self.send(provider, request, http).await
            }
            ProviderKind::OpenAi => {
                let http = openai::request(&self.http, provider, request, true);
                match self.send(provider, request, http).await {
                    // A server that takes no `stream_options` (strict validation) is asked
                    // again without: its answer then comes without usage, which is estimated.
                    Err(LlmError::Rejected { status, detail, .. })
                        if matches!(status, 400 | 422) && detail.contains("stream_options") =>
                    {
                        let http = openai::request(&self.http, provider, request, false);
                        self.send(provider, request, http).await
                    }
                    sent => sent,
                }
            }
        }
    }

    async fn send(
        &self,
        provider: &Provider,
        request: &Request,
        http: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, LlmError> {
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
}

/// `<base>/<path>`, whether or not the base URL ends in '/'.
fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

/// Maps an HTTP error answer to what it means for a person. Both formats put the message at
/// `error.message` (Anthropic also names the error's type there: `overloaded_error`, ...).
fn classify(provider: &Provider, model: &str, status: u16, body: &str) -> LlmError {
    let (message, kind) = error_message(body);
    let detail = message.unwrap_or_else(|| format!("HTTP {status}"));
    let provider = provider.id.clone();
    let model_unknown = status == 404
        || detail.to_lowercase().contains("model")
            && (detail.contains("not found") || detail.contains("does not exist"));
    match status {
        401 | 403 => LlmError::Unauthorized { provider, detail },
        429 => LlmError::RateLimited { provider, detail },
        529 => LlmError::Overloaded { provider, detail },
        _ if kind.as_deref() == Some("overloaded_error") => {
            LlmError::Overloaded { provider, detail }
        }
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

/// The message and type of an error body (`{"error": {"message", "type"}}` or `{"error": "..."}`),
/// the message at most 300 characters.
fn error_message(body: &str) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return (None, None);
    };
    let Some(error) = value.get("error") else {
        return (None, None);
    };
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .map(|m| m.chars().take(300).collect());
    let kind = error.get("type").and_then(Value::as_str).map(str::to_owned);
    (message, kind)
}

/// One piece of a tool call as it streams: the first piece of a call brings its id and name, the
/// following ones pieces of its arguments, all under the call's index.
#[derive(Debug, Default, PartialEq)]
struct CallPiece {
    index: usize,
    id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
}

/// Puts tool calls together from their pieces.
#[derive(Default)]
struct ToolCallAssembler {
    calls: std::collections::BTreeMap<usize, (Option<String>, String, String)>,
}

impl ToolCallAssembler {
    fn push(&mut self, piece: CallPiece) {
        let entry = self.calls.entry(piece.index).or_default();
        if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
            entry.0 = Some(id);
        }
        if let Some(name) = piece.name {
            entry.1.push_str(&name);
        }
        if let Some(arguments) = piece.arguments {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let p = Provider::new("p", Url::parse("http://h/v1").unwrap(), None);
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
        // Anthropic's.
        let overloaded =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(
            matches!(classify(&p, "m", 529, overloaded), LlmError::Overloaded { detail, .. } if detail == "Overloaded")
        );
        assert!(classify(&p, "m", 529, overloaded).is_retryable());
    }

    #[test]
    fn provider_kinds_read_back_from_their_names() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::parse("google"), None);
    }
}
