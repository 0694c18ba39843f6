//! The agent graph: a person's model and tools, run as an explicit state machine whose every step
//! is checkpointed, and which pauses for the person's approval before any tool runs.
//!
//! ```text
//! call_model ──(no tool calls)──────────────────────────────► done
//!     │ (tool calls)
//!     ▼
//! await_approval ──(every call decided; ≥1 approved)──► run_tools ──► call_model
//!     │ (all rejected)
//!     ▼
//! humanize (the model is told what was declined and why) ──► done
//! ```
//!
//! [`RunState`] is the run's own state (its model turns and tool results, the calls of the last
//! turn with their decisions and results, the step count) and serialises to JSON; the conversation
//! it answers is the chat's, read from its messages and given in [`Deps::history`], so a
//! checkpoint's size follows the run, not the chat. Node functions act on the state alone, given a
//! [`Model`] and [`Tools`]. A chat without tools runs the same graph with none. [`run`] advances a
//! state until it pauses for approval or ends, saving a checkpoint after every step ([`store`]);
//! the person's decisions move a paused run on ([`decisions`]). A call whose server answers with
//! questions for the person (an MCP multi round-trip call) sends the run back to `await_approval`,
//! approved and [`Asking`]; the replies move it on as decisions do, and the call is made again
//! with them. Tool calls are marked running in a
//! checkpoint that is on disk *before* they run (the decision's own), so a call cut off by a crash
//! is reported interrupted, never run a second time.
//!
//! | module | owns |
//! |---|---|
//! | [`store`] | checkpoints in PostgreSQL, and this instance's memory of the runs it paused |
//! | [`decisions`] | the person's decisions applied to a paused run, all or none |
//! | [`history`] | the conversation a run answers, as its model is given it |
//! | [`live`] | the graph's model and tools in production (the LLM client, MCP connections) |
//! | [`policy`], [`server_key`] | standing approvals, bound to the server they were given for |
//! | [`tool_search`] | which of many tools a model call is offered, and the search it may ask for |
//! | [`views`] | a call as clients see it |

pub mod decisions;
pub mod history;
pub mod live;
pub mod policy;
pub mod server_key;
pub mod store;
pub mod tool_search;
pub mod views;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chats::Usage;
use crate::llm::{self, Message};
use crate::mcp::Annotations;
use crate::mcp::elicitation::{Question, Reply};

/// Separates server and tool in the names the model sees (`everything__echo`): server ids have
/// no `_`, and model tool names allow `[A-Za-z0-9_-]`.
pub const SEPARATOR: &str = "__";

/// The step a run takes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    CallModel,
    AwaitApproval,
    RunTools,
    Humanize,
    Done,
}

/// Who decided a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Decider {
    /// The person, on the approval card.
    Person,
    /// One of the person's policies: `tool`, `server` or `read_only`.
    Policy { policy: String },
}

/// A decision on one tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Run it; with `arguments` when the person edited them.
    Approve {
        #[serde(flatten)]
        by: Decider,
        arguments: Option<Value>,
    },
    Reject {
        #[serde(flatten)]
        by: Decider,
        reason: Option<String>,
    },
}

impl Decision {
    pub fn is_approval(&self) -> bool {
        matches!(self, Decision::Approve { .. })
    }
}

/// What a tool call returned (or why it did not run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub is_error: bool,
    /// What the model is told.
    pub text: String,
    pub duration_ms: u64,
    /// What the person is shown, part by part (none when the text says it all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<protocol::ResultPart>,
    /// It did not run: the person must sign in to its server (again) first; what to tell them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<String>,
    /// It did not finish: its server asked the person something (the questions are stored), and
    /// it is to be made again with their replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asking: Option<Asking>,
}

impl ToolResult {
    /// A call that failed, or never reached its tool: what the model is told.
    pub fn failed(text: String) -> Self {
        Self {
            is_error: true,
            text,
            duration_ms: 0,
            parts: Vec::new(),
            sign_in: None,
            asking: None,
        }
    }
}

/// What a call's server asked the person in answer to it (an MCP multi round-trip call): the
/// call waits, as a call waits for a decision, and is made again with the replies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Asking {
    pub questions: Vec<AskedQuestion>,
    /// The server's state, given back with the replies as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The rounds of questions the call has asked, this one included.
    pub round: u32,
}

/// One question of an [`Asking`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AskedQuestion {
    /// The key its reply goes back to the server under.
    pub key: String,
    /// Its id in `tool_questions` (the card's).
    pub id: String,
    /// What it asks (as in `tool_questions`): its card is shown from the checkpoint, once the
    /// pause it waits in is on disk.
    pub question: Question,
    pub reply: Option<Reply>,
}

impl Asking {
    /// Every question has its reply.
    pub fn is_answered(&self) -> bool {
        self.questions.iter().all(|q| q.reply.is_some())
    }

    /// The first question without its reply: the one its card shows.
    pub fn next(&self) -> Option<&AskedQuestion> {
        self.questions.iter().find(|q| q.reply.is_none())
    }
}

/// What a reply to a question is told when the answer no longer waits for it.
pub const QUESTION_GONE: &str = "This question no longer waits: it was answered, or its tool call ended. Reload the chat to see where it stands.";

/// Where a call stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CallState {
    /// Waiting for a decision (or, once decided, for its turn to run).
    Waiting,
    /// Started; its result is not recorded yet.
    Running,
    Finished {
        result: ToolResult,
    },
    /// It was running when the server stopped: it may or may not have had its effect, and is not
    /// run again.
    Interrupted,
}

/// A tool call the model asked for in its last turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Switchboard's id for the call ([`new_call_id`]), unique whatever id the provider gave: the
    /// model's messages carry it too, and decisions are keyed by it.
    pub id: String,
    /// The model call of the run that asked for it (the run's `steps` then): a decision names it,
    /// so that one made for an earlier turn never lands on a later one.
    #[serde(default)]
    pub turn: u32,
    pub server: String,
    /// The key of the server's definition when the call was asked for ([`ToolSpec::server_key`]):
    /// an approval runs it only on that definition, and "always allow" binds to it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_key: String,
    pub tool: String,
    /// The arguments as the model wrote them (an object, when they were valid JSON).
    pub arguments: Value,
    /// What the tool says about itself (read-only, destructive, open-world), for the card.
    #[serde(default)]
    pub annotations: Annotations,
    pub decision: Option<Decision>,
    pub state: CallState,
    /// Approved once, it met an expired sign-in to its server and did not run: it waits for a
    /// decision again, which the person makes once they have signed in. What to tell them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<String>,
    /// Its server asked the person something: it waits for their replies, and runs again with
    /// them (see [`Asking`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asking: Option<Asking>,
}

impl Call {
    /// The most of an earlier answer's tool result a later answer's model is given (in
    /// characters): a long one (a whole file, say) would otherwise fill every later request.
    pub const MAX_EARLIER_RESULT: usize = 8_000;

    /// This call as a later answer's model is given it: how it was asked for (with the arguments
    /// it ran with), and the tool message that answers it, as the run told the model.
    pub fn in_history(&self) -> (llm::ToolCall, Message) {
        let arguments = match self.effective_arguments() {
            arguments @ Value::Object(_) => arguments.to_string(),
            // Arguments that were not a JSON object never reached the tool.
            _ => "{}".to_owned(),
        };
        let asked = llm::ToolCall {
            id: self.id.clone(),
            name: model_name(&self.server, &self.tool),
            arguments,
        };
        let mut content = answer_of(self);
        if let Some(cut) = end_of_chars(&content, Self::MAX_EARLIER_RESULT) {
            let left = content[cut..].chars().count();
            content.truncate(cut);
            content.push_str(&format!(
                "\n… ({left} more characters, cut from this earlier result)"
            ));
        }
        let answer = Message::Tool {
            tool_call_id: self.id.clone(),
            content,
        };
        (asked, answer)
    }

    /// The arguments the tool gets: the person's edit, or the model's.
    pub fn effective_arguments(&self) -> &Value {
        match &self.decision {
            Some(Decision::Approve {
                arguments: Some(edited),
                ..
            }) => edited,
            _ => &self.arguments,
        }
    }
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum End {
    /// The model answered.
    Answered,
    /// Every call was declined, and the model said so.
    Declined,
    /// The run took the most model calls it may.
    StepLimit,
    /// The person stopped it.
    Stopped,
    /// The model could not be reached, or failed; the message says how.
    Failed { message: String },
    /// The server running it stopped while its tools ran (they were not run again).
    Interrupted,
}

/// Everything a run is, as checkpointed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct RunState {
    pub next: Step,
    /// This run's own messages: its model turns and what its tools answered, in order. The
    /// conversation before them (the person's question last) is not kept here: see [`Deps::history`].
    pub messages: Vec<Message>,
    /// The calls of the model's last turn that asked for tools.
    pub calls: Vec<Call>,
    /// The calls of this run's earlier turns, finished, in order.
    #[serde(default)]
    pub earlier: Vec<Call>,
    /// Model calls made so far.
    pub steps: u32,
    pub max_steps: u32,
    pub end: Option<End>,
    /// What the run's model calls used so far.
    #[serde(default)]
    pub usage: Usage,
    /// The tools the run's tool searches found (model names): offered from then on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<String>,
}

/// A checkpoint as stored, of this version or an earlier one: before 2026-12-05 a checkpoint kept
/// the whole conversation in `messages`, this run's own from `answer_from` on.
#[derive(Deserialize)]
struct Stored {
    next: Step,
    messages: Vec<Message>,
    calls: Vec<Call>,
    #[serde(default)]
    earlier: Vec<Call>,
    #[serde(default)]
    answer_from: usize,
    steps: u32,
    max_steps: u32,
    end: Option<End>,
    #[serde(default)]
    usage: Usage,
    #[serde(default)]
    found: Vec<String>,
}

impl From<Stored> for RunState {
    fn from(mut stored: Stored) -> Self {
        let from = stored.answer_from.min(stored.messages.len());
        stored.messages.drain(..from);
        Self {
            next: stored.next,
            messages: stored.messages,
            calls: stored.calls,
            earlier: stored.earlier,
            steps: stored.steps,
            max_steps: stored.max_steps,
            end: stored.end,
            usage: stored.usage,
            found: stored.found,
        }
    }
}

/// What a decision is told when the answer, or the turn of it, that it was made for no longer
/// waits for one (a second click, a stale tab, a replayed request): nothing is run.
pub const OUT_OF_DATE: &str = "This approval is out of date: the answer it was made for is not waiting for it any more (it was decided elsewhere, stopped, or has moved on). Nothing was run. Reload the chat to see what waits now.";

/// The most model calls a run makes unless configured otherwise.
pub const DEFAULT_MAX_STEPS: u32 = 10;

impl RunState {
    /// A new run, which makes at most `max_steps` model calls.
    pub fn new(max_steps: u32) -> Self {
        Self {
            next: Step::CallModel,
            messages: Vec::new(),
            calls: Vec::new(),
            earlier: Vec::new(),
            steps: 0,
            max_steps,
            end: None,
            usage: Usage::default(),
            found: Vec::new(),
        }
    }

    /// What the model thought, turn after turn (empty when it did not say).
    pub fn answer_thinking(&self) -> String {
        let thoughts: Vec<&str> = self
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Assistant {
                    reasoning: Some(r), ..
                } if !r.text.trim().is_empty() => Some(r.text.as_str()),
                _ => None,
            })
            .collect();
        thoughts.join("\n\n")
    }

    /// Counts what a model call given `asked` used: the provider's counts, or estimates from the
    /// characters (about four a token) when it gave none; its time to the first token when it is
    /// the run's first, and its writing time.
    fn count(&mut self, asked: &[Message], completion: &Completion) {
        let usage = &mut self.usage;
        let (input, output) = match completion.usage {
            Some(u) => (u.input_tokens, u.output_tokens),
            None => {
                usage.estimated = true;
                let written = completion.text.len()
                    + completion.thinking.len()
                    + completion
                        .calls
                        .iter()
                        .map(|c| c.name.len() + c.arguments.len())
                        .sum::<usize>();
                (
                    estimate(asked.iter().map(message_chars).sum()),
                    estimate(written),
                )
            }
        };
        usage.input_tokens = usage.input_tokens.saturating_add(input);
        usage.output_tokens = usage.output_tokens.saturating_add(output);
        if self.steps <= 1 && usage.first_token_ms.is_none() {
            usage.first_token_ms = completion.first_token.map(millis);
        }
        usage.duration_ms = usage.duration_ms.saturating_add(millis(completion.took));
        usage.fallback.clone_from(&completion.fallback);
    }

    /// The calls still waiting for the person.
    pub fn undecided(&self) -> impl Iterator<Item = &Call> {
        self.calls
            .iter()
            .filter(|c| c.state == CallState::Waiting && c.decision.is_none())
    }

    /// The calls whose server's questions still wait for the person's replies.
    pub fn unanswered(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(|c| {
            c.state == CallState::Waiting && c.asking.as_ref().is_some_and(|a| !a.is_answered())
        })
    }

    /// Records the person's reply to a question a waiting call's server asked. Refused (with a
    /// message) when no such question waits, or it has its reply: a call never gets two. With
    /// the last reply (every call decided), the run moves on, in the same checkpoint.
    pub fn reply(&mut self, question_id: &str, reply: Reply) -> Result<(), String> {
        if self.next != Step::AwaitApproval {
            return Err(QUESTION_GONE.into());
        }
        let question = self
            .calls
            .iter_mut()
            .filter(|c| c.state == CallState::Waiting)
            .filter_map(|c| c.asking.as_mut())
            .flat_map(|a| a.questions.iter_mut())
            .find(|q| q.id == question_id && q.reply.is_none())
            .ok_or_else(|| QUESTION_GONE.to_owned())?;
        question.reply = Some(reply);
        await_approval(self);
        Ok(())
    }

    /// Records a decision on a call that awaits one. Refused (with a message) for a call that is
    /// not pending, or was decided already: a tool never runs twice because of a double click.
    pub fn decide(&mut self, call_id: &str, decision: Decision) -> Result<(), String> {
        self.decide_all(vec![(call_id.to_owned(), decision)])
    }

    /// Records several decisions at once (approve all, reject all), all or none: one that is
    /// refused (see [`RunState::decide`]) leaves the state as it was.
    pub fn decide_all(&mut self, decisions: Vec<(String, Decision)>) -> Result<(), String> {
        if self.next != Step::AwaitApproval {
            return Err(OUT_OF_DATE.into());
        }
        if decisions.is_empty() {
            return Err("No decision was given.".into());
        }
        let mut decided = self.calls.clone();
        for (call_id, decision) in decisions {
            let call = decided
                .iter_mut()
                .find(|c| c.id == call_id && c.state == CallState::Waiting)
                .ok_or_else(|| {
                    format!("There is no tool call '{call_id}' waiting for a decision.")
                })?;
            if call.decision.is_some() {
                return Err(format!(
                    "The tool call '{call_id}' has been decided already."
                ));
            }
            call.decision = Some(decision);
            call.sign_in = None;
        }
        self.calls = decided;
        // The last decision moves the run on (to running tools, or to the humane answer), in
        // the same checkpoint.
        await_approval(self);
        Ok(())
    }

    /// Every call this run has asked for, earlier turns first.
    pub fn all_calls(&self) -> impl Iterator<Item = &Call> {
        self.earlier.iter().chain(&self.calls)
    }

    /// The answer this run has written: its model turns' text, in order.
    pub fn answer_text(&self) -> String {
        let texts: Vec<&str> = self
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Assistant {
                    content: Some(text),
                    ..
                } if !text.trim().is_empty() => Some(text.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n\n")
    }

    /// The turn whose calls wait for decisions, when the run waits.
    pub fn turn(&self) -> Option<u32> {
        if self.next != Step::AwaitApproval {
            return None;
        }
        self.calls.first().map(|c| c.turn)
    }

    /// Every call of the turn has a decision: the run may resume.
    pub fn is_decided(&self) -> bool {
        self.next != Step::AwaitApproval
    }

    /// Calls marked running did not finish (their run stopped, or its server died while they ran):
    /// they are interrupted, and never run again.
    pub fn interrupt_running(&mut self) {
        for call in self
            .calls
            .iter_mut()
            .filter(|c| c.state == CallState::Running)
        {
            call.state = CallState::Interrupted;
        }
    }

    /// Ends a run whose server died while its calls ran: they are interrupted, never run again.
    pub fn abandon(&mut self) {
        self.halt(End::Interrupted);
    }

    /// Ends the run (the person pressed Stop); calls not yet run are not run.
    pub fn stop(&mut self) {
        self.halt(End::Stopped);
    }

    /// Ends the run as `end` (stopped by the person, or interrupted by a shutdown): calls running
    /// are interrupted, calls not yet run are not run.
    pub fn halt(&mut self, end: End) {
        self.interrupt_running();
        self.finish(end);
    }

    fn finish(&mut self, end: End) {
        self.end = Some(end);
        self.next = Step::Done;
    }
}

/// A tool as the model is offered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub server: String,
    /// What identifies the server's definition now (see [`server_key`]); empty when unknown,
    /// which no policy matches.
    #[serde(default)]
    pub server_key: String,
    pub tool: String,
    pub description: String,
    pub input_schema: Value,
    pub annotations: Annotations,
}

/// The longest tool name OpenAI-compatible APIs take.
const MAX_MODEL_NAME: usize = 64;

impl ToolSpec {
    /// The name the model sees: server and tool, so two servers' tools never collide. Providers
    /// take only `[A-Za-z0-9_-]{1,64}`: a name with other characters, or a longer one, is cleaned
    /// and shortened, with a hash of the whole name so that it stays unique.
    pub fn model_name(&self) -> String {
        model_name(&self.server, &self.tool)
    }
}

/// The name the model sees for `server`'s `tool` (see [`ToolSpec::model_name`]); a call of a tool
/// the model was not offered (no server) keeps the model's own name, cleaned.
fn model_name(server: &str, tool: &str) -> String {
    let name = if tool.is_empty() {
        "unnamed_tool".to_owned()
    } else if server.is_empty() {
        tool.to_owned()
    } else {
        format!("{server}{SEPARATOR}{tool}")
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.len() <= MAX_MODEL_NAME && name.chars().all(allowed) {
        return name;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let clean: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(MAX_MODEL_NAME - hash.len() - 1)
        .collect();
    format!("{clean}_{hash}")
}

/// What the model answered: its text, the tools it asked for, and what it thought first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub calls: Vec<llm::ToolCall>,
    /// The model's thinking (reasoning models), never part of the answer's text.
    pub thinking: String,
    /// The provider's signature on the thinking (Anthropic's), given back with it.
    pub signature: Option<String>,
    /// The tokens it used, when the provider said.
    pub usage: Option<llm::Usage>,
    /// From asking to the first text or thought; none when nothing came.
    pub first_token: Option<Duration>,
    /// From asking to the end.
    pub took: Duration,
    /// Another model than the one chosen wrote it (the chosen could not answer).
    pub fallback: Option<crate::chats::Fallback>,
}

impl Completion {
    /// The thinking, as the model's turn keeps it.
    fn reasoning(&self) -> Option<llm::Reasoning> {
        (!self.thinking.is_empty() || self.signature.is_some()).then(|| llm::Reasoning {
            text: self.thinking.clone(),
            signature: self.signature.clone(),
        })
    }
}

/// The model a run talks to.
pub trait Model: Send + Sync {
    fn complete(
        &self,
        messages: &[Message],
        tools: &[llm::Tool],
    ) -> impl Future<Output = Result<Completion, String>> + Send;

    /// The text of a completion cut off before it returned (the run was stopped while the model
    /// wrote), so that the answer keeps what the person saw; empty when none was.
    fn cut_off_text(&self) -> String {
        String::new()
    }
}

/// The tools a run may use.
pub trait Tools: Send + Sync {
    /// Runs the call `call_id` of `server`'s `tool`; `asked`, when its server asked the person
    /// something the time before, holds their replies.
    fn call(
        &self,
        call_id: &str,
        server: &str,
        tool: &str,
        arguments: serde_json::Map<String, Value>,
        asked: Option<&Asking>,
    ) -> impl Future<Output = ToolResult> + Send;

    /// The key of each server's definition as it is now, by server id (a server the person no
    /// longer has is missing), for the last check before approved calls run; None when these
    /// tools cannot tell (then the keys of the run's tools are checked).
    fn server_keys(&self) -> impl Future<Output = Option<HashMap<String, String>>> + Send {
        std::future::ready(None)
    }
}

/// The person's standing approvals. Each of a tool or a server holds the key of the server's
/// definition it was given for, and allows only while the server still has that key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policies {
    /// `(server, tool)` pairs always allowed, with their server's key.
    pub tools: HashMap<(String, String), String>,
    /// Servers whose every tool is always allowed, with their key.
    pub servers: HashMap<String, String>,
    /// Tools that declare themselves read-only are allowed.
    pub read_only: bool,
}

impl Policies {
    /// The policy that allows a call of this tool, if one does.
    pub fn allows(&self, spec: &ToolSpec) -> Option<&'static str> {
        let live = |key: Option<&String>| {
            key.is_some_and(|key| !key.is_empty() && *key == spec.server_key)
        };
        if live(self.tools.get(&(spec.server.clone(), spec.tool.clone()))) {
            Some("tool")
        } else if live(self.servers.get(&spec.server)) {
            Some("server")
        } else if self.read_only && spec.annotations.read_only {
            Some("read_only")
        } else {
            None
        }
    }
}

/// What a run has to work with.
pub struct Deps<'a, M, T> {
    /// The conversation the run answers, as the model is given it, the person's question last.
    pub history: &'a [Message],
    pub model: &'a M,
    pub tools: &'a T,
    /// The tools this run may use (the chat's enabled tools of the person's connected servers).
    pub specs: &'a [ToolSpec],
    pub policies: &'a Policies,
    /// Over this many tools, the model is offered a search and a few of them (see
    /// [`tool_search`]); 0: all, however many.
    pub search_over: usize,
}

/// How a step left the run.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go on with `state.next`.
    Continue,
    /// Waiting for the person's decisions.
    Paused,
}

/// Runs the step the state is at.
pub async fn step<M: Model, T: Tools>(state: &mut RunState, deps: &Deps<'_, M, T>) -> Outcome {
    match state.next {
        Step::CallModel => call_model(state, deps).await,
        Step::AwaitApproval => await_approval(state),
        Step::RunTools => run_tools(state, deps).await,
        Step::Humanize => humanize(state, deps).await,
        Step::Done => Outcome::Paused,
    }
}

async fn call_model<M: Model, T: Tools>(state: &mut RunState, deps: &Deps<'_, M, T>) -> Outcome {
    if state.steps >= state.max_steps {
        state.finish(End::StepLimit);
        return Outcome::Continue;
    }
    state.steps += 1;
    let given = conversation(state, deps);
    let offer = tool_search::offer(deps.specs, &given, &state.found, deps.search_over);
    let searching = offer.searched.is_some();
    if let Some(tools) = offer.searched {
        state.usage.offered.push(protocol::Offered {
            turn: state.steps,
            of: u32::try_from(deps.specs.len()).unwrap_or(u32::MAX),
            tools,
        });
    }
    let completion = match deps.model.complete(&given, &offer.tools).await {
        Ok(completion) => {
            state.count(&given, &completion);
            completion
        }
        Err(message) => {
            state.finish(End::Failed { message });
            return Outcome::Continue;
        }
    };
    let reasoning = completion.reasoning();
    let mut asked = completion.calls;
    // The provider's ids may repeat from turn to turn (or be missing): Switchboard's own replace
    // them, in the history the model is given too, so that each id names one call only.
    for call in &mut asked {
        call.id = new_call_id();
    }
    state.messages.push(Message::Assistant {
        reasoning,
        content: (!completion.text.is_empty()).then_some(completion.text),
        tool_calls: asked.clone(),
    });
    if asked.is_empty() {
        // `calls` keeps the last turn's calls, with their results, for the record.
        state.finish(End::Answered);
        return Outcome::Continue;
    }
    let finished = std::mem::take(&mut state.calls);
    state.earlier.extend(finished);
    let turn = state.steps;
    let mut found = Vec::new();
    state.calls = asked
        .into_iter()
        .map(|asked| {
            if searching && asked.name == tool_search::SEARCH_TOOL {
                search_call(asked, turn, deps.specs, &mut found)
            } else {
                call_of(asked, turn, deps.specs, deps.policies)
            }
        })
        .collect();
    for name in found {
        if !state.found.contains(&name) {
            state.found.push(name);
        }
    }
    state.next = Step::AwaitApproval;
    // Nothing waits for the person when the policies decided every call (or none could run): the
    // run goes on in this same step, so the answer is never shown waiting.
    if state.undecided().next().is_none() {
        return await_approval(state);
    }
    Outcome::Continue
}

/// Tokens in `chars` characters, as estimated when a provider does not count them.
pub(crate) fn estimate(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// The characters of a message the model is given.
pub(crate) fn message_chars(message: &Message) -> usize {
    match message {
        Message::System { content } | Message::User { content } => content.len(),
        Message::Tool { content, .. } => content.len(),
        Message::Assistant {
            content,
            tool_calls,
            ..
        } => {
            content.as_ref().map_or(0, String::len)
                + tool_calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.len())
                    .sum::<usize>()
        }
    }
}

/// The tools as the model is offered them.
pub fn offered(specs: &[ToolSpec]) -> Vec<llm::Tool> {
    specs
        .iter()
        .map(|s| llm::Tool {
            name: s.model_name(),
            description: s.description.clone(),
            parameters: s.input_schema.clone(),
        })
        .collect()
}

/// What the model is given: the conversation, then this run's own messages.
fn conversation<M, T>(state: &RunState, deps: &Deps<'_, M, T>) -> Vec<Message> {
    deps.history
        .iter()
        .chain(&state.messages)
        .cloned()
        .collect()
}

/// A new call id: `call_` and 32 hex digits (37 characters, within what providers take:
/// `[A-Za-z0-9_-]`, at most 40).
pub fn new_call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

/// A call the model asked for, checked: one for a tool it was not offered, or with arguments that
/// are not a JSON object, is answered with an error at once (nothing would run). A call the
/// person's policies allow is approved by that policy.
fn call_of(asked: llm::ToolCall, turn: u32, specs: &[ToolSpec], policies: &Policies) -> Call {
    let spec = specs.iter().find(|s| s.model_name() == asked.name);
    let (server, tool) = match spec {
        Some(s) => (s.server.clone(), s.tool.clone()),
        None => asked
            .name
            .split_once(SEPARATOR)
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
            .unwrap_or_else(|| (String::new(), asked.name.clone())),
    };
    let parsed = if asked.arguments.trim().is_empty() {
        Ok(Value::Object(Default::default()))
    } else {
        serde_json::from_str::<Value>(&asked.arguments)
    };
    let problem = match (&spec, &parsed) {
        (None, _) => Some(format!("There is no tool named '{}'.", asked.name)),
        (_, Err(e)) => Some(format!("The arguments are not valid JSON ({e}).")),
        (_, Ok(v)) if !v.is_object() => Some("The arguments must be a JSON object.".into()),
        _ => None,
    };
    let arguments = parsed.unwrap_or(Value::String(asked.arguments));
    let decision = spec
        .filter(|_| problem.is_none())
        .and_then(|s| policies.allows(s))
        .map(|policy| Decision::Approve {
            by: Decider::Policy {
                policy: policy.into(),
            },
            arguments: None,
        });
    Call {
        id: asked.id,
        turn,
        server,
        server_key: spec.map(|s| s.server_key.clone()).unwrap_or_default(),
        tool,
        arguments,
        annotations: spec.map(|s| s.annotations).unwrap_or_default(),
        decision,
        state: match problem {
            Some(text) => CallState::Finished {
                result: ToolResult::failed(text),
            },
            None => CallState::Waiting,
        },
        sign_in: None,
        asking: None,
    }
}

/// The model's search of the chat's tools: Switchboard's own, reading only the tools' names and
/// descriptions, so it runs at once without asking; what it finds is added to `found`.
fn search_call(
    asked: llm::ToolCall,
    turn: u32,
    specs: &[ToolSpec],
    found: &mut Vec<String>,
) -> Call {
    let arguments = serde_json::from_str::<Value>(&asked.arguments)
        .unwrap_or_else(|_| Value::Object(Default::default()));
    let (names, text) = tool_search::search(specs, &arguments);
    found.extend(names);
    Call {
        id: asked.id,
        turn,
        server: String::new(),
        server_key: String::new(),
        tool: tool_search::SEARCH_TOOL.into(),
        arguments,
        annotations: Annotations {
            read_only: true,
            open_world: false,
            ..Annotations::default()
        },
        decision: None,
        state: CallState::Finished {
            result: ToolResult {
                is_error: false,
                text,
                duration_ms: 0,
                parts: Vec::new(),
                sign_in: None,
                asking: None,
            },
        },
        sign_in: None,
        asking: None,
    }
}

/// With every call decided, the run moves on: to the tools when any may run (the approved calls
/// are marked running now, so the checkpoint of this step, on disk before any of them starts, is
/// the one that says they are about to run), or to the humane answer when all were declined.
fn await_approval(state: &mut RunState) -> Outcome {
    if state.undecided().next().is_some() || state.unanswered().next().is_some() {
        return Outcome::Paused;
    }
    let mut any_approved = false;
    for call in &mut state.calls {
        if call.state == CallState::Waiting
            && call.decision.as_ref().is_some_and(Decision::is_approval)
        {
            call.state = CallState::Running;
            any_approved = true;
        }
    }
    let any_answerable = state
        .calls
        .iter()
        .any(|c| matches!(c.state, CallState::Finished { .. }));
    state.next = if any_approved || any_answerable {
        Step::RunTools
    } else {
        Step::Humanize
    };
    Outcome::Continue
}

/// Runs the calls marked running, in parallel, and gives every call's outcome to the model. A call
/// whose server was redefined since it was asked for (re-created, renamed over, changed) is not
/// run: it was approved for what the person saw.
async fn run_tools<M: Model, T: Tools>(state: &mut RunState, deps: &Deps<'_, M, T>) -> Outcome {
    // The server's definition as it is now, read last thing: the run's tools list only servers
    // connected when it began, and one being reconnected with a new definition has no tools yet.
    let now = deps.tools.server_keys().await;
    for call in &mut state.calls {
        if call.state != CallState::Running || call.server_key.is_empty() {
            continue;
        }
        let redefined = match &now {
            Some(keys) => keys.get(&call.server) != Some(&call.server_key),
            None => deps
                .specs
                .iter()
                .any(|s| s.server == call.server && s.server_key != call.server_key),
        };
        if redefined {
            call.state = CallState::Finished {
                result: ToolResult::failed(format!(
                    "The tool server '{}' was changed or removed after this call was asked for, so it was not run. Ask again to run it on the server as it is now.",
                    call.server
                )),
            };
        }
    }
    let running: Vec<usize> = (0..state.calls.len())
        .filter(|&i| state.calls[i].state == CallState::Running)
        .collect();
    let results = futures_util::future::join_all(running.iter().map(|&i| {
        let call = &state.calls[i];
        let arguments = call
            .effective_arguments()
            .as_object()
            .cloned()
            .unwrap_or_default();
        async move {
            let started = Instant::now();
            let asked = call.asking.as_ref();
            let mut result = deps
                .tools
                .call(&call.id, &call.server, &call.tool, arguments, asked)
                .await;
            if result.duration_ms == 0 {
                result.duration_ms = started.elapsed().as_millis() as u64;
            }
            result
        }
    }))
    .await;
    let mut waiting = false;
    for (&i, mut result) in running.iter().zip(results) {
        let call = &mut state.calls[i];
        match (result.sign_in.take(), result.asking.take()) {
            // Not run: the call waits again, for the person to sign in and decide (the
            // checkpoint of this step says so before anything else happens).
            (Some(why), _) => {
                call.state = CallState::Waiting;
                call.decision = None;
                call.sign_in = Some(why);
                call.asking = None;
                waiting = true;
            }
            // Its server asked the person something: the call waits for the replies, decided.
            (None, Some(asking)) => {
                call.state = CallState::Waiting;
                call.asking = Some(asking);
                waiting = true;
            }
            (None, None) => {
                call.asking = None;
                call.state = CallState::Finished { result };
            }
        }
    }
    if waiting {
        // Checkpointed as waiting (the next step pauses there).
        state.next = Step::AwaitApproval;
        return Outcome::Continue;
    }
    // Every call of the turn answers the model, in the order it asked.
    for call in &state.calls {
        state.messages.push(Message::Tool {
            tool_call_id: call.id.clone(),
            content: answer_of(call),
        });
    }
    state.next = Step::CallModel;
    Outcome::Continue
}

/// Where the first `max` characters of `text` end (a byte index), when it has more.
pub(crate) fn end_of_chars(text: &str, max: usize) -> Option<usize> {
    text.char_indices().nth(max).map(|(at, _)| at)
}

/// What the model is told of a call.
fn answer_of(call: &Call) -> String {
    match (&call.state, &call.decision) {
        (CallState::Finished { result }, _) if result.is_error => {
            format!("Error: {}", result.text)
        }
        (CallState::Finished { result }, _) => result.text.clone(),
        (CallState::Interrupted, _) => "Error: the tool call was interrupted (the server stopped while it ran). It may or may not have taken effect, and was not run again.".into(),
        (_, Some(Decision::Reject { reason, .. })) => match reason {
            Some(reason) if !reason.trim().is_empty() => {
                format!("The person declined this tool call: {reason}")
            }
            _ => "The person declined this tool call.".into(),
        },
        _ => "The tool call was not run.".into(),
    }
}

/// Every call was declined: the model is told which and why, and answers without tools.
async fn humanize<M: Model, T: Tools>(state: &mut RunState, deps: &Deps<'_, M, T>) -> Outcome {
    for call in &state.calls {
        state.messages.push(Message::Tool {
            tool_call_id: call.id.clone(),
            content: answer_of(call),
        });
    }
    let reasons: BTreeMap<&str, &str> = state
        .calls
        .iter()
        .filter_map(|c| match &c.decision {
            Some(Decision::Reject {
                reason: Some(r), ..
            }) if !r.trim().is_empty() => Some((c.tool.as_str(), r.as_str())),
            _ => None,
        })
        .collect();
    let mut note = String::from(
        "The person declined every tool call you asked for, so none of them ran. Do not ask for tools again in this answer. Tell the person kindly what you could not do without them",
    );
    if reasons.is_empty() {
        note.push('.');
    } else {
        note.push_str(", taking their reasons into account: ");
        let list: Vec<String> = reasons.iter().map(|(t, r)| format!("{t}: {r}")).collect();
        note.push_str(&list.join("; "));
        note.push('.');
    }
    let mut messages = conversation(state, deps);
    messages.push(Message::System { content: note });
    state.steps += 1;
    match deps.model.complete(&messages, &[]).await {
        Ok(completion) => {
            state.count(&messages, &completion);
            state.messages.push(Message::Assistant {
                reasoning: completion.reasoning(),
                content: Some(completion.text),
                tool_calls: Vec::new(),
            });
            state.finish(End::Declined);
        }
        Err(message) => state.finish(End::Failed { message }),
    }
    Outcome::Continue
}

/// Where a run's checkpoints go ([`store::Thread`] in production).
pub trait Checkpoints: Send {
    /// Writes the next checkpoint.
    fn save(&mut self, state: &RunState) -> impl Future<Output = crate::Result<()>> + Send;
}

/// Advances `state` until it pauses for approval or ends, with a checkpoint after each step.
/// `stop` turning to an end (the person's Stop, a shutdown) ends it so at once, in whatever step
/// (a model answer being written keeps what it wrote; tools running are abandoned and their calls
/// marked interrupted). Returns the state it stopped at.
///
/// `state` is a checkpoint this run may go on from: a new run's, or the one its decision has just
/// written, whose calls marked running are this run's to run. A checkpoint read back after its
/// server died goes through [`RunState::interrupt_running`] first (Switchboard never resumes one
/// by itself: such an answer shows as interrupted).
pub async fn run<M: Model, T: Tools, C: Checkpoints>(
    mut state: RunState,
    deps: &Deps<'_, M, T>,
    stop: &mut tokio::sync::watch::Receiver<Option<End>>,
    checkpoints: &mut C,
) -> crate::Result<RunState> {
    loop {
        if state.next == Step::Done {
            return Ok(state);
        }
        let halt = stop.borrow().clone();
        if let Some(end) = halt {
            // Stopped while the model wrote: what it wrote so far stays the answer's.
            let cut_off = deps.model.cut_off_text();
            if state.next == Step::CallModel && !cut_off.trim().is_empty() {
                state.messages.push(Message::Assistant {
                    content: Some(cut_off),
                    tool_calls: Vec::new(),
                    reasoning: None,
                });
            }
            state.halt(end);
            checkpoints.save(&state).await?;
            return Ok(state);
        }
        let stopped = async {
            // A stop sender gone means nobody can stop this run any more.
            if stop.wait_for(Option::is_some).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let outcome = tokio::select! {
            outcome = step(&mut state, deps) => Some(outcome),
            () = stopped => None,
        };
        match outcome {
            Some(Outcome::Paused) => return Ok(state),
            Some(Outcome::Continue) => checkpoints.save(&state).await?,
            // Checked at the top of the loop.
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(server: &str, tool: &str) -> ToolSpec {
        ToolSpec {
            server: server.into(),
            server_key: String::new(),
            tool: tool.into(),
            description: String::new(),
            input_schema: Value::Null,
            annotations: Annotations::default(),
        }
    }

    #[test]
    fn a_checkpoint_of_before_keeps_only_its_runs_own_messages_when_read() {
        // Before 2026-12-05 a checkpoint held the whole conversation, its run's own from
        // `answer_from` on: read now, the conversation (the chat's) is left out.
        let stored = serde_json::json!({
            "next": "await_approval",
            "messages": [
                {"role": "user", "content": "earlier"},
                {"role": "assistant", "content": "an earlier answer"},
                {"role": "user", "content": "the question"},
                {"role": "assistant", "content": "Let me look.", "tool_calls": []}
            ],
            "calls": [],
            "answer_from": 3,
            "steps": 1,
            "max_steps": 10,
            "end": null
        });
        let state: RunState = serde_json::from_value(stored).unwrap();
        assert_eq!(
            state.messages,
            vec![Message::Assistant {
                content: Some("Let me look.".into()),
                tool_calls: vec![],
                reasoning: None,
            }]
        );
        assert_eq!(state.answer_text(), "Let me look.");
        // Written again, it is in the new shape, and reads back the same.
        let again: RunState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(again, state);
    }

    #[test]
    fn model_names_are_namespaced_and_always_acceptable_to_providers() {
        assert_eq!(
            spec("time", "get_current_time").model_name(),
            "time__get_current_time"
        );
        let dotted = spec("files", "fs.read/file").model_name();
        assert!(dotted.starts_with("files__fs_read_file_"), "{dotted}");
        assert_ne!(
            dotted,
            spec("files", "fs_read_file").model_name(),
            "still unique"
        );
        let long = spec("a-server", &"x".repeat(100)).model_name();
        assert_eq!(long.len(), MAX_MODEL_NAME);
        assert_ne!(long, spec("a-server", &"x".repeat(99)).model_name());
        for name in [dotted, long] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            );
        }
    }
}
