//! Models set up in the app by administrators (`/api/admin/models/...`): a provider added on one
//! instance answers on another at once, with no restart; its API key is stored encrypted and never
//! shown back; its models are discovered from its list; "Test" says what it answered or why it
//! could not; only administrators may do any of it.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::{
    FakeLlm, TestApp, api, hear_each_other, listener, person, start_app, subscribe, until_finished,
};

/// The names `token` may choose on `app`, once they are `expected` (within 5 s).
async fn offered_becomes(app: &TestApp, token: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, models) = api(app, token, "models/list", &[]).await;
        if models["choices"] == expected {
            return;
        }
        assert!(Instant::now() < deadline, "still {models}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `text` in a new chat of `token`'s on `app`; the stored answer once it ended.
async fn ask(app: &TestApp, token: &str, text: &str) -> Value {
    let (_, chat) = api(app, token, "chats/create", &[]).await;
    let chat = chat["id"].as_str().unwrap().to_owned();
    let mut events = subscribe(app, token, &chat, None).await;
    let (status, sent) = api(app, token, "chats/send", &[("id", &chat), ("text", text)]).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    until_finished(&mut events).await;
    let (_, read) = api(app, token, "chats/get", &[("id", &chat)]).await;
    read["messages"][1].clone()
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_provider_added_in_the_app_answers_on_every_instance_without_a_restart(
    pool: sqlx::PgPool,
) {
    let llm = FakeLlm::start();
    // Instances share their secret key, as docs/configuration.md asks.
    let key = domain::secrets::SecretKey::generate();
    let args = ["--secret-key", key.as_str()];
    let (first, _) = listener().await;
    let a = start_app(pool.clone(), first, &args, &[]).await;
    let (second, _) = listener().await;
    let b = start_app(pool.clone(), second, &args, &[]).await;
    hear_each_other(&[&a, &b]).await;
    let admin = support::admin(&a).await;
    let (_, alice) = person(&a, "alice", "Alice").await;
    offered_becomes(&b, &alice, serde_json::json!([])).await;

    let provider = [
        ("id", "claude"),
        ("kind", "anthropic"),
        ("base_url", llm.url.as_str()),
        ("api_key", "test-key"),
        ("models", "scripted"),
        ("thinking_budget", "1024"),
    ];
    // Only administrators.
    for endpoint in [
        "admin/models/save",
        "admin/models/list",
        "admin/models/discover",
    ] {
        let (status, body) = api(&a, &alice, endpoint, &provider).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{endpoint}: {body}");
    }

    // Its models, from its list (Anthropic's GET /v1/models, with its key).
    let (status, found) = api(&a, &admin, "admin/models/discover", &provider).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found, serde_json::json!(["scripted"]));

    let (status, body) = api(&a, &admin, "admin/models/save", &provider).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Its key is stored encrypted and never shown back.
    let (_, listed) = api(&a, &admin, "admin/models/list", &[]).await;
    assert!(!listed.to_string().contains("test-key"), "{listed}");
    assert_eq!(listed["providers"][0]["id"], "claude");
    assert_eq!(listed["providers"][0]["has_api_key"], true);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT api_key FROM model_providers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!stored.windows(8).any(|w| w == b"test-key"));

    // The other instance offers it at once, and it answers there (thinking, as configured).
    offered_becomes(&b, &alice, serde_json::json!(["claude/scripted"])).await;
    let answer = ask(&b, &alice, "hello from b").await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(answer["model"], "claude/scripted");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .starts_with("You said: hello from b.")
    );
    assert_eq!(
        answer["thinking"],
        "The person asked something. I can answer."
    );

    // "Test": what it answered.
    let (status, said) = api(
        &b,
        &admin,
        "admin/models/test",
        &[("name", "claude/scripted")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{said}");
    assert!(
        said.as_str()
            .unwrap()
            .starts_with("You said: Reply with one word"),
        "{said}"
    );

    // A wrong key: "Test" says why it cannot answer. Saved without a key field, the key is kept.
    let mut wrong = provider;
    wrong[3] = ("api_key", "not-the-key");
    let edit = [&[("previous", "claude")][..], &wrong].concat();
    let (status, body) = api(&a, &admin, "admin/models/save", &edit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, why) = api(
        &a,
        &admin,
        "admin/models/test",
        &[("name", "claude/scripted")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{why}");
    assert!(
        why["message"]
            .as_str()
            .unwrap()
            .contains("refused the API key"),
        "{why}"
    );

    // Aliases and the default, checked against what is on offer.
    let (status, body) = api(
        &a,
        &admin,
        "admin/models/settings",
        &[("aliases", "smart=claude/nope"), ("default", "")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = api(
        &a,
        &admin,
        "admin/models/settings",
        &[("aliases", "smart=claude/scripted"), ("default", "smart")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    offered_becomes(&b, &alice, serde_json::json!(["smart", "claude/scripted"])).await;

    // Removed: no longer offered, on either instance.
    let (status, body) = api(&a, &admin, "admin/models/remove", &[("id", "claude")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    offered_becomes(&b, &alice, serde_json::json!([])).await;
    let (status, _) = api(&a, &admin, "admin/models/remove", &[("id", "claude")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
