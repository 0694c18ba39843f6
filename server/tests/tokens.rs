//! Personal API tokens over HTTP: they act as their owner on `/api/...`, stop at once when revoked,
//! and never reach another person's data.

mod support;

use reqwest::StatusCode;
use sqlx::PgPool;
use support::{call, person, start_local_app};

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_token_acts_as_its_owner_until_revoked(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = reqwest::Client::new();
    let (_, alice) = person(&app, "a", "Alice").await;

    let (status, me) = call(&client, &app.base, "auth/me", Some(&alice), &[]).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "Alice", "the token's owner, not the local user");

    // A script creates a second token, sees both, and revokes the first.
    let (status, created) = call(
        &client,
        &app.base,
        "tokens/create",
        Some(&alice),
        &[("name", "ci")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let second = created["secret"].as_str().unwrap().to_owned();
    assert!(second.starts_with("sb_"));
    let (_, list) = call(&client, &app.base, "tokens/list", Some(&alice), &[]).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci", "script"]);
    assert!(
        !list.to_string().contains(&second[4..]),
        "the list never shows a secret"
    );
    let first_id = list[1]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &client,
        &app.base,
        "tokens/revoke",
        Some(&second),
        &[("id", &first_id)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = call(&client, &app.base, "auth/me", Some(&alice), &[]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused"
    );
    assert_eq!(body["error"], "invalid_token");
    assert!(body["message"].as_str().unwrap().contains("revoked"));
    let (status, _) = call(&client, &app.base, "auth/me", Some(&second), &[]).await;
    assert_eq!(status, StatusCode::OK, "the other token still works");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_token_never_reaches_another_persons_tokens(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = reqwest::Client::new();
    let (_, alice) = person(&app, "a", "Alice").await;
    let (_, bob) = person(&app, "b", "Bob").await;

    let (_, alices) = call(&client, &app.base, "tokens/list", Some(&alice), &[]).await;
    let alice_token_id = alices[0]["id"].as_str().unwrap().to_owned();
    let (_, bobs) = call(&client, &app.base, "tokens/list", Some(&bob), &[]).await;
    assert_eq!(
        bobs.as_array().unwrap().len(),
        1,
        "Bob sees his own token only"
    );
    assert_ne!(bobs[0]["id"], alices[0]["id"]);

    let (status, body) = call(
        &client,
        &app.base,
        "tokens/revoke",
        Some(&bob),
        &[("id", &alice_token_id)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = call(&client, &app.base, "auth/me", Some(&alice), &[]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Alice's token survived Bob's attempt"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn bad_tokens_and_bad_input_get_clear_errors(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = reqwest::Client::new();
    let (_, alice) = person(&app, "a", "Alice").await;

    for bad in ["sb_not-a-real-token", "hunter2"] {
        let (status, body) = call(&client, &app.base, "auth/me", Some(bad), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(body["error"], "invalid_token");
    }
    let (status, body) = call(
        &client,
        &app.base,
        "tokens/create",
        Some(&alice),
        &[("name", "  ")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "invalid");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Give the token a name"),
        "{body}"
    );
}
