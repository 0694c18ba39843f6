//! A checkpointed approval turn of the agent graph: the model asks for a tool → the run pauses for
//! approval → the person approves → the tool runs → the model answers → end, with a checkpoint in
//! PostgreSQL after every step (the approval too), against a model that answers at once and a tool
//! in this process. Each checkpoint is written as a chat's run writes it: with the answer's text,
//! calls and status, and the audit rows of the calls it settled, in the same statement; and, as a
//! chat's run does, the turn reads the conversation it answers from the chat's messages when it
//! starts and when it resumes. Serial latency per turn, then throughput with 64 threads at once;
//! each turn answers a question in a chat of its own, made (with the question) before the turn's
//! clock starts. Then the cost of a long chat: turns in chats of 500 earlier messages alternated
//! with turns in fresh chats (their ratio), and the checkpoint bytes of each turn of one chat
//! growing to 500 messages.
//!
//!     DATABASE_URL=postgres://... cargo bench -p domain --bench agent_turn [-- TURNS]
//!
//! DATABASE_URL must let the bench create a database (it makes `switchboard_bench_agent`, fresh each
//! time). TURNS (default 500) is the serial count; the concurrent part runs 64 threads × TURNS/8;
//! the long-chat part TURNS/2 of each kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::Database;
use domain::agent::decisions;
use domain::agent::store::{self, History, Paused, Thread};
use domain::agent::{
    Completion, Decider, Decision, Deps, End, Model, Policies, RunState, ToolResult, ToolSpec,
    Tools,
};
use domain::chats::Chat;
use domain::llm::{self, Message};
use domain::mcp::Annotations;
use domain::users::{Identity, Role, RoleDecision};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use uuid::Uuid;

/// Asks for the tool until it has seen its result, then answers.
struct Instant0;

impl Model for Instant0 {
    async fn complete(&self, messages: &[Message], _: &[llm::Tool]) -> Result<Completion, String> {
        if matches!(messages.last(), Some(Message::Tool { .. })) {
            Ok(Completion {
                text: "It is 42.".into(),
                calls: vec![],
                ..Default::default()
            })
        } else {
            Ok(Completion {
                text: String::new(),
                calls: vec![llm::ToolCall {
                    id: "call-1".into(),
                    name: "calc__add".into(),
                    arguments: r#"{"a":2,"b":40}"#.into(),
                }],
                ..Default::default()
            })
        }
    }
}

struct Add;

impl Tools for Add {
    async fn call(
        &self,
        _: &str,
        _: &str,
        _: &str,
        arguments: Map<String, Value>,
        _: Option<&domain::agent::Asking>,
    ) -> ToolResult {
        let sum = arguments["a"].as_i64().unwrap_or(0) + arguments["b"].as_i64().unwrap_or(0);
        ToolResult {
            is_error: false,
            text: sum.to_string(),
            duration_ms: 0,
            parts: Vec::new(),
            sign_in: None,
            asking: None,
        }
    }
}

fn specs() -> Vec<ToolSpec> {
    vec![ToolSpec {
        server: "calc".into(),
        server_key: "calc-key".into(),
        tool: "add".into(),
        description: "Adds two numbers".into(),
        input_schema: json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}),
        annotations: Annotations::default(),
    }]
}

async fn advance(
    db: &Database,
    remembered: &Paused,
    thread_id: Uuid,
    state: RunState,
    seq: i32,
    answer: store::Answer,
    history: History,
) -> RunState {
    let specs = specs();
    let policies = Policies::default();
    let deps = Deps {
        history: &history,
        model: &Instant0,
        tools: &Add,
        specs: &specs,
        policies: &policies,
        search_over: 0,
    };
    let last = (state.steps > 0).then(|| state.clone());
    let thread = Thread::for_answer(db.clone(), remembered.clone(), thread_id, seq, answer, last);
    let mut thread = thread.remembering(history.clone());
    let (_stop, mut stopped) = watch::channel(None);
    domain::agent::run(state, &deps, &mut stopped, &mut thread)
        .await
        .unwrap()
}

/// How long a turn took: in all, and its three parts (the model's call up to the pause, the
/// decision, the tool and the model's answer).
#[derive(Clone, Copy)]
struct Took {
    all: Duration,
    parts: [Duration; 3],
}

/// What every turn is asked.
const QUESTION: &str = "2+40?";

/// A new chat of `user`'s with `earlier` messages in it already (questions and answers in turn,
/// about 220 bytes each, as in the chats the long-chat figures were first taken from).
async fn chat(db: &Database, user: Uuid, earlier: usize) -> Chat {
    let chat = domain::chats::create(db, user, None).await.unwrap();
    if earlier > 0 {
        sqlx::query(
            "INSERT INTO messages (chat_id, position, role, content)
             SELECT $1, i, CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
                    repeat('An earlier message of a long conversation, ', 5) || i
             FROM generate_series(0, $2 - 1) AS i",
        )
        .bind(chat.id)
        .bind(earlier as i32)
        .execute(db.pool())
        .await
        .unwrap();
    }
    chat
}

/// A question asked: its chat's thread and last checkpoint, its answer, and the conversation the
/// answer answers.
type Asked = (Uuid, i32, store::Answer, History);

/// The question of the next turn asked in `chat`, as a send asks it: the conversation read, the
/// question stored (before the turn's clock starts: the turn is the run's work).
async fn ask_in(db: &Database, user: Uuid, chat: &Chat) -> Asked {
    let conversation = domain::chats::conversation(db, user, chat.id, None)
        .await
        .unwrap()
        .unwrap();
    let mut history = domain::agent::history::for_model(&conversation.history, true);
    history.push(Message::User {
        content: QUESTION.into(),
    });
    let asked = domain::chats::ask(db, user, &conversation, QUESTION, "bench/instant")
        .await
        .unwrap()
        .unwrap();
    let answer = store::Answer {
        user_id: user,
        chat_id: chat.id,
        message_id: asked.answer.id,
    };
    let seq = asked.last_checkpoint;
    (chat.thread_id, seq, answer, history.into())
}

/// A new chat of `user`'s with its question asked: what a turn starts from.
async fn question(db: &Database, user: Uuid) -> Asked {
    ask_in(db, user, &chat(db, user, 0).await).await
}

/// The bytes of a thread's checkpoints as stored.
async fn checkpoint_bytes(db: &Database, thread_id: Uuid) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT sum(pg_column_size(state))::bigint FROM checkpoints WHERE thread_id = $1",
    )
    .bind(thread_id)
    .fetch_one(db.pool())
    .await
    .unwrap()
    .unwrap_or(0)
}

/// One whole turn on a question from [`question`].
async fn turn(db: &Database, asked: Asked) -> Took {
    turn_deciding(db, asked, false).await
}

/// [`turn`], its decision made on this instance (`elsewhere` false: the pause is remembered) or as
/// another instance makes it (it reads the pause and the conversation).
async fn turn_deciding(
    db: &Database,
    (thread_id, seq, answer, history): Asked,
    elsewhere: bool,
) -> Took {
    // This instance's memory of the runs it paused, as a chat's runs keep it.
    let remembered = Paused::default();
    let user = answer.user_id;
    let started = Instant::now();
    let start = RunState::new(10);
    let paused = advance(db, &remembered, thread_id, start, seq, answer, history).await;
    assert!(paused.undecided().next().is_some());
    let pause = started.elapsed();
    let remembered = if elsewhere {
        Paused::default()
    } else {
        remembered
    };
    // As a chat's decision is made (`Runs::decide`): what the chat waits for, then the decision.
    let store::Pending::Waiting(waiting) = store::pending(db, &remembered, user, answer.chat_id)
        .await
        .unwrap()
    else {
        panic!("the answer waits for a decision");
    };
    let approve = Decision::Approve {
        by: Decider::Person,
        arguments: None,
    };
    let call_id = paused.calls[0].id.clone();
    let decided = decisions::decide_waiting(
        db,
        &remembered,
        user,
        answer.chat_id,
        *waiting,
        1,
        vec![(call_id, approve)],
    )
    .await
    .unwrap()
    .unwrap();
    assert!(decided.complete);
    let decision = started.elapsed();
    // As the run resumes (`Runs::decide`): the conversation remembered with the pause (read
    // again from the chat where the pause was not remembered).
    let history = match decided.history {
        Some(history) => history,
        None => {
            let conversation =
                domain::chats::conversation_before(db, user, answer.chat_id, answer.message_id)
                    .await
                    .unwrap()
                    .unwrap();
            domain::agent::history::for_model(&conversation.history, true).into()
        }
    };
    let done = advance(
        db,
        &remembered,
        thread_id,
        decided.thread.state,
        decided.thread.seq,
        answer,
        history,
    )
    .await;
    let all = started.elapsed();
    assert_eq!(done.end, Some(End::Answered));
    Took {
        all,
        parts: [pause, decision - pause, all - decision],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let turns: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let url = std::env::var("DATABASE_URL")
        .expect("set DATABASE_URL to a PostgreSQL server where the bench may create a database");
    let db = Database::fresh(&url, "switchboard_bench_agent")
        .await
        .unwrap();
    let user = domain::users::sign_in(&db, &Identity::local(), RoleDecision::Fixed(Role::Admin))
        .await
        .unwrap()
        .id;
    turn(&db, question(&db, user).await).await;
    let checkpoints_per_turn = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM checkpoints")
        .fetch_one(db.pool())
        .await
        .unwrap();

    for _ in 0..50 {
        turn(&db, question(&db, user).await).await;
    }
    // The floor, through the same pool: a bare round trip, and a bare insert-and-commit.
    sqlx::query("CREATE TABLE bench_commit (id bigserial PRIMARY KEY, v int)")
        .execute(db.pool())
        .await
        .unwrap();
    let mut trips = Vec::with_capacity(turns);
    let mut commits = Vec::with_capacity(turns);
    for _ in 0..turns {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(db.pool()).await.unwrap();
        trips.push(started.elapsed());
        let started = Instant::now();
        sqlx::query("INSERT INTO bench_commit (v) VALUES (1)")
            .execute(db.pool())
            .await
            .unwrap();
        commits.push(started.elapsed());
    }
    trips.sort();
    commits.sort();
    println!(
        "through the same pool: a bare round trip p50 {} ms, an insert-and-commit p50 {} ms",
        ms(percentile(&trips, 0.5)),
        ms(percentile(&commits, 0.5))
    );
    let mut took = Vec::with_capacity(turns);
    for _ in 0..turns {
        let asked = question(&db, user).await;
        took.push(turn(&db, asked).await);
    }
    let mut times: Vec<Duration> = took.iter().map(|t| t.all).collect();
    times.sort();
    let serial_total: Duration = times.iter().sum();
    println!(
        "a checkpointed approval turn ({checkpoints_per_turn} checkpoints, each its own commit), {turns} turns one after another:"
    );
    println!(
        "p50 {} ms, p99 {} ms, mean {} ms ({:.0} turns/s)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(serial_total / turns as u32),
        turns as f64 / serial_total.as_secs_f64()
    );
    let part = |i: usize| {
        let mut part: Vec<Duration> = took.iter().map(|t| t.parts[i]).collect();
        part.sort();
        ms(percentile(&part, 0.5))
    };
    println!(
        "p50 of its parts: to the pause {} ms, the decision {} ms, tool and answer {} ms",
        part(0),
        part(1),
        part(2)
    );

    let threads = 64;
    let each = (turns / 8).max(10);
    let db = Arc::new(db);
    // Every thread's questions are made first (64 at once); the clock starts when all are.
    let making: Vec<_> = (0..threads)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut questions = Vec::with_capacity(each);
                for _ in 0..each {
                    questions.push(question(&db, user).await);
                }
                questions
            })
        })
        .collect();
    let mut questions = Vec::with_capacity(threads);
    for made in making {
        questions.push(made.await.unwrap());
    }
    let started = Instant::now();
    let tasks: Vec<_> = questions
        .into_iter()
        .map(|questions| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(each);
                for asked in questions {
                    times.push(turn(&db, asked).await.all);
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let wall = started.elapsed();
    all.sort();
    println!(
        "{threads} threads at once, {} turns in {:.2} s: {:.0} turns/s (p50 {} ms, p99 {} ms a turn)",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
    );

    long_chats(&db, user, (turns / 2).max(10)).await;
}

/// A turn in a chat of 500 earlier messages against one in a fresh chat, alternated (fresh, long,
/// each also decided as another instance decides it, fresh, ...) so that all see the same machine; then one chat grown turn
/// by turn to 500 messages, with the checkpoint bytes each turn added.
async fn long_chats(db: &Database, user: Uuid, each: usize) {
    const EARLIER: usize = 500;
    let (mut fresh, mut long) = (Vec::with_capacity(each), Vec::with_capacity(each));
    let (mut fresh_elsewhere, mut elsewhere) = (Vec::with_capacity(each), Vec::with_capacity(each));
    let (mut fresh_bytes, mut long_bytes) = (0, 0);
    for i in 0..each {
        let asked = ask_in(db, user, &chat(db, user, 0).await).await;
        let thread = asked.0;
        fresh.push(turn(db, asked).await.all);
        fresh_bytes = checkpoint_bytes(db, thread).await;
        let asked = ask_in(db, user, &chat(db, user, EARLIER).await).await;
        let thread = asked.0;
        long.push(turn(db, asked).await.all);
        long_bytes = checkpoint_bytes(db, thread).await;
        let asked = ask_in(db, user, &chat(db, user, 0).await).await;
        fresh_elsewhere.push(turn_deciding(db, asked, true).await.all);
        let asked = ask_in(db, user, &chat(db, user, EARLIER).await).await;
        elsewhere.push(turn_deciding(db, asked, true).await.all);
        if i == 0 {
            // The first of each only warms up.
            fresh.clear();
            long.clear();
            fresh_elsewhere.clear();
            elsewhere.clear();
        }
    }
    fresh.sort();
    long.sort();
    fresh_elsewhere.sort();
    elsewhere.sort();
    let ratio = |p: f64| percentile(&long, p).as_secs_f64() / percentile(&fresh, p).as_secs_f64();
    println!(
        "in a chat of {EARLIER} earlier messages against a fresh chat, {} turns of each alternated:",
        fresh.len()
    );
    println!(
        "fresh p50 {} ms (p10 {}, p90 {}), long p50 {} ms (p10 {}, p90 {}): long/fresh {:.2}× at p50, {:.2}× at p90",
        ms(percentile(&fresh, 0.5)),
        ms(percentile(&fresh, 0.1)),
        ms(percentile(&fresh, 0.9)),
        ms(percentile(&long, 0.5)),
        ms(percentile(&long, 0.1)),
        ms(percentile(&long, 0.9)),
        ratio(0.5),
        ratio(0.9),
    );
    println!(
        "decided as another instance decides (reading the pause and the conversation): fresh p50 {} ms (p10 {}, p90 {}), long p50 {} ms (p10 {}, p90 {}): long/fresh {:.2}× at p50",
        ms(percentile(&fresh_elsewhere, 0.5)),
        ms(percentile(&fresh_elsewhere, 0.1)),
        ms(percentile(&fresh_elsewhere, 0.9)),
        ms(percentile(&elsewhere, 0.5)),
        ms(percentile(&elsewhere, 0.1)),
        ms(percentile(&elsewhere, 0.9)),
        percentile(&elsewhere, 0.5).as_secs_f64() / percentile(&fresh_elsewhere, 0.5).as_secs_f64(),
    );
    println!(
        "checkpoint bytes of one turn: {fresh_bytes} in the fresh chat, {long_bytes} in the long one"
    );

    // One chat, turn after turn, up to 500 messages: what each turn adds to its checkpoints.
    let grown = chat(db, user, 0).await;
    let mut before = 0;
    let mut added = Vec::with_capacity(EARLIER / 2);
    for _ in 0..EARLIER / 2 {
        let asked = ask_in(db, user, &grown).await;
        turn(db, asked).await;
        let now = checkpoint_bytes(db, grown.thread_id).await;
        added.push(now - before);
        before = now;
    }
    let at = |n: usize| added[n - 1];
    println!(
        "one chat grown to {} messages: its checkpoints hold {} bytes; turn 1 added {}, turn 125 {}, turn 250 {} (linear: each turn adds the same)",
        EARLIER,
        before,
        at(1),
        at(125),
        at(EARLIER / 2),
    );
}
