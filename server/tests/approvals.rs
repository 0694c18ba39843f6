//! Tool approvals in chats over HTTP, as a script with a personal token drives them: the scripted
//! model (end2end/fake-llm) asks for the reference server-everything's `echo` over Streamable
//! HTTP, the answer waits, and only a recorded decision (or the person's policy) runs the tool.
//! Every call lands in the audit; another person can neither see nor decide it.

mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{
    FakeLlm, SseEvent, SseReader, TestApp, Wire, call, listener, person, start_app,
    until_one_of as until,
};
use uuid::Uuid;

struct World {
    llm: FakeLlm,
    /// The format the model speaks.
    wire: Wire,
    everything: Child,
    /// The reference server's Streamable HTTP address.
    everything_url: String,
    app: TestApp,
    alice: String,
    alice_id: Uuid,
    bob: String,
    file: std::path::PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.everything.kill();
        let _ = self.everything.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

async fn world(pool: PgPool) -> World {
    world_speaking(pool, Wire::OpenAi).await
}

/// [`world`] with a model provider speaking `wire`.
async fn world_speaking(pool: PgPool, wire: Wire) -> World {
    let llm = FakeLlm::start();
    let (everything, ready) =
        support::start_script_with_env("end2end/mcp/everything-http.mjs", &[], &[("PORT", "0")]);
    let file = std::env::temp_dir().join(format!("switchboard-mcp-{}.toml", Uuid::new_v4()));
    std::fs::write(
        &file,
        support::http_server_entry("everything", "Everything", ready["url"].as_str().unwrap()),
    )
    .unwrap();
    let (listener, _) = listener().await;
    let (mut args, vars) = llm.settings_speaking(wire);
    let file_arg = file.display().to_string();
    args.extend(["--mcp-servers-file", file_arg.as_str()]);
    let app = start_app(pool, listener, &args, &vars).await;
    let (alice_id, alice) = person(&app, "alice", "Alice").await;
    let (_, bob) = person(&app, "bob", "Bob").await;
    let world = World {
        llm,
        wire,
        everything,
        everything_url: ready["url"].as_str().unwrap().to_owned(),
        app,
        alice,
        alice_id,
        bob,
        file,
    };
    let (status, body) = world
        .api(&world.alice, "mcp/connect", &[("id", "everything")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, servers) = world.api(&world.alice, "mcp/servers", &[]).await;
        if servers[0]["status"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "{servers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world
}

impl World {
    async fn api(&self, token: &str, endpoint: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        call(
            &reqwest::Client::new(),
            &self.app.base,
            endpoint,
            Some(token),
            form,
        )
        .await
    }

    /// A second instance of the app on the same database (and tool servers), once the two hear
    /// of each other.
    async fn another_instance(&self, pool: PgPool) -> TestApp {
        self.another_instance_with(pool, &self.file).await
    }

    /// [`World::another_instance`], with the servers file `file`.
    async fn another_instance_with(&self, pool: PgPool, file: &std::path::Path) -> TestApp {
        let (listener, _) = listener().await;
        let (mut args, vars) = self.llm.settings_speaking(self.wire);
        let file_arg = file.display().to_string();
        args.extend(["--mcp-servers-file", file_arg.as_str()]);
        let other = start_app(pool, listener, &args, &vars).await;
        support::hear_each_other(&[&self.app, &other]).await;
        other
    }

    /// `POST /api/chats/decide`, as JSON, for the answer and turn `at`.
    async fn decide(
        &self,
        token: &str,
        chat: &str,
        at: &Waits,
        decisions: Value,
    ) -> (StatusCode, Value) {
        self.decide_on(&self.app, token, chat, at, decisions).await
    }

    /// `POST /api/chats/decide` on `app`, as JSON, for the answer and turn `at`.
    async fn decide_on(
        &self,
        app: &TestApp,
        token: &str,
        chat: &str,
        at: &Waits,
        decisions: Value,
    ) -> (StatusCode, Value) {
        let body =
            json!({"id": chat, "answer_id": at.answer, "turn": at.turn, "decisions": decisions});
        self.decide_with(app, token, body).await
    }

    /// `POST /api/chats/decide` on `app` with this JSON body.
    async fn decide_with(&self, app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
        support::post_json(&app.base, "chats/decide", token, &body).await
    }

    async fn new_chat(&self) -> String {
        let (status, chat) = self.api(&self.alice, "chats/create", &[]).await;
        assert_eq!(status, StatusCode::OK, "{chat}");
        chat["id"].as_str().unwrap().to_owned()
    }

    async fn events(&self, token: &str, chat: &str) -> SseReader {
        let response = reqwest::Client::new()
            .get(format!("{}/api/chats/{chat}/events", self.app.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        SseReader::new(response)
    }

    /// Sends `text` in `chat` and reads its events until the answer pauses or ends.
    async fn ask(&self, chat: &str, text: &str) -> (SseReader, Vec<SseEvent>) {
        let mut events = self.events(&self.alice, chat).await;
        let (status, body) = self
            .api(&self.alice, "chats/send", &[("id", chat), ("text", text)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let seen = until(&mut events, &["approval_needed", "run_finished"]).await;
        (events, seen)
    }

    async fn chat(&self, token: &str, chat: &str) -> (StatusCode, Value) {
        self.api(token, "chats/get", &[("id", chat)]).await
    }

    async fn audit(&self) -> Vec<Value> {
        let (status, audit) = self.api(&self.alice, "agent/audit", &[]).await;
        assert_eq!(status, StatusCode::OK, "{audit}");
        audit.as_array().unwrap().clone()
    }
}

/// The answer that waits, and the turn whose calls wait, as its `approval_needed` says.
struct Waits {
    answer: String,
    turn: u64,
}

fn waits(seen: &[SseEvent]) -> Waits {
    let needed = seen
        .iter()
        .rev()
        .find(|e| e.event == "approval_needed")
        .unwrap_or_else(|| panic!("nothing waits: {seen:?}"));
    Waits {
        answer: needed.data["answer_id"].as_str().unwrap().to_owned(),
        turn: needed.data["turn"].as_u64().unwrap(),
    }
}

/// The id of the call the model asked for (its `tool_call` event).
fn asked_call(seen: &[SseEvent]) -> String {
    let asked = seen.iter().find(|e| e.event == "tool_call");
    let asked = asked.unwrap_or_else(|| panic!("no call: {seen:?}"));
    asked.data["call"]["id"].as_str().unwrap().to_owned()
}

/// A `422` whose message says `what`.
fn assert_refused(answer: (StatusCode, Value), what: &str) {
    assert_answered(answer, StatusCode::UNPROCESSABLE_ENTITY, what);
}

/// An error answered with `expected`, whose message says `what`.
fn assert_answered((status, body): (StatusCode, Value), expected: StatusCode, what: &str) {
    assert_eq!(status, expected, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(what), "not '{what}': {body}");
}

fn names(events: &[SseEvent]) -> Vec<&str> {
    let mut names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    names.dedup();
    names
}

const ECHO: &str = r#"Please tool:everything__echo {"message": "hello"}"#;

/// A page that read the chat, then applied every event after its read (as Switchboard's page does,
/// with `protocol::chat::apply`), holds what a fresh read gives: at the pause, and at the end.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_events_applied_to_a_read_give_what_a_new_read_gives(pool: PgPool) {
    events_applied_to_a_read_give_a_new_read(world(pool).await).await;
}

/// The same with Anthropic's model, which thinks before each turn: the thinking streamed to the
/// page, turn after turn, is what the stored answer holds, and so is what the answer used.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_events_applied_to_a_read_give_a_new_read_with_thinking_too(pool: PgPool) {
    let page =
        events_applied_to_a_read_give_a_new_read(world_speaking(pool, Wire::Anthropic).await).await;
    let answer = &page.messages[3];
    assert_eq!(
        answer.thinking,
        "The person asked something. A tool will tell.\n\nThe person asked something. I can answer."
    );
    assert!(
        answer
            .usage
            .as_ref()
            .is_some_and(|u| u.output_tokens > 0 && !u.estimated)
    );
    assert_eq!(answer.model.as_deref(), Some("fake/scripted"));
}

/// Reads a chat with an answer, then applies every event of an approval turn to that read, and
/// compares it with a fresh read at the pause and at the end; returns the page at the end.
async fn events_applied_to_a_read_give_a_new_read(w: World) -> protocol::ChatState {
    use protocol::chat::{Applied, ChatState};
    let chat = w.new_chat().await;
    // An earlier answer, so the page's read has messages already.
    let mut events = w.events(&w.alice, &chat).await;
    let (status, _) = w
        .api(
            &w.alice,
            "chats/send",
            &[("id", chat.as_str()), ("text", "Hi")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    until(&mut events, &["run_finished"]).await;

    // The page's read, and the events after it.
    let (_, read) = w.chat(&w.alice, &chat).await;
    let mut page = ChatState {
        messages: serde_json::from_value(read["messages"].clone()).unwrap(),
        live: serde_json::from_value(read["live"].clone()).unwrap(),
    };
    let after = read["last_event_id"].as_str().unwrap();
    let response = reqwest::Client::new()
        .get(format!(
            "{}/api/chats/{chat}/events?last_event_id={after}",
            w.app.base
        ))
        .bearer_auth(&w.alice)
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(response);
    let apply = |page: &mut ChatState, seen: Vec<SseEvent>| {
        for event in seen {
            let event = serde_json::from_value(event.data.clone())
                .unwrap_or_else(|e| panic!("an event the page reads ({e}): {event:?}"));
            assert_eq!(page.apply(event), Applied::Done);
        }
    };
    let fresh = async |w: &World| -> ChatState {
        let (_, read) = w.chat(&w.alice, &chat).await;
        ChatState {
            messages: serde_json::from_value(read["messages"].clone()).unwrap(),
            live: serde_json::from_value(read["live"].clone()).unwrap(),
        }
    };
    let (status, _) = w
        .api(
            &w.alice,
            "chats/send",
            &[("id", chat.as_str()), ("text", ECHO)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = until(&mut events, &["approval_needed"]).await;
    let at = waits(&seen);
    apply(&mut page, seen);
    assert_eq!(page, fresh(&w).await, "at the pause");
    assert_eq!(page.messages.len(), 4);

    let call_id = page.messages[3].tool_calls[0].id.clone();
    let approve = json!([{"call_id": call_id, "approve": true}]);
    let (status, _) = w.decide(&w.alice, &chat, &at, approve).await;
    assert_eq!(status, StatusCode::OK);
    apply(&mut page, until(&mut events, &["run_finished"]).await);
    assert_eq!(page, fresh(&w).await, "at the end");
    assert_eq!(page.messages[3].content, "The tool said: Echo: hello.");
    page
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_tool_runs_only_after_the_persons_approval(pool: PgPool) {
    let w = world(pool).await;
    let chat = w.new_chat().await;
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    assert_eq!(
        names(&seen),
        ["run_started", "tool_call", "approval_needed"],
        "{seen:?}"
    );
    let call_id = seen[1].data["call"]["id"].as_str().unwrap().to_owned();
    assert_eq!(seen[1].data["call"]["server"], "everything");
    assert_eq!(seen[1].data["call"]["tool"], "echo");
    assert_eq!(seen[2].data["call_ids"], json!([call_id]));
    let at = waits(&seen);
    assert_eq!(at.turn, 1);

    // The pause is stored: the chat shows the waiting answer and its card.
    let (_, data) = w.chat(&w.alice, &chat).await;
    let answer = &data["messages"][1];
    assert_eq!(answer["status"], "waiting", "{data}");
    assert_eq!(answer["id"], at.answer.as_str());
    assert_eq!(answer["tool_calls"][0]["state"], "waiting");
    assert_eq!(answer["tool_calls"][0]["turn"], 1);
    assert_eq!(
        answer["tool_calls"][0]["arguments"],
        "{\n  \"message\": \"hello\"\n}"
    );
    assert!(
        w.audit().await.is_empty(),
        "nothing has run or been decided"
    );

    // A new message waits for the decision; another person cannot see or decide it.
    let never_mind = [("id", chat.as_str()), ("text", "never mind")];
    let refused = w.api(&w.alice, "chats/send", &never_mind).await;
    assert_answered(refused, StatusCode::CONFLICT, "waiting for your decision");
    let approve = json!([{"call_id": call_id, "approve": true}]);
    let (status, _) = w.decide(&w.bob, &chat, &at, approve.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = w.chat(&w.bob, &chat).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A decision must name a pending call, and an edit must fit the tool's input schema.
    let not_a_call = json!([{"call_id": "not-a-call", "approve": true}]);
    let refused = w.decide(&w.alice, &chat, &at, not_a_call).await;
    assert_refused(refused, "not-a-call");
    let bad_edit = json!([{"call_id": call_id, "approve": true, "arguments": {"message": 5}}]);
    assert_refused(w.decide(&w.alice, &chat, &at, bad_edit).await, "do not fit");
    assert!(w.audit().await.is_empty(), "refused decisions run nothing");

    // Approve twice at once (a double click, two tabs): one lands, the tool runs once.
    let (first, second) = tokio::join!(
        w.decide(&w.alice, &chat, &at, approve.clone()),
        w.decide(&w.alice, &chat, &at, approve.clone())
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY],
        "{first:?} {second:?}"
    );
    let rest = until(&mut events, &["run_finished"]).await;
    // The answer goes on: the page's live copy starts from its text so far (a snapshot).
    assert_eq!(
        names(&rest)[..4],
        ["decision", "snapshot", "tool_result", "token"],
        "{rest:?}"
    );
    let result = &rest[2].data["call"];
    assert_eq!(result["state"], "ok", "{result}");
    assert_eq!(result["result"], "Echo: hello");
    assert_eq!(rest.last().unwrap().data["status"], "complete");

    let (_, data) = w.chat(&w.alice, &chat).await;
    let answer = &data["messages"][1];
    assert_eq!(answer["status"], "complete", "{data}");
    assert_eq!(answer["content"], "The tool said: Echo: hello.");
    assert_eq!(answer["tool_calls"][0]["state"], "ok");
    assert_eq!(answer["tool_calls"][0]["decided_by"], "you");
    let audit = w.audit().await;
    assert_eq!(audit.len(), 1, "the tool ran once: {audit:?}");
    assert_eq!(audit[0]["decision"], "approved");
    assert_eq!(audit[0]["decided_by"], "person");
    assert_eq!(audit[0]["outcome"], "ok");
    assert_eq!(audit[0]["result"], "Echo: hello");
    assert_eq!(audit[0]["chat_id"], chat);

    // Nothing waits any more.
    let (status, body) = w.decide(&w.alice, &chat, &at, approve).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let rows = sqlx::query_scalar!(
        "SELECT count(*) FROM tool_audit WHERE user_id = $1",
        w.alice_id
    )
    .fetch_one(w.app.db.pool())
    .await
    .unwrap();
    assert_eq!(rows, Some(1));
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_decision_landing_on_another_instance_is_followed_live_where_the_page_is(pool: PgPool) {
    let w = world(pool.clone()).await;
    let other = w.another_instance(pool).await;
    let chat = w.new_chat().await;
    // The page's stream is on the first instance, where the answer paused.
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    let call_id = seen[1].data["call"]["id"].as_str().unwrap().to_owned();

    let approve = json!([{"call_id": call_id, "approve": true}]);
    let (status, body) = w
        .decide_on(&other, &w.alice, &chat, &waits(&seen), approve)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The run goes on where the decision landed; the page sees all of it.
    let rest = until(&mut events, &["run_finished"]).await;
    assert_eq!(
        names(&rest)[..4],
        ["decision", "snapshot", "tool_result", "token"],
        "{rest:?}"
    );
    assert_eq!(rest[2].data["call"]["result"], "Echo: hello");
    assert_eq!(rest.last().unwrap().data["status"], "complete");
    let text: String = rest
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    let (_, data) = w.chat(&w.alice, &chat).await;
    assert_eq!(data["messages"][1]["content"], text.as_str());
    assert_eq!(text, "The tool said: Echo: hello.");
    let audit = w.audit().await;
    assert_eq!(audit.len(), 1, "the tool ran once: {audit:?}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_edit_is_what_the_tool_gets_and_a_rejection_gets_a_humane_answer(pool: PgPool) {
    edit_and_reject(world(pool).await).await;
}

/// The same through Anthropic's Messages API, its model thinking before each turn: the calls are
/// its `tool_use` blocks, the results `tool_result` blocks, its signed thinking goes back to it
/// within the exchange (the scripted server refuses the turn otherwise, as Anthropic does), and
/// the note on the rejection reaches it in the person's turn.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn approvals_work_the_same_through_anthropics_messages_api(pool: PgPool) {
    edit_and_reject(world_speaking(pool, Wire::Anthropic).await).await;
}

async fn edit_and_reject(w: World) {
    let chat = w.new_chat().await;
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    let call_id = asked_call(&seen);
    let edit = json!([{"call_id": call_id, "approve": true, "arguments": {"message": "edited"}}]);
    let (status, body) = w.decide(&w.alice, &chat, &waits(&seen), edit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until(&mut events, &["run_finished"]).await;
    let (_, data) = w.chat(&w.alice, &chat).await;
    assert_eq!(
        data["messages"][1]["content"],
        "The tool said: Echo: edited."
    );
    assert_eq!(data["messages"][1]["tool_calls"][0]["edited"], true);
    let edited = chat;

    let chat = w.new_chat().await;
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    let call_id = asked_call(&seen);
    let reject = json!([{"call_id": call_id, "approve": false, "reason": "not on a Friday"}]);
    let (status, body) = w.decide(&w.alice, &chat, &waits(&seen), reject).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rest = until(&mut events, &["run_finished"]).await;
    assert!(!names(&rest).contains(&"tool_result"), "{rest:?}");
    let (_, data) = w.chat(&w.alice, &chat).await;
    let answer = &data["messages"][1];
    let text = answer["content"].as_str().unwrap();
    assert!(text.starts_with("Understood, I did not use it."), "{text}");
    assert!(text.contains("not on a Friday"), "{text}");
    assert_eq!(answer["tool_calls"][0]["state"], "rejected");
    assert_eq!(answer["tool_calls"][0]["reason"], "not on a Friday");

    let audit = w.audit().await;
    let rejected = &audit[0];
    assert_eq!(rejected["decision"], "rejected");
    assert_eq!(rejected["outcome"], "not_run");
    assert_eq!(rejected["reason"], "not on a Friday");
    assert_eq!(rejected["result"], Value::Null);
    assert_eq!(audit[1]["arguments"], "{\n  \"message\": \"edited\"\n}");

    // A later answer's model is given the earlier calls, each with what it was told of it (the
    // test model refuses a tool message that answers no call, as OpenAI does).
    for (chat, told) in [
        (&edited, "everything__echo said Echo: edited"),
        (
            &chat,
            "everything__echo said The person declined this tool call: not on a Friday",
        ),
    ] {
        let (_, seen) = w.ask(chat, "recall what the tools said").await;
        assert_eq!(seen.last().unwrap().data["status"], "complete", "{seen:?}");
        let (_, data) = w.chat(&w.alice, chat).await;
        if data["messages"][3]["content"] != format!("Earlier: {told}.") {
            let (_, servers) = w.api(&w.alice, "mcp/servers", &[]).await;
            panic!("not given the earlier calls: {data:#}\nthe servers now: {servers:#}");
        }
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn always_allow_runs_the_next_call_at_once_and_stop_ends_a_waiting_answer(pool: PgPool) {
    let w = world(pool).await;

    // "Always allow this tool" approves this call and adds the policy.
    let chat = w.new_chat().await;
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    let call_id = seen[1].data["call"]["id"].as_str().unwrap().to_owned();
    let always = json!([{"call_id": call_id, "approve": true, "always": "tool"}]);
    let (status, body) = w.decide(&w.alice, &chat, &waits(&seen), always).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until(&mut events, &["run_finished"]).await;
    let (_, settings) = w.api(&w.alice, "agent/settings", &[]).await;
    assert_eq!(
        settings["allowed"],
        json!([{"server_id": "everything", "tool": "echo"}]),
        "{settings}"
    );

    // The next call of that tool runs without waiting, decided by the policy.
    let chat = w.new_chat().await;
    let (_, seen) = w.ask(&chat, ECHO).await;
    assert!(!names(&seen).contains(&"approval_needed"), "{seen:?}");
    let decision = seen.iter().find(|e| e.event == "decision").unwrap();
    assert_eq!(
        decision.data["call"]["decided_by"],
        "your policy: always allow this tool"
    );
    assert_eq!(seen.last().unwrap().data["status"], "complete");
    assert_eq!(w.audit().await[0]["decided_by"], "policy:tool");

    // Settings: the step limit is checked; read-only tools (echo says it is one) may run without
    // asking.
    let (status, body) = w
        .api(
            &w.alice,
            "agent/settings/save",
            &[("auto_approve_read_only", "true"), ("max_steps", "0")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = w
        .api(
            &w.alice,
            "agent/settings/save",
            &[("auto_approve_read_only", "true"), ("max_steps", "4")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, settings) = w.api(&w.alice, "agent/settings", &[]).await;
    assert_eq!(settings["auto_approve_read_only"], true, "{settings}");
    assert_eq!(settings["max_steps"], 4);

    // Asking again takes the tool's policy back, but the read-only one still allows it.
    let (status, revoked) = w
        .api(
            &w.alice,
            "agent/revoke",
            &[("server_id", "everything"), ("tool", "echo")],
        )
        .await;
    assert_eq!((status, revoked), (StatusCode::OK, json!(true)));
    let chat = w.new_chat().await;
    let (_, seen) = w.ask(&chat, ECHO).await;
    let decision = seen.iter().find(|e| e.event == "decision").unwrap();
    assert_eq!(
        decision.data["call"]["decided_by"], "your policy: read-only tools run without asking",
        "{seen:?}"
    );

    // The step limit: with one model call allowed, the tool's result cannot go back to the model,
    // and the answer ends saying so (the tool's result is kept).
    let (status, body) = w
        .api(
            &w.alice,
            "agent/settings/save",
            &[("auto_approve_read_only", "true"), ("max_steps", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chat = w.new_chat().await;
    let (_, seen) = w.ask(&chat, ECHO).await;
    let end = seen.last().unwrap();
    assert_eq!(end.data["status"], "failed", "{seen:?}");
    let (_, data) = w.chat(&w.alice, &chat).await;
    let answer = &data["messages"][1];
    assert_eq!(answer["status"], "failed", "{data}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("The agent stopped after 1 model call, the most one answer may make."),
        "{data}"
    );
    assert_eq!(answer["tool_calls"][0]["state"], "ok", "{data}");

    let (status, body) = w
        .api(
            &w.alice,
            "agent/settings/save",
            &[("auto_approve_read_only", "false"), ("max_steps", "10")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Stop ends a waiting answer, running nothing.
    let chat = w.new_chat().await;
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    assert_eq!(seen.last().unwrap().event, "approval_needed");
    let (status, stopped) = w.api(&w.alice, "chats/stop", &[("id", &chat)]).await;
    assert_eq!((status, stopped), (StatusCode::OK, json!(true)));
    let end = until(&mut events, &["run_finished"]).await;
    assert_eq!(end.last().unwrap().data["status"], "stopped");
    let (_, data) = w.chat(&w.alice, &chat).await;
    assert_eq!(data["messages"][1]["status"], "stopped");
    assert_eq!(data["messages"][1]["tool_calls"][0]["state"], "not_run");
    let audit = w.audit().await;
    assert_eq!(audit[0]["outcome"], "not_run");
    assert_eq!(audit[0]["decision"], Value::Null);
    // After a stop the chat takes new messages again.
    let (status, body) = w
        .api(&w.alice, "chats/send", &[("id", &chat), ("text", "hello")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_decision_lands_only_on_the_answer_and_turn_it_was_made_for(pool: PgPool) {
    let w = world(pool).await;
    let chat = w.new_chat().await;
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    let first = waits(&seen);
    // The scripted model calls its calls `call_1` every time; Switchboard gives its own.
    let call_id = seen[1].data["call"]["id"].as_str().unwrap().to_owned();
    assert!(
        call_id.starts_with("call_") && call_id != "call_1",
        "{call_id}"
    );
    assert_eq!(seen[1].data["call"]["turn"], 1);
    // The key of the server's definition stays on the server (it would confirm guesses of it).
    assert!(seen[1].data["call"].get("server_key").is_none(), "{seen:?}");
    let approve = json!({"id": chat, "answer_id": first.answer, "turn": first.turn,
                         "decisions": [{"call_id": call_id, "approve": true}]});
    let (status, body) = w.decide_with(&w.app, &w.alice, approve.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until(&mut events, &["run_finished"]).await;

    // A new answer waits for its own call.
    let (_, seen) = w.ask(&chat, ECHO).await;
    let second = waits(&seen);
    assert_ne!(second.answer, first.answer);
    let new_call = seen.iter().find(|e| e.event == "tool_call").unwrap().data["call"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_call, call_id);

    // The first approval sent again (a second click that came late, a stale tab): refused, and
    // the new call still waits, not run.
    let refused = w.decide_with(&w.app, &w.alice, approve).await;
    assert_refused(refused.clone(), "This approval is out of date");
    assert_refused(refused, "Reload the chat");
    // Naming the new call, but the earlier answer: refused too.
    let stale = json!({"id": chat, "answer_id": first.answer, "turn": first.turn,
                       "decisions": [{"call_id": new_call, "approve": true}]});
    let refused = w.decide_with(&w.app, &w.alice, stale).await;
    assert_refused(refused, "out of date");
    // A decision that does not say which answer and turn it is for: refused.
    let unbound = json!({"id": chat, "decisions": [{"call_id": new_call, "approve": true}]});
    let refused = w.decide_with(&w.app, &w.alice, unbound).await;
    assert_refused(refused, "`answer_id`");
    let (_, data) = w.chat(&w.alice, &chat).await;
    let answer = &data["messages"][3];
    assert_eq!(answer["status"], "waiting", "{data}");
    assert_eq!(answer["tool_calls"][0]["state"], "waiting");
    assert_eq!(w.audit().await.len(), 1, "only the first call ran");

    // The decision for what waits now lands.
    let approve = json!([{"call_id": new_call, "approve": true}]);
    let (status, body) = w.decide(&w.alice, &chat, &second, approve).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An administrator of `w`'s app, with a personal API token.
async fn admin(w: &World) -> String {
    use domain::users::{self, Identity, Role, RoleDecision};
    let identity = Identity {
        issuer: "https://id.example.com".into(),
        subject: "admin".into(),
        name: "Admin".into(),
        ..Identity::default()
    };
    let admin = users::sign_in(&w.app.db, &identity, RoleDecision::Fixed(Role::Admin))
        .await
        .unwrap();
    domain::tokens::create(&w.app.db, admin.id, "script")
        .await
        .unwrap()
        .secret
}

impl World {
    /// The standing approvals alice's settings list on `app`.
    async fn allowed_on(&self, app: &TestApp) -> Value {
        let client = reqwest::Client::new();
        let (status, settings) =
            call(&client, &app.base, "agent/settings", Some(&self.alice), &[]).await;
        assert_eq!(status, StatusCode::OK, "{settings}");
        settings["allowed"].clone()
    }

    /// The administrator saves the registry's server `id` (renaming `previous`), reached at `url`.
    async fn save_server(&self, admin: &str, previous: Option<&str>, id: &str, url: &str) {
        let mut form = vec![
            ("id", id),
            ("name", "Tools"),
            ("transport", "http"),
            ("url", url),
        ];
        if let Some(previous) = previous {
            form.push(("previous", previous));
        }
        let (status, body) = self.api(admin, "mcp/admin/save", &form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Alice connects to `id`, and waits until she is connected.
    async fn connect(&self, id: &str) {
        let (status, body) = self.api(&self.alice, "mcp/connect", &[("id", id)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, servers) = self.api(&self.alice, "mcp/servers", &[]).await;
            let server = servers.as_array().unwrap().iter().find(|s| s["id"] == id);
            if server.is_some_and(|s| s["status"] == "connected") {
                return;
            }
            assert!(Instant::now() < deadline, "{servers}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Alice always allows every tool of `id`.
    async fn allow_server(&self, id: &str) {
        let (status, body) = self
            .api(&self.alice, "agent/allow", &[("server_id", id)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn always_allow_holds_only_for_the_server_it_was_given_for(pool: PgPool) {
    let w = world(pool.clone()).await;
    let admin = admin(&w).await;
    let tools = json!([{"server_id": "tools", "tool": null}]);

    // No approval for a server that does not exist.
    let refused = w
        .api(&w.alice, "agent/allow", &[("server_id", "nope")])
        .await;
    assert_answered(refused, StatusCode::NOT_FOUND, "no tool server 'nope'");
    assert_eq!(w.allowed_on(&w.app).await, json!([]));

    // Given for the registry's server `tools`, it runs its calls without asking.
    w.save_server(&admin, None, "tools", &w.everything_url)
        .await;
    w.connect("tools").await;
    w.allow_server("tools").await;
    assert_eq!(w.allowed_on(&w.app).await, tools);
    let echo = r#"Please tool:tools__echo {"message": "hello"}"#;
    let (_, seen) = w.ask(&w.new_chat().await, echo).await;
    assert!(!names(&seen).contains(&"approval_needed"), "{seen:?}");

    // Another server under the same id, the same in every way: deleted and made again.
    let (status, body) = w.api(&admin, "mcp/admin/delete", &[("id", "tools")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.save_server(&admin, None, "tools", &w.everything_url)
        .await;
    assert_eq!(w.allowed_on(&w.app).await, json!([]), "dropped");
    w.connect("tools").await;
    let chat = w.new_chat().await;
    let (_, seen) = w.ask(&chat, echo).await;
    assert_eq!(seen.last().unwrap().event, "approval_needed", "{seen:?}");
    let (status, _) = w.api(&w.alice, "chats/stop", &[("id", &chat)]).await;
    assert_eq!(status, StatusCode::OK);

    // Renamed (even back again), or changed to reach somewhere else: dropped.
    w.allow_server("tools").await;
    w.save_server(&admin, Some("tools"), "tools-2", &w.everything_url)
        .await;
    assert_eq!(w.allowed_on(&w.app).await, json!([]));
    w.save_server(&admin, Some("tools-2"), "tools", &w.everything_url)
        .await;
    assert_eq!(
        w.allowed_on(&w.app).await,
        json!([]),
        "not back with the name"
    );
    w.allow_server("tools").await;
    assert_eq!(w.allowed_on(&w.app).await, tools);
    let elsewhere = w.everything_url.replace("127.0.0.1", "localhost");
    w.save_server(&admin, Some("tools"), "tools", &elsewhere)
        .await;
    assert_eq!(w.allowed_on(&w.app).await, json!([]));

    // Shadowed: where the servers file has a `tools` of its own, the approval given for the
    // registry's is not that server's.
    w.allow_server("tools").await;
    let file = std::env::temp_dir().join(format!("switchboard-mcp-{}.toml", Uuid::new_v4()));
    std::fs::write(
        &file,
        support::http_server_entry("tools", "Tools", &elsewhere),
    )
    .unwrap();
    let shadowing = w.another_instance_with(pool, &file).await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(w.allowed_on(&shadowing).await, json!([]));
    assert_eq!(
        w.allowed_on(&w.app).await,
        tools,
        "still the registry's here"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn stop_keeps_the_text_so_far_in_a_chat_with_tools(pool: PgPool) {
    // A chat with tools is answered by the agent graph; Stop while its model writes keeps what it
    // wrote, as it does in a chat without tools.
    let w = world(pool).await;
    let chat = w.new_chat().await;
    let mut events = w.events(&w.alice, &chat).await;
    let (status, body) = w
        .api(
            &w.alice,
            "chats/send",
            &[("id", &chat), ("text", "slow answer please")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut written = String::new();
    while !written.contains("word3 ") {
        let event = events.next().await;
        if event.event == "token" {
            written.push_str(event.data["text"].as_str().unwrap());
        }
    }
    let (status, stopped) = w.api(&w.alice, "chats/stop", &[("id", &chat)]).await;
    assert_eq!((status, stopped), (StatusCode::OK, json!(true)));
    let finished = until(&mut events, &["run_finished"]).await;
    assert_eq!(finished.last().unwrap().data["status"], "stopped");
    let (_, got) = w.chat(&w.alice, &chat).await;
    let answer = &got["messages"][1];
    assert_eq!(answer["status"], "stopped", "{got}");
    let kept = answer["content"].as_str().unwrap();
    assert!(
        kept.starts_with("word1 word2 word3 "),
        "the text written before Stop is kept: {kept:?}"
    );
    assert!(!kept.contains("word60"), "{kept:?}");
}
