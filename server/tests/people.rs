//! Everyone who signed in, as administrators see and manage them (`admin/people/list`,
//! `admin/people/access`): who may, what a deactivation stops at once, and the record of it.

mod support;

use reqwest::StatusCode;
use sqlx::PgPool;
use support::{admin, api, listener, person, start_app};

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_administrator_sees_everyone_and_deactivates_and_reactivates_someone(pool: PgPool) {
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &[], &[]).await;
    let admin = admin(&app).await;
    let (bob_id, bob) = person(&app, "bob", "Bob").await;

    // Only administrators see the list.
    let (status, _) = api(&app, &bob, "admin/people/list", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, people) = api(&app, &admin, "admin/people/list", &[]).await;
    assert_eq!(status, StatusCode::OK, "{people}");
    let listed = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == bob_id.to_string())
        .unwrap()
        .clone();
    assert_eq!(listed["name"], "Bob");
    assert_eq!(listed["status"], "active");
    assert_eq!(listed["role"], "user");
    assert_eq!(listed["provider"], "id.example.com");
    assert_eq!(listed["tokens_this_month"], 0);

    // Nobody but an administrator changes anyone's access, and not their own.
    let bob_id = bob_id.to_string();
    let deactivate = [("id", bob_id.as_str()), ("active", "false")];
    let (status, _) = api(&app, &bob, "admin/people/access", &deactivate).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let my_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE subject = 'admin'")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let my_id = my_id.to_string();
    let (status, said) = api(
        &app,
        &admin,
        "admin/people/access",
        &[("id", &my_id), ("active", "false")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{said}");

    // Deactivated: Bob's token stops at once.
    let (status, _) = api(&app, &bob, "chats/list", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, said) = api(&app, &admin, "admin/people/access", &deactivate).await;
    assert_eq!(status, StatusCode::OK, "{said}");
    let (status, _) = api(&app, &bob, "chats/list", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api(&app, &admin, "admin/people/access", &deactivate).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already deactivated");

    // Reactivated: it works again.
    let reactivate = [("id", bob_id.as_str()), ("active", "true")];
    let (status, said) = api(&app, &admin, "admin/people/access", &reactivate).await;
    assert_eq!(status, StatusCode::OK, "{said}");
    let (status, _) = api(&app, &bob, "chats/list", &[]).await;
    assert_eq!(status, StatusCode::OK);

    // Both are recorded: who did what to whom.
    let recorded: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "SELECT action, actor_id FROM admin_actions WHERE subject_id = $1::uuid ORDER BY id",
    )
    .bind(&bob_id)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let actions: Vec<&str> = recorded.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["deactivate", "reactivate"]);
    assert!(recorded.iter().all(|(_, actor)| actor.to_string() == my_id));
}
