//! An answer's life: the send that stores the question and starts it ([`Runs::start`]), the agent
//! graph driven until it pauses for approval or ends ([`Runs::drive`]; a chat without tools runs it
//! with none), the model's tokens on their way to the chat ([`LiveAnswer`]), Stop, and the
//! answer's end.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::Runs;
use super::channels::{Live, Reservation, live_text};
use super::events::{EventKind, call_events};
use crate::agent::live::TokenSink;
use crate::agent::{
    self, Checkpoints, Completion, End, Policies, RunState, Step, ToolSpec, store, tool_search,
};
use crate::chats::{self, Status};
use crate::llm;
use crate::metrics::METRICS;
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

/// What an answer's run works with.
pub(super) struct Plan {
    pub(super) provider: llm::Provider,
    pub(super) model: String,
    /// The models asked next, in order, when one cannot answer (an alias's list).
    pub(super) fallbacks: Vec<(llm::Provider, String)>,
    /// The conversation it answers, as the model is given it (see [`agent::Deps::history`]).
    pub(super) history: store::History,
    /// The messages left out of it, the oldest, to fit the model's context window.
    pub(super) trimmed: usize,
    pub(super) specs: Vec<ToolSpec>,
    pub(super) policies: Policies,
    /// See [`agent::Deps::search_over`].
    pub(super) search_over: usize,
}

/// The model's first completion of a new answer, asked while its question is being stored.
type Opening = Pin<Box<dyn Future<Output = Result<llm::EventStream, llm::LlmError>> + Send>>;

impl Runs {
    /// Sends `text` in the user's chat (replacing everything from `from_position` when editing or
    /// regenerating) and starts the answer: a run of the agent graph, with the chat's tools (none
    /// when the person has no tool server). None when the user has no such chat.
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
        // The person's access and limits and the conversation, read at once (a send is on the path
        // to the first token). Over a budget or the rate, nothing is stored and the model is not
        // asked; with no limit, that takes no query more.
        let (standing, conversation) = tokio::join!(
            crate::access::Access::with_limits(db, user_id),
            chats::conversation(db, user_id, chat_id, from_position),
        );
        let Some(conversation) = conversation? else {
            return Ok(None);
        };
        let (access, limits) = standing?;
        crate::budgets::admit_under(db, user_id, &limits, chrono::Utc::now()).await?;
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
        let (specs, policies, max_steps) = if conversation.tool_servers {
            let (tools, person) = tokio::join!(
                agent::live::chat_tools(db, &self.inner.mcp, user_id, chat_id),
                agent::policy::for_run(db, user_id),
            );
            let (policies, settings) = person?;
            let steps = settings.max_steps.max(1) as u32;
            (tools?.unwrap_or_default(), policies, steps)
        } else {
            (Vec::new(), Policies::default(), agent::DEFAULT_MAX_STEPS)
        };
        let models = self
            .models_for(&access, conversation.chat.model.as_deref())
            .await?;
        let candidates = models.for_chat(conversation.chat.model.as_deref())?;
        let (provider, model) = candidates[0];
        // Earlier answers' tool calls go to a model that is offered tools: some providers refuse
        // them in a request without any.
        let mut history = agent::history::for_model(&conversation.history, !specs.is_empty());
        history.push(llm::Message::User {
            content: text.to_owned(),
        });
        let search_over = self.inner.mcp.settings().tool_search_over;
        let plan = Plan::new(&candidates, history.into(), specs, policies, search_over)?;
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
        let state = RunState::new(max_steps);
        // The run's span (under the request that started it), named with its answer once stored.
        let span = tracing::info_span!(
            "run",
            user = %user_id,
            chat = %chat_id,
            answer = tracing::field::Empty
        );
        tokio::spawn(async move { runs.answer(send, plan, state, stored).await }.instrument(span));
        started.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "The answer could not be started.".into(),
            ))
        })
    }

    /// Stores the question while the model is asked for its first completion, so that the
    /// store's commit is not on the way to the first token; tells the sender (`stored`), then
    /// runs the graph for the answer. No token goes out before the question is stored, and if
    /// storing fails the model's answer is dropped unread.
    async fn answer(
        &self,
        send: Outgoing,
        plan: Plan,
        state: RunState,
        stored: oneshot::Sender<Result<Option<Started>>>,
    ) {
        let db = &self.inner.db;
        let chat = send.conversation.chat.clone();
        // Exactly what the graph's first model call asks (see `StreamingModel::first`).
        let request = plan.llm(self).request(&plan.history, &plan.first_offer());
        let (client, provider) = (self.inner.llm.clone(), plan.provider.clone());
        let asked_at = Instant::now();
        let mut opening: Opening =
            Box::pin(async move { client.stream(&provider, &request).await });
        let mut opened = None;
        let asked = {
            let asking = chats::ask(
                db,
                send.user_id,
                &send.conversation,
                &send.text,
                &send.model,
            );
            let mut asking = std::pin::pin!(asking);
            loop {
                tokio::select! {
                    asked = &mut asking => break asked,
                    result = &mut opening, if opened.is_none() => opened = Some(result),
                }
            }
        };
        let (asked, seq) = match asked {
            Ok(Some(asked)) => {
                let seq = asked.last_checkpoint;
                (asked, seq)
            }
            // Nothing was stored: the slot is given back and the model's answer dropped unread.
            failed => {
                let _ = stored.send(failed.map(|_| None));
                return;
            }
        };
        let answer_id = asked.answer.id;
        tracing::Span::current().record("answer", tracing::field::display(answer_id));
        let (stop, stopped) = watch::channel(None);
        send.slot.begin(Live {
            answer_id,
            text: String::new(),
            thinking: String::new(),
            stop,
        });
        self.emit(
            chat.id,
            EventKind::RunStarted {
                question: asked.question.clone().view(),
                answer_id: answer_id.to_string(),
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
        let first = match opened {
            Some(opened) => Box::pin(std::future::ready(opened)),
            None => opening,
        };
        // Its pause, if it makes one, is remembered with the conversation, for the decision.
        let thread = self.thread(chat.thread_id, seq, answer, None);
        let thread = thread.remembering(plan.history.clone());
        self.drive(
            answer,
            plan,
            state,
            thread,
            stopped,
            Some((first, asked_at)),
        )
        .await;
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
    /// `first`: the model's first completion, already asked (a new answer's), and when.
    pub(super) async fn drive(
        &self,
        answer: store::Answer,
        plan: Plan,
        state: RunState,
        thread: store::Thread,
        mut stopped: watch::Receiver<Option<Status>>,
        first: Option<(Opening, Instant)>,
    ) {
        let (chat_id, answer_id) = (answer.chat_id, answer.message_id);
        let mut state = state;
        if plan.trimmed > 0 {
            state.usage.trimmed = Some(u32::try_from(plan.trimmed).unwrap_or(u32::MAX));
        }
        let model = StreamingModel {
            runs: self,
            user_id: answer.user_id,
            chat_id,
            answer_id,
            llm: plan.llm(self),
            fallbacks: &plan.fallbacks,
            first: Mutex::new(first),
            writing: Mutex::default(),
        };
        let runs = self.clone();
        let tools = agent::live::McpTools {
            db: &self.inner.db,
            mcp: &self.inner.mcp,
            user_id: answer.user_id,
            progress: Some(Arc::new(move |call_id: &str, progress| {
                runs.emit(
                    chat_id,
                    EventKind::ToolProgress {
                        answer_id: answer_id.to_string(),
                        call_id: call_id.to_owned(),
                        progress,
                    },
                );
            })),
            ask: Some({
                let runs = self.clone();
                let user_id = answer.user_id;
                Arc::new(move |call_id: &str, server: &str| {
                    runs.asker(user_id, chat_id, answer_id, call_id, server)
                })
            }),
            keep: Some(self.keeper(answer.user_id, chat_id, answer_id)),
        };
        let deps = agent::Deps {
            history: &plan.history,
            model: &model,
            tools: &tools,
            specs: &plan.specs,
            policies: &plan.policies,
            search_over: plan.search_over,
        };
        let mut recorder = Recorder {
            runs: self,
            chat_id,
            answer_id,
            thread,
            last: state.clone(),
        };
        let (stop_graph, mut stop_rx) = watch::channel(None);
        let forward = async {
            if let Ok(how) = stopped.wait_for(Option::is_some).await {
                let end = match *how {
                    Some(Status::Interrupted) => End::Interrupted,
                    _ => End::Stopped,
                };
                let _ = stop_graph.send(Some(end));
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
                let usage = store::answer_usage(&state);
                self.finished(chat_id, answer_id, status, error, usage);
            }
            Err(e) => {
                tracing::error!(%chat_id, "an answer could not save its checkpoint: {e}");
                // What the person saw streaming, which the last checkpoint may not hold yet.
                let mut text = live_text(self, chat_id);
                if text.is_empty() {
                    text = recorder.last.answer_text();
                }
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
        self.finished(chat_id, answer_id, status, error, None);
    }

    /// Tells the chat its answer has ended (and its live run with it), with what it used when
    /// that changed.
    pub(super) fn finished(
        &self,
        chat_id: Uuid,
        answer_id: Uuid,
        status: Status,
        error: Option<String>,
        usage: Option<chats::Usage>,
    ) {
        self.emit(
            chat_id,
            EventKind::RunFinished {
                answer_id: answer_id.to_string(),
                status,
                error,
                usage,
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
        self.finished(chat_id, answer_id, Status::Stopped, None, None);
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
    /// answer ended: a page open on it stops showing its tools running. Their servers' questions
    /// expire. Returns how many runs.
    pub async fn settle_abandoned(&self) -> Result<usize> {
        let settled = store::settle_abandoned(&self.inner.db, &self.inner.paused).await?;
        for run in &settled {
            let (chat_id, answer_id) = (run.answer.chat_id, run.answer.message_id);
            for event in call_events(answer_id, &run.before, &run.after) {
                self.emit(chat_id, event);
            }
            let (status, error) = store::answer_status(&run.after);
            self.finished(chat_id, answer_id, status, error, None);
        }
        self.expire_abandoned_questions().await?;
        Ok(settled.len())
    }
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

impl Plan {
    /// A run asking `candidates` in order (at least one: see [`llm::Catalog::for_chat`]), given
    /// `history` trimmed to fit their context window when one is known (the smallest of theirs,
    /// with a quarter of it, at most 8,192 tokens, left for the answer); refused when even the
    /// last turn does not fit.
    pub(super) fn new(
        candidates: &[(&llm::Provider, &str)],
        history: store::History,
        specs: Vec<ToolSpec>,
        policies: Policies,
        search_over: usize,
    ) -> Result<Self> {
        let window = candidates
            .iter()
            .filter_map(|(p, _)| p.context_window)
            .min();
        let mut models = candidates
            .iter()
            .map(|(provider, model)| ((*provider).clone(), (*model).to_owned()));
        let (provider, model) = models.next().expect("for_chat gives one model at least");
        let (history, trimmed) = match window {
            None => (history, 0),
            Some(window) => {
                let offer = tool_search::offer(&specs, &history, &[], search_over);
                let tools = serde_json::to_string(&offer.tools).unwrap_or_default();
                let budget = window
                    .saturating_sub((window / 4).min(8192))
                    .saturating_sub(agent::estimate(tools.len()));
                match agent::history::fit(history.to_vec(), budget) {
                    Ok((messages, trimmed)) => (messages.into(), trimmed),
                    Err(needs) => {
                        return Err(Error::Invalid(format!(
                            "This message is too long for {}: with the tools it is offered it needs about {needs} tokens, and the model takes {window} in all, with room for its answer. Shorten it, or choose a model with a larger context window.",
                            llm::qualified(&provider.id, &model)
                        )));
                    }
                }
            }
        };
        Ok(Self {
            provider,
            model,
            fallbacks: models.collect(),
            history,
            trimmed,
            specs,
            policies,
            search_over,
        })
    }

    /// The tools its first model call is offered (see [`tool_search::offer`]).
    fn first_offer(&self) -> Vec<llm::Tool> {
        tool_search::offer(&self.specs, &self.history, &[], self.search_over).tools
    }

    /// The model it asks, through the runs' client.
    fn llm<'a>(&'a self, runs: &'a Runs) -> agent::live::LlmModel<'a> {
        agent::live::LlmModel {
            client: &runs.inner.llm,
            provider: &self.provider,
            model: &self.model,
        }
    }
}

/// The model of an answer's run: the streaming client, its tokens sent to the chat as they come.
struct StreamingModel<'a> {
    runs: &'a Runs,
    user_id: Uuid,
    chat_id: Uuid,
    answer_id: Uuid,
    llm: agent::live::LlmModel<'a>,
    /// Asked in turn when the model cannot answer.
    fallbacks: &'a [(llm::Provider, String)],
    /// The first completion, asked before the run began (a new answer's, while its question was
    /// stored): what the graph's first model call would ask.
    first: Mutex<Option<(Opening, Instant)>>,
    /// The text of the completion under way (emptied when it returns): what a Stop keeps.
    writing: Mutex<String>,
}

impl agent::Model for StreamingModel<'_> {
    async fn complete(
        &self,
        messages: &[llm::Message],
        tools: &[llm::Tool],
    ) -> std::result::Result<Completion, String> {
        // (The model first asked: a fallback that answers instead is in the metrics and the answer.)
        let span = tracing::info_span!(
            "llm_call",
            provider = %self.llm.provider.id,
            model = %self.llm.model
        );
        self.completion(messages, tools).instrument(span).await
    }

    fn cut_off_text(&self) -> String {
        self.writing.lock().expect("not poisoned").clone()
    }
}

impl StreamingModel<'_> {
    /// One model call: the first completion if asked already, else a new one (the next model of
    /// the alias when one cannot answer), its tokens streamed to the chat.
    async fn completion(
        &self,
        messages: &[llm::Message],
        tools: &[llm::Tool],
    ) -> std::result::Result<Completion, String> {
        self.writing.lock().expect("not poisoned").clear();
        let mut sink = LiveAnswer::new(self.runs, self.chat_id, self.answer_id, &self.writing);
        let first = self.first.lock().expect("not poisoned").take();
        let (mut opened, mut asked_at) = match first {
            Some((first, asked_at)) => (first.await, asked_at),
            None => {
                // A later call of the answer (after tools, or after a pause): a budget used up
                // since the send ends the answer here.
                let now = chrono::Utc::now();
                if let Err(e) =
                    crate::budgets::check_tokens(&self.runs.inner.db, self.user_id, now).await
                {
                    return Err(e.to_string());
                }
                let request = self.llm.request(messages, tools);
                let asked_at = Instant::now();
                (
                    self.llm.client.stream(self.llm.provider, &request).await,
                    asked_at,
                )
            }
        };
        // The model cannot answer now: the next of the alias's list is asked, and so on.
        let mut fallback = None;
        let mut used = (self.llm.provider.id.clone(), self.llm.model.to_owned());
        if let Err(failed) = &opened
            && failed.is_outage()
        {
            let chosen = llm::qualified(&self.llm.provider.id, self.llm.model);
            for (provider, model) in self.fallbacks {
                let mut request = self.llm.request(messages, tools);
                request.model.clone_from(model);
                let at = Instant::now();
                match self.llm.client.stream(provider, &request).await {
                    Ok(stream) => {
                        // The model that could not answer counts as failed; this one answers.
                        METRICS.model_call(&used.0, &used.1, None, asked_at.elapsed(), None, false);
                        used = (provider.id.clone(), model.clone());
                        fallback = Some(chats::Fallback {
                            model: llm::qualified(&provider.id, model),
                            instead_of: chosen,
                            why: failed.to_string(),
                        });
                        (opened, asked_at) = (Ok(stream), at);
                        break;
                    }
                    Err(e) if e.is_outage() => {
                        METRICS.model_call(&provider.id, model, None, at.elapsed(), None, false);
                        tracing::warn!(
                            provider = provider.id,
                            "a fallback model cannot answer either: {e}"
                        );
                    }
                    Err(e) => {
                        METRICS.model_call(&provider.id, model, None, at.elapsed(), None, false);
                        tracing::warn!(provider = provider.id, "a fallback model refused: {e}")
                    }
                }
            }
        }
        let mut completion = agent::live::read_into(opened, asked_at, &mut sink).await;
        match &mut completion {
            Ok(completion) => {
                let tokens = completion.usage.map(|u| (u.input_tokens, u.output_tokens));
                METRICS.model_call(
                    &used.0,
                    &used.1,
                    completion.first_token,
                    completion.took,
                    tokens,
                    true,
                );
                completion.fallback = fallback;
            }
            Err(_) => METRICS.model_call(&used.0, &used.1, None, asked_at.elapsed(), None, false),
        }
        self.writing.lock().expect("not poisoned").clear();
        completion
    }
}

/// One model turn's text on its way to the chat: an event per token, the text kept for a Stop,
/// and the answer so far saved every [`FLUSH_EVERY`].
struct LiveAnswer<'a> {
    runs: &'a Runs,
    chat_id: Uuid,
    answer_id: Uuid,
    /// No text of this turn has come yet.
    first: bool,
    flushed: Instant,
    /// The turn's text so far (what a Stop mid-turn keeps).
    keep: &'a Mutex<String>,
}

impl<'a> LiveAnswer<'a> {
    fn new(runs: &'a Runs, chat_id: Uuid, answer_id: Uuid, keep: &'a Mutex<String>) -> Self {
        Self {
            runs,
            chat_id,
            answer_id,
            first: true,
            flushed: Instant::now(),
            keep,
        }
    }
}

impl TokenSink for LiveAnswer<'_> {
    async fn token(&mut self, text: &str) {
        self.keep.lock().expect("not poisoned").push_str(text);
        let (runs, chat_id, answer_id) = (self.runs, self.chat_id, self.answer_id);
        // A later turn's text follows the earlier turns' after a blank line, as the stored answer
        // joins them.
        let text = if std::mem::take(&mut self.first) && !live_text(runs, chat_id).is_empty() {
            format!("\n\n{text}")
        } else {
            text.to_owned()
        };
        let token = EventKind::Token {
            answer_id: answer_id.to_string(),
            text,
        };
        runs.emit(chat_id, token);
        if self.flushed.elapsed() >= FLUSH_EVERY {
            let text = live_text(runs, chat_id);
            if let Err(e) = chats::flush(&runs.inner.db, answer_id, &text).await {
                tracing::warn!(%chat_id, "could not save a streaming answer: {e}");
            }
            self.flushed = Instant::now();
        }
    }

    async fn thinking(&mut self, text: &str) {
        let thinking = EventKind::Thinking {
            answer_id: self.answer_id.to_string(),
            text: text.to_owned(),
        };
        self.runs.emit(self.chat_id, thinking);
    }
}
