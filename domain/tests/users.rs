//! Users, roles and API tokens against a real PostgreSQL (a fresh database per test).

use domain::users::{self, Identity, Role, RoleDecision};
use domain::{Database, tokens};
use sqlx::PgPool;

fn person(subject: &str) -> Identity {
    Identity {
        issuer: "https://id.example.com".into(),
        subject: subject.into(),
        name: format!("Person {subject}"),
        email: Some(format!("{subject}@example.com")),
        email_verified: true,
        ..Identity::default()
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn with_nothing_configured_the_first_person_is_admin(pool: PgPool) {
    let db = Database::from_pool(pool);
    let first = users::sign_in(&db, &person("1"), RoleDecision::FirstUserIsAdmin)
        .await
        .unwrap();
    let second = users::sign_in(&db, &person("2"), RoleDecision::FirstUserIsAdmin)
        .await
        .unwrap();
    assert_eq!(first.role, Role::Admin);
    assert_eq!(second.role, Role::User);
    // Signing in again keeps the role and refreshes the profile.
    let mut renamed = person("1");
    renamed.name = "New Name".into();
    renamed.avatar_url = Some("https://img.example.com/1.png".into());
    let again = users::sign_in(&db, &renamed, RoleDecision::FirstUserIsAdmin)
        .await
        .unwrap();
    assert_eq!(
        again.id, first.id,
        "the same person, keyed by issuer and subject"
    );
    assert_eq!(again.role, Role::Admin);
    assert_eq!(again.name, "New Name");
    assert_eq!(
        again.avatar_url.as_deref(),
        Some("https://img.example.com/1.png")
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn people_signing_in_at_once_on_an_empty_instance_make_one_admin(pool: PgPool) {
    let db = Database::from_pool(pool);
    let sign_ins = (0..8).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            users::sign_in(&db, &person(&i.to_string()), RoleDecision::FirstUserIsAdmin)
                .await
                .unwrap()
        })
    });
    let mut admins = 0;
    for handle in sign_ins {
        if handle.await.unwrap().role == Role::Admin {
            admins += 1;
        }
    }
    assert_eq!(admins, 1);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_configured_role_is_applied_at_every_sign_in(pool: PgPool) {
    let db = Database::from_pool(pool);
    let user = users::sign_in(&db, &person("1"), RoleDecision::Fixed(Role::Admin))
        .await
        .unwrap();
    assert_eq!(user.role, Role::Admin);
    let demoted = users::sign_in(&db, &person("1"), RoleDecision::Fixed(Role::User))
        .await
        .unwrap();
    assert_eq!(demoted.role, Role::User);
    // The same subject at another issuer is another person.
    let mut elsewhere = person("1");
    elsewhere.issuer = "https://other.example.com".into();
    let other = users::sign_in(&db, &elsewhere, RoleDecision::Fixed(Role::User))
        .await
        .unwrap();
    assert_ne!(other.id, user.id);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn tokens_authenticate_their_owner_until_revoked(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = users::sign_in(&db, &person("a"), RoleDecision::Fixed(Role::User))
        .await
        .unwrap();
    let bob = users::sign_in(&db, &person("b"), RoleDecision::Fixed(Role::User))
        .await
        .unwrap();
    let created = tokens::create(&db, alice.id, "  laptop script ")
        .await
        .unwrap();
    assert_eq!(created.token.name, "laptop script");
    assert!(created.secret.starts_with("sb_") && created.secret.len() == 46);
    assert!(created.secret.starts_with(&created.token.prefix));

    let found = tokens::authenticate(&db, &created.secret)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, alice.id);
    assert!(
        tokens::list(&db, alice.id).await.unwrap()[0]
            .last_used_at
            .is_some()
    );
    assert!(
        tokens::authenticate(&db, "sb_nope")
            .await
            .unwrap()
            .is_none()
    );

    // Only a hash is stored.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT secret_hash FROM api_tokens")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], created.secret.as_bytes());

    // Bob can neither list nor revoke Alice's token.
    assert!(tokens::list(&db, bob.id).await.unwrap().is_empty());
    assert!(!tokens::revoke(&db, bob.id, created.token.id).await.unwrap());
    assert!(
        tokens::authenticate(&db, &created.secret)
            .await
            .unwrap()
            .is_some()
    );

    assert!(
        tokens::revoke(&db, alice.id, created.token.id)
            .await
            .unwrap()
    );
    assert!(
        tokens::authenticate(&db, &created.secret)
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn token_names_and_counts_are_limited(pool: PgPool) {
    let db = Database::from_pool(pool);
    let alice = users::sign_in(&db, &person("a"), RoleDecision::Fixed(Role::User))
        .await
        .unwrap();
    assert!(matches!(
        tokens::create(&db, alice.id, " ").await,
        Err(domain::Error::Invalid(_))
    ));
    let long = "x".repeat(tokens::MAX_NAME_CHARS + 1);
    assert!(matches!(
        tokens::create(&db, alice.id, &long).await,
        Err(domain::Error::Invalid(_))
    ));
    for i in 0..tokens::MAX_TOKENS_PER_USER {
        tokens::create(&db, alice.id, &format!("t{i}"))
            .await
            .unwrap();
    }
    let Err(domain::Error::Conflict(message)) = tokens::create(&db, alice.id, "one more").await
    else {
        panic!("the limit holds");
    };
    assert!(message.contains("Revoke one"), "{message}");
}

/// Waits up to 5 s for `check` to hold, polling.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_checked_token_is_kept_until_another_instance_changes_its_user_or_revokes_it(
    pool: PgPool,
) {
    // Two instances on one database, each with its own pool and token cache.
    let here = Database::from_pool(pool.clone());
    let there = Database::from_pool(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with((*pool.connect_options()).clone())
            .await
            .unwrap(),
    );
    let alice = users::sign_in(&there, &person("a"), RoleDecision::Fixed(Role::User))
        .await
        .unwrap();
    let created = tokens::create(&there, alice.id, "script").await.unwrap();
    let name_here = async || {
        tokens::authenticate(&here, &created.secret)
            .await
            .unwrap()
            .map(|user| user.name)
    };

    assert_eq!(name_here().await.as_deref(), Some("Person a"));
    assert!(
        !here.hears_token_changes(),
        "nothing is kept before it listens"
    );
    tokio::spawn(tokens::watch(here.clone()));
    assert!(eventually(async || here.hears_token_changes()).await);
    assert_eq!(name_here().await.as_deref(), Some("Person a"));

    // A change no trigger tells of is not seen: the token was kept, not read again.
    sqlx::query("ALTER TABLE users DISABLE TRIGGER users_changed")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET name = 'Unheard'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE users ENABLE TRIGGER users_changed")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(name_here().await.as_deref(), Some("Person a"));

    // A change to the user on the other instance (a new role at sign-in, say) is heard.
    users::sign_in(&there, &person("a"), RoleDecision::Fixed(Role::Admin))
        .await
        .unwrap();
    let admin_here = async || {
        tokens::authenticate(&here, &created.secret)
            .await
            .unwrap()
            .is_some_and(|user| user.role == Role::Admin)
    };
    assert!(eventually(admin_here).await, "the new role is seen here");

    // And a revocation there stops the token here.
    assert!(
        tokens::revoke(&there, alice.id, created.token.id)
            .await
            .unwrap()
    );
    assert!(
        eventually(async || name_here().await.is_none()).await,
        "a token revoked on another instance stops working here"
    );
    there.pool().close().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn roles_follow_a_changed_admin_rule_for_everyone_without_a_new_sign_in(pool: PgPool) {
    use users::{AdminRule, Admission, Status};
    let db = Database::from_pool(pool);
    let mut ops = person("ops");
    ops.groups = vec!["ops".into()];
    let mut unverified = person("mallory");
    unverified.email_verified = false;
    let admin = RoleDecision::Fixed(Role::Admin);
    let first = users::sign_in(&db, &person("alice"), admin).await.unwrap();
    let ops = users::sign_in(&db, &ops, RoleDecision::Fixed(Role::User))
        .await
        .unwrap();
    let mallory = users::sign_in(&db, &unverified, admin).await.unwrap();
    let local = users::sign_in(&db, &Identity::local(), admin)
        .await
        .unwrap();

    // Alice is taken off the list; members of "ops", and verified addresses only, are admins.
    let rule = AdminRule {
        emails: vec!["MALLORY@example.com".into()],
        groups: vec!["ops".into()],
    };
    assert_eq!(users::apply_admin_rule(&db, &rule).await.unwrap(), 3);
    let role = async |id| users::find(&db, id).await.unwrap().unwrap().role;
    assert_eq!(role(first.id).await, Role::User);
    assert_eq!(role(ops.id).await, Role::Admin);
    assert_eq!(role(mallory.id).await, Role::User, "an unverified address");
    assert_eq!(
        role(local.id).await,
        Role::Admin,
        "the local user is left alone"
    );
    assert_eq!(
        users::apply_admin_rule(&db, &AdminRule::default())
            .await
            .unwrap(),
        0,
        "no rule: roles stay"
    );

    // Waiting for approval: new people only, admins by rule never.
    let newcomer = users::sign_in_with(
        &db,
        &person("new"),
        RoleDecision::Fixed(Role::User),
        Admission::Approval,
    )
    .await
    .unwrap();
    assert_eq!(newcomer.status, Status::Pending);
    let known = users::sign_in_with(&db, &person("alice"), admin, Admission::Approval)
        .await
        .unwrap();
    assert_eq!(known.status, Status::Active);
    let boss = users::sign_in_with(&db, &person("boss"), admin, Admission::Approval)
        .await
        .unwrap();
    assert_eq!(boss.status, Status::Active);
    let admin_actor = users::find(&db, ops.id).await.unwrap().unwrap();
    let waiting = users::waiting(&db, &admin_actor).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert!(
        users::admit(&db, &admin_actor, newcomer.id, true)
            .await
            .unwrap()
    );
    let member = users::find(&db, mallory.id).await.unwrap().unwrap();
    assert!(matches!(
        users::waiting(&db, &member).await,
        Err(domain::Error::Forbidden(_))
    ));
}
