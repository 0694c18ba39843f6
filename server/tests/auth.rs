//! Single sign-on against a real OpenID provider (panva's `oidc-provider`, started per test), with
//! Switchboard on a real port and a cookie-keeping HTTP client standing in for the browser.

mod support;

use reqwest::StatusCode;
use sqlx::PgPool;
use support::{Client, Idp, TestApp, browser, call, listener, location, page, start_app};
use url::Url;

const CLIENT_ID: &str = "switchboard";
const CLIENT_SECRET: &str = "test-secret";

/// A provider and Switchboard configured for each other (`alice@example.com` is an admin).
async fn setup(pool: PgPool, idp_args: &[&str]) -> (Idp, TestApp) {
    let (listener, base) = listener().await;
    let idp = Idp::start(
        &[Client {
            id: CLIENT_ID,
            secret: CLIENT_SECRET,
            redirect_uri: format!("{base}/auth/callback/idp"),
            post_logout_redirect_uri: format!("{base}/auth/signed-out"),
        }],
        idp_args,
    );
    let app = start_with_issuer(pool, listener, &idp.issuer).await;
    (idp, app)
}

async fn start_with_issuer(
    pool: PgPool,
    listener: tokio::net::TcpListener,
    issuer: &str,
) -> TestApp {
    let base = format!("http://{}", listener.local_addr().unwrap());
    start_app(
        pool,
        listener,
        &[
            "--auth-providers",
            "idp",
            "--public-url",
            &base,
            "--admin-emails",
            "alice@example.com",
        ],
        &[
            ("SWITCHBOARD_AUTH_IDP_ISSUER", issuer.to_owned()),
            ("SWITCHBOARD_AUTH_IDP_NAME", "Test IdP".to_owned()),
            ("SWITCHBOARD_AUTH_IDP_CLIENT_ID", CLIENT_ID.to_owned()),
            (
                "SWITCHBOARD_AUTH_IDP_CLIENT_SECRET",
                CLIENT_SECRET.to_owned(),
            ),
        ],
    )
    .await
}

fn query(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_query(url: &str, name: &str, value: Option<&str>) -> String {
    let mut url = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(value) = value {
            q.append_pair(name, value);
        }
    }
    url.to_string()
}

fn session_cookie(client_jar: &reqwest::Response) -> Option<String> {
    client_jar
        .cookies()
        .find(|c| c.name() == "sb_session")
        .map(|c| c.value().to_owned())
}

/// Starts a sign-in at Switchboard: the provider's authorize URL it redirects to.
async fn begin(browser: &reqwest::Client, app: &TestApp) -> String {
    let response = browser
        .get(format!("{}/auth/login/idp?next=/settings", app.base))
        .send()
        .await
        .unwrap();
    let authorize = location(&response);
    assert!(authorize.contains("/auth?"), "{authorize}");
    authorize
}

/// At the provider: opens `authorize`, signs in as `user` and returns the interaction's page URL
/// if `stop_at_login`, else the callback URL the provider sends the browser back to.
async fn at_provider(browser: &reqwest::Client, authorize: &str, user: &str) -> String {
    let interaction = location(&browser.get(authorize).send().await.unwrap());
    let form = browser.get(&interaction).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert!(form.text().await.unwrap().contains("Sign in"));
    let password = format!("{user}-password");
    let after_login = browser
        .post(format!("{interaction}/login"))
        .form(&[("login", user), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    let resume = location(&after_login);
    let callback = location(&browser.get(&resume).send().await.unwrap());
    assert!(callback.contains("/auth/callback/idp"), "{callback}");
    callback
}

/// Follows the callback; returns where Switchboard sends the browser.
async fn finish(browser: &reqwest::Client, callback: &str) -> (String, reqwest::Response) {
    let response = browser.get(callback).send().await.unwrap();
    (location(&response), response)
}

/// The whole sign-in of `user`, from Switchboard to the provider and back.
async fn sign_in(browser: &reqwest::Client, app: &TestApp, user: &str) {
    let authorize = begin(browser, app).await;
    let callback = at_provider(browser, &authorize, user).await;
    finish(browser, &callback).await;
}

async fn sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

/// The page `/` as a browser would get it: HTML, or where it is redirected to.
async fn home(browser: &reqwest::Client, app: &TestApp) -> Result<String, String> {
    let response = browser.get(format!("{}/", app.base)).send().await.unwrap();
    if response.status().is_redirection() {
        Err(location(&response))
    } else {
        Ok(response.text().await.unwrap())
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn signing_in_through_the_provider_shows_the_user_and_signing_out_ends_it(pool: PgPool) {
    let (idp, app) = setup(pool, &[]).await;
    let browser = browser();

    // Not signed in: the page sends us to the login page, which offers the provider.
    let login = home(&browser, &app).await.unwrap_err();
    assert_eq!(login, format!("{}/login", app.base));
    let html = page(&browser, &login).await;
    assert!(html.contains("Sign in with Test IdP"), "{html}");
    assert!(html.contains("/auth/login/idp"));

    // Discovery → authorize (PKCE S256, state, nonce) → login form → callback.
    let authorize = begin(&browser, &app).await;
    assert!(authorize.starts_with(&idp.issuer));
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query(&authorize, "state").is_some_and(|s| s.len() >= 16));
    assert!(query(&authorize, "nonce").is_some_and(|s| s.len() >= 16));
    let callback = at_provider(&browser, &authorize, "alice").await;
    let (next, _) = finish(&browser, &callback).await;
    assert_eq!(
        next,
        format!("{}/settings", app.base),
        "back where sign-in started"
    );

    // Signed in: `/` shows the user's name; the API says who they are.
    let html = home(&browser, &app).await.unwrap();
    assert!(
        html.contains("Alice Anderson"),
        "the user menu shows the name"
    );
    let (status, me) = call(&browser, &app.base, "auth/me", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "Alice Anderson");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["is_admin"], true, "alice is an admin by e-mail");
    assert_eq!(sessions(&app).await, 1);

    // Sign out: the session ends here, and the provider is asked to end its own.
    let out = browser
        .post(format!("{}/auth/logout", app.base))
        .send()
        .await
        .unwrap();
    let end_session = location(&out);
    assert!(
        end_session.starts_with(&format!("{}/session/end", idp.issuer)),
        "{end_session}"
    );
    assert!(query(&end_session, "id_token_hint").is_some());
    assert_eq!(
        query(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(format!("{}/auth/signed-out", app.base).as_str())
    );
    assert_eq!(sessions(&app).await, 0);
    assert!(home(&browser, &app).await.unwrap_err().contains("/login"));
    let (status, body) = call(&browser, &app.base, "auth/me", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthenticated");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_profile_is_refreshed_and_roles_follow_configuration(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    for (user, admin) in [("bob", false), ("alice", true)] {
        let browser = browser();
        sign_in(&browser, &app, user).await;
        let (_, me) = call(&browser, &app.base, "auth/me", None, &[]).await;
        assert_eq!(me["is_admin"], admin, "{user}: {me}");
    }
    // Bob signs in again: still one row for him, keyed by (issuer, subject).
    let browser = browser();
    sign_in(&browser, &app, "bob").await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT subject, name FROM users ORDER BY subject")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("alice".to_owned(), "Alice Anderson".to_owned()),
            ("bob".to_owned(), "Bob Brown".to_owned())
        ]
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_session_id_changes_at_sign_in(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let browser = browser();
    let started = browser
        .get(format!("{}/auth/login/idp", app.base))
        .send()
        .await
        .unwrap();
    let before = session_cookie(&started).expect("a session holds the pending sign-in");
    let set_cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain http: a Secure cookie would never come back: {set_cookie}"
    );
    let authorize = location(&started);
    let callback = at_provider(&browser, &authorize, "alice").await;
    let (_, response) = finish(&browser, &callback).await;
    let after = session_cookie(&response).expect("a new session cookie at sign-in");
    assert_ne!(
        before, after,
        "the id from before sign-in is not the signed-in one"
    );

    // The old id (as an attacker who planted it would hold it) is not signed in.
    let attacker = support::browser();
    let response = attacker
        .get(format!("{}/", app.base))
        .header("cookie", format!("sb_session={before}"))
        .send()
        .await
        .unwrap();
    assert!(location(&response).contains("/login"));
}

/// Asserts a sign-in ended on the login page with `code`, and left no session behind.
async fn assert_refused(app: &TestApp, browser: &reqwest::Client, landed: &str, code: &str) {
    assert!(
        landed.starts_with(&format!("{}/login?", app.base)),
        "{landed}"
    );
    assert_eq!(query(landed, "error").as_deref(), Some(code), "{landed}");
    assert_eq!(sessions(app).await, 0, "no session is left");
    assert!(home(browser, app).await.is_err(), "not signed in");
    // The login page explains it.
    let html = page(browser, landed).await;
    assert!(html.contains(r#"role="alert""#), "{html}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_tampered_state_is_refused(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let browser = browser();
    let authorize = begin(&browser, &app).await;
    let callback = at_provider(&browser, &authorize, "alice").await;
    let tampered = with_query(&callback, "state", Some("forged-state-value"));
    let (landed, _) = finish(&browser, &tampered).await;
    assert_refused(&app, &browser, &landed, "state").await;
    let html = page(&browser, &landed).await;
    assert!(
        html.contains("That sign-in attempt is no longer valid"),
        "{html}"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_missing_state_is_refused(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let browser = browser();
    let authorize = begin(&browser, &app).await;
    let callback = at_provider(&browser, &authorize, "alice").await;
    let (landed, _) = finish(&browser, &with_query(&callback, "state", None)).await;
    assert_refused(&app, &browser, &landed, "state").await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_replayed_code_is_refused(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let victim = browser();
    let authorize = begin(&victim, &app).await;
    let callback = at_provider(&victim, &authorize, "alice").await;
    finish(&victim, &callback).await;

    // Someone who saw the callback URL replays it: the state was used up.
    let attacker = browser();
    let (landed, _) = finish(&attacker, &callback).await;
    assert!(
        query(&landed, "error").as_deref() == Some("state"),
        "{landed}"
    );

    // ... and with a fresh sign-in of their own, the provider refuses the used code.
    let mine = begin(&attacker, &app).await;
    let replay = with_query(&callback, "state", query(&mine, "state").as_deref());
    let (landed, _) = finish(&attacker, &replay).await;
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("exchange"),
        "{landed}"
    );
    assert!(home(&attacker, &app).await.is_err(), "not signed in");
    assert_eq!(sessions(&app).await, 1, "only the victim's own session");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_id_token_with_the_wrong_nonce_is_refused(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let browser = browser();
    let authorize = begin(&browser, &app).await;
    let swapped = with_query(&authorize, "nonce", Some("not-the-nonce-switchboard-sent"));
    let callback = at_provider(&browser, &swapped, "alice").await;
    let (landed, _) = finish(&browser, &callback).await;
    assert_refused(&app, &browser, &landed, "id_token").await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_id_token_for_another_audience_is_refused(pool: PgPool) {
    // The provider misbehaves: it issues our client's tokens for the client "other".
    let swap = format!("{CLIENT_ID}=other");
    let (_idp, app) = setup(pool, &["--swap-aud", &swap]).await;
    let browser = browser();
    let authorize = begin(&browser, &app).await;
    let callback = at_provider(&browser, &authorize, "alice").await;
    let (landed, _) = finish(&browser, &callback).await;
    assert_refused(&app, &browser, &landed, "id_token").await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_provider_that_is_down_is_reported(pool: PgPool) {
    // Nothing listens at this issuer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (listener, _) = listener().await;
    let app = start_with_issuer(pool, listener, &issuer).await;
    let browser = browser();
    let response = browser
        .get(format!("{}/auth/login/idp", app.base))
        .send()
        .await
        .unwrap();
    let landed = location(&response);
    assert_refused(&app, &browser, &landed, "unreachable").await;
    let html = page(&browser, &landed).await;
    assert!(html.contains("could not reach Test IdP"), "{html}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_provider_that_goes_down_during_sign_in_is_reported(pool: PgPool) {
    let (mut idp, app) = setup(pool, &[]).await;
    let browser = browser();
    let authorize = begin(&browser, &app).await;
    let callback = at_provider(&browser, &authorize, "alice").await;
    idp.stop();
    let (landed, _) = finish(&browser, &callback).await;
    assert_refused(&app, &browser, &landed, "unreachable").await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_person_who_cancels_at_the_provider_is_told_so(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let browser = browser();
    let authorize = begin(&browser, &app).await;
    let interaction = location(&browser.get(&authorize).send().await.unwrap());
    let aborted = browser
        .get(format!("{interaction}/abort"))
        .send()
        .await
        .unwrap();
    let callback = location(&browser.get(location(&aborted)).send().await.unwrap());
    assert_eq!(query(&callback, "error").as_deref(), Some("access_denied"));
    let (landed, _) = finish(&browser, &callback).await;
    assert_refused(&app, &browser, &landed, "denied").await;
    let html = page(&browser, &landed).await;
    assert!(html.contains("Sign-in was cancelled at Test IdP"), "{html}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_session_past_its_maximum_age_ends(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let browser = browser();
    sign_in(&browser, &app, "alice").await;
    assert!(home(&browser, &app).await.is_ok());

    // Signed in long ago (31 days; the default maximum is 30).
    sqlx::query("UPDATE sessions SET data = jsonb_set(data, '{signed_in_at}', to_jsonb(extract(epoch FROM now() - interval '31 days')::bigint))")
        .execute(app.db.pool())
        .await
        .unwrap();
    let landed = home(&browser, &app).await.unwrap_err();
    assert_eq!(
        query(&landed, "reason").as_deref(),
        Some("expired"),
        "{landed}"
    );
    let html = page(&browser, &landed).await;
    assert!(html.contains("Your session has ended"), "{html}");
    assert_eq!(sessions(&app).await, 0);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_asked_for_before_sign_in_is_where_sign_in_returns(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let browser = browser();
    let login = location(
        &browser
            .get(format!("{}/settings", app.base))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(query(&login, "next").as_deref(), Some("/settings"));
    let html = page(&browser, &login).await;
    assert!(html.contains("/auth/login/idp?next=/settings"), "{html}");
}
