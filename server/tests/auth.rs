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
    setup_with(
        pool,
        idp_args,
        &["--admin-emails", "alice@example.com"],
        &[],
    )
    .await
}

/// A provider started with `idp_args`, and Switchboard for it with more arguments and provider
/// variables.
async fn setup_with(
    pool: PgPool,
    idp_args: &[&str],
    more_args: &[&str],
    more_vars: &[(&str, &str)],
) -> (Idp, TestApp) {
    let (listener, _) = listener().await;
    let idp = idp_for(&listener, idp_args);
    let app = start_with(pool, listener, &idp.issuer, more_args, more_vars).await;
    (idp, app)
}

/// A provider for Switchboard at `listener`'s address, started with `idp_args`.
fn idp_for(listener: &tokio::net::TcpListener, idp_args: &[&str]) -> Idp {
    let base = format!("http://{}", listener.local_addr().unwrap());
    Idp::start(
        &[Client {
            id: CLIENT_ID,
            secret: CLIENT_SECRET,
            redirect_uri: format!("{base}/auth/callback/idp"),
            post_logout_redirect_uri: format!("{base}/auth/signed-out"),
        }],
        idp_args,
    )
}

async fn start_with_issuer(
    pool: PgPool,
    listener: tokio::net::TcpListener,
    issuer: &str,
) -> TestApp {
    start_with(
        pool,
        listener,
        issuer,
        &["--admin-emails", "alice@example.com"],
        &[],
    )
    .await
}

/// Switchboard on `listener` with the provider `idp` at `issuer`, and more arguments and provider
/// variables.
async fn start_with(
    pool: PgPool,
    listener: tokio::net::TcpListener,
    issuer: &str,
    more_args: &[&str],
    more_vars: &[(&str, &str)],
) -> TestApp {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut args = vec!["--auth-providers", "idp", "--public-url", &base];
    args.extend_from_slice(more_args);
    let mut vars = vec![
        ("SWITCHBOARD_AUTH_IDP_ISSUER", issuer.to_owned()),
        ("SWITCHBOARD_AUTH_IDP_NAME", "Test IdP".to_owned()),
        ("SWITCHBOARD_AUTH_IDP_CLIENT_ID", CLIENT_ID.to_owned()),
        (
            "SWITCHBOARD_AUTH_IDP_CLIENT_SECRET",
            CLIENT_SECRET.to_owned(),
        ),
    ];
    vars.extend(more_vars.iter().map(|(k, v)| (*k, v.to_string())));
    start_app(pool, listener, &args, &vars).await
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

/// At the provider: signs in as `user`; the callback URL it sends the browser back to.
async fn at_provider(browser: &reqwest::Client, authorize: &str, user: &str) -> String {
    let callback = support::at_the_provider(browser, authorize, user).await;
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
async fn starting_a_sign_in_writes_nothing_and_the_session_id_changes_at_sign_in(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    // Anyone may start sign-ins, as often as they like: nothing is stored for them.
    let anonymous = browser();
    for _ in 0..20 {
        let started = anonymous
            .get(format!("{}/auth/login/idp", app.base))
            .send()
            .await
            .unwrap();
        assert!(started.status().is_redirection());
        assert!(
            session_cookie(&started).is_none(),
            "no session before sign-in"
        );
    }
    assert_eq!(
        sessions(&app).await,
        0,
        "no session row for a sign-in start"
    );

    // The sign-in under way is in a cookie of its own.
    let plain = support::plain_client();
    let started = plain
        .get(format!("{}/auth/login/idp", app.base))
        .send()
        .await
        .unwrap();
    let set_cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("sb_signin="), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=900"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain http: a Secure cookie would never come back: {set_cookie}"
    );
    let signin_cookie = set_cookie.split(';').next().unwrap().to_owned();

    // A session id planted before sign-in (session fixation) is not the signed-in one.
    let planted = "planted-session-id-AAAAAAAAAAAAAAAAAAAAAA";
    let at_idp = browser();
    let callback = at_provider(&at_idp, &location(&started), "alice").await;
    let response = plain
        .get(&callback)
        .header("cookie", format!("{signin_cookie}; sb_session={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), format!("{}/", app.base));
    let after = session_cookie(&response).expect("a session cookie at sign-in");
    assert_ne!(after, planted);
    assert_eq!(sessions(&app).await, 1);
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("sb_signin="))
        .expect("the sign-in cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // Replayed with the cookie as it was before (a copy kept by whoever saw it), the callback is
    // refused all the same: its code is used up at the provider.
    let again = plain
        .get(&callback)
        .header("cookie", signin_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(&location(&again), "error").as_deref(),
        Some("exchange")
    );
    assert_eq!(sessions(&app).await, 1);
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

/// Signs `user` in; where Switchboard sent the browser at the end.
async fn sign_in_landing(browser: &reqwest::Client, app: &TestApp, user: &str) -> String {
    let authorize = begin(browser, app).await;
    let callback = at_provider(browser, &authorize, user).await;
    finish(browser, &callback).await.0
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn only_people_on_the_allow_list_sign_in(pool: PgPool) {
    // bob@example.com is in no allowed group; alice is in "admins".
    let (_idp, app) = setup_with(
        pool,
        &[],
        &[],
        &[
            ("SWITCHBOARD_AUTH_IDP_ALLOWED_DOMAINS", "example.org"),
            ("SWITCHBOARD_AUTH_IDP_ALLOWED_GROUPS", "admins"),
        ],
    )
    .await;
    let bob = browser();
    let landed = sign_in_landing(&bob, &app, "bob").await;
    assert_refused(&app, &bob, &landed, "not_allowed").await;
    let html = page(&bob, &landed).await;
    assert!(html.contains("not one this Switchboard lets in"), "{html}");
    let people: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(people, 0, "someone refused is not recorded");

    let alice = browser();
    let landed = sign_in_landing(&alice, &app, "alice").await;
    assert_eq!(
        landed,
        format!("{}/settings", app.base),
        "a member of admins"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn new_people_wait_for_an_administrators_approval(pool: PgPool) {
    let (_idp, app) = setup_with(
        pool,
        &[],
        &[
            "--approve-new-users",
            "true",
            "--admin-emails",
            "alice@example.com",
        ],
        &[],
    )
    .await;
    // An admin by rule is let in at once.
    let alice = browser();
    assert_eq!(
        sign_in_landing(&alice, &app, "alice").await,
        format!("{}/settings", app.base)
    );
    // Bob waits, with no session, and is told so.
    let bob = browser();
    let landed = sign_in_landing(&bob, &app, "bob").await;
    assert_refused_keeping_alice(&app, &bob, &landed, "awaiting_approval").await;
    let html = page(&bob, &landed).await;
    assert!(html.contains("waiting for an administrator"), "{html}");

    // Only an admin sees who waits, and lets them in.
    let (status, _) = call(&bob, &app.base, "admin/people/waiting", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, waiting) = call(&alice, &app.base, "admin/people/waiting", None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    assert_eq!(waiting.as_array().unwrap().len(), 1, "{waiting}");
    assert_eq!(waiting[0]["email"], "bob@example.com");
    let id = waiting[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &alice,
        &app.base,
        "admin/people/admit",
        None,
        &[("id", &id), ("approve", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // (A new browser: the provider would remember bob's sign-in at it.)
    let bob = browser();
    assert_eq!(
        sign_in_landing(&bob, &app, "bob").await,
        format!("{}/settings", app.base),
        "let in"
    );
    let (status, me) = call(&bob, &app.base, "auth/me", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["is_admin"], false);
    let (status, again) = call(
        &alice,
        &app.base,
        "admin/people/admit",
        None,
        &[("id", &id), ("approve", "false")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{again}");
}

/// [`assert_refused`] for an instance where someone else is signed in.
async fn assert_refused_keeping_alice(
    app: &TestApp,
    browser: &reqwest::Client,
    landed: &str,
    code: &str,
) {
    assert!(
        landed.starts_with(&format!("{}/login?", app.base)),
        "{landed}"
    );
    assert_eq!(query(landed, "error").as_deref(), Some(code), "{landed}");
    assert_eq!(sessions(app).await, 1, "only alice's session");
    assert!(home(browser, app).await.is_err(), "not signed in");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_profile_comes_from_userinfo_when_the_id_token_lacks_it(pool: PgPool) {
    // oidc-provider at its defaults: the ID token says only who, UserInfo says the rest.
    let (_idp, app) = setup(pool, &["--profile-in-userinfo"]).await;
    let browser = browser();
    sign_in(&browser, &app, "alice").await;
    let (status, me) = call(&browser, &app.base, "auth/me", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "Alice Anderson");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(
        me["is_admin"], true,
        "SWITCHBOARD_ADMIN_EMAILS matches the verified e-mail from UserInfo"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_admin_taken_off_the_list_loses_admin_everywhere_at_the_next_start(pool: PgPool) {
    let (first, _) = listener().await;
    let idp = idp_for(&first, &[]);
    let app = start_with(
        pool.clone(),
        first,
        &idp.issuer,
        &["--admin-emails", "alice@example.com"],
        &[],
    )
    .await;
    let alice = browser();
    sign_in(&alice, &app, "alice").await;
    let (_, created) = call(&alice, &app.base, "tokens/create", None, &[("name", "ops")]).await;
    let token = created["secret"].as_str().unwrap().to_owned();
    let (_, me) = call(&alice, &app.base, "auth/me", Some(&token), &[]).await;
    assert_eq!(me["is_admin"], true);

    // The administrator changes SWITCHBOARD_ADMIN_EMAILS and restarts (another instance here,
    // on the same database, with the same provider).
    let (relistener, _) = listener().await;
    let restarted = start_with(
        pool,
        relistener,
        &idp.issuer,
        &["--admin-emails", "bob@example.com"],
        &[],
    )
    .await;
    // The instance that kept running hears of it from the database within a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while support::api(&app, &token, "auth/me", &[]).await.1["is_admin"] == true {
        assert!(std::time::Instant::now() < deadline, "never heard of it");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for app in [&restarted, &app] {
        let (status, me) = support::api(app, &token, "auth/me", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["is_admin"], false, "the token: {me}");
        let (status, _) = support::api(app, &token, "mcp/admin/servers", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // ... and her session, which signed in before.
    let (_, me) = call(&alice, &app.base, "auth/me", None, &[]).await;
    assert_eq!(me["is_admin"], false, "the session: {me}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_deactivated_person_is_signed_out_and_cannot_sign_in(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let bob = browser();
    sign_in(&bob, &app, "bob").await;
    let (_, created) = call(&bob, &app.base, "tokens/create", None, &[("name", "n")]).await;
    let token = created["secret"].as_str().unwrap().to_owned();
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE subject = 'bob'")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert!(domain::users::deactivate(&app.db, id).await.unwrap());
    assert!(home(&bob, &app).await.is_err(), "the session ends");
    let (status, _) = support::api(&app, &token, "auth/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token stops");
    let again = browser();
    let landed = sign_in_landing(&again, &app, "bob").await;
    assert_eq!(query(&landed, "error").as_deref(), Some("deactivated"));
    let html = page(&again, &landed).await;
    assert!(html.contains("deactivated"), "{html}");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_on_another_site_cannot_use_the_persons_session(pool: PgPool) {
    let (_idp, app) = setup(pool, &[]).await;
    let alice = browser();
    sign_in(&alice, &app, "alice").await;
    // The browser sends the session cookie with a cross-site form (SameSite=Lax lets a top-level
    // POST through in some browsers' first minutes): the origin is what refuses it.
    let response = alice
        .post(format!("{}/api/agent/settings/save", app.base))
        .header("origin", "https://evil.example")
        .form(&[("auto_approve_read_only", "true"), ("max_steps", "50")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_, settings) = call(&alice, &app.base, "agent/settings", None, &[]).await;
    assert_eq!(settings["auto_approve_read_only"], false, "{settings}");
    let logout = alice
        .post(format!("{}/auth/logout", app.base))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(
        logout.status(),
        StatusCode::FORBIDDEN,
        "no signing out from elsewhere"
    );
    assert!(home(&alice, &app).await.is_ok(), "still signed in");
    // From Switchboard's own page, it works.
    let response = alice
        .post(format!("{}/api/agent/settings/save", app.base))
        .header("origin", &app.base)
        .form(&[("auto_approve_read_only", "true"), ("max_steps", "50")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
