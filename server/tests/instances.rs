//! Two instances on one database, as behind a load balancer that does not keep a person on one:
//! the page's event stream is on one, the send or the "Stop" lands on the other. The model is the
//! scripted OpenAI-compatible server in end2end/fake-llm.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use support::{
    FakeLlm, SseEvent, TestApp, api, hear_each_other, listener, person, start_app, subscribe,
    until_finished,
};

/// Two instances of the app on `pool`, once each hears of the other.
async fn two_instances(pool: PgPool, llm: &FakeLlm) -> (TestApp, TestApp) {
    let (args, vars) = llm.settings();
    let (first, _) = listener().await;
    let a = start_app(pool.clone(), first, &args, &vars).await;
    let (second, _) = listener().await;
    let b = start_app(pool, second, &args, &vars).await;
    hear_each_other(&[&a, &b]).await;
    (a, b)
}

/// The answer as a page builds it from events: a snapshot replaces it, a token adds to it.
fn shown(events: &[SseEvent]) -> String {
    let mut text = String::new();
    for event in events {
        match event.event.as_str() {
            "snapshot" => text = event.data["text"].as_str().unwrap().to_owned(),
            "token" => text.push_str(event.data["text"].as_str().unwrap()),
            _ => {}
        }
    }
    text
}

fn seq(event: &SseEvent) -> u64 {
    event.id.rsplit_once('-').unwrap().1.parse().unwrap()
}

/// Alice's token and a new chat of hers (people and chats are in the shared database).
async fn alice_with_a_chat(app: &TestApp) -> (String, String) {
    let (_, alice) = person(app, "alice", "alice").await;
    let (status, chat) = api(app, &alice, "chats/create", &[]).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    (alice, chat["id"].as_str().unwrap().to_owned())
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_on_one_instance_follows_an_answer_written_on_another(pool: PgPool) {
    let llm = FakeLlm::start();
    let (a, b) = two_instances(pool, &llm).await;
    let (alice, chat) = alice_with_a_chat(&a).await;

    let mut events = subscribe(&a, &alice, &chat, None).await;
    let (status, sent) = api(
        &b,
        &alice,
        "chats/send",
        &[("id", &chat), ("text", "hello there")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");

    let seen = until_finished(&mut events).await;
    assert_eq!(seen[0].event, "run_started", "{seen:?}");
    assert_eq!(seen[0].data["question"]["content"], "hello there");
    assert!(seen.len() > 5, "token by token: {}", seen.len());
    let seqs: Vec<u64> = seen.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "the first instance's own ids, in order, none missing: {seqs:?}"
    );
    assert_eq!(seen.last().unwrap().data["status"], "complete");
    let (_, page) = api(&a, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(page["messages"][1]["content"], shown(&seen).as_str());
    assert!(shown(&seen).starts_with("You said: hello there."));

    // Now the first instance takes a send itself.
    let (status, body) = api(
        &a,
        &alice,
        "chats/send",
        &[("id", &chat), ("text", "again")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_finished(&mut events).await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_that_arrives_on_another_instance_mid_answer_gets_the_text_so_far(pool: PgPool) {
    let llm = FakeLlm::start();
    let (a, b) = two_instances(pool, &llm).await;
    let (alice, chat) = alice_with_a_chat(&a).await;
    let (status, sent) = api(&b, &alice, "chats/send", &[("id", &chat), ("text", "slow")]).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    tokio::time::sleep(Duration::from_millis(350)).await;

    // A reload on the instance that does not run the answer: it asks the other for the text.
    let mut events = subscribe(&a, &alice, &chat, None).await;
    let seen = until_finished(&mut events).await;
    let snapshot = seen
        .iter()
        .find(|e| e.event == "snapshot")
        .expect("a snapshot");
    assert!(
        snapshot.data["text"]
            .as_str()
            .unwrap()
            .starts_with("word1 "),
        "{snapshot:?}"
    );
    let (_, page) = api(&a, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(
        page["messages"][1]["content"],
        shown(&seen).as_str(),
        "the page shows exactly the stored answer"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_read_on_either_instance_mid_answer_has_the_text_so_far_and_where_to_go_on_from(
    pool: PgPool,
) {
    let llm = FakeLlm::start();
    let (a, b) = two_instances(pool, &llm).await;
    let (alice, chat) = alice_with_a_chat(&a).await;
    let (status, sent) = api(&b, &alice, "chats/send", &[("id", &chat), ("text", "slow")]).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    tokio::time::sleep(Duration::from_millis(350)).await;

    // A script following docs/api.md: read the chat, then follow its events from the read's id.
    // On the instance that does not write the answer (it has not heard of it yet) as on the one
    // that does.
    // Someone else, on either instance, learns nothing of it (and asks the others nothing).
    let (_, bob) = person(&a, "bob", "bob").await;
    for app in [&a, &b] {
        let (status, page) = api(app, &bob, "chats/get", &[("id", &chat)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
        assert!(page.get("live").is_none(), "{page}");
    }

    let mut followed = Vec::new();
    for (name, app) in [("other", &a), ("writer", &b)] {
        let (status, page) = api(app, &alice, "chats/get", &[("id", &chat)]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let text = page["live"]["text"].as_str().unwrap_or_else(|| {
            panic!("{name}: the text so far: {page}");
        });
        assert!(text.starts_with("word1 "), "{name}: {text:?}");
        let id = page["last_event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: an id to go on from: {page}"));
        let events = subscribe(app, &alice, &chat, Some(id)).await;
        followed.push((name, text.to_owned(), events));
    }
    for (name, text, mut events) in followed {
        let seen = until_finished(&mut events).await;
        assert!(
            seen.iter()
                .all(|e| e.event == "token" || e.event == "run_finished"),
            "{name}: it goes on exactly where the read stood: {seen:?}"
        );
        let (_, page) = api(&a, &alice, "chats/get", &[("id", &chat)]).await;
        assert_eq!(
            page["messages"][1]["content"].as_str().unwrap(),
            format!("{text}{}", shown(&seen)),
            "{name}: the text read and the tokens after it are the stored answer"
        );
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn stop_pressed_on_one_instance_stops_the_answer_on_another(pool: PgPool) {
    let llm = FakeLlm::start();
    let (a, b) = two_instances(pool, &llm).await;
    let (alice, chat) = alice_with_a_chat(&a).await;
    let mut events = subscribe(&a, &alice, &chat, None).await;
    api(&b, &alice, "chats/send", &[("id", &chat), ("text", "slow")]).await;
    let mut seen = vec![events.next().await];
    while seen.last().unwrap().event != "token" {
        seen.push(events.next().await);
    }

    // The chat is busy on every instance while its answer is written on one.
    let (status, body) = api(
        &a,
        &alice,
        "chats/send",
        &[("id", &chat), ("text", "me too")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("still being written"),
        "{body}"
    );
    // So is an edit of the question or a regeneration, which would replace the answer under
    // its run.
    for from in ["0", "1"] {
        let (status, body) = api(
            &a,
            &alice,
            "chats/send",
            &[("id", &chat), ("text", "edited"), ("from_position", from)],
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{from}: {body}");
    }

    let (status, stopped) = api(&a, &alice, "chats/stop", &[("id", &chat)]).await;
    assert_eq!((status, stopped), (StatusCode::OK, Value::Bool(true)));
    seen.extend(until_finished(&mut events).await);
    assert_eq!(seen.last().unwrap().data["status"], "stopped");
    let (_, page) = api(&b, &alice, "chats/get", &[("id", &chat)]).await;
    assert_eq!(page["messages"][1]["status"], "stopped");
    assert_eq!(page["messages"][1]["content"], shown(&seen).as_str());
    assert!(shown(&seen).len() < 60 * 6, "stopped early: {page}");

    // Nothing live anywhere: Stop says so (after asking the other instance).
    let (status, stopped) = api(&a, &alice, "chats/stop", &[("id", &chat)]).await;
    assert_eq!((status, stopped), (StatusCode::OK, Value::Bool(false)));
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_stream_resumed_where_its_events_cannot_be_replayed_is_told_to_resync(pool: PgPool) {
    let llm = FakeLlm::start();
    let (a, b) = two_instances(pool, &llm).await;
    let (alice, chat) = alice_with_a_chat(&a).await;
    let mut events = subscribe(&a, &alice, &chat, None).await;
    api(
        &a,
        &alice,
        "chats/send",
        &[("id", &chat), ("text", "hello")],
    )
    .await;
    let seen = until_finished(&mut events).await;
    let last = seen.last().unwrap().id.clone();

    // The same instance replays exactly: nothing was missed, so nothing comes.
    let mut again = subscribe(&a, &alice, &chat, Some(&last)).await;
    // The other instance never gave that id (as after a restart): the client must read again.
    let mut elsewhere = subscribe(&b, &alice, &chat, Some(&last)).await;
    let first = elsewhere.next().await;
    assert_eq!(first.event, "resync", "{first:?}");

    // Both then follow the next answer.
    api(&b, &alice, "chats/send", &[("id", &chat), ("text", "more")]).await;
    let on_a = until_finished(&mut again).await;
    assert_eq!(
        on_a[0].event, "run_started",
        "no resync where replay is exact: {on_a:?}"
    );
    let on_b = until_finished(&mut elsewhere).await;
    assert_eq!(shown(&on_a), shown(&on_b));
}
