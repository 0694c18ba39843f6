//! The graph's model and tools in production: the same LLM client that streams chat answers
//! (OpenAI, Ollama, vLLM, ...), and the person's own MCP connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tracing::Instrument;
use uuid::Uuid;

use super::server_key::server_keys;
use super::{AskedQuestion, Asking, Completion, Model, ToolResult, ToolSpec, Tools};
use crate::llm::{self, LlmClient, Message, Provider, StreamEvent};
use crate::mcp::elicitation::{Asked, Asker, MAX_ROUNDS, Question, Round};
use crate::mcp::{Called, Hooks, Mcp, ProgressSink};
use crate::{Database, Result};

/// Takes a model's text and thinking as they stream (a chat's live answer); `()` takes nothing.
pub trait TokenSink: Send {
    fn token(&mut self, text: &str) -> impl Future<Output = ()> + Send;

    fn thinking(&mut self, text: &str) -> impl Future<Output = ()> + Send {
        let _ = text;
        async {}
    }
}

impl TokenSink for () {
    async fn token(&mut self, _: &str) {}
}

/// A model of a provider, through the streaming client that answers chats.
pub struct LlmModel<'a> {
    pub client: &'a LlmClient,
    pub provider: &'a Provider,
    pub model: &'a str,
}

impl LlmModel<'_> {
    /// What the model is asked: `messages`, offered `tools`.
    pub fn request(&self, messages: &[Message], tools: &[llm::Tool]) -> llm::Request {
        llm::Request {
            model: self.model.to_owned(),
            messages: messages.to_vec(),
            tools: tools.to_vec(),
        }
    }

    /// Asks the model and gathers its answer, giving `sink` each piece of text as it comes.
    pub async fn complete_into(
        &self,
        messages: &[Message],
        tools: &[llm::Tool],
        sink: &mut impl TokenSink,
    ) -> std::result::Result<Completion, String> {
        let request = self.request(messages, tools);
        let asked_at = Instant::now();
        let opened = self.client.stream(self.provider, &request).await;
        read_into(opened, asked_at, sink).await
    }
}

/// Gathers the answer of a completion opened with [`LlmClient::stream`] (asked at `asked_at`),
/// giving `sink` each piece of text and thinking as it comes: the one token loop of every answer.
pub async fn read_into(
    opened: std::result::Result<llm::EventStream, llm::LlmError>,
    asked_at: Instant,
    sink: &mut impl TokenSink,
) -> std::result::Result<Completion, String> {
    let mut stream = opened.map_err(|e| e.to_string())?;
    let mut completion = Completion::default();
    while let Some(event) = stream.next().await {
        let event = event.map_err(|e| e.to_string())?;
        completion
            .first_token
            .get_or_insert_with(|| asked_at.elapsed());
        match event {
            StreamEvent::Token(text) => {
                sink.token(&text).await;
                completion.text.push_str(&text);
            }
            StreamEvent::Thinking(text) => {
                sink.thinking(&text).await;
                completion.thinking.push_str(&text);
            }
            StreamEvent::Finished {
                tool_calls,
                signature,
                usage,
                ..
            } => {
                completion.calls = tool_calls;
                completion.signature = signature;
                completion.usage = usage;
                break;
            }
        }
    }
    completion.took = asked_at.elapsed();
    Ok(completion)
}

impl Model for LlmModel<'_> {
    async fn complete(
        &self,
        messages: &[Message],
        tools: &[llm::Tool],
    ) -> std::result::Result<Completion, String> {
        self.complete_into(messages, tools, &mut ()).await
    }
}

/// One person's tools: calls go to their own connections (an idle one opens again).
pub struct McpTools<'a> {
    pub db: &'a Database,
    pub mcp: &'a Mcp,
    pub user_id: Uuid,
    /// Hears how far each call has come (by call id), when its server says.
    pub progress: Option<HearProgress>,
    /// Asks the person the questions of a call (by call id and server), when its server asks.
    pub ask: Option<AskFor>,
    /// Keeps the questions a call's server answered it with (a multi round-trip call; by call
    /// id and server): stores them, and gives their ids (they show once the pause is on disk).
    pub keep: Option<KeepFor>,
}

/// Keeps one call's questions (its id, its server's, the questions): their ids, in order.
pub type KeepFor = Arc<
    dyn Fn(&str, &str, Vec<Question>) -> futures_util::future::BoxFuture<'static, Result<Vec<Uuid>>>
        + Send
        + Sync,
>;

/// Makes the asker of one call (its id, and its server's).
pub type AskFor = Arc<dyn Fn(&str, &str) -> Asker + Send + Sync>;

/// Hears a call's progress: its id, and how far it has come.
pub type HearProgress = Arc<dyn Fn(&str, protocol::Progress) + Send + Sync>;

impl Tools for McpTools<'_> {
    /// Read from the servers' definitions, not from the connections: a server that cannot be
    /// read now has no key, so nothing approved for it runs.
    async fn server_keys(&self) -> Option<std::collections::HashMap<String, String>> {
        match server_keys(self.db, self.mcp, self.user_id).await {
            Ok(keys) => Some(keys),
            Err(e) => {
                tracing::warn!("cannot read the tool servers' definitions before a call: {e}");
                Some(Default::default())
            }
        }
    }

    async fn call(
        &self,
        call_id: &str,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
        asked: Option<&Asking>,
    ) -> ToolResult {
        let progress = self.progress.clone().map(|hear| {
            let call_id = call_id.to_owned();
            let sink: ProgressSink = Arc::new(move |progress| hear(&call_id, progress));
            sink
        });
        // The replies to what the server asked the round before go with the call.
        let replies = asked.map(|asked| Round {
            replies: asked
                .questions
                .iter()
                .filter_map(|q| q.reply.clone().map(|reply| (q.key.clone(), reply)))
                .collect(),
            state: asked.state.clone(),
        });
        let round = asked.map_or(1, |a| a.round + 1);
        let hooks = Hooks {
            progress,
            ask: self.ask.as_ref().map(|ask| ask(call_id, server)),
            replies,
        };
        // Ids and names only: the arguments and the result may be anyone's secrets.
        let span =
            tracing::info_span!("tool_call", user = %self.user_id, server, tool, call = call_id);
        let called = self
            .mcp
            .call_reporting(self.user_id, server, tool, arguments, hooks)
            .instrument(span)
            .await;
        match called {
            Ok(Called::Asked(asked)) => self.keep_asked(call_id, server, round, asked).await,
            Ok(Called::Output(output)) => ToolResult {
                is_error: output.is_error,
                text: output.for_model(),
                duration_ms: output.duration_ms,
                parts: output.parts(),
                sign_in: None,
                asking: None,
            },
            // Not run for want of a sign-in: the call waits for the person to sign in again.
            Err(crate::Error::SignIn(why)) => ToolResult {
                sign_in: Some(why.clone()),
                ..ToolResult::failed(why)
            },
            // Not reaching the tool (a timeout, a server down) is an error result for the model.
            Err(e) => ToolResult::failed(e.to_string()),
        }
    }
}

impl McpTools<'_> {
    /// Keeps what a call's server asked the person (round `round` of the call): the call then
    /// waits for the replies. Refused past [`MAX_ROUNDS`], or where nobody can be asked.
    async fn keep_asked(
        &self,
        call_id: &str,
        server: &str,
        round: u32,
        asked: Asked,
    ) -> ToolResult {
        let refused = ToolResult::failed;
        if round > MAX_ROUNDS {
            return refused(format!(
                "The tool server '{server}' kept asking questions ({MAX_ROUNDS} rounds); Switchboard stopped the call there."
            ));
        }
        let Some(keep) = &self.keep else {
            return refused(format!(
                "The tool server '{server}' asked the person something, which cannot be asked here."
            ));
        };
        let (keys, questions): (Vec<String>, Vec<Question>) = asked.questions.into_iter().unzip();
        match keep(call_id, server, questions.clone()).await {
            Ok(ids) => ToolResult {
                is_error: false,
                asking: Some(Asking {
                    questions: keys
                        .into_iter()
                        .zip(ids)
                        .zip(questions)
                        .map(|((key, id), question)| AskedQuestion {
                            key,
                            id: id.to_string(),
                            question,
                            reply: None,
                        })
                        .collect(),
                    state: asked.state,
                    round,
                }),
                ..ToolResult::failed(
                    "Waiting for the person's answer to the tool server's question.".into(),
                )
            },
            Err(e) => {
                tracing::error!("cannot keep a tool server's questions: {e}");
                refused(format!(
                    "The tool server '{server}' asked the person something, and Switchboard could not keep the question."
                ))
            }
        }
    }
}

/// The tools a chat's run may use: the enabled tools of the person's connected servers, each with
/// its server's key now. None when the chat is not theirs.
pub async fn chat_tools(
    db: &Database,
    mcp: &Mcp,
    user_id: Uuid,
    chat_id: Uuid,
) -> Result<Option<Vec<ToolSpec>>> {
    let (tools, keys) = tokio::join!(
        mcp.chat_tools(user_id, chat_id),
        server_keys(db, mcp, user_id)
    );
    let keys = keys?;
    Ok(tools?.map(|tools| {
        tools
            .into_iter()
            .filter(|t| t.enabled)
            .map(|t| ToolSpec {
                server_key: keys.get(&t.server_id).cloned().unwrap_or_default(),
                server: t.server_id,
                description: t.tool.description.clone().unwrap_or_default(),
                input_schema: t.tool.input_schema,
                annotations: t.tool.annotations,
                tool: t.tool.name,
            })
            .collect()
    }))
}
