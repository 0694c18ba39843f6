//! GitHub sign-in against a stand-in for GitHub's OAuth endpoints and REST API (github.com cannot be
//! reached from the tests). The stand-in checks what GitHub checks: the client's credentials, the
//! code, and the PKCE verifier against the challenge.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use support::{TestApp, browser, call, listener, location, page, start_app};

#[derive(Clone, Default)]
struct FakeGitHub {
    /// code → PKCE challenge
    codes: Arc<Mutex<HashMap<String, String>>>,
    verified_email: bool,
}

async fn authorize(
    State(gh): State<FakeGitHub>,
    Query(q): Query<HashMap<String, String>>,
) -> Redirect {
    assert_eq!(q["client_id"], "gh-client");
    assert_eq!(q["code_challenge_method"], "S256");
    let code = format!("code-{}", gh.codes.lock().unwrap().len());
    gh.codes
        .lock()
        .unwrap()
        .insert(code.clone(), q["code_challenge"].clone());
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        q["redirect_uri"], q["state"]
    ))
}

async fn access_token(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> impl IntoResponse {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("gh-client:gh-secret")
    );
    assert_eq!(headers["authorization"], basic.as_str());
    let challenge = gh.codes.lock().unwrap().remove(&form["code"]);
    let verifier_ok = challenge.is_some_and(|c| {
        URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes())) == c
    });
    if !verifier_ok {
        // What GitHub does: HTTP 200 with an error in the body.
        return Json(
            json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}),
        );
    }
    Json(
        json!({"access_token": "gho_test", "token_type": "bearer", "scope": "read:user,user:email"}),
    )
}

async fn user(headers: HeaderMap) -> Json<serde_json::Value> {
    assert_eq!(headers["authorization"], "Bearer gho_test");
    Json(
        json!({"id": 4242, "login": "octocat", "name": "The Octocat", "avatar_url": "https://avatars.example.com/u/4242"}),
    )
}

async fn emails(State(gh): State<FakeGitHub>) -> Json<serde_json::Value> {
    Json(json!([
        {"email": "old@example.com", "primary": false, "verified": gh.verified_email},
        {"email": "octocat@example.com", "primary": true, "verified": gh.verified_email}
    ]))
}

async fn orgs(headers: HeaderMap) -> Json<serde_json::Value> {
    assert_eq!(headers["authorization"], "Bearer gho_test");
    Json(json!([{"login": "acme", "id": 1}, {"login": "octo-club", "id": 2}]))
}

async fn setup(pool: PgPool, verified_email: bool) -> TestApp {
    setup_with(pool, verified_email, &[], &[]).await
}

/// [`setup`] with more settings of the GitHub provider (`ALLOWED_ORGS`, ...) and more arguments.
async fn setup_with(
    pool: PgPool,
    verified_email: bool,
    more: &[(&str, &str)],
    args: &[&str],
) -> TestApp {
    let gh = FakeGitHub {
        verified_email,
        ..FakeGitHub::default()
    };
    let fake = Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(access_token))
        .route("/api/user", get(user))
        .route("/api/user/emails", get(emails))
        .route("/api/user/orgs", get(orgs))
        .with_state(gh);
    let (fake_listener, fake_base) = listener().await;
    tokio::spawn(async move { axum::serve(fake_listener, fake).await.unwrap() });

    let (app_listener, base) = listener().await;
    let mut all_args = vec!["--auth-providers", "github", "--public-url", &base];
    all_args.extend_from_slice(args);
    start_app(
        pool,
        app_listener,
        &all_args,
        &[
            ("SWITCHBOARD_AUTH_GITHUB_CLIENT_ID", "gh-client".to_owned()),
            (
                "SWITCHBOARD_AUTH_GITHUB_CLIENT_SECRET",
                "gh-secret".to_owned(),
            ),
            (
                "SWITCHBOARD_AUTH_GITHUB_GITHUB_URL",
                format!("{fake_base}/"),
            ),
            (
                "SWITCHBOARD_AUTH_GITHUB_GITHUB_API_URL",
                format!("{fake_base}/api/"),
            ),
        ]
        .into_iter()
        .chain(more.iter().map(|(k, v)| (*k, v.to_string())))
        .collect::<Vec<_>>(),
    )
    .await
}

/// Clicks "Sign in with GitHub"; returns the callback URL GitHub sends the browser back to.
async fn to_callback(browser: &reqwest::Client, app: &TestApp) -> String {
    let start = browser
        .get(format!("{}/auth/login/github", app.base))
        .send()
        .await
        .unwrap();
    location(&browser.get(location(&start)).send().await.unwrap())
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn signing_in_with_github_uses_the_profile_and_the_verified_primary_email(pool: PgPool) {
    let app = setup(pool, true).await;
    let browser = browser();
    let callback = to_callback(&browser, &app).await;
    let landed = location(&browser.get(&callback).send().await.unwrap());
    assert_eq!(landed, format!("{}/", app.base));
    let (status, me) = call(&browser, &app.base, "auth/me", None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "The Octocat");
    assert_eq!(me["email"], "octocat@example.com");
    assert_eq!(
        me["is_admin"], true,
        "the first person on an instance with no admin rule"
    );
    let (issuer, subject): (String, String) = sqlx::query_as("SELECT issuer, subject FROM users")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert_eq!(subject, "4242");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_github_account_without_a_verified_email_is_refused(pool: PgPool) {
    let app = setup(pool, false).await;
    let browser = browser();
    let callback = to_callback(&browser, &app).await;
    let landed = location(&browser.get(&callback).send().await.unwrap());
    assert!(landed.contains("error=no_verified_email"), "{landed}");
    let html = page(&browser, &landed).await;
    assert!(html.contains("has no verified e-mail address"), "{html}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_code_github_rejects_is_refused(pool: PgPool) {
    let app = setup(pool, true).await;
    let browser = browser();
    let callback = to_callback(&browser, &app).await;
    // The code was used once (by someone else); GitHub answers its 200-with-an-error.
    let replayed = {
        let first = support::browser();
        let mine = to_callback(&first, &app).await;
        let code = url::Url::parse(&mine).unwrap();
        let code = code
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        first.get(&mine).send().await.unwrap();
        let mut url = url::Url::parse(&callback).unwrap();
        let state = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        url.query_pairs_mut()
            .clear()
            .append_pair("code", &code)
            .append_pair("state", &state);
        url.to_string()
    };
    let landed = location(&browser.get(&replayed).send().await.unwrap());
    assert!(landed.contains("error=exchange"), "{landed}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn only_members_of_the_allowed_organisations_sign_in(pool: PgPool) {
    let app = setup_with(
        pool.clone(),
        true,
        &[("SWITCHBOARD_AUTH_GITHUB_ALLOWED_ORGS", "acme")],
        &[],
    )
    .await;
    let browser = browser();
    let callback = to_callback(&browser, &app).await;
    let landed = location(&browser.get(&callback).send().await.unwrap());
    assert_eq!(landed, format!("{}/", app.base), "a member of acme");
    drop(app);

    let app = setup_with(
        pool,
        true,
        &[("SWITCHBOARD_AUTH_GITHUB_ALLOWED_ORGS", "initech")],
        &[],
    )
    .await;
    let browser = support::browser();
    let start = browser
        .get(format!("{}/auth/login/github", app.base))
        .send()
        .await
        .unwrap();
    let authorize = location(&start);
    assert!(
        authorize.contains("read%3Aorg") || authorize.contains("read:org"),
        "organisation memberships are asked for: {authorize}"
    );
    let callback = location(&browser.get(&authorize).send().await.unwrap());
    let landed = location(&browser.get(&callback).send().await.unwrap());
    assert!(landed.contains("error=not_allowed"), "{landed}");
    let html = page(&browser, &landed).await;
    assert!(html.contains("not one this Switchboard lets in"), "{html}");
    let (status, _) = call(&browser, &app.base, "auth/me", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_github_organisation_is_no_identity_providers_group(pool: PgPool) {
    // "acme" is meant for an OpenID provider's group; anyone can make a GitHub organisation of
    // that name. A GitHub organisation counts as `github:<name>` only.
    for (admin_groups, admin) in [("acme", false), ("github:octo-club", true)] {
        let app = setup_with(pool.clone(), true, &[], &["--admin-groups", admin_groups]).await;
        let browser = support::browser();
        let callback = to_callback(&browser, &app).await;
        browser.get(&callback).send().await.unwrap();
        let (status, me) = call(&browser, &app.base, "auth/me", None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["is_admin"], admin, "{admin_groups}: {me}");
    }
}
