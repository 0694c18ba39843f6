//! Groups and what they may use, over HTTP as a script drives it: a registry tool server and a
//! model limited to a group are nobody else's on any path (listing, connecting, calling through a
//! chat, resources, the API), servers of their own switched off for a group, administrators
//! promoting and demoting people and putting them in groups, budgets and rate tiers refusing a
//! send with when it renews, and the usage report and its CSV.

mod support;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{
    FakeLlm, SseReader, TestApp, admin, api, listener, person, start_app, until_one_of as until,
};

/// The app with the scripted model (`fake/scripted`, and `fake/other`) and an administrator.
async fn app(pool: PgPool, llm: &FakeLlm) -> (TestApp, String) {
    let (listener, _) = listener().await;
    let (args, mut vars) = llm.settings();
    for (name, value) in &mut vars {
        if *name == "SWITCHBOARD_LLM_FAKE_MODELS" {
            *value = "scripted,other".into();
        }
    }
    let app = start_app(pool, listener, &args, &vars).await;
    let admin = admin(&app).await;
    (app, admin)
}

async fn new_chat(app: &TestApp, token: &str) -> String {
    let (status, chat) = api(app, token, "chats/create", &[]).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    chat["id"].as_str().unwrap().to_owned()
}

/// Waits until `token`'s connection to `server` is connected.
async fn until_connected(app: &TestApp, token: &str, server: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, servers) = api(app, token, "mcp/servers", &[]).await;
        let status = servers
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == server)
            .map(|s| s["status"].clone());
        if status == Some(json!("connected")) {
            return;
        }
        assert!(Instant::now() < deadline, "{servers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A call of the test server's `echo` that the person's model asked for in a new chat, waiting
/// for their approval: the chat's events, and the decision that approves it.
struct Waiting {
    events: SseReader,
    approve: Value,
}

async fn a_call_waiting(app: &TestApp, token: &str) -> Waiting {
    let (status, body) = api(app, token, "mcp/connect", &[("id", "test")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_connected(app, token, "test").await;
    let chat = new_chat(app, token).await;
    let mut events = support::subscribe(app, token, &chat, None).await;
    let text = r#"tool:test__echo {"message":"hi"}"#;
    let (status, body) = api(app, token, "chats/send", &[("id", &chat), ("text", text)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = until(&mut events, &["approval_needed", "run_finished"]).await;
    let needed = &seen.last().unwrap().data;
    assert_eq!(needed["type"], "approval_needed", "{seen:?}");
    let call = &seen.iter().find(|e| e.event == "tool_call").unwrap().data["call"]["id"];
    let approve = json!({
        "id": chat, "answer_id": needed["answer_id"], "turn": needed["turn"],
        "decisions": [{"call_id": call, "approve": true}],
    });
    Waiting { events, approve }
}

fn listed(servers: &Value, id: &str) -> bool {
    servers.as_array().unwrap().iter().any(|s| s["id"] == id)
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_server_limited_to_a_group_is_nobody_elses_on_any_path(pool: PgPool) {
    let llm = FakeLlm::start();
    let (app, admin) = app(pool, &llm).await;
    let (alice_id, alice) = person(&app, "alice", "Alice").await;
    let (_, bob) = person(&app, "bob", "Bob").await;
    let node = support::node().display().to_string();
    let script = support::workspace_root()
        .join("end2end/mcp/test-server.mjs")
        .display()
        .to_string();
    let save = |groups: &'static str| {
        let (node, script) = (node.clone(), script.clone());
        let admin = admin.clone();
        let app = &app;
        async move {
            let previous = if groups.is_empty() { "" } else { "test" };
            let form = [
                ("previous", previous),
                ("id", "test"),
                ("name", "Test"),
                ("transport", "stdio"),
                ("command", node.as_str()),
                ("args", script.as_str()),
                ("groups", groups),
            ];
            let (status, body) = api(app, &admin, "mcp/admin/save", &form).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    // Everyone's at first: Bob connects and his model asks for a call, which waits for him.
    save("").await;
    let Waiting {
        mut events,
        approve,
    } = a_call_waiting(&app, &bob).await;

    // Limited to "research", which Alice is put in and Bob is not.
    save("research").await;
    let (status, body) = api(
        &app,
        &admin,
        "admin/groups/add",
        &[("group", "research"), ("person", &alice_id.to_string())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listing) = api(&app, &admin, "mcp/admin/servers", &[]).await;
    assert_eq!(listing[0]["groups"], json!(["research"]), "{listing}");

    // Bob: no resources, not listed, no connecting, no call through his chat.
    let read = [
        ("server", "test"),
        ("uri", "test://notes"),
        ("name", "notes"),
    ];
    let (status, said) = api(&app, &bob, "mcp/resource", &read).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{said}");
    let (status, servers) = api(&app, &bob, "mcp/servers", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!listed(&servers, "test"), "{servers}");
    let (status, _) = api(&app, &bob, "mcp/connect", &[("id", "test")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = support::post_json(&app.base, "chats/decide", &bob, &approve).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = until(&mut events, &["run_finished"]).await;
    let result = seen
        .iter()
        .find(|e| e.event == "tool_result")
        .unwrap_or_else(|| panic!("no result: {seen:?}"));
    // It did not run: the server is no longer one of Bob's.
    assert_eq!(result.data["call"]["state"], "error", "{:?}", result.data);
    let said = result.data["call"]["result"].as_str().unwrap();
    assert!(said.contains("so it was not run"), "{said}");

    // Alice: listed, connects, and her call runs.
    let (_, servers) = api(&app, &alice, "mcp/servers", &[]).await;
    assert!(listed(&servers, "test"), "{servers}");
    let (status, body) = api(&app, &alice, "mcp/connect", &[("id", "test")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_connected(&app, &alice, "test").await;
    let (status, read) = api(&app, &alice, "mcp/resource", &read).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["text"], "The meeting is at noon.");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_model_limited_to_a_group_is_nobody_elses_and_personal_servers_can_be_switched_off(
    pool: PgPool,
) {
    let llm = FakeLlm::start();
    let (app, admin) = app(pool, &llm).await;
    let (alice_id, alice) = person(&app, "alice", "Alice").await;
    let (_, bob) = person(&app, "bob", "Bob").await;
    // Bob chose the model before it was limited.
    let (status, chat) = api(&app, &bob, "chats/create", &[("model", "fake/other")]).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    let bobs_chat = chat["id"].as_str().unwrap().to_owned();

    let (status, body) = api(
        &app,
        &admin,
        "admin/models/limits",
        &[("limits", "fake/other: research")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api(
        &app,
        &admin,
        "admin/models/limits",
        &[("limits", "fake/nothing: research")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, body) = api(
        &app,
        &admin,
        "admin/groups/add",
        &[("group", "research"), ("person", &alice_id.to_string())],
    )
    .await;
    assert_eq!(body, Value::Null);

    // Bob neither sees it, nor chooses it, nor sends with it.
    let (_, models) = api(&app, &bob, "models/list", &[]).await;
    assert_eq!(models["choices"], json!(["fake/scripted"]), "{models}");
    let (status, said) = api(&app, &bob, "chats/create", &[("model", "fake/other")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{said}");
    let (status, said) = api(
        &app,
        &bob,
        "chats/model",
        &[("id", &bobs_chat), ("model", "fake/other")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{said}");
    let (status, said) = api(
        &app,
        &bob,
        "chats/send",
        &[("id", &bobs_chat), ("text", "hello")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{said}");
    assert!(
        said["message"]
            .as_str()
            .unwrap()
            .contains("not available to you"),
        "{said}"
    );
    // Alice does, and administrators see everything.
    let (_, models) = api(&app, &alice, "models/list", &[]).await;
    assert_eq!(models["choices"], json!(["fake/scripted", "fake/other"]));
    let (status, chat) = api(&app, &alice, "chats/create", &[("model", "fake/other")]).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    let (_, models) = api(&app, &admin, "models/list", &[]).await;
    assert_eq!(models["choices"], json!(["fake/scripted", "fake/other"]));

    // Servers of their own, off for "research": Alice cannot add one; Bob can.
    let (status, body) = api(
        &app,
        &admin,
        "admin/groups/save",
        &[("name", "research"), ("personal_servers_off", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let add = [("name", "Mine"), ("url", "http://127.0.0.1:9/mcp")];
    let (status, said) = api(&app, &alice, "mcp/personal/add", &add).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{said}");
    assert!(
        said["message"].as_str().unwrap().contains("'research'"),
        "{said}"
    );
    let (status, said) = api(&app, &bob, "mcp/personal/add", &add).await;
    // (Bob's is refused only for where it leads, never for his groups.)
    assert_ne!(status, StatusCode::FORBIDDEN, "{said}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn administrators_promote_demote_and_group_people_and_it_is_recorded(pool: PgPool) {
    let llm = FakeLlm::start();
    let (app, admin) = app(pool, &llm).await;
    let (bob_id, bob) = person(&app, "bob", "Bob").await;
    let bob_id = bob_id.to_string();
    let (status, _) = api(&app, &bob, "admin/groups/list", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(
        &app,
        &bob,
        "admin/people/role",
        &[("id", &bob_id), ("role", "admin")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "nobody promotes themselves");

    let promote = [("id", bob_id.as_str()), ("role", "admin")];
    let (status, body) = api(&app, &admin, "admin/people/role", &promote).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api(&app, &bob, "admin/groups/list", &[]).await;
    assert_eq!(status, StatusCode::OK, "Bob is an administrator at once");
    // The configured rule (which names the administrator alone) no longer changes a role set in
    // the app.
    sqlx::query(
        "UPDATE users SET email = 'someone@example.com', email_verified = true
         WHERE subject = 'admin'",
    )
    .execute(app.db.pool())
    .await
    .unwrap();
    let rule = domain::users::AdminRule {
        emails: vec!["someone@example.com".into()],
        groups: Vec::new(),
    };
    domain::users::apply_admin_rule(&app.db, &rule)
        .await
        .unwrap();
    let (status, _) = api(&app, &bob, "admin/groups/list", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let demote = [("id", bob_id.as_str()), ("role", "user")];
    let (status, body) = api(&app, &admin, "admin/people/role", &demote).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api(&app, &bob, "admin/groups/list", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Groups made here, and someone put in and taken out by address or id.
    sqlx::query("UPDATE users SET email = 'bob@example.com' WHERE id = $1::uuid")
        .bind(&bob_id)
        .execute(app.db.pool())
        .await
        .unwrap();
    let (status, body) = api(
        &app,
        &admin,
        "admin/groups/add",
        &[("group", "ops"), ("person", "BOB@example.com")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api(
        &app,
        &admin,
        "admin/groups/add",
        &[("group", "ops"), ("person", "nobody@example.com")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, groups) = api(&app, &admin, "admin/groups/list", &[]).await;
    let ops = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "ops")
        .unwrap();
    assert_eq!(ops["members"][0]["name"], "Bob", "{groups}");
    assert_eq!(ops["members"][0]["added_here"], true);
    let (_, people) = api(&app, &admin, "admin/people/list", &[]).await;
    let listed = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == bob_id)
        .unwrap();
    assert_eq!(listed["groups_here"], json!(["ops"]));
    assert_eq!(listed["role_set_here"], true);
    let (status, body) = api(
        &app,
        &admin,
        "admin/groups/remove",
        &[("group", "ops"), ("id", &bob_id)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api(&app, &admin, "admin/groups/save", &[("name", "bad,name")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let actions: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT action, detail FROM admin_actions WHERE subject_id = $1::uuid ORDER BY id",
    )
    .bind(&bob_id)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            ("promote".into(), None),
            ("demote".into(), None),
            ("join".into(), Some("ops".into())),
            ("leave".into(), Some("ops".into())),
        ]
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_send_over_budget_or_rate_is_refused_with_when_it_renews(pool: PgPool) {
    let llm = FakeLlm::start();
    let (app, admin) = app(pool, &llm).await;
    let (bob_id, bob) = person(&app, "bob", "Bob").await;
    let chat = new_chat(&app, &bob).await;
    let send = |text: &'static str| {
        let (app, bob, chat) = (&app, bob.clone(), chat.clone());
        async move { api(app, &bob, "chats/send", &[("id", &chat), ("text", text)]).await }
    };
    let wait_idle = || async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, got) = api(&app, &bob, "chats/get", &[("id", &chat)]).await;
            if got["live"].is_null() {
                return got;
            }
            assert!(Instant::now() < deadline, "{got}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    // One answer a minute for "interns"; Bob is one.
    let (status, body) = api(
        &app,
        &admin,
        "admin/groups/save",
        &[("name", "interns"), ("answers_per_minute", "1")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api(
        &app,
        &admin,
        "admin/groups/add",
        &[("group", "interns"), ("person", &bob_id.to_string())],
    )
    .await;
    let (status, body) = send("hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = wait_idle().await;
    let answer = got["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(answer["status"], "complete", "{answer}");
    let response = reqwest::Client::new()
        .post(format!("{}/api/chats/send", app.base))
        .bearer_auth(&bob)
        .form(&[("id", chat.as_str()), ("text", "again")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let said: Value = response.json().await.unwrap();
    assert_eq!(said["error"], "rate_limited");
    assert!(
        said["message"]
            .as_str()
            .unwrap()
            .contains("1 a minute, set for the group 'interns'"),
        "{said}"
    );
    // Operators see it.
    let rate = domain::metrics::RefusalLabels { limit: "rate" };
    assert!(domain::metrics::METRICS.refusals.get_or_create(&rate).get() >= 1);
    // Regenerating (which replaces the answer) counts as a start too.
    let (status, said) = api(
        &app,
        &bob,
        "chats/send",
        &[("id", &chat), ("text", "hello"), ("from_position", "0")],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{said}");
    // Nothing was stored of the refused sends.
    let got = wait_idle().await;
    assert_eq!(got["messages"].as_array().unwrap().len(), 2, "{got}");

    // The answer's tokens were counted for Bob today, and a daily budget under them refuses.
    let (_, mine) = api(&app, &bob, "usage/mine", &[]).await;
    let used = mine["used_today"].as_i64().unwrap();
    assert!(used > 0, "{mine}");
    let (status, body) = api(
        &app,
        &admin,
        "admin/people/limits",
        &[
            ("id", &bob_id.to_string()),
            ("tokens_per_day", &used.to_string()),
            ("answers_per_minute", "100"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = reqwest::Client::new()
        .post(format!("{}/api/chats/send", app.base))
        .bearer_auth(&bob)
        .form(&[("id", chat.as_str()), ("text", "again")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let said: Value = response.json().await.unwrap();
    assert_eq!(said["error"], "over_budget");
    let message = said["message"].as_str().unwrap();
    assert!(message.contains("daily budget"), "{message}");
    assert!(message.contains("set for you"), "{message}");
    assert!(message.contains("renews at midnight UTC"), "{message}");
    let (_, mine) = api(&app, &bob, "usage/mine", &[]).await;
    assert_eq!(mine["limits"][0]["limit"], "tokens_per_day", "{mine}");

    // Deleting the chat does not give the budget back.
    let (status, _) = api(&app, &bob, "chats/delete", &[("id", &chat)]).await;
    assert_eq!(status, StatusCode::OK);
    let chat = new_chat(&app, &bob).await;
    let (status, _) = api(&app, &bob, "chats/send", &[("id", &chat), ("text", "x")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn budgets_renew_with_the_day_and_the_month_on_a_clock_the_test_sets(pool: PgPool) {
    let db = domain::Database::from_pool(pool);
    let bob = support::user(&db, "bob", "Bob").await;
    let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
    let spend = |day: &'static str, tokens: i64| {
        let db = db.clone();
        async move {
            sqlx::query(
                "INSERT INTO usage_days (user_id, day, model, answers, input_tokens, output_tokens)
                 VALUES ($1, $2::date, 'fake/scripted', 1, $3, 0)",
            )
            .bind(bob)
            .bind(day)
            .bind(tokens)
            .execute(db.pool())
            .await
            .unwrap();
        }
    };
    sqlx::query("UPDATE users SET tokens_per_day = 1000, tokens_per_month = 2500 WHERE id = $1")
        .bind(bob)
        .execute(db.pool())
        .await
        .unwrap();
    spend("2026-12-30", 1000).await;
    // The day is used up until midnight; the next day is fine.
    let refused = domain::budgets::admit(&db, bob, at(2026, 12, 30, 21))
        .await
        .unwrap_err();
    let domain::Error::OverBudget {
        message,
        retry_after,
    } = refused
    else {
        panic!("{refused:?}")
    };
    assert_eq!(retry_after, 3 * 3600, "{message}");
    assert!(message.contains("1,000 used today"), "{message}");
    domain::budgets::admit(&db, bob, at(2026, 12, 31, 0))
        .await
        .unwrap();
    // The month is used up until the first of the next.
    spend("2026-12-31", 900).await;
    spend("2026-12-01", 700).await;
    let refused = domain::budgets::admit(&db, bob, at(2026, 12, 31, 12))
        .await
        .unwrap_err();
    let domain::Error::OverBudget {
        message,
        retry_after,
    } = refused
    else {
        panic!("{refused:?}")
    };
    assert!(message.contains("monthly budget of 2,500"), "{message}");
    assert!(message.contains("1 January"), "{message}");
    assert_eq!(retry_after, 12 * 3600);
    domain::budgets::admit(&db, bob, at(2027, 1, 1, 0))
        .await
        .unwrap();
    // Someone else's use never counts against Bob.
    let alice = support::user(&db, "alice", "Alice").await;
    sqlx::query(
        "INSERT INTO usage_days (user_id, day, model, answers, input_tokens, output_tokens)
         VALUES ($1, '2027-01-01', 'fake/scripted', 1, 99999, 0)",
    )
    .bind(alice)
    .execute(db.pool())
    .await
    .unwrap();
    domain::budgets::admit(&db, bob, at(2027, 1, 1, 1))
        .await
        .unwrap();
    // Both used up: a send may go again only when the later one renews.
    spend("2027-01-01", 2500).await;
    let refused = domain::budgets::admit(&db, bob, at(2027, 1, 1, 12))
        .await
        .unwrap_err();
    let domain::Error::OverBudget { retry_after, .. } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(retry_after, (30 * 24 + 12) * 3600);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn administrators_see_usage_by_person_group_model_and_day_and_download_it(pool: PgPool) {
    let llm = FakeLlm::start();
    let (app, admin) = app(pool, &llm).await;
    let (bob_id, bob) = person(&app, "bob", "Bob").await;
    sqlx::query(
        "INSERT INTO usage_days (user_id, day, model, answers, input_tokens, output_tokens)
         VALUES ($1, current_date - 1, 'fake/scripted', 2, 100, 20),
                ($1, current_date, 'fake/other', 1, 5, 5)",
    )
    .bind(bob_id)
    .execute(app.db.pool())
    .await
    .unwrap();
    api(
        &app,
        &admin,
        "admin/groups/add",
        &[("group", "ops"), ("person", &bob_id.to_string())],
    )
    .await;
    let (status, _) = api(&app, &bob, "admin/usage", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, report) = api(&app, &admin, "admin/usage", &[("by", "group")]).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["totals"][0]["key"], "ops");
    assert_eq!(report["totals"][0]["answers"], 3);
    assert_eq!(report["days"].as_array().unwrap().len(), 30);
    let (_, report) = api(&app, &admin, "admin/usage", &[("by", "model")]).await;
    assert_eq!(report["totals"][0]["key"], "fake/scripted", "{report}");
    let (status, said) = api(
        &app,
        &admin,
        "admin/usage",
        &[("from", "2026-12-10"), ("to", "2026-12-01")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{said}");

    let csv = |token: &str| {
        reqwest::Client::new()
            .get(format!("{}/admin/usage.csv", app.base))
            .bearer_auth(token)
            .send()
    };
    let response = csv(&admin).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = response.text().await.unwrap();
    assert!(text.starts_with("day,person_id,name"), "{text}");
    assert!(text.contains(",Bob,,ops,fake/scripted,2,100,20"), "{text}");
    assert_eq!(csv(&bob).await.unwrap().status(), StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn sends_at_once_in_several_chats_are_counted_one_after_another(pool: PgPool) {
    let db = domain::Database::from_pool(pool);
    let bob = support::user(&db, "bob", "Bob").await;
    sqlx::query("UPDATE users SET answers_per_minute = 2 WHERE id = $1")
        .bind(bob)
        .execute(db.pool())
        .await
        .unwrap();
    let now = Utc::now();
    let tries = (0..6).map(|_| domain::budgets::admit(&db, bob, now));
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
    let refused = results.into_iter().find_map(Result::err).unwrap();
    let domain::Error::RateLimited { retry_after, .. } = refused else {
        panic!("{refused:?}")
    };
    assert!((59..=60).contains(&retry_after), "{retry_after}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_answer_stops_at_a_budget_used_up_while_it_waited(pool: PgPool) {
    let llm = FakeLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let app = support::start_app_with_test_server(pool, &llm, dir.path()).await;
    let admin = admin(&app).await;
    let (bob_id, bob) = person(&app, "bob", "Bob").await;
    let Waiting {
        mut events,
        approve,
    } = a_call_waiting(&app, &bob).await;

    // While it waits, Bob's budget goes to 0; he approves, the tool runs, and the answer stops
    // before asking the model again, saying why.
    let (status, body) = api(
        &app,
        &admin,
        "admin/people/limits",
        &[("id", &bob_id.to_string()), ("tokens_per_day", "0")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = support::post_json(&app.base, "chats/decide", &bob, &approve).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = until(&mut events, &["run_finished"]).await;
    let result = seen.iter().find(|e| e.event == "tool_result").unwrap();
    assert!(
        result.data.to_string().contains("Echo: hi"),
        "{:?}",
        result.data
    );
    let finished = &seen.last().unwrap().data;
    assert_eq!(finished["status"], "failed", "{finished}");
    let error = finished["error"].as_str().unwrap();
    assert!(error.contains("daily budget is 0 tokens"), "{error}");
}
