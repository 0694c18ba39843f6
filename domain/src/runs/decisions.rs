//! The person's decisions on the tool calls an answer waits for: judged against the calls and the
//! tools' input schemas, recorded all or none, and, with the last one, the run resumed here
//! ([`Runs::decide`]).

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::Runs;
use super::answer::Plan;
use super::channels::Live;
use super::events::{EventKind, call_events};
use crate::agent::{self, Call, Decider, Decision, RunState, ToolSpec, decisions, store};
use crate::chats;
use crate::{Error, Result};

impl Runs {
    /// Records the person's decisions on the tool calls of `turn` that their chat's answer
    /// `answer_id` waits for, all or none (see [`decisions::decide_waiting`]); with the last one, the
    /// run resumes here. Decisions for an answer or a turn that no longer waits (a second click,
    /// a stale tab) are refused, and nothing runs. An edit of a call's arguments is checked
    /// against the tool's input schema first; "always allow" adds the policy as well, bound to
    /// the server the call was asked of. None when the user has no such chat.
    pub async fn decide(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        answer_id: Uuid,
        turn: u32,
        choices: Vec<Choice>,
    ) -> Result<Option<RunState>> {
        let db = &self.inner.db;
        let edits = choices.iter().any(|c| c.arguments.is_some());
        let specs = if edits {
            agent::live::chat_tools(db, &self.inner.mcp, user_id, chat_id)
                .await?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut pending = store::pending(db, &self.inner.paused, user_id, chat_id).await?;
        let (waiting, Judged { decisions, always }) = loop {
            let waiting = match pending {
                store::Pending::NoChat => return Ok(None),
                store::Pending::Nothing => return Err(Error::Invalid(agent::OUT_OF_DATE.into())),
                store::Pending::Waiting(waiting) => *waiting,
            };
            let current =
                waiting.answer_id == answer_id && waiting.latest.state.turn() == Some(turn);
            let judged = if current {
                judge(&waiting.latest.state, &specs, choices.clone())
            } else {
                Err(Error::Invalid(agent::OUT_OF_DATE.into()))
            };
            match judged {
                Ok(judged) => break (waiting, judged),
                // A pause remembered from before may be out of date: judged again as it is now.
                Err(_) if waiting.remembered => {
                    pending = store::read_pending(db, user_id, chat_id).await?;
                }
                Err(e) => return Err(e),
            }
        };
        let decided = decisions::decide_waiting(
            db,
            &self.inner.paused,
            user_id,
            chat_id,
            waiting,
            turn,
            decisions,
        );
        let Some(decided) = decided.await? else {
            return Ok(None);
        };
        for (server, tool, key) in always {
            let tool = tool.as_deref();
            if key.is_empty() {
                // A call asked for before calls kept their server's key.
                agent::policy::allow_current(db, &self.inner.mcp, user_id, &server, tool).await?;
            } else {
                agent::policy::allow(db, user_id, &server, tool, &key).await?;
            }
        }
        for event in call_events(answer_id, &decided.before, &decided.thread.state) {
            self.emit(chat_id, event);
        }
        let state = decided.thread.state.clone();
        if decided.complete {
            self.resume(user_id, chat_id, answer_id, decided.thread, decided.history)
                .await?;
        }
        Ok(Some(state))
    }

    /// Goes on with a run whose every call is decided, from its checkpoint. The conversation it
    /// answers is `history` when this instance remembered it with the pause; otherwise it is read
    /// from the chat (the checkpoint holds only the run's own turn).
    pub(super) async fn resume(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        answer_id: Uuid,
        latest: store::Latest,
        history: Option<store::History>,
    ) -> Result<()> {
        let db = &self.inner.db;
        let conversation = async {
            Ok::<_, Error>(match history {
                Some(history) => chats::get(db, user_id, chat_id)
                    .await?
                    .map(|c| (c, history)),
                None => chats::conversation_before(db, user_id, chat_id, answer_id)
                    .await?
                    .map(|c| {
                        let history = agent::history::for_model(&c.history, true);
                        (c.chat, history.into())
                    }),
            })
        };
        let (tools, person, conversation, access) = tokio::join!(
            agent::live::chat_tools(db, &self.inner.mcp, user_id, chat_id),
            agent::policy::for_run(db, user_id),
            conversation,
            crate::access::Access::of(db, user_id),
        );
        let Some((chat, history)) = conversation? else {
            // Deleted since the decision: nothing to answer in.
            return Ok(());
        };
        let specs = tools?.unwrap_or_default();
        let (policies, _) = person?;
        let models = self.models_for(&access?, chat.model.as_deref()).await?;
        let candidates = models.for_chat(chat.model.as_deref())?;
        let search_over = self.inner.mcp.settings().tool_search_over;
        let plan = Plan::new(&candidates, history, specs, policies, search_over)?;
        let slot = self.reserve(chat_id)?;
        let (stop, stopped) = watch::channel(None);
        let text = latest.state.answer_text();
        slot.begin(Live {
            answer_id,
            text: text.clone(),
            thinking: String::new(),
            stop,
        });
        // The page's live copy starts from the answer so far (its next turn thinks anew).
        let snapshot = EventKind::Snapshot {
            answer_id: answer_id.to_string(),
            text,
            thinking: String::new(),
        };
        self.emit(chat.id, snapshot);
        let answer = store::Answer {
            user_id,
            chat_id: chat.id,
            message_id: answer_id,
        };
        let thread = self.thread(
            chat.thread_id,
            latest.seq,
            answer,
            Some(latest.state.clone()),
        );
        let thread = thread.remembering(plan.history.clone());
        let runs = self.clone();
        let span = tracing::info_span!(
            "run",
            user = %user_id,
            chat = %chat_id,
            answer = %answer_id
        );
        tokio::spawn(
            async move {
                runs.drive(answer, plan, latest.state, thread, stopped, None)
                    .await
            }
            .instrument(span),
        );
        Ok(())
    }
}

/// One decision as the person gives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub call_id: String,
    pub approve: bool,
    /// Why not (a rejection).
    pub reason: Option<String>,
    /// The arguments to run it with instead of the model's (an approval).
    pub arguments: Option<serde_json::Value>,
    /// Also allow this tool, or this server, from now on (an approval).
    pub always: Option<Always>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Always {
    Tool,
    Server,
}

/// The person's choices, judged.
struct Judged {
    /// The decisions, by call id.
    decisions: Vec<(String, Decision)>,
    /// The "always allow" policies asked for: a server, one of its tools or all of them, and the
    /// key of the server's definition the call was asked of.
    always: Vec<(String, Option<String>, String)>,
}

/// The person's choices as decisions on the calls `state` waits for (an edit checked against the
/// tool's input schema in `specs`), and the "always allow" policies they ask for.
fn judge(state: &RunState, specs: &[ToolSpec], choices: Vec<Choice>) -> Result<Judged> {
    let mut decisions = Vec::with_capacity(choices.len());
    let mut always = Vec::new();
    for choice in choices {
        let call = state
            .calls
            .iter()
            .find(|c| c.id == choice.call_id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "There is no tool call '{}' waiting for a decision.",
                    choice.call_id
                ))
            })?;
        let decision = if choice.approve {
            if let Some(arguments) = &choice.arguments {
                check_arguments(specs, call, arguments)?;
            }
            let tool = match choice.always {
                Some(Always::Tool) => Some(Some(call.tool.clone())),
                Some(Always::Server) => Some(None),
                None => None,
            };
            if let Some(tool) = tool {
                always.push((call.server.clone(), tool, call.server_key.clone()));
            }
            Decision::Approve {
                by: Decider::Person,
                arguments: choice.arguments,
            }
        } else {
            Decision::Reject {
                by: Decider::Person,
                reason: choice
                    .reason
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty()),
            }
        };
        decisions.push((choice.call_id, decision));
    }
    Ok(Judged { decisions, always })
}

/// Edited arguments must be an object that the tool's input schema accepts.
fn check_arguments(specs: &[ToolSpec], call: &Call, arguments: &serde_json::Value) -> Result<()> {
    if !arguments.is_object() {
        return Err(Error::Invalid(
            "The edited arguments must be a JSON object.".into(),
        ));
    }
    let spec = specs
        .iter()
        .find(|s| s.server == call.server && s.tool == call.tool)
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "The tool '{}' of '{}' is not available now, so its arguments cannot be checked: connect its server again, or approve the arguments as they are.",
                call.tool, call.server
            ))
        })?;
    let validator = jsonschema::validator_for(&spec.input_schema).map_err(|e| {
        Error::Invalid(format!(
            "The tool '{}' has an input schema Switchboard cannot read ({e}).",
            call.tool
        ))
    })?;
    let problems: Vec<String> = validator
        .iter_errors(arguments)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "The edited arguments do not fit the tool '{}': {}.",
            call.tool,
            problems.join("; ")
        )))
    }
}
