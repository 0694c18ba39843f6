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
use support::{FakeLlm, SseEvent, SseReader, TestApp, call, listener, person, start_app};
use uuid::Uuid;

struct World {
    llm: FakeLlm,
    everything: Child,
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
    let llm = FakeLlm::start();
    let (everything, ready) =
        support::start_script_with_env("end2end/mcp/everything-http.mjs", &[], &[("PORT", "0")]);
    let file = std::env::temp_dir().join(format!("switchboard-mcp-{}.toml", Uuid::new_v4()));
    std::fs::write(
        &file,
        format!(
            "[[server]]\nid = \"everything\"\nname = \"Everything\"\ntransport = \"http\"\nurl = \"{}\"\n",
            ready["url"].as_str().unwrap()
        ),
    )
    .unwrap();
    let (listener, _) = listener().await;
    let (mut args, vars) = llm.settings();
    let file_arg = file.display().to_string();
    args.extend(["--mcp-servers-file", file_arg.as_str()]);
    let app = start_app(pool, listener, &args, &vars).await;
    let (alice_id, alice) = person(&app, "alice", "Alice").await;
    let (_, bob) = person(&app, "bob", "Bob").await;
    let world = World {
        llm,
        everything,
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
        let (listener, _) = listener().await;
        let (mut args, vars) = self.llm.settings();
        let file_arg = self.file.display().to_string();
        args.extend(["--mcp-servers-file", file_arg.as_str()]);
        let other = start_app(pool, listener, &args, &vars).await;
        support::hear_each_other(&[&self.app, &other]).await;
        other
    }

    /// `POST /api/chats/decide`, as JSON.
    async fn decide(&self, token: &str, chat: &str, decisions: Value) -> (StatusCode, Value) {
        self.decide_on(&self.app, token, chat, decisions).await
    }

    /// `POST /api/chats/decide` on `app`, as JSON.
    async fn decide_on(
        &self,
        app: &TestApp,
        token: &str,
        chat: &str,
        decisions: Value,
    ) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/chats/decide", app.base))
            .bearer_auth(token)
            .json(&json!({"id": chat, "decisions": decisions}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
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

/// Events until one named in `last`, inclusive.
async fn until(events: &mut SseReader, last: &[&str]) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    loop {
        let event = events.next().await;
        let done = last.contains(&event.event.as_str());
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn names(events: &[SseEvent]) -> Vec<&str> {
    let mut names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    names.dedup();
    names
}

const ECHO: &str = r#"Please tool:everything__echo {"message": "hello"}"#;

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

    // The pause is stored: the chat shows the waiting answer and its card.
    let (_, data) = w.chat(&w.alice, &chat).await;
    let answer = &data["messages"][1];
    assert_eq!(answer["status"], "waiting", "{data}");
    assert_eq!(answer["tool_calls"][0]["state"], "waiting");
    assert_eq!(
        answer["tool_calls"][0]["arguments"],
        "{\n  \"message\": \"hello\"\n}"
    );
    assert!(
        w.audit().await.is_empty(),
        "nothing has run or been decided"
    );

    // A new message waits for the decision; another person cannot see or decide it.
    let (status, body) = w
        .api(
            &w.alice,
            "chats/send",
            &[("id", &chat), ("text", "never mind")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("waiting for your decision"),
        "{body}"
    );
    let approve = json!([{"call_id": call_id, "approve": true}]);
    let (status, _) = w.decide(&w.bob, &chat, approve.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = w.chat(&w.bob, &chat).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A decision must name a pending call, and an edit must fit the tool's input schema.
    let (status, body) = w
        .decide(
            &w.alice,
            &chat,
            json!([{"call_id": "not-a-call", "approve": true}]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not-a-call"),
        "{body}"
    );
    let bad_edit = json!([{"call_id": call_id, "approve": true, "arguments": {"message": 5}}]);
    let (status, body) = w.decide(&w.alice, &chat, bad_edit).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("do not fit"),
        "{body}"
    );
    assert!(w.audit().await.is_empty(), "refused decisions run nothing");

    // Approve twice at once (a double click, two tabs): one lands, the tool runs once.
    let (first, second) = tokio::join!(
        w.decide(&w.alice, &chat, approve.clone()),
        w.decide(&w.alice, &chat, approve.clone())
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
    let result = &rest[2].data["call"]["state"];
    assert_eq!(result["state"], "finished", "{result}");
    assert_eq!(result["result"]["text"], "Echo: hello");
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
    let (status, body) = w.decide(&w.alice, &chat, approve).await;
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
    let (status, body) = w.decide_on(&other, &w.alice, &chat, approve).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The run goes on where the decision landed; the page sees all of it.
    let rest = until(&mut events, &["run_finished"]).await;
    assert_eq!(
        names(&rest)[..4],
        ["decision", "snapshot", "tool_result", "token"],
        "{rest:?}"
    );
    assert_eq!(
        rest[2].data["call"]["state"]["result"]["text"],
        "Echo: hello"
    );
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
    let w = world(pool).await;

    let chat = w.new_chat().await;
    let (mut events, seen) = w.ask(&chat, ECHO).await;
    let call_id = seen[1].data["call"]["id"].as_str().unwrap().to_owned();
    let edit = json!([{"call_id": call_id, "approve": true, "arguments": {"message": "edited"}}]);
    let (status, body) = w.decide(&w.alice, &chat, edit).await;
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
    let call_id = seen[1].data["call"]["id"].as_str().unwrap().to_owned();
    let reject = json!([{"call_id": call_id, "approve": false, "reason": "not on a Friday"}]);
    let (status, body) = w.decide(&w.alice, &chat, reject).await;
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
    let (status, body) = w.decide(&w.alice, &chat, always).await;
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
    assert_eq!(decision.data["decision"]["by"], "policy");
    assert_eq!(decision.data["decision"]["policy"], "tool");
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
    assert_eq!(decision.data["decision"]["policy"], "read_only", "{seen:?}");

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
