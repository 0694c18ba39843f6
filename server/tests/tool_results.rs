//! What tools give back in a chat, over HTTP as a script drives it, with the scripted model
//! (end2end/fake-llm) and the project's own MCP server (end2end/mcp/test-server.mjs, with 200
//! extra tools): every kind of result reaches the person and the model, a running call's progress
//! streams to the page, Stop cancels the call on the server, a chat with 200 tools offers the
//! model a search and a few of them, and operators see it all in the metrics.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use support::{FakeLlm, SseEvent, SseReader, TestApp, call, listener, person, start_app};

struct World {
    _llm: FakeLlm,
    app: TestApp,
    alice: String,
    /// What the tool server logs: calls and cancellations.
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The app, Alice connected to the test server (with 200 extra tools), her read-only tools
/// allowed without asking.
async fn world(pool: PgPool) -> World {
    world_with(pool, &[]).await
}

/// [`world`], the app started with `extra` arguments too.
async fn world_with(pool: PgPool, extra: &[&str]) -> World {
    let llm = FakeLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tools.jsonl");
    let file = dir.path().join("servers.toml");
    let log_path = log.display().to_string();
    let entry = support::test_server_entry(&[("TOOL_LOG", &log_path), ("EXTRA_TOOLS", "200")]);
    std::fs::write(&file, entry).unwrap();
    let (listener, _) = listener().await;
    let (mut args, vars) = llm.settings();
    let file_arg = file.display().to_string();
    args.extend(["--mcp-servers-file", file_arg.as_str()]);
    args.extend(extra);
    let app = start_app(pool, listener, &args, &vars).await;
    let (_, alice) = person(&app, "alice", "Alice").await;
    let world = World {
        _llm: llm,
        app,
        alice,
        log,
        _dir: dir,
    };
    let (status, body) = world.api("mcp/connect", &[("id", "test")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, servers) = world.api("mcp/servers", &[]).await;
        if servers[0]["status"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "{servers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = world
        .api(
            "agent/settings/save",
            &[("auto_approve_read_only", "true"), ("max_steps", "10")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    world
}

impl World {
    async fn api(&self, endpoint: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        call(
            &reqwest::Client::new(),
            &self.app.base,
            endpoint,
            Some(&self.alice),
            form,
        )
        .await
    }

    async fn new_chat(&self) -> String {
        let (status, chat) = self.api("chats/create", &[]).await;
        assert_eq!(status, StatusCode::OK, "{chat}");
        chat["id"].as_str().unwrap().to_owned()
    }

    /// Sends `text` in a new chat; its id and its events from before the send.
    async fn send(&self, text: &str) -> (String, SseReader) {
        let chat = self.new_chat().await;
        let response = reqwest::Client::new()
            .get(format!("{}/api/chats/{chat}/events", self.app.base))
            .bearer_auth(&self.alice)
            .send()
            .await
            .unwrap();
        let events = SseReader::new(response);
        let (status, body) = self
            .api("chats/send", &[("id", &chat), ("text", text)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (chat, events)
    }

    /// The last answer of a chat, as `chats/get` gives it.
    async fn answer(&self, chat: &str) -> Value {
        let (status, got) = self.api("chats/get", &[("id", chat)]).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        got["messages"].as_array().unwrap().last().unwrap().clone()
    }

    fn logged(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Events until one named `last`, inclusive.
async fn until(events: &mut SseReader, last: &str) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    loop {
        let event = events.next().await;
        let done = event.event == last;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_picture_structured_content_and_links_reach_the_person_and_the_model(pool: PgPool) {
    let w = world(pool).await;
    let (chat, mut events) = w
        .send(
            r#"tool:test__picture {} tool:test__weather {"city": "Oslo"} tool:test__references {}"#,
        )
        .await;
    let seen = until(&mut events, "run_finished").await;
    assert_eq!(seen.last().unwrap().data["status"], "complete", "{seen:?}");
    let answer = w.answer(&chat).await;
    let calls = answer["tool_calls"].as_array().unwrap();
    let picture = &calls[0]["parts"];
    assert_eq!(picture[1]["type"], "image", "{picture}");
    assert_eq!(picture[1]["mime_type"], "image/png");
    assert!(
        picture[1]["data"]
            .as_str()
            .unwrap()
            .starts_with("iVBORw0KGgo")
    );
    let weather = &calls[1]["parts"];
    assert_eq!(weather[1]["type"], "structured", "{weather}");
    assert!(
        weather[1]["json"]
            .as_str()
            .unwrap()
            .contains("\"celsius\": 21.5")
    );
    assert_eq!(calls[2]["parts"][0]["type"], "link", "{}", calls[2]);
    // The model was told them all: the image in words, the structured content as JSON.
    let content = answer["content"].as_str().unwrap();
    assert!(
        content.contains("The tool said: Here is the picture."),
        "{content}"
    );
    assert!(
        content.contains("[The tool returned an image (image/png"),
        "{content}"
    );
    assert!(content.contains("\"sky\": \"clear\""), "{content}");
    assert!(content.contains("Buy milk."), "{content}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn progress_streams_while_a_tool_runs_and_stop_cancels_it_on_the_server(pool: PgPool) {
    let w = world(pool).await;
    let (chat, mut events) = w.send(r#"tool:test__steps {"count": 20}"#).await;
    let seen = until(&mut events, "tool_progress").await;
    let progress = &seen.last().unwrap().data;
    assert_eq!(progress["progress"]["total"], 20.0, "{progress}");
    assert!(
        progress["progress"]["message"]
            .as_str()
            .unwrap()
            .ends_with("of 20"),
        "{progress}"
    );
    let (status, body) = w.api("chats/stop", &[("id", &chat)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = until(&mut events, "run_finished").await;
    assert_eq!(seen.last().unwrap().data["status"], "stopped");
    // The server heard notifications/cancelled: the call ended there, not at its 20th step.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w.logged().iter().any(|l| l["cancelled"] == "steps") {
        assert!(Instant::now() < deadline, "{:?}", w.logged());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_chat_with_200_tools_offers_a_search_and_a_few(pool: PgPool) {
    let w = world(pool).await;
    let (chat, mut events) = w
        .send(r#"Find the invoices: tool:search_tools {"query": "create billing invoices"}"#)
        .await;
    let seen = until(&mut events, "run_finished").await;
    assert_eq!(seen.last().unwrap().data["status"], "complete", "{seen:?}");
    let answer = w.answer(&chat).await;
    let search = &answer["tool_calls"][0];
    assert_eq!(search["tool"], "search_tools");
    assert_eq!(search["server"], "");
    assert_eq!(search["state"], "ok", "it ran without asking: {search}");
    let found = search["result"].as_str().unwrap();
    assert!(found.contains("test__create_invoice_"), "{found}");
    let offered = answer["usage"]["offered"].as_array().unwrap();
    assert_eq!(offered.len(), 2, "{offered:?}");
    let of = offered[0]["of"].as_u64().unwrap();
    assert!(of > 200, "the chat's tools: {of}");
    for turn in offered {
        let tools = turn["tools"].as_array().unwrap();
        assert!(tools.len() < 20, "a few, not all: {}", tools.len());
    }
    let later: Vec<&str> = offered[1]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        later.iter().any(|t| t.starts_with("test__create_invoice_")),
        "what the search found is offered next: {later:?}"
    );
    assert!(
        w.logged().iter().all(|l| l["tool"].is_null()),
        "no server tool ran"
    );
}

/// A connected server's resources and prompts over the API: listed, a resource read and a prompt
/// run by its person; another person gets nothing of hers, and a page on another site cannot read
/// through her browser.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn resources_and_prompts_over_the_api_are_the_persons_own(pool: PgPool) {
    let w = world(pool).await;
    let (status, offered) = w.api("mcp/offerings", &[]).await;
    assert_eq!(status, StatusCode::OK, "{offered}");
    assert_eq!(offered[0]["server_id"], "test");
    assert_eq!(offered[0]["resources"][0]["uri"], "test://notes");
    assert_eq!(offered[0]["prompts"][0]["name"], "greet");

    let (status, read) = w
        .api(
            "mcp/resource",
            &[
                ("server", "test"),
                ("uri", "test://notes"),
                ("name", "Notes"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["text"], "The meeting is at noon.");
    let (status, prompt) = w
        .api(
            "mcp/prompt",
            &[
                ("server", "test"),
                ("name", "greet"),
                ("arguments", r#"{"who": "Ada"}"#),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{prompt}");
    assert_eq!(prompt, "Please greet Ada warmly.");
    let (status, bad) = w
        .api(
            "mcp/prompt",
            &[
                ("server", "test"),
                ("name", "greet"),
                ("arguments", r#"{"who": 5}"#),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    // Bob: not connected, so nothing is read for him.
    let (_, bob) = person(&w.app, "bob", "Bob").await;
    let (status, refused) = call(
        &reqwest::Client::new(),
        &w.app.base,
        "mcp/resource",
        Some(&bob),
        &[
            ("server", "test"),
            ("uri", "test://notes"),
            ("name", "Notes"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not connected")
    );
    let (_, theirs) = call(
        &reqwest::Client::new(),
        &w.app.base,
        "mcp/offerings",
        Some(&bob),
        &[],
    )
    .await;
    assert_eq!(theirs, serde_json::json!([]));

    // Another site's page, with her session, is refused before anything is read.
    let response = reqwest::Client::new()
        .post(format!("{}/api/mcp/resource", w.app.base))
        .bearer_auth(&w.alice)
        .header("origin", "https://evil.example")
        .form(&[("server", "test"), ("uri", "test://notes"), ("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

impl World {
    /// `POST /api/chats/answer` as `token`, with this JSON body.
    async fn answer_question(&self, token: &str, body: Value) -> (StatusCode, Value) {
        support::post_json(&self.app.base, "chats/answer", token, &body).await
    }
}

/// A server that asks the person something mid-call: the question is an event and is in the
/// chat's read (a reloaded page shows it); an answer that does not fit the form is refused with
/// why; another person cannot answer; the answer reaches the server and the call goes on; a
/// question is answered once; a declined one tells the server so.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_servers_question_waits_for_the_persons_answer(pool: PgPool) {
    let w = world(pool).await;
    let (chat, mut events) = w.send("tool:test__ask {}").await;
    let seen = until(&mut events, "question").await;
    let asked = &seen.last().unwrap().data;
    assert_eq!(asked["question"]["message"], "Who are you?", "{asked}");
    assert_eq!(asked["question"]["server"], "test");
    let id = asked["question"]["id"].as_str().unwrap().to_owned();
    // A reload shows it.
    let waiting = w.answer(&chat).await;
    assert_eq!(
        waiting["tool_calls"][0]["question"]["id"],
        id.as_str(),
        "{waiting}"
    );
    assert_eq!(waiting["tool_calls"][0]["state"], "running");

    let (status, refused) = w
        .answer_question(
            &w.alice,
            serde_json::json!({"id": chat, "question": id, "action": "accept", "content": {"name": "A"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("'Name' is too short"),
        "{refused}"
    );
    let (_, bob) = person(&w.app, "bob", "Bob").await;
    let (status, _) = w
        .answer_question(
            &bob,
            serde_json::json!({"id": chat, "question": id, "action": "accept", "content": {"name": "Mallory"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = w
        .answer_question(
            &w.alice,
            serde_json::json!({"id": chat, "question": id, "action": "accept", "content": {"name": "Ada", "lucky": 7}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = until(&mut events, "run_finished").await;
    assert!(
        seen.iter()
            .any(|e| e.event == "question_answered" && e.data["state"] == "accept")
    );
    assert_eq!(seen.last().unwrap().data["status"], "complete");
    let answer = w.answer(&chat).await;
    let content = answer["content"].as_str().unwrap();
    assert!(
        content.contains(r#"accept: {"lucky":7,"name":"Ada"}"#),
        "{content}"
    );
    assert!(answer["tool_calls"][0]["question"].is_null());
    // Answered once.
    let (status, again) = w
        .answer_question(
            &w.alice,
            serde_json::json!({"id": chat, "question": id, "action": "decline"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // Declined: the server is told so.
    let (chat, mut events) = w.send("tool:test__ask {}").await;
    let seen = until(&mut events, "question").await;
    let id = seen.last().unwrap().data["question"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = w
        .answer_question(
            &w.alice,
            serde_json::json!({"id": chat, "question": id, "action": "decline"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    until(&mut events, "run_finished").await;
    let content = w.answer(&chat).await["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(content.contains("decline: null"), "{content}");
}

/// A question nobody answers ends with its call's timeout: the call fails saying so, the answer
/// goes on, and the question is marked expired (its card goes away).
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_question_nobody_answers_ends_with_the_calls_timeout(pool: PgPool) {
    let w = world_with(pool, &["--mcp-call-timeout", "2s"]).await;
    let (chat, mut events) = w.send("tool:test__ask {}").await;
    until(&mut events, "question").await;
    let seen = until(&mut events, "run_finished").await;
    assert!(
        seen.iter()
            .any(|e| e.event == "question_answered" && e.data["state"] == "expired"),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap().data["status"], "complete");
    let answer = w.answer(&chat).await;
    let call = &answer["tool_calls"][0];
    assert_eq!(call["state"], "error", "{call}");
    assert!(
        call["result"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s"),
        "{call}"
    );
    assert!(call["question"].is_null());
}

/// A server cannot flood the person with questions: one call asks at most three (the fourth is
/// declined without a card); and while two calls of the person run on the same server, a question
/// cannot be told apart and is declined rather than shown under the wrong call.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn questions_are_few_per_call_and_never_shown_under_the_wrong_call(pool: PgPool) {
    let w = world(pool).await;
    let (chat, mut events) = w.send(r#"tool:test__ask-often {"times": 4}"#).await;
    for _ in 0..3 {
        let seen = until(&mut events, "question").await;
        let id = seen.last().unwrap().data["question"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = w
            .answer_question(
                &w.alice,
                serde_json::json!({"id": chat, "question": id, "action": "decline"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let seen = until(&mut events, "run_finished").await;
    assert!(
        !seen.iter().any(|e| e.event == "question"),
        "no fourth card: {seen:?}"
    );
    let content = w.answer(&chat).await["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        content.contains("decline,decline,decline,decline"),
        "{content}"
    );

    // Two calls at once on the same server: the question that comes while both run is declined,
    // not shown (under either card).
    let (chat, mut events) = w
        .send(r#"tool:test__ask {"after": 300} tool:test__steps {"count": 5}"#)
        .await;
    let seen = until(&mut events, "run_finished").await;
    assert!(!seen.iter().any(|e| e.event == "question"), "{seen:?}");
    let content = w.answer(&chat).await["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(content.contains("decline: null | did 5 steps"), "{content}");
}

/// A question whose answer is no longer written anywhere (its instance stopped mid-call) is marked
/// expired by the sweep every instance runs; a live one is left waiting.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_question_left_by_a_stopped_instance_expires(pool: PgPool) {
    let w = world(pool.clone()).await;
    let (_live, mut events) = w.send("tool:test__ask {}").await;
    until(&mut events, "question").await;
    // A question of an answer that ended without it (as after a crash), beside the live one.
    let (done_chat, mut done_events) = w.send("hello").await;
    until(&mut done_events, "run_finished").await;
    let done_answer = w.answer(&done_chat).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_id: uuid::Uuid = sqlx::query_scalar("SELECT user_id FROM chats WHERE id = $1::uuid")
        .bind(&done_chat)
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO tool_questions (id, user_id, chat_id, answer_id, call_id, server_id, message)
         VALUES (gen_random_uuid(), $1, $2::uuid, $3::uuid, 'call_x', 'test', 'Left behind?')",
    )
    .bind(alice_id)
    .bind(&done_chat)
    .bind(&done_answer)
    .execute(&pool)
    .await
    .unwrap();

    support::state_of(&w.app)
        .runs
        .settle_abandoned()
        .await
        .unwrap();
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT message, state FROM tool_questions ORDER BY message")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        states,
        [
            ("Left behind?".to_owned(), "expired".to_owned()),
            ("Who are you?".to_owned(), "waiting".to_owned())
        ]
    );
}

/// One sample's value in a scrape (0 when it is not there yet).
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

/// What operators see: `/metrics` answers only with its secret, in a form Prometheus reads, with
/// every family listed; a chat whose model calls a tool moves the requests, the model's calls,
/// times and tokens, and the tool's call and decision.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn metrics_show_what_the_app_did(pool: PgPool) {
    let w = world_with(pool, &["--metrics-token", "m3trics"]).await;
    let url = format!("{}/metrics", w.app.base);
    let client = reqwest::Client::new();
    let none = client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = client.get(&url).bearer_auth("m3tric").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // A person's own token is not the metrics secret either.
    let person = client.get(&url).bearer_auth(&w.alice).send().await.unwrap();
    assert_eq!(person.status(), StatusCode::UNAUTHORIZED);
    let scrape = || async {
        let response = client
            .get(&url)
            .bearer_auth("m3trics")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        let text = response.text().await.unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    };
    let before = scrape().await;
    assert_eq!(
        sample(
            &before,
            "switchboard_mcp_connections",
            &[("state", "connected")]
        ),
        1.0
    );

    let (_, mut events) = w.send(r#"tool:test__echo {"message": "hi"}"#).await;
    let seen = until(&mut events, "run_finished").await;
    assert_eq!(seen.last().unwrap().data["status"], "complete", "{seen:?}");
    let after = scrape().await;
    // Every family, once the app has been used (one with no sample yet is not listed).
    for family in [
        "switchboard_http_requests",
        "switchboard_http_request_duration_seconds",
        "switchboard_event_streams",
        "switchboard_answers",
        "switchboard_approval_oldest_wait_seconds",
        "switchboard_mcp_connections",
        "switchboard_db_pool_connections",
        "switchboard_instance_peers",
        "switchboard_llm_calls",
        "switchboard_llm_first_token_seconds",
        "switchboard_llm_duration_seconds",
        "switchboard_llm_tokens",
        "switchboard_tool_calls",
        "switchboard_tool_decisions",
    ] {
        assert!(after.docs.contains_key(family), "{family} is listed");
    }
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        sample(&after, metric, labels) - sample(&before, metric, labels)
    };
    assert_eq!(
        moved(
            "switchboard_http_requests_total",
            &[("route", "/api/chats/send"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "switchboard_llm_calls_total",
            &[
                ("provider", "fake"),
                ("model", "scripted"),
                ("outcome", "ok")
            ]
        ),
        2.0,
        "the call that asked for the tool, and the answer"
    );
    assert!(moved("switchboard_llm_tokens_total", &[("kind", "output")]) > 0.0);
    assert!(
        moved(
            "switchboard_llm_duration_seconds",
            &[("provider", "fake"), ("model", "scripted")]
        ) >= 2.0,
        "two more observations"
    );
    assert_eq!(
        moved("switchboard_tool_calls_total", &[("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        moved(
            "switchboard_tool_decisions_total",
            &[("decision", "approve"), ("by", "policy")]
        ),
        1.0
    );
    assert_eq!(sample(&after, "switchboard_event_streams", &[]), 1.0);
}
