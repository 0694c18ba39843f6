//! The agent graph with a scripted model and in-process tools, checkpointed in a real PostgreSQL:
//! each path of the graph, parallel calls with mixed decisions, edited arguments, the step limit,
//! stop, a crash while a tool runs, policies, and decisions that are refused.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use domain::Database;
use domain::agent::decisions;
use domain::agent::store::{self, Paused, Thread};
use domain::agent::{
    CallState, Completion, Decider, Decision, Deps, End, Model, Policies, RunState, Step,
    ToolResult, ToolSpec, Tools,
};
use domain::chats;
use domain::llm::{self, Message};
use domain::mcp::Annotations;
use domain::users::{self, Identity, Role, RoleDecision};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

/// A tool call as a tool saw it: server, tool, arguments.
type Ran = (String, String, Map<String, Value>);
/// What the model was asked: the messages, and the names of the tools offered.
type Asked = (Vec<Message>, Vec<String>);

/// Answers from a script, one per call, and remembers what it was asked.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<Completion, String>>>,
    asked: Mutex<Vec<Asked>>,
}

impl Scripted {
    fn new(answers: Vec<Result<Completion, String>>) -> Self {
        Self {
            answers: Mutex::new(answers.into()),
            ..Self::default()
        }
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

fn text(t: &str) -> Result<Completion, String> {
    Ok(Completion {
        text: t.into(),
        calls: vec![],
        ..Default::default()
    })
}

fn calls(list: &[(&str, &str, Value)]) -> Result<Completion, String> {
    Ok(Completion {
        text: String::new(),
        calls: list
            .iter()
            .map(|(id, name, args)| llm::ToolCall {
                id: (*id).into(),
                name: (*name).into(),
                arguments: args.to_string(),
            })
            .collect(),
        ..Default::default()
    })
}

impl Model for Scripted {
    async fn complete(
        &self,
        messages: &[Message],
        tools: &[llm::Tool],
    ) -> Result<Completion, String> {
        self.asked.lock().unwrap().push((
            messages.to_vec(),
            tools.iter().map(|t| t.name.clone()).collect(),
        ));
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err("the script has no more answers".into()))
    }
}

/// Tools in this process: `add` sums `a` and `b`; `slow` waits `ms`; `meet` waits until two calls
/// of it run at once (so calls that run one after another never finish). While `signed_out`, every
/// call meets an expired sign-in and does not run.
#[derive(Default)]
struct Local {
    calls: Mutex<Vec<Ran>>,
    meeting: tokio::sync::Notify,
    met: std::sync::atomic::AtomicUsize,
    signed_out: std::sync::atomic::AtomicBool,
}

impl Tools for Local {
    async fn call(
        &self,
        _call_id: &str,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
        asked: Option<&domain::agent::Asking>,
    ) -> ToolResult {
        if self.signed_out.load(std::sync::atomic::Ordering::SeqCst) {
            let why = format!("Your sign-in to '{server}' has expired.");
            return ToolResult {
                is_error: true,
                text: why.clone(),
                duration_ms: 0,
                parts: Vec::new(),
                sign_in: Some(why),
                asking: None,
            };
        }
        self.calls
            .lock()
            .unwrap()
            .push((server.into(), tool.into(), arguments.clone()));
        let ok = |text: String| ToolResult {
            is_error: false,
            text,
            duration_ms: 0,
            parts: Vec::new(),
            sign_in: None,
            asking: None,
        };
        match tool {
            "add" => {
                let sum =
                    arguments["a"].as_i64().unwrap_or(0) + arguments["b"].as_i64().unwrap_or(0);
                ok(sum.to_string())
            }
            "slow" => {
                let ms = arguments["ms"].as_u64().unwrap_or(10_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ok("slept".into())
            }
            // Asks the person's name (a multi round-trip call), then greets them by it.
            "greet" => match asked {
                None => ToolResult {
                    asking: Some(domain::agent::Asking {
                        questions: vec![domain::agent::AskedQuestion {
                            key: "who".into(),
                            id: "q1".into(),
                            question: domain::mcp::elicitation::Question {
                                message: "Your name?".into(),
                                schema: None,
                                url: None,
                            },
                            reply: None,
                        }],
                        state: Some("round-1".into()),
                        round: 1,
                    }),
                    ..ok("Waiting for the person's answer.".into())
                },
                Some(asked) => {
                    let reply = asked.questions[0].reply.as_ref().unwrap();
                    ok(format!(
                        "Hello, {} ({})",
                        reply.content.as_ref().unwrap()["name"].as_str().unwrap(),
                        asked.state.as_deref().unwrap()
                    ))
                }
            },
            "meet" => {
                let arrived = self.met.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if arrived < 2 {
                    self.meeting.notified().await;
                } else {
                    self.meeting.notify_waiters();
                }
                ok("met".into())
            }
            _ => ToolResult {
                is_error: true,
                text: format!("no tool {tool}"),
                duration_ms: 0,
                parts: Vec::new(),
                sign_in: None,
                asking: None,
            },
        }
    }
}

impl Local {
    fn ran(&self) -> Vec<Ran> {
        self.calls.lock().unwrap().clone()
    }
}

/// The key the test servers have now.
fn key(server: &str) -> String {
    format!("{server}-key")
}

fn specs() -> Vec<ToolSpec> {
    let spec = |server: &str, tool: &str, read_only: bool| ToolSpec {
        server: server.into(),
        server_key: key(server),
        tool: tool.into(),
        description: format!("{tool} on {server}"),
        input_schema: json!({"type": "object"}),
        annotations: Annotations {
            read_only,
            ..Annotations::default()
        },
    };
    vec![
        spec("calc", "add", true),
        spec("calc", "meet", false),
        spec("calc", "greet", false),
        spec("clock", "slow", false),
    ]
}

/// Another person, Bob.
async fn bob(db: &Database) -> Uuid {
    let identity = Identity {
        issuer: "https://id.example.com".into(),
        subject: "bob".into(),
        name: "Bob".into(),
        ..Identity::default()
    };
    users::sign_in(db, &identity, RoleDecision::Fixed(Role::User))
        .await
        .unwrap()
        .id
}

struct Fixture {
    db: Database,
    /// The pauses this test's one instance remembers.
    paused: Paused,
    user: Uuid,
    thread: Uuid,
}

async fn fixture(pool: PgPool) -> Fixture {
    let db = Database::from_pool(pool);
    let identity = Identity {
        issuer: "https://id.example.com".into(),
        subject: "alice".into(),
        name: "Alice".into(),
        ..Identity::default()
    };
    let user = users::sign_in(&db, &identity, RoleDecision::Fixed(Role::User))
        .await
        .unwrap()
        .id;
    let chat = chats::create(&db, user, None).await.unwrap();
    Fixture {
        db,
        paused: Paused::default(),
        user,
        thread: chat.thread_id,
    }
}

/// The conversation every run here answers (the chat's, given to the graph as its history).
fn history() -> Vec<Message> {
    vec![Message::User {
        content: "Please use your tools.".into(),
    }]
}

/// A new run, of at most 10 model calls.
fn question() -> RunState {
    RunState::new(10)
}

/// Runs from the thread's latest checkpoint (or `start`) until it pauses or ends, checkpointing.
async fn advance<M: Model, T: Tools>(
    f: &Fixture,
    start: Option<RunState>,
    model: &M,
    tools: &T,
    policies: &Policies,
) -> RunState {
    let (_stop, mut stopped) = watch::channel(None);
    advance_until(f, start, model, tools, policies, &mut stopped).await
}

/// [`advance`] from a new question, with no policy.
async fn ask<M: Model, T: Tools>(f: &Fixture, model: &M, tools: &T) -> RunState {
    advance(f, Some(question()), model, tools, &Policies::default()).await
}

/// [`advance`] from the latest checkpoint, with no policy.
async fn resume<M: Model, T: Tools>(f: &Fixture, model: &M, tools: &T) -> RunState {
    advance(f, None, model, tools, &Policies::default()).await
}

/// [`advance`], stopped when `stopped` turns true.
async fn advance_until<M: Model, T: Tools>(
    f: &Fixture,
    start: Option<RunState>,
    model: &M,
    tools: &T,
    policies: &Policies,
    stopped: &mut watch::Receiver<Option<End>>,
) -> RunState {
    let specs = specs();
    let history = history();
    let deps = Deps {
        history: &history,
        model,
        tools,
        specs: &specs,
        policies,
        search_over: 0,
    };
    let (state, seq) = match start {
        Some(state) => (state, -1),
        None => {
            let latest = store::latest(&f.db, f.user, f.thread)
                .await
                .unwrap()
                .unwrap();
            (latest.state, latest.seq)
        }
    };
    let mut thread = Thread::new(f.db.clone(), f.thread, seq);
    domain::agent::run(state, &deps, stopped, &mut thread)
        .await
        .unwrap()
}

fn approve() -> Decision {
    Decision::Approve {
        by: Decider::Person,
        arguments: None,
    }
}

fn reject(reason: &str) -> Decision {
    Decision::Reject {
        by: Decider::Person,
        reason: Some(reason.into()),
    }
}

async fn decide(f: &Fixture, call: &str, decision: Decision) -> store::Decided {
    decisions::decide(&f.db, f.user, f.thread, call, decision)
        .await
        .unwrap()
        .unwrap()
}

async fn steps_checkpointed(f: &Fixture) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT step FROM checkpoints WHERE thread_id = $1 ORDER BY seq",
    )
    .bind(f.thread)
    .fetch_all(f.db.pool())
    .await
    .unwrap()
}

/// A model whose provider counts nothing: the run's usage is estimated (about four characters a
/// token) and says so; with counts, the provider's are summed over the run's model calls.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn usage_is_the_providers_counts_or_an_estimate_that_says_so(pool: PgPool) {
    let f = fixture(pool.clone()).await;
    let model = Scripted::new(vec![text("Hello there!")]);
    let state = ask(&f, &model, &Local::default()).await;
    let usage = state.usage;
    assert!(usage.estimated);
    // "Hello there!" is 12 characters: 3 tokens.
    assert_eq!(usage.output_tokens, 3);
    assert!(usage.input_tokens > 0, "{usage:?}");

    // Another chat of the same person.
    let f2 = fixture(pool).await;
    let counted = |input, output| {
        Ok(Completion {
            text: "Counted.".into(),
            usage: Some(llm::Usage {
                input_tokens: input,
                output_tokens: output,
            }),
            first_token: Some(std::time::Duration::from_millis(40)),
            took: std::time::Duration::from_millis(100),
            ..Default::default()
        })
    };
    let model = Scripted::new(vec![counted(100, 7)]);
    let state = ask(&f2, &model, &Local::default()).await;
    assert_eq!(
        state.usage,
        domain::chats::Usage {
            input_tokens: 100,
            output_tokens: 7,
            estimated: false,
            first_token_ms: Some(40),
            duration_ms: 100,
            fallback: None,
            trimmed: None,
            offered: Vec::new(),
        }
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn no_tool_calls_is_an_answer(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![text("Hello!")]);
    let state = ask(&f, &model, &Local::default()).await;
    assert_eq!(state.end, Some(End::Answered));
    assert_eq!(state.next, Step::Done);
    assert!(
        matches!(state.messages.last(), Some(Message::Assistant { content: Some(c), .. }) if c == "Hello!")
    );
    // The model was offered the tools, namespaced by server.
    assert_eq!(
        model.asked()[0].1,
        vec!["calc__add", "calc__meet", "calc__greet", "clock__slow"]
    );
    assert_eq!(steps_checkpointed(&f).await, vec!["done"]);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_approved_call_runs_and_the_model_answers_with_its_result(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[("c1", "calc__add", json!({"a": 2, "b": 40}))]),
        text("It is 42."),
    ]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    assert_eq!(paused.next, Step::AwaitApproval);
    assert_eq!(paused.calls[0].server, "calc");
    assert_eq!(paused.calls[0].tool, "add");
    assert!(tools.ran().is_empty(), "nothing runs before a decision");

    // The pause is durable: it is the latest checkpoint, and the run resumes from it. The decision's
    // checkpoint marks the call running before it runs.
    let c1 = paused.calls[0].id.clone();
    let decided = decide(&f, &c1, approve()).await;
    assert!(decided.complete);
    assert_eq!(decided.thread.state.next, Step::RunTools);
    assert_eq!(decided.thread.state.calls[0].state, CallState::Running);
    assert!(tools.ran().is_empty(), "the decision only records");
    let done = resume(&f, &model, &tools).await;
    assert_eq!(done.end, Some(End::Answered));
    assert_eq!(
        tools.ran(),
        vec![(
            "calc".into(),
            "add".into(),
            json!({"a": 2, "b": 40}).as_object().unwrap().clone()
        )]
    );
    let CallState::Finished { result } = &done.calls[0].state else {
        panic!("{:?}", done.calls[0].state)
    };
    assert_eq!(result.text, "42");
    // The second model call saw the result.
    let (messages, _) = &model.asked()[1];
    assert!(messages.contains(&Message::Tool {
        tool_call_id: c1,
        content: "42".into()
    }));
    // It was given the conversation first, then the run's own turn; the checkpoints keep only
    // the run's own (the conversation is the chat's).
    assert_eq!(messages[..1], history()[..]);
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let stored: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT state FROM checkpoints WHERE thread_id = $1")
            .bind(f.thread)
            .fetch_all(f.db.pool())
            .await
            .unwrap();
    assert_eq!(stored.len(), 4);
    for state in stored {
        assert!(
            !state.to_string().contains("Please use your tools."),
            "{state}"
        );
    }
    assert_eq!(
        steps_checkpointed(&f).await,
        vec!["await_approval", "run_tools", "call_model", "done"]
    );
}

/// A call that meets an expired sign-in when it is to run is not run and not failed: the answer
/// pauses again (durably, as for an approval) with the call waiting and saying why, the calls of
/// the turn that ran keep their results, and once the person has signed in and approved it again
/// it runs and the model answers from every result.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_call_that_meets_an_expired_sign_in_waits_for_it_then_runs(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[
            ("c1", "calc__add", json!({"a": 1, "b": 2})),
            ("c2", "clock__slow", json!({"ms": 1})),
        ]),
        text("Done: 3, and slept."),
    ]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    let (c1, c2) = (paused.calls[0].id.clone(), paused.calls[1].id.clone());
    decide(&f, &c1, approve()).await;
    tools
        .signed_out
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let decided = decide(&f, &c2, approve()).await;
    assert!(decided.complete);
    let waiting = resume(&f, &model, &tools).await;
    assert_eq!(waiting.next, Step::AwaitApproval, "{waiting:#?}");
    assert!(waiting.end.is_none());
    assert!(tools.ran().is_empty(), "nothing ran");
    for call in &waiting.calls {
        assert_eq!(call.state, CallState::Waiting);
        assert!(call.decision.is_none());
        assert!(
            call.sign_in.as_deref().unwrap().contains("expired"),
            "{call:?}"
        );
        let view = call.view(protocol::Status::Waiting);
        assert_eq!(view.state, protocol::CallStatus::Waiting);
        assert!(view.sign_in.is_some());
    }
    assert_eq!(
        model.asked().len(),
        1,
        "the model is not called while the calls wait"
    );
    // Durable: the pause is the latest checkpoint.
    let latest = store::latest(&f.db, f.user, f.thread)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.state.next, Step::AwaitApproval);
    assert!(latest.state.calls.iter().all(|c| c.sign_in.is_some()));

    // Signed in again: the person approves, and the calls run.
    tools
        .signed_out
        .store(false, std::sync::atomic::Ordering::SeqCst);
    decide(&f, &c1, approve()).await;
    let decided = decide(&f, &c2, approve()).await;
    assert!(decided.complete);
    assert!(
        decided
            .thread
            .state
            .calls
            .iter()
            .all(|c| c.sign_in.is_none())
    );
    let done = resume(&f, &model, &tools).await;
    assert_eq!(done.end, Some(End::Answered));
    assert_eq!(tools.ran().len(), 2);
    let (messages, _) = &model.asked()[1];
    assert!(messages.contains(&Message::Tool {
        tool_call_id: c1,
        content: "3".into()
    }));
}

/// A call whose server asks the person something (a multi round-trip call) pauses the answer as
/// an approval does, durably, with the call approved and its question waiting; the reply is taken
/// once, and moves the run on: the call is made again with it (and the server's state), and the
/// model answers from what the tool then said.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_servers_question_pauses_the_answer_and_its_reply_makes_the_call_again(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[("c1", "calc__greet", json!({}))]),
        text("Greeted."),
    ]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    let c1 = paused.calls[0].id.clone();
    assert!(decide(&f, &c1, approve()).await.complete);
    let waiting = resume(&f, &model, &tools).await;
    assert_eq!(waiting.next, Step::AwaitApproval, "{waiting:#?}");
    let call = &waiting.calls[0];
    assert_eq!(call.state, CallState::Waiting);
    assert!(call.decision.as_ref().is_some_and(Decision::is_approval));
    assert_eq!(call.asking.as_ref().unwrap().questions[0].id, "q1");
    assert_eq!(waiting.undecided().count(), 0);
    assert_eq!(waiting.unanswered().count(), 1);
    assert_eq!(model.asked().len(), 1, "the model waits too");
    // Durable: the pause is the latest checkpoint.
    let latest = store::latest(&f.db, f.user, f.thread)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.state, waiting);

    let ada = domain::mcp::elicitation::Reply {
        action: "accept".into(),
        content: Some(json!({"name": "Ada"})),
    };
    let unknown = decisions::reply(&f.db, f.user, f.thread, "q9", ada.clone()).await;
    assert!(unknown.is_err(), "no such question");
    let replied = decisions::reply(&f.db, f.user, f.thread, "q1", ada.clone())
        .await
        .unwrap()
        .unwrap();
    assert!(replied.complete);
    let again = decisions::reply(&f.db, f.user, f.thread, "q1", ada).await;
    assert!(again.is_err(), "replied once");
    let done = resume(&f, &model, &tools).await;
    assert_eq!(done.end, Some(End::Answered), "{done:#?}");
    assert!(done.calls[0].asking.is_none());
    let (messages, _) = &model.asked()[1];
    assert!(messages.contains(&Message::Tool {
        tool_call_id: c1,
        content: "Hello, Ada (round-1)".into()
    }));
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_rejection_is_answered_humanely_and_nothing_runs(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[("c1", "clock__slow", json!({"ms": 1}))]),
        text("Understood, I will not wait. Here is what I can say instead…"),
    ]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    let c1 = paused.calls[0].id.clone();
    let decided = decide(&f, &c1, reject("not now, I am in a hurry")).await;
    assert!(decided.complete);
    assert_eq!(decided.thread.state.next, Step::Humanize);
    let done = resume(&f, &model, &tools).await;
    assert_eq!(done.end, Some(End::Declined));
    assert!(tools.ran().is_empty());
    let (messages, offered) = &model.asked()[1];
    assert!(offered.is_empty(), "no tools for the humane answer");
    let note = messages
        .iter()
        .rev()
        .find_map(|m| match m {
            Message::System { content } => Some(content.clone()),
            _ => None,
        })
        .unwrap();
    assert!(note.contains("not now, I am in a hurry"), "{note}");
    assert!(messages.contains(&Message::Tool {
        tool_call_id: c1,
        content: "The person declined this tool call: not now, I am in a hurry".into()
    }));
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn parallel_calls_wait_for_every_decision_then_the_approved_run_together(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[
            ("m1", "calc__meet", json!({})),
            ("m2", "calc__meet", json!({})),
            ("s1", "clock__slow", json!({"ms": 1})),
        ]),
        text("done"),
    ]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    assert_eq!(paused.undecided().count(), 3);
    let ids: Vec<String> = paused.calls.iter().map(|c| c.id.clone()).collect();
    let [m1, m2, s1] = [&ids[0], &ids[1], &ids[2]];

    assert!(!decide(&f, m1, approve()).await.complete);
    assert!(!decide(&f, s1, reject("no")).await.complete);
    // Resuming before every call is decided runs nothing.
    let still = resume(&f, &model, &tools).await;
    assert_eq!(still.next, Step::AwaitApproval);
    assert!(tools.ran().is_empty());
    assert!(decide(&f, m2, approve()).await.complete);

    // The two `meet` calls finish only if they run at the same time.
    let done = tokio::time::timeout(Duration::from_secs(5), resume(&f, &model, &tools))
        .await
        .expect("approved calls run in parallel");
    assert_eq!(done.end, Some(End::Answered));
    let ran: Vec<String> = tools.ran().into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(ran, vec!["meet", "meet"], "the rejected call did not run");
    let (messages, _) = &model.asked()[1];
    let answers: Vec<&str> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool { tool_call_id, .. } => Some(tool_call_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(answers, ids, "every call answered, in order");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn edited_arguments_are_what_the_tool_gets(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[("c1", "calc__add", json!({"a": 1, "b": 1}))]),
        text("ok"),
    ]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    decide(
        &f,
        &paused.calls[0].id,
        Decision::Approve {
            by: Decider::Person,
            arguments: Some(json!({"a": 20, "b": 22})),
        },
    )
    .await;
    let done = resume(&f, &model, &tools).await;
    assert_eq!(
        tools.ran()[0].2,
        json!({"a": 20, "b": 22}).as_object().unwrap().clone()
    );
    let CallState::Finished { result } = &done.calls[0].state else {
        panic!()
    };
    assert_eq!(result.text, "42");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_run_stops_at_its_step_limit(pool: PgPool) {
    let f = fixture(pool).await;
    let forever: Vec<_> = (0..20)
        .map(|i| calls(&[(&format!("c{i}"), "calc__add", json!({"a": i, "b": 0}))]))
        .collect();
    let model = Scripted::new(forever);
    let tools = Local::default();
    let policies = Policies {
        read_only: true,
        ..Policies::default()
    };
    let mut start = question();
    start.max_steps = 3;
    let done = advance(&f, Some(start), &model, &tools, &policies).await;
    assert_eq!(done.end, Some(End::StepLimit));
    assert_eq!(done.steps, 3);
    assert_eq!(model.asked().len(), 3);
    assert_eq!(
        tools.ran().len(),
        3,
        "read-only tools ran by the policy, no pause"
    );
    assert!(matches!(
        &done.calls[0].decision,
        Some(Decision::Approve { by: Decider::Policy { policy }, .. }) if policy == "read_only"
    ));
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn policies_approve_by_tool_and_by_server_and_nothing_else(pool: PgPool) {
    let f = fixture(pool).await;
    let two = || {
        Scripted::new(vec![
            calls(&[
                ("a", "calc__add", json!({"a": 1, "b": 1})),
                ("b", "clock__slow", json!({"ms": 1})),
            ]),
            text("ok"),
        ])
    };
    let by_tool = Policies {
        tools: [(("calc".to_owned(), "add".to_owned()), key("calc"))].into(),
        ..Policies::default()
    };
    let tools = Local::default();
    let paused = advance(&f, Some(question()), &two(), &tools, &by_tool).await;
    assert_eq!(paused.next, Step::AwaitApproval);
    let undecided: Vec<&str> = paused.undecided().map(|c| c.id.as_str()).collect();
    assert_eq!(
        undecided,
        vec![paused.calls[1].id.as_str()],
        "the tool policy decided a, not b"
    );
    assert!(
        tools.ran().is_empty(),
        "nothing runs until every call is decided"
    );

    let other = Fixture {
        thread: chats::create(&f.db, f.user, None).await.unwrap().thread_id,
        ..f
    };
    let by_both = Policies {
        servers: [("clock".to_owned(), key("clock"))].into(),
        ..by_tool
    };
    let tools = Local::default();
    let done = advance(&other, Some(question()), &two(), &tools, &by_both).await;
    assert_eq!(done.end, Some(End::Answered), "no pause");
    assert_eq!(tools.ran().len(), 2);
    let policies: Vec<String> = done
        .calls
        .iter()
        .map(|c| match &c.decision {
            Some(Decision::Approve {
                by: Decider::Policy { policy },
                ..
            }) => policy.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(policies, vec!["tool", "server"]);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn stop_ends_the_run_in_any_step(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![calls(&[("c1", "clock__slow", json!({"ms": 60_000}))])]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    decide(&f, &paused.calls[0].id, approve()).await;

    let (stop, mut stopped) = watch::channel(None);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop.send(Some(End::Stopped));
        // Keep the sender until the run has seen it.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let started = std::time::Instant::now();
    let done = advance_until(&f, None, &model, &tools, &Policies::default(), &mut stopped).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the tool was abandoned"
    );
    assert_eq!(done.end, Some(End::Stopped));
    assert_eq!(done.calls[0].state, CallState::Interrupted);
    let latest = store::latest(&f.db, f.user, f.thread)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latest.state.end,
        Some(End::Stopped),
        "the stop is checkpointed"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_call_running_when_the_server_died_is_interrupted_not_run_again(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[("c1", "clock__slow", json!({"ms": 60_000}))]),
        text("Sorry, that was interrupted."),
    ]);
    let tools = Local::default();
    let paused = ask(&f, &model, &tools).await;
    decide(&f, &paused.calls[0].id, approve()).await;
    // The run starts the tool; then its server dies (the run is dropped mid-call).
    let policies = Policies::default();
    let cut_off = advance(&f, None, &model, &tools, &policies);
    let died = tokio::time::timeout(Duration::from_millis(300), cut_off).await;
    assert!(died.is_err(), "the tool was still running");
    assert_eq!(tools.ran().len(), 1);

    // What is on disk says the call was running; read back and resumed, it is interrupted, and
    // the model is told so.
    let mut latest = store::latest(&f.db, f.user, f.thread)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.state.calls[0].state, CallState::Running);
    latest.state.interrupt_running();
    let specs = specs();
    let history = history();
    let deps = Deps {
        history: &history,
        model: &model,
        tools: &tools,
        specs: &specs,
        policies: &policies,
        search_over: 0,
    };
    let (_stop, mut stopped) = watch::channel(None);
    let mut thread = Thread::new(f.db.clone(), f.thread, latest.seq);
    let done = domain::agent::run(latest.state, &deps, &mut stopped, &mut thread)
        .await
        .unwrap();
    assert_eq!(tools.ran().len(), 1, "not run again");
    assert_eq!(done.calls[0].state, CallState::Interrupted);
    assert_eq!(done.end, Some(End::Answered));
    let (messages, _) = &model.asked()[1];
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, Message::Tool { content, .. } if content.contains("interrupted")))
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn decisions_are_refused_twice_for_unknown_calls_and_for_other_people(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        calls(&[
            ("c1", "calc__add", json!({"a": 1, "b": 2})),
            ("c2", "calc__add", json!({})),
        ]),
        text("ok"),
    ]);
    let paused = ask(&f, &model, &Local::default()).await;
    let (c1, c2) = (paused.calls[0].id.as_str(), paused.calls[1].id.as_str());

    let bob = bob(&f.db).await;
    assert_eq!(
        decisions::decide(&f.db, bob, f.thread, c1, approve())
            .await
            .unwrap(),
        None
    );
    assert_eq!(store::latest(&f.db, bob, f.thread).await.unwrap(), None);

    decide(&f, c1, approve()).await;
    let twice = decisions::decide(&f.db, f.user, f.thread, c1, reject("changed my mind")).await;
    assert!(twice.unwrap_err().to_string().contains("decided already"));
    let unknown = decisions::decide(&f.db, f.user, f.thread, "nope", approve()).await;
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("no tool call 'nope'")
    );

    // Two decisions at once on the same call: exactly one is recorded.
    let (a, b) = tokio::join!(
        decisions::decide(&f.db, f.user, f.thread, c2, approve()),
        decisions::decide(&f.db, f.user, f.thread, c2, reject("no")),
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_call_for_a_tool_not_offered_or_with_bad_json_is_answered_with_an_error(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![
        Ok(Completion {
            text: String::new(),
            calls: vec![
                llm::ToolCall {
                    id: "x".into(),
                    name: "evil__rm".into(),
                    arguments: "{}".into(),
                },
                llm::ToolCall {
                    id: "y".into(),
                    name: "calc__add".into(),
                    arguments: "{not json".into(),
                },
            ],
            ..Default::default()
        }),
        text("I could not do that."),
    ]);
    let tools = Local::default();
    let done = ask(&f, &model, &tools).await;
    assert_eq!(done.end, Some(End::Answered), "no pause: nothing could run");
    assert!(tools.ran().is_empty());
    let (messages, _) = &model.asked()[1];
    let errors: Vec<&str> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool { content, .. } => Some(content.as_str()),
            _ => None,
        })
        .collect();
    assert!(errors[0].contains("no tool named 'evil__rm'"), "{errors:?}");
    assert!(errors[1].contains("not valid JSON"), "{errors:?}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_failing_model_ends_the_run_with_its_message(pool: PgPool) {
    let f = fixture(pool).await;
    let model = Scripted::new(vec![Err("The model provider is down.".into())]);
    let done = ask(&f, &model, &Local::default()).await;
    assert_eq!(
        done.end,
        Some(End::Failed {
            message: "The model provider is down.".into()
        })
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_deleted_chat_takes_its_checkpoints_with_it_and_takes_no_more(pool: PgPool) {
    use domain::agent::Checkpoints;
    let f = fixture(pool).await;
    let model = Scripted::new(vec![calls(&[("c1", "calc__add", json!({"a": 1}))])]);
    let paused = ask(&f, &model, &Local::default()).await;
    let count = |db: Database, thread: Uuid| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM checkpoints WHERE thread_id = $1")
            .bind(thread)
            .fetch_one(db.pool())
            .await
            .unwrap()
    };
    assert_eq!(count(f.db.clone(), f.thread).await, 1);
    let chat: Uuid = sqlx::query_scalar("SELECT id FROM chats WHERE thread_id = $1")
        .bind(f.thread)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert!(chats::delete(&f.db, f.user, chat).await.unwrap());
    assert_eq!(
        count(f.db.clone(), f.thread).await,
        0,
        "deleted with the chat"
    );

    // A run still going when its chat was deleted cannot write another.
    let mut thread = Thread::new(f.db.clone(), f.thread, 0);
    assert!(thread.save(&paused).await.is_err());
    assert_eq!(count(f.db.clone(), f.thread).await, 0);

    // Deleting a person deletes their chats' checkpoints too.
    let other = chats::create(&f.db, f.user, None).await.unwrap();
    Thread::new(f.db.clone(), other.thread_id, -1)
        .save(&paused)
        .await
        .unwrap();
    assert_eq!(count(f.db.clone(), other.thread_id).await, 1);
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(f.user)
        .execute(f.db.pool())
        .await
        .unwrap();
    assert_eq!(count(f.db.clone(), other.thread_id).await, 0);
}

/// A question asked in `chat` and answered through instance `db` until it pauses for approval of
/// one `calc__add` call (`c1`), as a chat's run does.
async fn pause_in_chat(db: &Database, paused: &Paused, user: Uuid, chat: Uuid) -> store::Answer {
    let conversation = chats::conversation(db, user, chat, None)
        .await
        .unwrap()
        .unwrap();
    let asked = chats::ask(db, user, &conversation, "2+40?", "test/model")
        .await
        .unwrap()
        .unwrap();
    let answer = store::Answer {
        user_id: user,
        chat_id: chat,
        message_id: asked.answer.id,
    };
    let model = Scripted::new(vec![calls(&[(
        "c1",
        "calc__add",
        json!({"a": 2, "b": 40}),
    )])]);
    let specs = specs();
    let policies = Policies::default();
    let history = history();
    let deps = Deps {
        history: &history,
        model: &model,
        tools: &Local::default(),
        specs: &specs,
        policies: &policies,
        search_over: 0,
    };
    let seq = store::last_seq(db, user, conversation.chat.thread_id)
        .await
        .unwrap();
    let mut thread = Thread::for_answer(
        db.clone(),
        paused.clone(),
        conversation.chat.thread_id,
        seq,
        answer,
        None,
    );
    let (_stop, mut stopped) = watch::channel(None);
    let state = domain::agent::run(question(), &deps, &mut stopped, &mut thread)
        .await
        .unwrap();
    assert_eq!(state.next, Step::AwaitApproval);
    answer
}

async fn waiting(db: &Database, paused: &Paused, user: Uuid, chat: Uuid) -> store::Waiting {
    match store::pending(db, paused, user, chat).await.unwrap() {
        store::Pending::Waiting(waiting) => *waiting,
        other => panic!("the chat waits for nothing: {other:?}"),
    }
}

/// `decision` on the one call that `waiting` waits for (as [`pause_in_chat`] leaves it).
fn on_its_call(waiting: &store::Waiting, decision: Decision) -> Vec<(String, Decision)> {
    vec![(waiting.latest.state.calls[0].id.clone(), decision)]
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_pause_remembered_by_one_instance_never_decides_on_what_has_changed_since(pool: PgPool) {
    // Two instances on one database, each with its own memory of the runs it paused.
    let (one, two) = (
        (Database::from_pool(pool.clone()), Paused::default()),
        (Database::from_pool(pool.clone()), Paused::default()),
    );
    let f = fixture(pool).await;
    let chat = chats::create(&f.db, f.user, None).await.unwrap();
    pause_in_chat(&one.0, &one.1, f.user, chat.id).await;
    assert!(
        waiting(&one.0, &one.1, f.user, chat.id).await.remembered,
        "no read"
    );
    let read = waiting(&two.0, &two.1, f.user, chat.id).await;
    assert!(!read.remembered);
    // What it remembers is what the other reads.
    assert_eq!(
        store::Waiting {
            remembered: true,
            ..read.clone()
        },
        waiting(&one.0, &one.1, f.user, chat.id).await
    );

    // The other instance rejects the call; this one, remembering the pause, is asked to approve
    // it: refused, on the thread as it is now.
    let reject_it = on_its_call(&read, reject("no"));
    let decided = decisions::decide_waiting(&two.0, &two.1, f.user, chat.id, read, 1, reject_it);
    assert!(decided.await.unwrap().unwrap().complete);
    let stale = waiting(&one.0, &one.1, f.user, chat.id).await;
    let approve_it = on_its_call(&stale, approve());
    let refused =
        decisions::decide_waiting(&one.0, &one.1, f.user, chat.id, stale, 1, approve_it).await;
    assert!(refused.unwrap_err().to_string().contains("not waiting"));
    let latest = store::latest(&f.db, f.user, chat.thread_id)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        latest.state.calls[0].decision,
        Some(Decision::Reject { .. })
    ));
    // ... and it no longer remembers the pause.
    assert_eq!(
        store::pending(&one.0, &one.1, f.user, chat.id)
            .await
            .unwrap(),
        store::Pending::Nothing
    );

    // A remembered pause whose answer was replaced without a checkpoint (as an edit replaces the
    // messages after it) decides nothing.
    let other = chats::create(&f.db, f.user, None).await.unwrap();
    let answer = pause_in_chat(&one.0, &one.1, f.user, other.id).await;
    let remembered = waiting(&one.0, &one.1, f.user, other.id).await;
    assert!(remembered.remembered);
    sqlx::query("DELETE FROM messages WHERE id = $1")
        .bind(answer.message_id)
        .execute(f.db.pool())
        .await
        .unwrap();
    let approve_it = on_its_call(&remembered, approve());
    let refused =
        decisions::decide_waiting(&one.0, &one.1, f.user, other.id, remembered, 1, approve_it)
            .await;
    assert!(refused.unwrap_err().to_string().contains("not waiting"));
    let latest = store::latest(&f.db, f.user, other.thread_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latest.state.next,
        Step::AwaitApproval,
        "no decision was written"
    );

    // Someone else's chat: nothing to see, remembered or not.
    let third = chats::create(&f.db, f.user, None).await.unwrap();
    pause_in_chat(&one.0, &one.1, f.user, third.id).await;
    let bob = bob(&f.db).await;
    for (db, paused) in [&one, &two] {
        assert_eq!(
            store::pending(db, paused, bob, third.id).await.unwrap(),
            store::Pending::NoChat
        );
    }
    // The owner's decision on a pause remembered and still current is written as it is.
    let mine = waiting(&one.0, &one.1, f.user, third.id).await;
    let approve_it = on_its_call(&mine, approve());
    let done =
        decisions::decide_waiting(&one.0, &one.1, f.user, third.id, mine, 1, approve_it).await;
    let done = done.unwrap().unwrap();
    assert!(done.complete);
    assert_eq!(done.thread.state.calls[0].state, CallState::Running);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_run_cut_off_while_its_tools_ran_is_settled_as_interrupted_and_audited(pool: PgPool) {
    let f = fixture(pool).await;
    let chat = chats::create(&f.db, f.user, None).await.unwrap();
    let answer = pause_in_chat(&f.db, &f.paused, f.user, chat.id).await;
    let approved = waiting(&f.db, &f.paused, f.user, chat.id).await;
    let approve_it = on_its_call(&approved, approve());
    let call_id = approve_it[0].0.clone();
    let decided =
        decisions::decide_waiting(&f.db, &f.paused, f.user, chat.id, approved, 1, approve_it);
    // The call is marked running, on disk; then its server dies before running it.
    let decided = decided.await.unwrap().unwrap();
    assert_eq!(decided.thread.state.calls[0].state, CallState::Running);
    assert_eq!(
        store::settle_abandoned(&f.db, &f.paused)
            .await
            .unwrap()
            .len(),
        0,
        "an answer that has shown life lately is left alone"
    );

    sqlx::query("UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = $1")
        .bind(answer.message_id)
        .execute(f.db.pool())
        .await
        .unwrap();
    assert_eq!(
        store::settle_abandoned(&f.db, &f.paused)
            .await
            .unwrap()
            .len(),
        1
    );
    let latest = store::latest(&f.db, f.user, chat.thread_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.state.end, Some(End::Interrupted));
    assert_eq!(latest.state.calls[0].state, CallState::Interrupted);
    let (status, outcome, decision): (String, String, Option<String>) = sqlx::query_as(
        "SELECT m.status, a.outcome, a.decision FROM messages m, tool_audit a
         WHERE m.id = $1 AND a.chat_id = m.chat_id AND a.call_id = $2",
    )
    .bind(answer.message_id)
    .bind(&call_id)
    .fetch_one(f.db.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), outcome.as_str(), decision.as_deref()),
        ("interrupted", "interrupted", Some("approved"))
    );
    assert_eq!(
        store::settle_abandoned(&f.db, &f.paused)
            .await
            .unwrap()
            .len(),
        0,
        "settled once"
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM tool_audit")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn call_ids_are_switchboards_own_unique_and_paired_in_what_the_model_is_given(pool: PgPool) {
    let f = fixture(pool).await;
    // A provider that numbers calls per turn (or sends no id at all), so its ids repeat.
    let model = Scripted::new(vec![
        calls(&[
            ("call_0", "calc__add", json!({"a": 1, "b": 1})),
            ("", "calc__add", json!({"a": 2, "b": 2})),
        ]),
        calls(&[("call_0", "calc__add", json!({"a": 3, "b": 3}))]),
        text("2, 4 and 6."),
    ]);
    let policies = Policies {
        read_only: true,
        ..Policies::default()
    };
    let done = advance(&f, Some(question()), &model, &Local::default(), &policies).await;
    assert_eq!(done.end, Some(End::Answered));
    let ids: Vec<&str> = done.all_calls().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert!(id.len() <= 40, "{id}");
        assert!(
            id.starts_with("call_")
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{id}"
        );
    }
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), 3, "{ids:?}");
    assert!(!ids.contains(&"call_0"), "not the provider's: {ids:?}");
    let turns: Vec<u32> = done.all_calls().map(|c| c.turn).collect();
    assert_eq!(turns, [1, 1, 2]);

    // The model's last request pairs every tool message with the call it answers, by these ids.
    let (messages, _) = model.asked().pop().unwrap();
    let mut asked = Vec::new();
    let mut answered = Vec::new();
    for message in &messages {
        match message {
            Message::Assistant { tool_calls, .. } => {
                asked.extend(tool_calls.iter().map(|c| c.id.clone()))
            }
            Message::Tool { tool_call_id, .. } => {
                assert!(
                    asked.contains(tool_call_id),
                    "{tool_call_id} answers no call"
                );
                answered.push(tool_call_id.clone());
            }
            _ => {}
        }
    }
    assert_eq!(asked, ids);
    assert_eq!(answered, ids);
}

/// A question answered in `chat` (through [`Thread::for_answer`], as a chat's run is), from the
/// thread's latest checkpoint when `start` is None, until it pauses or ends.
async fn in_chat<M: Model>(
    f: &Fixture,
    answer: store::Answer,
    start: Option<RunState>,
    model: &M,
    tools: &Local,
    specs: &[ToolSpec],
    policies: &Policies,
) -> RunState {
    let (db, paused) = (&f.db, &f.paused);
    let thread_id: Uuid = sqlx::query_scalar("SELECT thread_id FROM chats WHERE id = $1")
        .bind(answer.chat_id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    let (state, mut thread) = match start {
        Some(state) => {
            let seq = store::last_seq(db, answer.user_id, thread_id)
                .await
                .unwrap();
            (
                state,
                Thread::for_answer(db.clone(), paused.clone(), thread_id, seq, answer, None),
            )
        }
        None => {
            let latest = store::latest(db, answer.user_id, thread_id)
                .await
                .unwrap()
                .unwrap();
            let last = Some(latest.state.clone());
            let thread = Thread::for_answer(
                db.clone(),
                paused.clone(),
                thread_id,
                latest.seq,
                answer,
                last,
            );
            (latest.state, thread)
        }
    };
    let history = history();
    let deps = Deps {
        history: &history,
        model,
        tools,
        specs,
        policies,
        search_over: 0,
    };
    let (_stop, mut stopped) = watch::channel(None);
    domain::agent::run(state, &deps, &mut stopped, &mut thread)
        .await
        .unwrap()
}

/// An empty answer to `q` in a new chat of the fixture's person.
async fn new_answer(f: &Fixture, q: &str) -> store::Answer {
    let chat = chats::create(&f.db, f.user, None).await.unwrap();
    let conversation = chats::conversation(&f.db, f.user, chat.id, None)
        .await
        .unwrap()
        .unwrap();
    let asked = chats::ask(&f.db, f.user, &conversation, q, "test/model")
        .await
        .unwrap()
        .unwrap();
    store::Answer {
        user_id: f.user,
        chat_id: chat.id,
        message_id: asked.answer.id,
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_decision_for_a_turn_that_no_longer_waits_is_refused_and_runs_nothing(pool: PgPool) {
    let f = fixture(pool).await;
    let answer = new_answer(&f, "slow twice").await;
    // The provider gives both turns' calls the same id.
    let model = Scripted::new(vec![
        calls(&[("call_0", "clock__slow", json!({"ms": 1}))]),
        calls(&[("call_0", "clock__slow", json!({"ms": 2}))]),
        text("done"),
    ]);
    let (tools, specs, none) = (Local::default(), specs(), Policies::default());
    let first = in_chat(&f, answer, Some(question()), &model, &tools, &specs, &none);
    let first = first.await;
    assert_eq!(first.turn(), Some(1));
    let waits = waiting(&f.db, &f.paused, f.user, answer.chat_id).await;
    let approve_first = on_its_call(&waits, approve());
    let decided = decisions::decide_waiting(
        &f.db,
        &f.paused,
        f.user,
        answer.chat_id,
        waits,
        1,
        approve_first,
    );
    assert!(decided.await.unwrap().unwrap().complete);
    let second = in_chat(&f, answer, None, &model, &tools, &specs, &none).await;
    assert_eq!(second.turn(), Some(2));
    assert_eq!(tools.ran().len(), 1);
    assert_ne!(second.calls[0].id, first.calls[0].id);

    // The first turn's approval, sent again (a late second click, a stale tab): refused, whether
    // it names the first turn's call or the one that waits now.
    let now = waiting(&f.db, &f.paused, f.user, answer.chat_id).await;
    let seq = now.latest.seq;
    for replay in [
        on_its_call(
            &waiting(&f.db, &f.paused, f.user, answer.chat_id).await,
            approve(),
        ),
        vec![(first.calls[0].id.clone(), approve())],
    ] {
        let stale = waiting(&f.db, &f.paused, f.user, answer.chat_id).await;
        let refused =
            decisions::decide_waiting(&f.db, &f.paused, f.user, answer.chat_id, stale, 1, replay)
                .await;
        let message = refused.unwrap_err().to_string();
        assert!(message.contains("out of date"), "{message}");
        assert!(message.contains("Reload"), "{message}");
    }
    let latest = store::latest(&f.db, f.user, waits_thread(&f, answer).await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.seq, seq, "nothing was written");
    assert_eq!(latest.state.calls[0].decision, None);
    assert_eq!(tools.ran().len(), 1, "nothing ran");

    // The decision for the turn that waits lands.
    let approve_second = on_its_call(&now, approve());
    let decided = decisions::decide_waiting(
        &f.db,
        &f.paused,
        f.user,
        answer.chat_id,
        now,
        2,
        approve_second,
    );
    assert!(decided.await.unwrap().unwrap().complete);
    let done = in_chat(&f, answer, None, &model, &tools, &specs, &none).await;
    assert_eq!(done.end, Some(End::Answered));
    assert_eq!(tools.ran().len(), 2);
}

async fn waits_thread(f: &Fixture, answer: store::Answer) -> Uuid {
    sqlx::query_scalar("SELECT thread_id FROM chats WHERE id = $1")
        .bind(answer.chat_id)
        .fetch_one(f.db.pool())
        .await
        .unwrap()
}

/// A chat run's checkpoints, and the status its answer showed after each.
struct Watched {
    thread: Thread,
    db: Database,
    answer: Uuid,
    statuses: Vec<String>,
}

impl domain::agent::Checkpoints for Watched {
    async fn save(&mut self, state: &RunState) -> domain::Result<()> {
        self.thread.save(state).await?;
        let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
            .bind(self.answer)
            .fetch_one(self.db.pool())
            .await?;
        self.statuses.push(status);
        Ok(())
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_answer_whose_calls_a_policy_allows_is_never_shown_waiting(pool: PgPool) {
    let f = fixture(pool).await;
    let answer = new_answer(&f, "2+40?").await;
    let model = Scripted::new(vec![
        calls(&[
            ("c1", "calc__add", json!({"a": 2, "b": 40})),
            // A call that cannot run is answered at once: nothing waits for it either.
            ("c2", "calc__nope", json!({})),
        ]),
        text("42"),
    ]);
    let by_tool = Policies {
        tools: [(("calc".to_owned(), "add".to_owned()), key("calc"))].into(),
        ..Policies::default()
    };
    let (specs, tools) = (specs(), Local::default());
    let history = history();
    let deps = Deps {
        history: &history,
        model: &model,
        tools: &tools,
        specs: &specs,
        policies: &by_tool,
        search_over: 0,
    };
    let mut watched = Watched {
        thread: Thread::for_answer(
            f.db.clone(),
            f.paused.clone(),
            waits_thread(&f, answer).await,
            -1,
            answer,
            None,
        ),
        db: f.db.clone(),
        answer: answer.message_id,
        statuses: Vec::new(),
    };
    let (_stop, mut stopped) = watch::channel(None);
    let done = domain::agent::run(question(), &deps, &mut stopped, &mut watched)
        .await
        .unwrap();
    assert_eq!(done.end, Some(End::Answered));
    assert_eq!(tools.ran().len(), 1);
    assert_eq!(
        watched.statuses,
        ["streaming", "streaming", "complete"],
        "every status the answer went through"
    );
    assert_eq!(
        steps_checkpointed(&Fixture {
            thread: waits_thread(&f, answer).await,
            db: f.db.clone(),
            paused: f.paused.clone(),
            user: f.user,
        })
        .await,
        ["run_tools", "call_model", "done"],
        "no pause was checkpointed"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn policies_and_approvals_hold_only_for_the_server_definition_they_were_given_for(
    pool: PgPool,
) {
    let f = fixture(pool).await;
    let add = || {
        Scripted::new(vec![
            calls(&[("c1", "calc__add", json!({"a": 1, "b": 1}))]),
            text("2"),
        ])
    };
    // A policy given for the server as it was before (another key) does not allow its calls now.
    let for_the_old_calc = Policies {
        tools: [(
            ("calc".to_owned(), "add".to_owned()),
            "calc-before".to_owned(),
        )]
        .into(),
        servers: [("calc".to_owned(), "calc-before".to_owned())].into(),
        ..Policies::default()
    };
    let tools = Local::default();
    let paused = advance(&f, Some(question()), &add(), &tools, &for_the_old_calc).await;
    assert_eq!(paused.next, Step::AwaitApproval, "the call waits");
    assert_eq!(paused.calls[0].decision, None);
    assert_eq!(paused.calls[0].server_key, key("calc"));

    // Approved; then the server is redefined before the call runs: it is not run.
    let model = Scripted::new(vec![text("It could not run.")]);
    decide(&f, &paused.calls[0].id, approve()).await;
    let redefined: Vec<ToolSpec> = specs()
        .into_iter()
        .map(|s| ToolSpec {
            server_key: format!("{}-after", s.server),
            ..s
        })
        .collect();
    let latest = store::latest(&f.db, f.user, f.thread)
        .await
        .unwrap()
        .unwrap();
    let history = history();
    let deps = Deps {
        history: &history,
        model: &model,
        tools: &tools,
        specs: &redefined,
        policies: &Policies::default(),
        search_over: 0,
    };
    let (_stop, mut stopped) = watch::channel(None);
    let mut thread = Thread::new(f.db.clone(), f.thread, latest.seq);
    let done = domain::agent::run(latest.state, &deps, &mut stopped, &mut thread)
        .await
        .unwrap();
    assert!(tools.ran().is_empty(), "not run on another server");
    let CallState::Finished { result } = &done.calls[0].state else {
        panic!("{:?}", done.calls[0].state)
    };
    assert!(result.is_error);
    assert!(result.text.contains("was changed"), "{}", result.text);
}

/// An instance of Switchboard's runs on `db`, with no model and no tool server (enough to follow
/// and settle runs), hearing of the others on the database.
fn instance(db: &Database) -> domain::runs::Runs {
    use domain::mcp::{Mcp, Registry, Settings};
    let key = domain::secrets::SecretKey::from_base64(&domain::secrets::SecretKey::generate());
    let mcp = Mcp::new(
        db.clone(),
        Registry::new(vec![]).unwrap(),
        key.unwrap(),
        Settings::default(),
    );
    let runs = domain::runs::Runs::new(
        db.clone(),
        llm::LlmClient::new(llm::ClientOptions::default()),
        llm::Catalog::default(),
        mcp,
    );
    tokio::spawn(runs.clone().share_with_other_instances());
    runs
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_settled_answers_events_reach_pages_on_every_instance(pool: PgPool) {
    use domain::runs::EventKind;
    let f = fixture(pool).await;
    let (one, two) = (instance(&f.db), instance(&f.db));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while one.other_instances() < 1 || two.other_instances() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "never heard of each other"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A run whose call was approved and marked running, then its server died (the answer shows no
    // life for a minute).
    let chat = chats::create(&f.db, f.user, None).await.unwrap();
    let answer = pause_in_chat(&f.db, &f.paused, f.user, chat.id).await;
    let approved = waiting(&f.db, &f.paused, f.user, chat.id).await;
    let approve_it = on_its_call(&approved, approve());
    let decided =
        decisions::decide_waiting(&f.db, &f.paused, f.user, chat.id, approved, 1, approve_it);
    decided.await.unwrap().unwrap();
    sqlx::query("UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = $1")
        .bind(answer.message_id)
        .execute(f.db.pool())
        .await
        .unwrap();

    // A page follows the chat on each instance; one instance settles the run.
    let mut pages = [one.subscribe(chat.id, None), two.subscribe(chat.id, None)];
    assert_eq!(one.settle_abandoned().await.unwrap(), 1);
    for (i, page) in pages.iter_mut().enumerate() {
        let mut seen = Vec::new();
        let finished = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let event = page.receiver.recv().await.unwrap();
                seen.push(event.kind.clone());
                if let EventKind::RunFinished { status, .. } = &event.kind {
                    return *status;
                }
            }
        })
        .await;
        assert_eq!(
            finished.unwrap_or_else(|_| panic!("page {i} was not told: {seen:?}")),
            chats::Status::Interrupted,
            "page {i}"
        );
        assert!(
            seen.iter()
                .any(|e| matches!(e, EventKind::ToolResult { call, .. }
                if call.state == protocol::CallStatus::Interrupted)),
            "page {i} sees its call interrupted: {seen:?}"
        );
    }
    assert_eq!(two.settle_abandoned().await.unwrap(), 0, "settled once");
}

/// A chat with 200 tools (more than the threshold): each model call is offered the search and a
/// few tools, a search the model asks for runs at once (Switchboard's own, reading names and
/// descriptions only), what it found is offered from the next call on and runs after approval as
/// any tool, and the answer records what each call was offered.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_chat_with_many_tools_offers_a_search_and_what_it_finds(pool: PgPool) {
    let f = fixture(pool).await;
    let mut specs: Vec<ToolSpec> = (0..199)
        .map(|i| ToolSpec {
            server: "big".into(),
            server_key: key("big"),
            tool: format!("noise_{i}"),
            description: format!("Files report number {i} in the archive"),
            input_schema: json!({"type": "object"}),
            annotations: Annotations::default(),
        })
        .collect();
    specs.push(ToolSpec {
        server: "calc".into(),
        server_key: key("calc"),
        tool: "add".into(),
        description: "Adds two numbers and gives their sum".into(),
        input_schema: json!({"type": "object"}),
        annotations: Annotations::default(),
    });
    let model = Scripted::new(vec![
        calls(&[("s", "search_tools", json!({"query": "sum two numbers"}))]),
        calls(&[("a", "calc__add", json!({"a": 2, "b": 3}))]),
        text("It is 5."),
    ]);
    let tools = Local::default();
    let history = vec![Message::User {
        content: "Help me with this, please.".into(),
    }];
    let policies = Policies::default();
    let deps = Deps {
        history: &history,
        model: &model,
        tools: &tools,
        specs: &specs,
        policies: &policies,
        search_over: 40,
    };
    let (_stop, mut stopped) = watch::channel(None);
    let mut thread = Thread::new(f.db.clone(), f.thread, -1);
    let paused = domain::agent::run(question(), &deps, &mut stopped, &mut thread)
        .await
        .unwrap();

    let asked = model.asked();
    let first = &asked[0].1;
    assert_eq!(first[0], "search_tools");
    assert!(first.len() <= 1 + 8, "a few, not 200: {first:?}");
    assert!(!first.contains(&"calc__add".to_owned()), "{first:?}");
    // The search ran without asking; its answer named the tool, now offered.
    let search = &paused.earlier[0];
    assert_eq!(search.tool, "search_tools");
    assert!(search.server.is_empty());
    let CallState::Finished { result } = &search.state else {
        panic!("{:?}", search.state)
    };
    assert!(
        result.text.contains("calc__add: Adds two numbers"),
        "{}",
        result.text
    );
    assert!(
        asked[1].1.contains(&"calc__add".to_owned()),
        "{:?}",
        asked[1].1
    );
    assert!(tools.ran().is_empty(), "the search is no tool of a server");
    // The found tool waits for the person, as any tool.
    assert_eq!(paused.next, Step::AwaitApproval);
    assert_eq!(paused.calls[0].tool, "add");
    let offered: Vec<(u32, u32, bool)> = paused
        .usage
        .offered
        .iter()
        .map(|o| (o.turn, o.of, o.tools.contains(&"calc__add".to_owned())))
        .collect();
    assert_eq!(offered, [(1, 200, false), (2, 200, true)]);

    decide(&f, &paused.calls[0].id, approve()).await;
    let done = resume(&f, &model, &tools).await;
    assert_eq!(done.end, Some(End::Answered));
    assert_eq!(tools.ran().len(), 1);
    assert_eq!(tools.ran()[0].1, "add");
}
