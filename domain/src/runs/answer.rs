//! An answer's life: the send that stores the question and starts it ([`Runs::start`]), the model's
//! tokens on their way to the chat ([`LiveAnswer`]), the agent graph driven until it pauses for
//! approval or ends ([`Runs::drive`]), Stop, and the answer's end.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::Runs;
use super::channels::{Live, Reservation, live_text};
use super::events::{EventKind, call_events};
use crate::agent::live::TokenSink;
use crate::agent::{
    self, Call, Checkpoints, Completion, Policies, RunState, Step, ToolSpec, store,
};
use crate::chats::{self, Role, Status};
use crate::llm::{self, StreamEvent};
use crate::{Error, Result};

/// How often the text of a streaming answer is written to the database.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// How often an agent run shows its answer is alive while nothing streams (tools running), well
/// within [`chats::STALE_STREAM_SECS`].
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How often an instance looks for runs whose server died while their tools ran.
pub const SETTLE_EVERY: Duration = Duration::from_secs(10);

/// Why a chat cannot take a new message while its answer waits for approval.
pub const WAITING: &str = "This chat's answer is waiting for your decision on its tool calls: approve or reject them first, or press Stop.";

/// What [`Runs::start`] returns to the caller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub question: chats::Message,
    pub answer_id: Uuid,
    pub model: String,
}

/// A send on its way: what is stored before the answer begins.
struct Outgoing {
    user_id: Uuid,
    /// `<provider>/<model>`, as the answer records it.
    model: String,
    conversation: chats::Conversation,
    text: String,
    slot: Reservation,
}

/// What an agent run works with.
pub(super) struct Plan {
    pub(super) provider: llm::Provider,
    pub(super) model: String,
    pub(super) specs: Vec<ToolSpec>,
    pub(super) policies: Policies,
}

impl Runs {
    /// Sends `text` in the user's chat (replacing everything from `from_position` when editing or
    /// regenerating) and starts the answer. None when the user has no such chat.
    ///
    /// Without tools, the model is asked while the question is being stored, so that the store's
    /// commit is not on the way to the first token; no token goes out before the question is
    /// stored, and if storing fails the model's answer is dropped unread. With tools, the answer is
    /// a run of the agent graph, checkpointed from its first step.
    pub async fn start(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        text: &str,
        from_position: Option<i32>,
    ) -> Result<Option<Started>> {
        // Before the model is asked: `chats::ask` would refuse it only after.
        chats::check_message(text)?;
        let db = &self.inner.db;
        let Some(conversation) = chats::conversation(db, user_id, chat_id, from_position).await?
        else {
            return Ok(None);
        };
        // Being written on another instance (this one's own runs hold the chat's slot): an edit
        // or a regeneration would replace the answer under its run, a send would interleave.
        if conversation.being_written {
            return Err(Error::Conflict(chats::BUSY.into()));
        }
        if from_position.is_none()
            && conversation.history.last().map(|m| m.status) == Some(Status::Waiting)
        {
            return Err(Error::Conflict(WAITING.into()));
        }
        // Only a person connected to a tool server can have tools here: the others' sends go
        // straight to the model.
        let (specs, person) = if conversation.tool_servers {
            let (tools, person) = tokio::join!(
                agent::live::chat_tools(db, &self.inner.mcp, user_id, chat_id),
                agent::policy::for_run(db, user_id),
            );
            (tools?.unwrap_or_default(), Some(person?))
        } else {
            (Vec::new(), None)
        };
        let (provider, model) = self
            .inner
            .models
            .for_chat(conversation.chat.model.as_deref())?;
        let provider = provider.clone();
        // With tools, the answer is an agent's run; without, one model call.
        let agent = match (specs.is_empty(), person) {
            (false, Some(person)) => Some((specs, person)),
            _ => None,
        };
        // Earlier answers' tool calls go to a model that is offered tools: some providers refuse
        // them in a request without any.
        let mut messages = llm_history(&conversation.history, agent.is_some());
        messages.push(llm::Message::User {
            content: text.to_owned(),
        });
        let send = Outgoing {
            user_id,
            model: llm::qualified(&provider.id, model),
            conversation,
            text: text.to_owned(),
            // Takes the chat's run slot before anything is written: two sends cannot both start.
            slot: self.reserve(chat_id)?,
        };
        let (stored, started) = oneshot::channel();
        let runs = self.clone();
        if let Some((specs, (policies, settings))) = agent {
            let plan = Plan {
                provider,
                model: model.to_owned(),
                specs,
                policies,
            };
            let state = RunState::new(messages, settings.max_steps.max(1) as u32);
            tokio::spawn(async move { runs.agent(send, plan, state, stored).await });
        } else {
            let request = llm::Request {
                model: model.to_owned(),
                messages,
                tools: vec![],
            };
            tokio::spawn(async move { runs.run(send, provider, request, stored).await });
        }
        started.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "The answer could not be started.".into(),
            ))
        })
    }

    /// Stores the question while the model is asked, tells the sender (`stored`), then streams
    /// the answer into the chat's events until it ends.
    async fn run(
        &self,
        send: Outgoing,
        provider: llm::Provider,
        request: llm::Request,
        stored: oneshot::Sender<Result<Option<Started>>>,
    ) {
        let db = &self.inner.db;
        let chat_id = send.conversation.chat.id;
        let mut asking = std::pin::pin!(chats::ask(
            db,
            send.user_id,
            &send.conversation,
            &send.text,
            &send.model
        ));
        let mut opening = std::pin::pin!(self.inner.llm.stream(&provider, &request));
        let mut opened = None;
        let asked = loop {
            tokio::select! {
                asked = &mut asking => break asked,
                result = &mut opening, if opened.is_none() => opened = Some(result),
            }
        };
        let (answer_id, mut stopped) = match asked {
            Ok(Some(asked)) => {
                let (stop, stopped) = watch::channel(None);
                send.slot.begin(Live {
                    answer_id: asked.answer.id,
                    text: String::new(),
                    stop,
                });
                let started = Started {
                    question: asked.question.clone(),
                    answer_id: asked.answer.id,
                    model: send.model.clone(),
                };
                self.emit(
                    chat_id,
                    EventKind::RunStarted {
                        question: asked.question,
                        answer_id: asked.answer.id,
                        model: send.model.clone(),
                    },
                );
                let _ = stored.send(Ok(Some(started)));
                (asked.answer.id, stopped)
            }
            // Nothing was stored: the slot is given back and the model's answer dropped unread.
            failed => {
                let _ = stored.send(failed.map(|_| None));
                return;
            }
        };

        let mut text = String::new();
        let outcome: (Status, Option<String>) = 'run: {
            let opened = match opened {
                Some(opened) => opened,
                None => tokio::select! {
                    opened = &mut opening => opened,
                    how = stopped.wait_for(Option::is_some) => break 'run (ended(how.ok().and_then(|s| *s)), None),
                },
            };
            let mut stream = match opened {
                Ok(stream) => stream,
                Err(error) => break 'run (Status::Failed, Some(error.to_string())),
            };
            let mut sink = LiveAnswer::new(self, chat_id, answer_id);
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    how = stopped.wait_for(Option::is_some) => break 'run (ended(how.ok().and_then(|s| *s)), None),
                };
                match item {
                    Some(Ok(StreamEvent::Token(token))) => {
                        text.push_str(&token);
                        sink.token(&token).await;
                    }
                    Some(Ok(StreamEvent::Finished { .. })) | None => {
                        break 'run (Status::Complete, None);
                    }
                    Some(Err(error)) => break 'run (Status::Failed, Some(error.to_string())),
                }
            }
        };
        let (status, error) = outcome;
        self.end(chat_id, answer_id, &text, status, error).await;
    }

    /// Stores the question, then runs the agent graph for its answer.
    async fn agent(
        &self,
        send: Outgoing,
        plan: Plan,
        state: RunState,
        stored: oneshot::Sender<Result<Option<Started>>>,
    ) {
        let db = &self.inner.db;
        let chat = send.conversation.chat.clone();
        let asked = async {
            let asked = chats::ask(
                db,
                send.user_id,
                &send.conversation,
                &send.text,
                &send.model,
            )
            .await?;
            let seq = store::last_seq(db, send.user_id, chat.thread_id).await?;
            Ok::<_, Error>(asked.map(|a| (a, seq)))
        };
        let (asked, seq) = match asked.await {
            Ok(Some(asked)) => asked,
            failed => {
                let _ = stored.send(failed.map(|_| None));
                return;
            }
        };
        let answer_id = asked.answer.id;
        let (stop, stopped) = watch::channel(None);
        send.slot.begin(Live {
            answer_id,
            text: String::new(),
            stop,
        });
        self.emit(
            chat.id,
            EventKind::RunStarted {
                question: asked.question.clone(),
                answer_id,
                model: send.model.clone(),
            },
        );
        let _ = stored.send(Ok(Some(Started {
            question: asked.question,
            answer_id,
            model: send.model,
        })));
        let answer = store::Answer {
            user_id: send.user_id,
            chat_id: chat.id,
            message_id: answer_id,
        };
        let thread = self.thread(chat.thread_id, seq, answer, None);
        self.drive(answer, plan, state, thread, stopped).await;
    }

    /// The checkpoints of `answer`'s run on `thread_id` after `seq` (its state then `last`; None:
    /// a new run), with this instance's memory of the runs it pauses.
    pub(super) fn thread(
        &self,
        thread_id: Uuid,
        seq: i32,
        answer: store::Answer,
        last: Option<RunState>,
    ) -> store::Thread {
        let (db, paused) = (self.inner.db.clone(), self.inner.paused.clone());
        store::Thread::for_answer(db, paused, thread_id, seq, answer, last)
    }

    /// Runs the graph from `state` until it pauses for approval or ends, then tells the chat.
    pub(super) async fn drive(
        &self,
        answer: store::Answer,
        plan: Plan,
        state: RunState,
        thread: store::Thread,
        mut stopped: watch::Receiver<Option<Status>>,
    ) {
        let (chat_id, answer_id) = (answer.chat_id, answer.message_id);
        let model = StreamingModel {
            runs: self,
            chat_id,
            answer_id,
            llm: agent::live::LlmModel {
                client: &self.inner.llm,
                provider: &plan.provider,
                model: &plan.model,
            },
            writing: Mutex::default(),
        };
        let tools = agent::live::McpTools {
            db: &self.inner.db,
            mcp: &self.inner.mcp,
            user_id: answer.user_id,
        };
        let deps = agent::Deps {
            model: &model,
            tools: &tools,
            specs: &plan.specs,
            policies: &plan.policies,
        };
        let mut recorder = Recorder {
            runs: self,
            chat_id,
            answer_id,
            thread,
            last: state.clone(),
        };
        let (stop_graph, mut stop_rx) = watch::channel(false);
        let forward = async {
            if stopped.wait_for(Option::is_some).await.is_ok() {
                let _ = stop_graph.send(true);
            }
            std::future::pending::<()>().await;
        };
        // A tool may run for longer than an answer may go unsaved: the answer is shown alive.
        let heartbeat = async {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = chats::touch(&self.inner.db, answer_id).await {
                    tracing::warn!(%chat_id, "could not mark an answer alive: {e}");
                }
            }
        };
        let ran = tokio::select! {
            ran = agent::run(state, &deps, &mut stop_rx, &mut recorder) => ran,
            () = forward => unreachable!("forwarding a stop never ends"),
            () = heartbeat => unreachable!("a heartbeat never ends"),
        };
        match ran {
            Ok(state) if state.next == Step::AwaitApproval => {
                // The pause's checkpoint told the chat (approval_needed) and ended the live run.
            }
            Ok(state) => {
                // The last checkpoint saved the answer's end.
                let (status, error) = store::answer_status(&state);
                self.finished(chat_id, answer_id, status, error);
            }
            Err(e) => {
                tracing::error!(%chat_id, "an agent run could not save its checkpoint: {e}");
                let text = recorder.last.answer_text();
                let error = "Switchboard could not save this answer's progress (its database is unreachable). Try again in a moment.";
                self.end(
                    chat_id,
                    answer_id,
                    &text,
                    Status::Failed,
                    Some(error.into()),
                )
                .await;
            }
        }
    }

    /// Saves the end of an answer and tells the chat.
    pub(super) async fn end(
        &self,
        chat_id: Uuid,
        answer_id: Uuid,
        text: &str,
        status: Status,
        error: Option<String>,
    ) {
        let saved = chats::finish(&self.inner.db, answer_id, text, status, error.as_deref());
        if let Err(e) = saved.await {
            tracing::error!(%chat_id, "could not save the end of an answer: {e}");
        }
        self.finished(chat_id, answer_id, status, error);
    }

    /// Tells the chat its answer has ended (and its live run with it).
    pub(super) fn finished(
        &self,
        chat_id: Uuid,
        answer_id: Uuid,
        status: Status,
        error: Option<String>,
    ) {
        self.emit(
            chat_id,
            EventKind::RunFinished {
                answer_id,
                status,
                error,
            },
        );
    }

    /// Stops the user's chat's answer: the live one, or one waiting for approval (its calls are
    /// then not run). Returns whether there was one; None when the user has no such chat.
    pub async fn stop_chat(&self, user_id: Uuid, chat_id: Uuid) -> Result<Option<bool>> {
        let db = &self.inner.db;
        let pending = store::read_pending(db, user_id, chat_id).await?;
        if pending == store::Pending::NoChat {
            return Ok(None);
        }
        if self.stop(chat_id) {
            return Ok(Some(true));
        }
        let store::Pending::Waiting(waiting) = pending else {
            return Ok(Some(self.stop_elsewhere(user_id, chat_id).await?));
        };
        let (latest, answer_id) = (waiting.latest, waiting.answer_id);
        let mut state = latest.state.clone();
        state.stop();
        let answer = store::Answer {
            user_id,
            chat_id,
            message_id: answer_id,
        };
        let mut thread = self.thread(waiting.thread_id, latest.seq, answer, Some(latest.state));
        // A decision that landed first wins; this stop then finds its checkpoint taken.
        match thread.save(&state).await {
            Ok(()) => {}
            Err(Error::Query(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                return Ok(Some(false));
            }
            Err(e) => return Err(e),
        }
        self.finished(chat_id, answer_id, Status::Stopped, None);
        Ok(Some(true))
    }
}

impl Runs {
    /// Settles, every [`SETTLE_EVERY`] until the pool closes, the runs whose server died while
    /// their tools ran (see [`Runs::settle_abandoned`]). Every instance does; a run is settled once.
    pub async fn settle_abandoned_runs(self) {
        let closed = self.inner.db.pool().close_event();
        let mut closed = std::pin::pin!(closed);
        loop {
            if let Ok(Err(e)) = closed.as_mut().do_until(self.settle_abandoned()).await {
                tracing::warn!("could not look for answers cut off while their tools ran: {e}");
            }
            if closed
                .as_mut()
                .do_until(tokio::time::sleep(SETTLE_EVERY))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Settles the runs whose server died while their tools ran ([`store::settle_abandoned`]),
    /// and tells each one's chat, on every instance, that its calls were interrupted and its
    /// answer ended: a page open on it stops showing its tools running. Returns how many.
    pub async fn settle_abandoned(&self) -> Result<usize> {
        let settled = store::settle_abandoned(&self.inner.db, &self.inner.paused).await?;
        for run in &settled {
            let (chat_id, answer_id) = (run.answer.chat_id, run.answer.message_id);
            for event in call_events(answer_id, &run.before, &run.after) {
                self.emit(chat_id, event);
            }
            let (status, error) = store::answer_status(&run.after);
            self.finished(chat_id, answer_id, status, error);
        }
        Ok(settled.len())
    }
}

/// The conversation so far, as the model is given it. `with_calls`: an earlier answer's tool
/// calls come before its text, each with what the tool returned (or why it did not run), so that
/// the model knows what its tools said in earlier answers; without, answers are their text.
fn llm_history(history: &[chats::Message], with_calls: bool) -> Vec<llm::Message> {
    let mut messages = Vec::with_capacity(history.len());
    for m in history {
        match m.role {
            Role::User => messages.push(llm::Message::User {
                content: m.content.clone(),
            }),
            Role::Assistant => {
                if with_calls && !m.tool_calls.is_empty() {
                    let (asked, answers): (Vec<_>, Vec<_>) =
                        m.tool_calls.iter().map(Call::in_history).unzip();
                    messages.push(llm::Message::Assistant {
                        content: None,
                        tool_calls: asked,
                    });
                    messages.extend(answers);
                }
                if !m.content.is_empty() {
                    messages.push(llm::Message::Assistant {
                        content: Some(m.content.clone()),
                        tool_calls: vec![],
                    });
                }
            }
        }
    }
    messages
}

/// A run's checkpoints, which also tell the chat's subscribers what each step did.
struct Recorder<'a> {
    runs: &'a Runs,
    chat_id: Uuid,
    answer_id: Uuid,
    thread: store::Thread,
    last: RunState,
}

impl Checkpoints for Recorder<'_> {
    async fn save(&mut self, state: &RunState) -> Result<()> {
        self.thread.save(state).await?;
        for event in call_events(self.answer_id, &self.last, state) {
            self.runs.emit(self.chat_id, event);
        }
        self.last = state.clone();
        Ok(())
    }
}

/// The model of an agent run: the streaming client, its tokens sent to the chat as they come.
struct StreamingModel<'a> {
    runs: &'a Runs,
    chat_id: Uuid,
    answer_id: Uuid,
    llm: agent::live::LlmModel<'a>,
    /// The text of the completion under way (emptied when it returns): what a Stop keeps.
    writing: Mutex<String>,
}

impl agent::Model for StreamingModel<'_> {
    async fn complete(
        &self,
        messages: &[llm::Message],
        tools: &[llm::Tool],
    ) -> std::result::Result<Completion, String> {
        self.writing.lock().expect("not poisoned").clear();
        let mut sink =
            LiveAnswer::new(self.runs, self.chat_id, self.answer_id).keeping(&self.writing);
        let completion = self.llm.complete_into(messages, tools, &mut sink).await;
        self.writing.lock().expect("not poisoned").clear();
        completion
    }

    fn cut_off_text(&self) -> String {
        self.writing.lock().expect("not poisoned").clone()
    }
}

/// One model turn's text on its way to the chat (a plain answer, or a turn of an agent run): an
/// event per token, and the answer so far saved every [`FLUSH_EVERY`].
struct LiveAnswer<'a> {
    runs: &'a Runs,
    chat_id: Uuid,
    answer_id: Uuid,
    /// No text of this turn has come yet.
    first: bool,
    flushed: Instant,
    /// Also keeps the turn's text here (an agent run's model, for a Stop mid-turn).
    keep: Option<&'a Mutex<String>>,
}

impl<'a> LiveAnswer<'a> {
    fn new(runs: &'a Runs, chat_id: Uuid, answer_id: Uuid) -> Self {
        Self {
            runs,
            chat_id,
            answer_id,
            first: true,
            flushed: Instant::now(),
            keep: None,
        }
    }

    /// The turn's text is also kept in `text`, as it comes.
    fn keeping(mut self, text: &'a Mutex<String>) -> Self {
        self.keep = Some(text);
        self
    }
}

impl TokenSink for LiveAnswer<'_> {
    async fn token(&mut self, text: &str) {
        if let Some(keep) = self.keep {
            keep.lock().expect("not poisoned").push_str(text);
        }
        let (runs, chat_id, answer_id) = (self.runs, self.chat_id, self.answer_id);
        // A later turn's text follows the earlier turns' after a blank line, as the stored answer
        // joins them.
        let text = if std::mem::take(&mut self.first) && !live_text(runs, chat_id).is_empty() {
            format!("\n\n{text}")
        } else {
            text.to_owned()
        };
        runs.emit(chat_id, EventKind::Token { answer_id, text });
        if self.flushed.elapsed() >= FLUSH_EVERY {
            let text = live_text(runs, chat_id);
            if let Err(e) = chats::flush(&runs.inner.db, answer_id, &text).await {
                tracing::warn!(%chat_id, "could not save a streaming answer: {e}");
            }
            self.flushed = Instant::now();
        }
    }
}

/// How a run that was told to end ends.
fn ended(how: Option<Status>) -> Status {
    how.unwrap_or(Status::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{CallState, Decider, Decision};

    fn message(role: Role, content: &str, tool_calls: Vec<Call>) -> chats::Message {
        chats::Message {
            id: Uuid::new_v4(),
            position: 0,
            role,
            content: content.into(),
            status: Status::Complete,
            error: None,
            model: None,
            tool_calls,
            created_at: chrono::Utc::now(),
        }
    }

    fn call(id: &str, tool: &str, decision: Option<Decision>, state: CallState) -> Call {
        Call {
            id: id.into(),
            turn: 1,
            server: "everything".into(),
            server_key: "k".into(),
            tool: tool.into(),
            arguments: serde_json::json!({"message": "hi"}),
            annotations: Default::default(),
            decision,
            state,
        }
    }

    #[test]
    fn an_earlier_answers_tool_calls_and_results_are_given_back_to_the_model() {
        let ran = call(
            "c1",
            "echo",
            Some(Decision::Approve {
                by: Decider::Person,
                arguments: Some(serde_json::json!({"message": "edited"})),
            }),
            CallState::Finished {
                result: agent::ToolResult {
                    is_error: false,
                    text: "Echo: edited".into(),
                    duration_ms: 3,
                },
            },
        );
        let long = "x".repeat(Call::MAX_EARLIER_RESULT + 10);
        let failed = call(
            "c2",
            "get-env",
            Some(Decision::Approve {
                by: Decider::Policy {
                    policy: "tool".into(),
                },
                arguments: None,
            }),
            CallState::Finished {
                result: agent::ToolResult {
                    is_error: true,
                    text: long,
                    duration_ms: 1,
                },
            },
        );
        let declined = call(
            "c3",
            "add",
            Some(Decision::Reject {
                by: Decider::Person,
                reason: Some("not now".into()),
            }),
            CallState::Waiting,
        );
        let history = vec![
            message(Role::User, "echo hi", vec![]),
            message(
                Role::Assistant,
                "It said: edited.",
                vec![ran, failed, declined],
            ),
            message(Role::User, "what did it say?", vec![]),
            // An answer stopped before it wrote anything, with no calls: nothing of it is given.
            message(Role::Assistant, "", vec![]),
        ];
        let text_only = llm_history(&history, false);
        assert_eq!(text_only.len(), 3, "{text_only:#?}");
        assert_eq!(
            text_only[1],
            llm::Message::Assistant {
                content: Some("It said: edited.".into()),
                tool_calls: vec![],
            }
        );
        let messages = llm_history(&history, true);
        assert_eq!(messages.len(), 7, "{messages:#?}");
        assert_eq!(
            messages[0],
            llm::Message::User {
                content: "echo hi".into()
            }
        );
        let llm::Message::Assistant {
            content: None,
            tool_calls,
        } = &messages[1]
        else {
            panic!("the calls come first: {:?}", messages[1]);
        };
        let names: Vec<(&str, &str)> = tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("c1", "everything__echo"),
                ("c2", "everything__get-env"),
                ("c3", "everything__add")
            ]
        );
        // The arguments the tool ran with: the person's edit.
        assert_eq!(tool_calls[0].arguments, r#"{"message":"edited"}"#);
        let tool = |i: usize| match &messages[i] {
            llm::Message::Tool {
                tool_call_id,
                content,
            } => (tool_call_id.as_str(), content.as_str()),
            other => panic!("a tool message: {other:?}"),
        };
        assert_eq!(tool(2), ("c1", "Echo: edited"));
        let (id, content) = tool(3);
        assert_eq!(id, "c2");
        assert!(content.starts_with("Error: xxx"), "{content}");
        assert!(
            content.ends_with("(17 more characters, cut from this earlier result)"),
            "{content}"
        );
        assert_eq!(
            tool(4),
            ("c3", "The person declined this tool call: not now")
        );
        assert_eq!(
            messages[5],
            llm::Message::Assistant {
                content: Some("It said: edited.".into()),
                tool_calls: vec![],
            }
        );
        assert_eq!(
            messages[6],
            llm::Message::User {
                content: "what did it say?".into()
            }
        );
    }
}
