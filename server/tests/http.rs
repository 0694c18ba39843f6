//! The HTTP application in-process against a real PostgreSQL (a fresh database per test).

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use clap::Parser;
use domain::Database;
use domain::llm::Catalog;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use server::auth::settings::AuthSettings;
use server::config::Config;
use server::{AppState, router, routes, with_layers};
use sqlx::PgPool;
use tower::ServiceExt;

/// The app in local mode (no provider: everyone is the local admin).
async fn state(pool: PgPool) -> AppState {
    let config = Config::try_parse_from([
        "switchboard",
        "--secret-key",
        &domain::secrets::SecretKey::generate(),
    ])
    .unwrap();
    let auth = AuthSettings::from_config(&config, &|_| None).unwrap();
    AppState::new(&config, auth, Catalog::default(), Database::from_pool(pool))
        .await
        .unwrap()
}

async fn get_path(
    app: Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    // As a browser sends it: Switchboard answers only requests addressed to it.
    let mut request = Request::get(path).header("host", "localhost:3000");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn healthz_answers_without_touching_the_database(pool: PgPool) {
    let state = state(pool.clone()).await;
    pool.close().await;
    let (status, _, body) = get_path(router(state), "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"ok"}"#);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn readyz_is_ready_on_a_migrated_database(pool: PgPool) {
    let (status, _, body) = get_path(router(state(pool).await), "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ready");
    assert_eq!(
        json["migrations"]["applied"],
        json["migrations"]["expected"]
    );
    assert!(json["instance_id"].is_string());
    assert_eq!(json["providers_down"], serde_json::json!([]));
    assert_eq!(json["tool_servers_failing"], serde_json::json!([]));
}

#[sqlx::test(migrations = false)]
async fn readyz_is_not_ready_before_migrations(pool: PgPool) {
    // With a provider configured, building the app touches no table (there is no local user).
    let config = Config::try_parse_from([
        "switchboard",
        "--auth-providers",
        "idp",
        "--secret-key",
        &domain::secrets::SecretKey::generate(),
    ])
    .unwrap();
    let auth = AuthSettings::from_config(&config, &|name| match name {
        "SWITCHBOARD_AUTH_IDP_ISSUER" => Some("https://id.example.com".to_owned()),
        "SWITCHBOARD_AUTH_IDP_CLIENT_ID" | "SWITCHBOARD_AUTH_IDP_CLIENT_SECRET" => {
            Some("x".to_owned())
        }
        _ => None,
    })
    .unwrap();
    let state = AppState::new(&config, auth, Catalog::default(), Database::from_pool(pool))
        .await
        .unwrap();
    let (status, _, body) = get_path(router(state), "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains(r#""status":"not ready""#), "{body}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn readyz_is_not_ready_when_the_database_is_gone(pool: PgPool) {
    let state = state(pool.clone()).await;
    pool.close().await;
    let (status, _, body) = get_path(router(state), "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("database unreachable"), "{body}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_home_page_is_server_rendered_with_the_shell(pool: PgPool) {
    let (status, headers, html) = get_path(router(state(pool).await), "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers.get("x-request-id").is_some(),
        "every response carries its request id"
    );
    assert!(html.contains("data-testid=\"sidebar\""), "sidebar rendered");
    assert!(html.contains("New chat"));
    assert!(html.contains("What can I help with?"));
    assert!(
        html.contains("Local user"),
        "local mode: signed in as the local user"
    );
    assert!(html.contains("/pkg/switchboard.css"), "stylesheet linked");
    assert!(
        html.contains("/pkg/switchboard.js"),
        "hydration script linked"
    );
    assert!(
        html.contains(r#"<html lang="en" class="">"#) || html.contains(r#"<html lang="en">"#),
        "no theme chosen: follows the system"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_chosen_theme_is_rendered_by_the_server(pool: PgPool) {
    let (_, _, html) = get_path(router(state(pool).await), "/", Some("other=1; theme=dark")).await;
    assert!(
        html.contains(r#"<html lang="en" class="dark">"#),
        "{}",
        &html[..200.min(html.len())]
    );
    assert!(
        html.contains(r#"data-theme="dark""#),
        "the toggle shows the chosen theme"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_unknown_page_is_a_styled_404(pool: PgPool) {
    let (status, _, html) = get_path(router(state(pool).await), "/no/such/page", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Page not found"));
    assert!(
        html.contains("data-testid=\"sidebar\""),
        "inside the same shell"
    );
}

async fn boom() -> &'static str {
    panic!("test panic")
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_panicking_handler_gives_a_styled_500(pool: PgPool) {
    let app = with_layers(routes(state(pool).await).route("/boom", get(boom)));
    let (status, headers, html) = get_path(app, "/boom", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(headers.get("x-request-id").is_some());
    assert!(html.contains("Something went wrong"));
    assert!(
        html.contains("/pkg/switchboard.css"),
        "styled like the rest"
    );
    assert!(
        !html.contains("test panic"),
        "internal detail stays in the log"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_request_id_from_a_proxy_is_kept(pool: PgPool) {
    let response = router(state(pool).await)
        .oneshot(
            Request::get("/healthz")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn in_local_mode_the_login_page_leads_home(pool: PgPool) {
    let app = router(state(pool).await);
    let response = app
        .oneshot(
            Request::get("/login")
                .header("host", "localhost:3000")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/");
}

/// Building the app renders it once to find its pages, holding resources back process-wide while
/// it does. Tests build an app each, in parallel: a page rendered meanwhile must still load.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn pages_render_while_other_apps_are_being_built(pool: PgPool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let state = state(pool).await;
    let rendering = Arc::new(AtomicBool::new(true));
    let builder = {
        let (state, rendering) = (state.clone(), rendering.clone());
        tokio::task::spawn_blocking(move || {
            let mut built = 0;
            while rendering.load(Ordering::Relaxed) && built < 5_000 {
                drop(routes(state.clone()));
                built += 1;
            }
        })
    };
    for _ in 0..50 {
        let render = get_path(router(state.clone()), "/", None);
        let finished = tokio::time::timeout(std::time::Duration::from_secs(5), render).await;
        let Ok((status, _, html)) = finished else {
            rendering.store(false, Ordering::Relaxed);
            panic!("a page rendered while an app was being built never finished");
        };
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("What can I help with?"));
    }
    rendering.store(false, Ordering::Relaxed);
    builder.await.unwrap();
}
