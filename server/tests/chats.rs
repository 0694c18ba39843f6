//! Chats over HTTP with personal API tokens, as a script would drive them: create a chat, send a
//! message, read the answer from the event stream, reconnect mid-answer, stop, fail, and never see
//! another person's chat. The model is the scripted OpenAI-compatible server in end2end/fake-llm.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use support::{
    FakeLlm, SseEvent, TestApp, api, listener, person, start_app, subscribe, until_finished,
};

async fn start(pool: PgPool, llm: Option<&FakeLlm>) -> TestApp {
    let (listener, _) = listener().await;
    match llm {
        Some(llm) => {
            let (args, vars) = llm.settings();
            start_app(pool, listener, &args, &vars).await
        }
        None => start_app(pool, listener, &[], &[]).await,
    }
}

/// The scripted model, the app, Alice's token, and a new chat of hers.
async fn with_a_chat(pool: PgPool) -> (FakeLlm, TestApp, String, String) {
    let llm = FakeLlm::start();
    let app = start(pool, Some(&llm)).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    let chat = new_chat(&app, &alice).await;
    (llm, app, alice, chat)
}

/// Sends `text` in `chat`; returns the answer to the send itself.
async fn send(app: &TestApp, token: &str, chat: &str, text: &str) -> (StatusCode, Value) {
    api(app, token, "chats/send", &[("id", chat), ("text", text)]).await
}

async fn new_chat(app: &TestApp, token: &str) -> String {
    let (status, chat) = api(app, token, "chats/create", &[]).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    chat["id"].as_str().unwrap().to_owned()
}

fn seq(event: &SseEvent) -> u64 {
    event.id.rsplit_once('-').unwrap().1.parse().unwrap()
}

fn text_of(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect()
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_script_sends_a_message_and_reads_the_answer_as_it_streams(pool: PgPool) {
    let (_llm, app, alice, chat) = with_a_chat(pool).await;

    let mut events = subscribe(&app, &alice, &chat, None).await;
    let (status, sent) = send(&app, &alice, &chat, "hello there").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["model"], "fake/scripted");

    let seen = until_finished(&mut events).await;
    assert_eq!(seen[0].event, "run_started");
    assert_eq!(seen[0].data["question"]["content"], "hello there");
    assert!(
        seen.len() > 5,
        "the answer came token by token: {}",
        seen.len()
    );
    let seqs: Vec<u64> = seen.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "ids in order, none missing: {seqs:?}"
    );
    let finished = seen.last().unwrap();
    assert_eq!(finished.data["status"], "complete");
    let text = text_of(&seen);
    assert!(text.starts_with("You said: hello there."), "{text}");

    // Stored: the question, and the answer exactly as streamed; the chat is named after it.
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(page["chat"]["title"], "hello there");
    assert_eq!(page["messages"][0]["content"], "hello there");
    assert_eq!(page["messages"][1]["content"], text.as_str());
    assert_eq!(page["messages"][1]["status"], "complete");
    assert_eq!(page["live"], Value::Null);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events(pool: PgPool) {
    let (_llm, app, alice, chat) = with_a_chat(pool).await;

    let mut first = subscribe(&app, &alice, &chat, None).await;
    send(&app, &alice, &chat, "a slow one please").await;
    let mut before = Vec::new();
    while before
        .iter()
        .filter(|e: &&SseEvent| e.event == "token")
        .count()
        < 5
    {
        before.push(first.next().await);
    }
    let last_id = before.last().unwrap().id.clone();
    drop(first);
    // Tokens keep coming while nobody listens.
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;

    let mut second = subscribe(&app, &alice, &chat, Some(&last_id)).await;
    let after = until_finished(&mut second).await;
    assert_eq!(
        seq(&after[0]),
        seq(before.last().unwrap()) + 1,
        "resumes right after the last seen event"
    );
    assert!(
        after.iter().all(|e| e.event != "snapshot"),
        "exact replay, not a snapshot"
    );
    let seqs: Vec<u64> = after.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    let streamed = format!("{}{}", text_of(&before), text_of(&after));
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(
        page["messages"][1]["content"],
        streamed.as_str(),
        "nothing lost, nothing twice"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_that_subscribes_mid_answer_gets_the_text_so_far(pool: PgPool) {
    let (_llm, app, alice, chat) = with_a_chat(pool).await;
    send(&app, &alice, &chat, "slow").await;
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;

    // A reload: no Last-Event-ID.
    let mut events = subscribe(&app, &alice, &chat, None).await;
    let snapshot = events.next().await;
    assert_eq!(snapshot.event, "snapshot");
    let so_far = snapshot.data["text"].as_str().unwrap().to_owned();
    assert!(so_far.starts_with("word1 "), "{so_far}");
    let rest = until_finished(&mut events).await;
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(
        page["messages"][1]["content"],
        format!("{so_far}{}", text_of(&rest)).as_str()
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn stop_ends_the_answer_and_keeps_what_was_written(pool: PgPool) {
    let (_llm, app, alice, chat) = with_a_chat(pool).await;
    let mut events = subscribe(&app, &alice, &chat, None).await;
    send(&app, &alice, &chat, "slow").await;
    let mut seen = vec![
        events.next().await,
        events.next().await,
        events.next().await,
    ];
    let (status, stopped) = api(&app, &alice, "chats/stop", &[("id", &chat)]).await;
    assert_eq!((status, stopped), (StatusCode::OK, Value::Bool(true)));
    seen.extend(until_finished(&mut events).await);
    assert_eq!(seen.last().unwrap().data["status"], "stopped");
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(page["messages"][1]["status"], "stopped");
    assert_eq!(page["messages"][1]["content"], text_of(&seen).as_str());
    assert!(text_of(&seen).len() < 60 * 6, "stopped early");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_chat_writes_one_answer_at_a_time(pool: PgPool) {
    let (_llm, app, alice, chat) = with_a_chat(pool).await;
    let mut events = subscribe(&app, &alice, &chat, None).await;
    // Two sends at the same instant: one is taken, the other is told why not.
    let (a, b) = tokio::join!(
        send(&app, &alice, &chat, "slow"),
        send(&app, &alice, &chat, "slow")
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    let refused = if a.0 == StatusCode::OK { b.1 } else { a.1 };
    assert_eq!(refused["message"], domain::chats::BUSY);
    // While it streams, another send is refused too; once it ends, the chat takes the next one.
    let (status, _) = send(&app, &alice, &chat, "more").await;
    assert_eq!(status, StatusCode::CONFLICT);
    api(&app, &alice, "chats/stop", &[("id", &chat)]).await;
    until_finished(&mut events).await;
    let (status, body) = send(&app, &alice, &chat, "and now?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_finished(&mut events).await;
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    let roles: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_failing_model_ends_the_answer_with_a_message(pool: PgPool) {
    let (_llm, app, alice, chat) = with_a_chat(pool).await;
    let mut events = subscribe(&app, &alice, &chat, None).await;
    send(&app, &alice, &chat, "please fail").await;
    let seen = until_finished(&mut events).await;
    let finished = seen.last().unwrap();
    assert_eq!(finished.data["status"], "failed");
    let error = finished.data["error"].as_str().unwrap();
    assert!(error.contains("failed with HTTP 500"), "{error}");
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(page["messages"][1]["status"], "failed");
    assert_eq!(page["messages"][1]["error"], error);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn with_no_model_configured_sending_says_how_to_add_one(pool: PgPool) {
    let app = start(pool, None).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    let chat = new_chat(&app, &alice).await;
    let (status, body) = send(&app, &alice, &chat, "hi").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_LLM_PROVIDERS"),
        "{body}"
    );
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(
        page["messages"],
        Value::Array(vec![]),
        "nothing half-stored"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn another_persons_chat_is_not_found_anywhere(pool: PgPool) {
    let llm = FakeLlm::start();
    let app = start(pool, Some(&llm)).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    let (_, bob) = person(&app, "bob", "bob").await;
    let chat = new_chat(&app, &alice).await;
    let mut events = subscribe(&app, &alice, &chat, None).await;
    send(&app, &alice, &chat, "private").await;
    until_finished(&mut events).await;

    for (endpoint, form) in [
        ("chats/get", vec![("id", chat.as_str())]),
        ("chats/send", vec![("id", chat.as_str()), ("text", "hi")]),
        (
            "chats/rename",
            vec![("id", chat.as_str()), ("title", "mine")],
        ),
        ("chats/delete", vec![("id", chat.as_str())]),
        ("chats/stop", vec![("id", chat.as_str())]),
    ] {
        let (status, body) = api(&app, &bob, endpoint, &form).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{endpoint}: {body}");
    }
    let response = reqwest::Client::new()
        .get(format!("{}/api/chats/{chat}/events", app.base))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (_, list) = api(&app, &bob, "chats/list", &[]).await;
    assert_eq!(list, Value::Array(vec![]));
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(page["chat"]["title"], "private", "untouched");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_read_mid_answer_continues_from_where_it_read(pool: PgPool) {
    let (_llm, app, alice, chat) = with_a_chat(pool).await;
    send(&app, &alice, &chat, "slow").await;
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;

    // What the chat page does: read the chat, then subscribe after the id it was read at.
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    let so_far = page["live"]["text"].as_str().unwrap().to_owned();
    assert!(so_far.starts_with("word1 "), "{page}");
    let after = page["last_event_id"].as_str().unwrap().to_owned();
    // The page may subscribe late: the answer goes on meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let mut events = subscribe(&app, &alice, &chat, Some(&after)).await;
    let rest = until_finished(&mut events).await;
    assert!(
        rest.iter()
            .all(|e| e.event == "token" || e.event == "run_finished"),
        "{rest:?}"
    );
    let (_, page) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(
        page["messages"][1]["content"],
        format!("{so_far}{}", text_of(&rest)).as_str(),
        "nothing lost, nothing twice"
    );

    // Reading a finished chat and subscribing after its last event: nothing to replay, and the
    // next answer arrives whole.
    let after = page["last_event_id"].as_str().unwrap().to_owned();
    let mut events = subscribe(&app, &alice, &chat, Some(&after)).await;
    send(&app, &alice, &chat, "hello again").await;
    let next = until_finished(&mut events).await;
    assert_eq!(next[0].event, "run_started");
    assert!(text_of(&next).starts_with("You said: hello again."));
}
