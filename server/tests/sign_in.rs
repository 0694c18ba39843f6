//! Signing in to a tool server that asks for it (MCP authorization), against real parts: the test
//! OpenID provider (panva's oidc-provider, with dynamic registration, resource indicators, refresh
//! tokens and revocation) in front of the project's own Streamable HTTP MCP server, which takes
//! only that provider's JWT access tokens for itself. Switchboard runs in local mode; the browser
//! is a cookie-keeping HTTP client that steps through every redirect.

mod support;

use std::process::Child;
use std::time::Duration;

use domain::mcp::Status;
use reqwest::StatusCode;
use sqlx::PgPool;
use support::{
    Client, Idp, TestApp, browser, get, listener, location, start_app, start_script_with_env,
    until_mcp,
};
use uuid::Uuid;

struct World {
    app: TestApp,
    me: Uuid,
    idp: Idp,
    mcp_url: String,
    _server: ChildGuard,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The provider (access tokens live `ttl` seconds), the MCP server behind it, and Switchboard
/// with that server in its registry as `guarded`, connected (and so waiting for a sign-in).
async fn world(pool: PgPool, ttl: &str) -> World {
    world_with(pool, ttl, None).await
}

/// [`world`], the server given a client an administrator registered at the provider
/// (`(id, secret)`) when `client` is.
async fn world_with(pool: PgPool, ttl: &str, client: Option<(&str, &str)>) -> World {
    let (listener, base) = listener().await;
    // Local mode's public URL names `localhost`.
    let redirect_uri = base.replace("127.0.0.1", "localhost") + "/mcp/oauth/callback";
    let clients: Vec<Client<'_>> = client
        .iter()
        .map(|(id, secret)| Client {
            id,
            secret,
            redirect_uri: redirect_uri.clone(),
            post_logout_redirect_uri: base.clone(),
        })
        .collect();
    let idp = Idp::start(&clients, &["--resource-servers", "--access-token-ttl", ttl]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tools.jsonl");
    let log_text = log.display().to_string();
    let (child, ready) = start_script_with_env(
        "end2end/mcp/test-server.mjs",
        &["http"],
        &[("AUTH_ISSUER", &idp.issuer), ("TOOL_LOG", &log_text)],
    );
    let mcp_url = ready["url"].as_str().unwrap().to_owned();
    let file = dir.path().join("servers.toml");
    std::fs::write(
        &file,
        format!(
            "[[server]]\nid = \"guarded\"\nname = \"Guarded\"\ntransport = \"http\"\nurl = {mcp_url:?}\n{}",
            client
                .map(|(id, secret)| format!(
                    "oauth_client_id = {id:?}\noauth_client_secret = {secret:?}\n"
                ))
                .unwrap_or_default()
        ),
    )
    .unwrap();
    let file_arg = file.display().to_string();
    let app = start_app(pool, listener, &["--mcp-servers-file", &file_arg], &[]).await;
    let me = app.state.auth.local_user().unwrap().id;
    assert!(app.state.mcp.connect(me, "guarded").await.unwrap());
    World {
        app,
        me,
        idp,
        mcp_url,
        _server: ChildGuard(child),
        log,
        _dir: dir,
    }
}

impl World {
    async fn until(&self, wanted: impl Fn(&Status) -> bool) -> domain::mcp::ServerView {
        until_mcp(&self.app.state.mcp, self.me, "guarded", || {}, wanted).await
    }

    /// What the MCP server logged about the tokens it was sent.
    fn auth_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e.get("auth").is_some())
            .collect()
    }

    /// Starts a sign-in as the Servers page's form does: the authorize URL Switchboard sends the
    /// browser to.
    async fn begin(&self, browser: &reqwest::Client) -> String {
        let response = browser
            .post(format!("{}/mcp/oauth/start", self.app.base))
            .form(&[("id", "guarded"), ("return_to", "/servers")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        location(&response)
    }

    /// At the provider: signs in as `user` (unless the provider remembers them); the callback URL
    /// the provider sends the browser to.
    async fn at_provider(&self, browser: &reqwest::Client, authorize: &str, user: &str) -> String {
        let callback = support::at_the_provider(browser, authorize, user).await;
        self.rebased(&callback)
    }

    /// A callback URL at the address this browser uses (local mode's public URL names
    /// `localhost`).
    fn rebased(&self, callback: &str) -> String {
        let callback = url::Url::parse(callback).unwrap();
        assert_eq!(callback.path(), "/mcp/oauth/callback");
        format!(
            "{}{}?{}",
            self.app.base,
            callback.path(),
            callback.query().unwrap()
        )
    }

    async fn sign_in(&self, browser: &reqwest::Client, user: &str) {
        let authorize = self.begin(browser).await;
        let callback = self.at_provider(browser, &authorize, user).await;
        let back = browser.get(&callback).send().await.unwrap();
        assert_eq!(location(&back), format!("{}/servers", self.app.base));
    }

    async fn whoami(&self) -> domain::Result<String> {
        self.app
            .state
            .mcp
            .call(self.me, "guarded", "whoami", Default::default())
            .await
            .map(|out| out.text())
    }
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A server that answers 401 with its metadata asks the person to sign in; the sign-in is the
/// authorization code flow with PKCE and a resource indicator, with a client Switchboard
/// registered itself; the tokens are kept sealed, and every request then carries the person's
/// token (the server says whose). The callback works once, for the person who began it.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_person_signs_in_to_a_server_that_asks_and_their_token_reaches_it(pool: PgPool) {
    let w = world(pool, "3600").await;
    let view = w.until(|s| matches!(s, Status::SignInNeeded { .. })).await;
    let Status::SignInNeeded { reason } = &view.status else {
        unreachable!()
    };
    assert!(reason.contains("Guarded asks you to sign in"), "{reason}");
    assert!(!view.signed_in);
    // Its tools cannot be called, and saying so names the sign-in.
    let refused = w.whoami().await.unwrap_err();
    assert!(matches!(refused, domain::Error::SignIn(_)), "{refused}");

    let browser = browser();
    let authorize = w.begin(&browser).await;
    assert!(
        authorize.starts_with(&format!("{}/auth?", w.idp.issuer)),
        "{authorize}"
    );
    assert_eq!(
        query(&authorize, "resource").as_deref(),
        Some(w.mcp_url.as_str())
    );
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query(&authorize, "code_challenge").is_some());
    assert!(
        query(&authorize, "scope").unwrap().contains("mcp"),
        "{authorize}"
    );
    let callback = w.at_provider(&browser, &authorize, "alice").await;
    assert!(query(&callback, "iss").is_some(), "{callback}");

    // Another person cannot finish it (the flow is the one who began it's), and that try does
    // not use it up.
    let bob = support::user(&w.app.db, "bob", "Bob").await;
    let state = query(&callback, "state").unwrap();
    let code = query(&callback, "code").unwrap();
    let theirs = w
        .app
        .state
        .mcp
        .finish_sign_in(bob, &state, &code, None)
        .await
        .unwrap_err();
    assert!(matches!(theirs, domain::Error::NotFound(_)), "{theirs}");

    let back = browser.get(&callback).send().await.unwrap();
    assert_eq!(location(&back), format!("{}/servers", w.app.base));
    let view = w.until(|s| *s == Status::Connected).await;
    assert!(view.signed_in);
    assert!(view.tools.iter().any(|t| t.name == "whoami"));
    assert_eq!(w.whoami().await.unwrap(), "You are alice");

    // Once only.
    let again = browser.get(&callback).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("Start it again"));

    // Kept sealed: neither token appears in the database in the clear.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM mcp_sign_ins")
        .fetch_one(w.app.db.pool())
        .await
        .unwrap();
    let token = w.auth_log().last().unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!String::from_utf8_lossy(&sealed).contains("access_token"));
    assert!(!String::from_utf8_lossy(&sealed).contains(&token));
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM mcp_sign_in_flows")
            .fetch_one(w.app.db.pool())
            .await
            .unwrap(),
        0,
        "the flow is used up"
    );
}

/// A token near its end is refreshed before a request (the server sees a new one, and no 401);
/// a token the server refuses is refreshed once, and when that does not help either the sign-in
/// is over: the call is refused as needing a sign-in (the chat then pauses, see the agent's
/// tests), the person is asked to sign in again, and after they do the tool works. Signing out
/// forgets the tokens (the provider is asked to revoke them) and the server asks again.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn tokens_are_refreshed_and_an_expired_sign_in_asks_again(pool: PgPool) {
    // 40 s tokens: Switchboard refreshes a token with less than 30 s left.
    let w = world(pool, "40").await;
    w.until(|s| matches!(s, Status::SignInNeeded { .. })).await;
    let browser = browser();
    w.sign_in(&browser, "alice").await;
    w.until(|s| *s == Status::Connected).await;
    assert_eq!(w.whoami().await.unwrap(), "You are alice");
    let first: Vec<String> = w
        .auth_log()
        .iter()
        .filter_map(|e| e["jti"].as_str().map(str::to_owned))
        .collect();
    let refused = |log: &[serde_json::Value]| log.iter().filter(|e| e["auth"] == "refused").count();
    let refused_before = refused(&w.auth_log());
    // The stored sign-in knows when its token ends.
    let left: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - now())::float8 FROM mcp_sign_ins",
    )
    .fetch_one(w.app.db.pool())
    .await
    .unwrap();
    assert!((20.0..=40.0).contains(&left), "{left}");
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(w.whoami().await.unwrap(), "You are alice");
    let log = w.auth_log();
    let last = log.last().unwrap();
    assert_eq!(last["auth"], "ok");
    let jti = last["jti"].as_str().unwrap();
    assert!(
        !first.iter().any(|j| j == jti),
        "a new token after the refresh: {log:#?}"
    );
    assert_eq!(
        refused(&log),
        refused_before,
        "refreshed before it was refused: {log:?}"
    );

    // The server refuses every token now (the person's access was revoked there).
    let admin = reqwest::Client::new();
    let refuse = |on: bool| {
        admin
            .post(w.mcp_url.replace("/mcp", "/admin/refuse"))
            .json(&serde_json::json!({ "refuse": on }))
            .send()
    };
    refuse(true).await.unwrap();
    let expired = w.whoami().await.unwrap_err();
    assert!(matches!(expired, domain::Error::SignIn(_)), "{expired}");
    assert!(expired.to_string().contains("has expired"), "{expired}");
    let view = w.until(|s| matches!(s, Status::SignInNeeded { .. })).await;
    let Status::SignInNeeded { reason } = &view.status else {
        unreachable!()
    };
    assert!(reason.contains("expired or was revoked"), "{reason}");
    assert!(!view.signed_in, "the refused sign-in is forgotten");
    let refusals = refused(&w.auth_log()) - refused_before;
    assert!(
        refusals >= 2,
        "the token, then the refreshed one: {refusals}"
    );

    refuse(false).await.unwrap();
    w.sign_in(&browser, "alice").await;
    w.until(|s| *s == Status::Connected).await;
    assert_eq!(w.whoami().await.unwrap(), "You are alice");

    // Signing out (and once more, with nothing left to sign out of).
    let sign_out = || {
        support::call(
            &browser,
            &w.app.base,
            "mcp/sign-out",
            None,
            &[("id", "guarded")],
        )
    };
    let (status, body) = sign_out().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view = w.until(|s| matches!(s, Status::SignInNeeded { .. })).await;
    assert!(!view.signed_in);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM mcp_sign_ins")
            .fetch_one(w.app.db.pool())
            .await
            .unwrap(),
        0
    );
    let (status, _) = sign_out().await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing to sign out of");
}

/// What another site or a hostile callback can do: a sign-in cannot be started from another site
/// (the form is a POST the boundary refuses cross-site), a callback with a made-up state or an
/// error from the provider ends on a page that says so, and the client document is not offered
/// over plain http.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn sign_ins_refuse_what_they_did_not_start(pool: PgPool) {
    let w = world(pool, "3600").await;
    w.until(|s| matches!(s, Status::SignInNeeded { .. })).await;
    let browser = browser();
    let cross_site = browser
        .post(format!("{}/mcp/oauth/start", w.app.base))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.example")
        .form(&[("id", "guarded")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let callback = format!("{}/mcp/oauth/callback", w.app.base);
    let made_up = get(&browser, &format!("{callback}?code=x&state=made-up")).await;
    assert_eq!(made_up.status(), StatusCode::BAD_REQUEST);
    // Anyone can make a link with words for this page: they are shown only for a sign-in of the
    // person's that was under way.
    let planted = get(
        &browser,
        &format!("{callback}?state=made-up&error=server_error&error_description=Call+555-0100+now"),
    )
    .await;
    assert_eq!(planted.status(), StatusCode::BAD_REQUEST);
    assert!(!planted.text().await.unwrap().contains("555-0100"));
    let authorize = w.begin(&browser).await;
    let state = query(&authorize, "state").unwrap();
    let denied = get(
        &browser,
        &format!(
            "{callback}?error=access_denied&error_description=%3Cscript%3Ex%3C%2Fscript%3E&state={state}"
        ),
    )
    .await;
    assert_eq!(denied.status(), StatusCode::BAD_REQUEST);
    let page = denied.text().await.unwrap();
    assert!(page.contains("declined"), "{page}");
    assert!(
        !page.contains("<script>x"),
        "the provider's words are escaped"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM mcp_sign_in_flows")
            .fetch_one(w.app.db.pool())
            .await
            .unwrap(),
        0,
        "a declined sign-in is dropped"
    );
    let document = get(&browser, &format!("{}/oauth/client.json", w.app.base)).await;
    assert_eq!(document.status(), StatusCode::NOT_FOUND);
    // Some other server than the one asking: no sign-in to a server that is not there.
    let unknown = browser
        .post(format!("{}/mcp/oauth/start", w.app.base))
        .form(&[("id", "nowhere")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// A sign-in service that takes no registrations is used with the client an administrator
/// registered there for Switchboard (its id and secret set on the server): the sign-in goes
/// through with that client, confidential, and no registration is made.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_client_an_administrator_registered_is_used(pool: PgPool) {
    let w = world_with(pool, "3600", Some(("switchboard-mcp", "mcp-s3cret"))).await;
    w.until(|s| matches!(s, Status::SignInNeeded { .. })).await;
    let browser = browser();
    let authorize = w.begin(&browser).await;
    assert_eq!(
        query(&authorize, "client_id").as_deref(),
        Some("switchboard-mcp")
    );
    let callback = w.at_provider(&browser, &authorize, "bob").await;
    let back = browser.get(&callback).send().await.unwrap();
    assert_eq!(location(&back), format!("{}/servers", w.app.base));
    w.until(|s| *s == Status::Connected).await;
    assert_eq!(w.whoami().await.unwrap(), "You are bob");
    let client: String = sqlx::query_scalar("SELECT client_id FROM mcp_sign_ins")
        .fetch_one(w.app.db.pool())
        .await
        .unwrap();
    assert_eq!(client, "switchboard-mcp");
}
