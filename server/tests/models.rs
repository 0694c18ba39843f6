//! With no model provider configured, a model server on this machine is found and answers, whether
//! it was running before Switchboard started or after: the scripted OpenAI-compatible server,
//! asking for no key, stands in for a local Ollama. Also what is not taken for one (nothing
//! listening, a page that is no model list, a list too large). And a provider speaking Anthropic's
//! Messages API, answering and failing in its own format.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::PgPool;
use support::{
    FakeLlm, TestApp, Wire, api, browser, free_port, listener, page, person, start_app, subscribe,
    until_finished,
};

/// The app with no provider, looking for a model server at `urls` only.
async fn start_looking_at(pool: PgPool, urls: &str) -> TestApp {
    let (listener, _) = listener().await;
    start_app(pool, listener, &["--local-model-urls", urls], &[]).await
}

/// An address nothing listens on.
fn closed_address() -> String {
    format!("http://127.0.0.1:{}/v1", free_port())
}

/// Creates a chat of `token`'s, sends `text` and waits for the answer; returns the model the send
/// named and the stored answer.
async fn ask(app: &TestApp, token: &str, text: &str) -> (String, serde_json::Value) {
    let (model, answer) = ask_ending(app, token, text).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    (model, answer)
}

/// The answer says which model wrote it, and the provider's counts of what it used.
fn assert_used(answer: &serde_json::Value, model: &str) {
    assert_eq!(answer["model"], model, "{answer}");
    let usage = &answer["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(usage["estimated"], false, "the provider counted: {usage}");
    let first = usage["first_token_ms"].as_u64().unwrap();
    let duration = usage["duration_ms"].as_u64().unwrap();
    assert!(first <= duration && duration > 0, "{usage}");
}

/// [`ask`], however the answer ends.
async fn ask_ending(app: &TestApp, token: &str, text: &str) -> (String, serde_json::Value) {
    let (status, chat) = api(app, token, "chats/create", &[]).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    let chat = chat["id"].as_str().unwrap().to_owned();
    let mut events = subscribe(app, token, &chat, None).await;
    let (status, sent) = api(app, token, "chats/send", &[("id", &chat), ("text", text)]).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    until_finished(&mut events).await;
    let (_, read) = api(app, token, "chats/get", &[("id", &chat)]).await;
    (
        sent["model"].as_str().unwrap().to_owned(),
        read["messages"][1].clone(),
    )
}

/// A server answering `GET /v1/models` with `body`.
async fn serving(body: String) -> String {
    let (listener, base) = listener().await;
    let app = axum::Router::new().route(
        "/v1/models",
        axum::routing::get(move || async move { body.clone() }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("{base}/v1")
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn with_nothing_configured_a_model_server_on_this_machine_answers(pool: PgPool) {
    let local = FakeLlm::start_keyless();
    // The first address has nothing; the second is the model server.
    let app = start_looking_at(pool, &format!("{},{}", closed_address(), local.url)).await;

    let (_, alice) = person(&app, "alice", "alice").await;
    let (status, models) = api(&app, &alice, "models/list", &[]).await;
    assert_eq!(status, StatusCode::OK, "{models}");
    assert_eq!(models["choices"], serde_json::json!(["local2/scripted"]));
    assert_eq!(models["default"], "local2/scripted");
    assert_eq!(models["unavailable"], serde_json::Value::Null);
    let found = models["found"].as_str().unwrap();
    assert!(found.contains(&local.url), "{found}");

    // The home page says which server answers.
    let home = page(&browser(), &app.base).await;
    assert!(
        home.contains("found-models") && home.contains(&local.url),
        "{home}"
    );

    // And it answers, with no key.
    let (model, answer) = ask(&app, &alice, "hello").await;
    assert_eq!(model, "local2/scripted");
    let text = answer["content"].as_str().unwrap();
    assert!(text.starts_with("You said: hello."), "{text}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_model_server_started_after_switchboard_answers_without_a_restart(pool: PgPool) {
    let port = free_port();
    let app = start_looking_at(pool, &format!("http://127.0.0.1:{port}/v1")).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    let (_, models) = api(&app, &alice, "models/list", &[]).await;
    assert_eq!(models["choices"], serde_json::json!([]));

    let _local = FakeLlm::start_keyless_on(port);
    // Searched again when models are asked for (at most every few seconds).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, models) = api(&app, &alice, "models/list", &[]).await;
        if models["choices"] == serde_json::json!(["local/scripted"]) {
            assert!(
                models["found"]
                    .as_str()
                    .unwrap()
                    .contains(&port.to_string())
            );
            break;
        }
        assert!(Instant::now() < deadline, "never found: {models}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (model, answer) = ask(&app, &alice, "hello again").await;
    assert_eq!(model, "local/scripted");
    let text = answer["content"].as_str().unwrap();
    assert!(text.starts_with("You said: hello again."), "{text}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn with_nothing_found_the_app_starts_at_once_and_says_how_to_add_a_model(pool: PgPool) {
    let started = Instant::now();
    let app = start_looking_at(pool, &closed_address()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "looking took {:?}",
        started.elapsed()
    );
    let (_, alice) = person(&app, "alice", "alice").await;
    let (_, models) = api(&app, &alice, "models/list", &[]).await;
    assert_eq!(models["choices"], serde_json::json!([]));
    assert_eq!(models["found"], serde_json::Value::Null);
    assert!(
        models["unavailable"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_LLM_PROVIDERS")
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn what_is_not_a_model_list_is_not_taken_for_one(pool: PgPool) {
    let html = serving("<html><body>Welcome to nginx!</body></html>".into()).await;
    // 300 KB of model names: over what is read of a model list.
    let names: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"id":"model-number-{i:08}"}}"#))
        .collect();
    let huge = serving(format!(r#"{{"data":[{}]}}"#, names.join(","))).await;
    let app = start_looking_at(pool, &format!("{html},{huge}")).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    let (_, models) = api(&app, &alice, "models/list", &[]).await;
    assert_eq!(models["choices"], serde_json::json!([]), "{models}");
    assert_eq!(models["found"], serde_json::Value::Null);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_provider_speaking_anthropics_api_answers_and_its_overload_is_explained(pool: PgPool) {
    let llm = FakeLlm::start();
    let (args, vars) = llm.settings_speaking(Wire::Anthropic);
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &args, &vars).await;
    let (_, alice) = person(&app, "alice", "alice").await;

    let (model, answer) = ask(&app, &alice, "hello").await;
    assert_eq!(model, "fake/scripted");
    let text = answer["content"].as_str().unwrap();
    assert!(text.starts_with("You said: hello."), "{text}");
    // Its thinking came first, is stored apart, and is no part of the answer.
    assert!(!text.contains("The person asked"), "{text}");
    assert_eq!(
        answer["thinking"],
        "The person asked something. I can answer."
    );
    assert_used(&answer, "fake/scripted");

    // Overloaded (HTTP 529, `overloaded_error`) on every try: the answer says so, and what to do.
    let (_, answer) = ask_ending(&app, &alice, "are you overloaded?").await;
    assert_eq!(answer["status"], "failed", "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("'fake' is overloaded (Overloaded)")
            && error.contains("choose another model"),
        "{error}"
    );
}

/// An OpenAI-compatible reasoning model's `reasoning_content` streams as `thinking` events before
/// the answer's tokens, is stored apart from the answer, and the provider's usage is recorded.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn reasoning_streams_apart_from_the_answer_and_usage_is_recorded(pool: PgPool) {
    let llm = FakeLlm::start();
    let (args, vars) = llm.settings();
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &args, &vars).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    let (_, chat) = api(&app, &alice, "chats/create", &[]).await;
    let chat = chat["id"].as_str().unwrap().to_owned();
    let mut events = subscribe(&app, &alice, &chat, None).await;
    let (status, _) = api(
        &app,
        &alice,
        "chats/send",
        &[("id", &chat), ("text", "think first")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = until_finished(&mut events).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let first_thought = names.iter().position(|n| *n == "thinking").unwrap();
    let first_token = names.iter().position(|n| *n == "token").unwrap();
    assert!(first_thought < first_token, "{names:?}");
    let finished = events.last().unwrap();
    assert!(finished.data["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let (_, read) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
    let answer = &read["messages"][1];
    assert_eq!(
        answer["thinking"],
        "The person wants me to think. I will answer plainly."
    );
    let text = answer["content"].as_str().unwrap();
    assert!(text.starts_with("You said: think first."), "{text}");
    assert!(!text.contains("I will answer plainly"), "{text}");
    assert_used(answer, "fake/scripted");
    assert_eq!(answer["usage"], finished.data["usage"]);
}

/// An alias naming a list (`smart=gone/scripted|fake/scripted`): while the first cannot answer, the
/// next does and the answer says so; after failing three times in a row the first is marked down
/// (the model list says so), and is not asked while it is.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_alias_falls_back_to_its_next_model_and_a_failing_provider_is_marked_down(pool: PgPool) {
    let llm = FakeLlm::start();
    let (_, mut vars) = llm.settings();
    vars.push(("SWITCHBOARD_LLM_GONE_BASE_URL", closed_address()));
    vars.push(("SWITCHBOARD_LLM_GONE_MODELS", "scripted".to_owned()));
    let args = [
        "--llm-providers",
        "gone,fake",
        "--llm-aliases",
        "smart=gone/scripted|fake/scripted",
        "--llm-default-model",
        "smart",
    ];
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &args, &vars).await;
    let (_, alice) = person(&app, "alice", "alice").await;

    for round in 1..=4 {
        let (_, answer) = ask(&app, &alice, &format!("round {round}")).await;
        let text = answer["content"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("You said: round {round}.")),
            "{text}"
        );
        assert_eq!(answer["model"], "fake/scripted", "{answer}");
        let fallback = &answer["usage"]["fallback"];
        assert_eq!(fallback["model"], "fake/scripted");
        assert_eq!(fallback["instead_of"], "gone/scripted");
        let why = fallback["why"].as_str().unwrap();
        if round <= 3 {
            assert!(
                why.contains("Cannot reach the model provider 'gone'"),
                "{why}"
            );
        } else {
            assert!(why.contains("marked down"), "{why}");
        }
    }
    let (_, models) = api(&app, &alice, "models/list", &[]).await;
    assert_eq!(models["down"], serde_json::json!(["gone"]));
    // Operators see it in /readyz's detail; the instance stays ready.
    let ready = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["providers_down"], serde_json::json!(["gone"]));
    // The Models page says so too.
    let admin = support::admin(&app).await;
    let (_, listed) = api(&app, &admin, "admin/models/list", &[]).await;
    assert_eq!(listed["down"], serde_json::json!(["gone"]), "{listed}");
}

/// A chat longer than its model's context window (`tiny`, which refuses more than 2,000 tokens) is
/// trimmed from its oldest turns before it is sent, and the answer says so; the same chat on a
/// provider whose window is not set gets the provider's refusal. A message too long by itself is
/// refused before anything is sent, saying why.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_chat_longer_than_the_context_window_is_trimmed_from_its_oldest_turns(pool: PgPool) {
    let llm = FakeLlm::start();
    let provider = |id: &'static str, window: Option<&'static str>| {
        let var = |name: &str| -> &'static str {
            Box::leak(format!("SWITCHBOARD_LLM_{id}_{name}").into_boxed_str())
        };
        let mut vars = vec![
            (var("BASE_URL"), llm.url.clone()),
            (var("API_KEY"), "test-key".to_owned()),
            (var("MODELS"), "tiny".to_owned()),
        ];
        if let Some(window) = window {
            vars.push((var("CONTEXT_WINDOW"), window.to_owned()));
        }
        vars
    };
    let vars = [provider("FIT", Some("2000")), provider("BLIND", None)].concat();
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &["--llm-providers", "fit,blind"], &vars).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    // About 2,400 characters each: three of them and two answers are over 2,000 tokens.
    let long = |n: usize| format!("part {n}: {}", "words ".repeat(400));

    for model in ["fit/tiny", "blind/tiny"] {
        let (_, chat) = api(&app, &alice, "chats/create", &[]).await;
        let chat = chat["id"].as_str().unwrap().to_owned();
        let (status, _) = api(
            &app,
            &alice,
            "chats/model",
            &[("id", &chat), ("model", model)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let mut answers = Vec::new();
        for round in 1..=3 {
            let mut events = subscribe(&app, &alice, &chat, None).await;
            let text = long(round);
            let (status, sent) = api(
                &app,
                &alice,
                "chats/send",
                &[("id", &chat), ("text", &text)],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{sent}");
            until_finished(&mut events).await;
            let (_, read) = api(&app, &alice, "chats/get", &[("id", &chat)]).await;
            answers.push(read["messages"].as_array().unwrap().last().unwrap().clone());
        }
        if model == "fit/tiny" {
            for (answer, left_out) in answers.iter().zip([None, Some(2), Some(4)]) {
                assert_eq!(answer["status"], "complete", "{answer}");
                assert_eq!(answer["usage"]["trimmed"].as_u64(), left_out, "{answer}");
            }
            let text = answers[2]["content"].as_str().unwrap();
            assert!(text.starts_with("You said: part 3:"), "{}", &text[..40]);
        } else {
            assert_eq!(answers[2]["status"], "failed", "{}", answers[2]);
            let error = answers[2]["error"].as_str().unwrap();
            assert!(error.contains("maximum context length"), "{error}");
        }
    }

    let (_, chat) = api(&app, &alice, "chats/create", &[]).await;
    let chat = chat["id"].as_str().unwrap().to_owned();
    api(
        &app,
        &alice,
        "chats/model",
        &[("id", &chat), ("model", "fit/tiny")],
    )
    .await;
    let huge = "words ".repeat(1500);
    let (status, refused) = api(
        &app,
        &alice,
        "chats/send",
        &[("id", &chat), ("text", &huge)],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("too long for fit/tiny") && message.contains("larger context window"),
        "{message}"
    );
}
