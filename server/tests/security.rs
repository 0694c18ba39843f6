//! The trust boundary, tried as an attacker would: a web page the person visits, a name that
//! rebinds to Switchboard, a script that floods it, a client that dawdles, a token revoked while it
//! follows a chat. Each test is listed in `docs/security.md` with the protection it proves.
//! (Tool servers' part of the boundary is in `security_mcp.rs`, sign-in's in `auth.rs`.)

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use support::{TestApp, api, listener, plain_client, start_app, start_local_app};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

fn port(app: &TestApp) -> &str {
    app.base.rsplit(':').next().unwrap()
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_on_another_site_cannot_start_a_process_in_local_mode(pool: PgPool) {
    let app = start_local_app(pool).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("touch {}", marker.display());
    let server = [
        ("transport", "stdio"),
        ("id", "evil"),
        ("name", "Evil"),
        ("command", "/bin/sh"),
        ("args", &format!("-c\n{script}")),
    ];
    let client = plain_client();
    let save = format!("{}/api/mcp/admin/save", app.base);

    // A plain HTML form on another site, submitted by the person's browser: form-encoded, or
    // text/plain, with the browser's Origin; an older browser sends only Sec-Fetch-Site.
    let refused = [
        client
            .post(&save)
            .header("origin", "https://evil.example")
            .form(&server),
        client
            .post(&save)
            .header("origin", "https://evil.example")
            .header("content-type", "text/plain")
            .body(serde_urlencoded(&server)),
        client
            .post(&save)
            .header("sec-fetch-site", "cross-site")
            .form(&server),
        client.post(&save).header("origin", "null").form(&server),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "cross_origin", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("another site"),
            "{body}"
        );
    }
    let connect = client
        .post(format!("{}/api/mcp/connect", app.base))
        .header("origin", "https://evil.example")
        .form(&[("id", "evil")])
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), StatusCode::FORBIDDEN);
    assert_eq!(count(&app, "mcp_servers").await, 0, "nothing was stored");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "nothing ran");

    // The same request from Switchboard's own page is taken (so the refusals above were the
    // origin's doing).
    let own = client
        .post(&save)
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin")
        .form(&server)
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.status(),
        StatusCode::OK,
        "{}",
        own.text().await.unwrap()
    );
    assert_eq!(count(&app, "mcp_servers").await, 1);
}

/// `key=value&...`, as a form's body.
fn serde_urlencoded(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// In local mode the one person is the administrator: a page on another site must not add a model
/// provider (which would receive every chat sent to it), nor make Switchboard send requests to an
/// address it names (discover, test).
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_page_on_another_site_cannot_add_or_try_a_model_provider(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = plain_client();
    let provider = [
        ("id", "evil"),
        ("kind", "openai"),
        ("base_url", "https://evil.example/v1"),
        ("models", "spy"),
    ];
    for endpoint in [
        "admin/models/save",
        "admin/models/discover",
        "admin/models/settings",
    ] {
        let response = client
            .post(format!("{}/api/{endpoint}", app.base))
            .header("origin", "https://evil.example")
            .form(&provider)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{endpoint}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "cross_origin", "{endpoint}: {body}");
    }
    assert_eq!(count(&app, "model_providers").await, 0);
    assert_eq!(count(&app, "model_settings").await, 0);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_name_rebound_to_switchboard_gets_nothing(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = plain_client();
    let rebound = format!("rebind.evil.example:{}", port(&app));
    let response = client
        .post(format!("{}/api/tokens/create", app.base))
        .header("host", &rebound)
        .form(&[("name", "stolen")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let body = response.text().await.unwrap();
    assert!(!body.contains("sb_"), "no token: {body}");
    assert!(body.contains("wrong_host"), "{body}");
    assert_eq!(count(&app, "api_tokens").await, 0);
    let page = client
        .get(format!("{}/", app.base))
        .header("host", &rebound)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::MISDIRECTED_REQUEST);

    // Switchboard's own loopback names are served.
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let response = client
            .post(format!("{}/api/auth/me", app.base))
            .header("host", format!("{host}:{}", port(&app)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn decisions_are_taken_only_as_json(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = plain_client();
    let body = r#"{"id":"00000000-0000-0000-0000-000000000000","answer_id":"00000000-0000-0000-0000-000000000000","turn":1,"decisions":[]}"#;
    let decide = format!("{}/api/chats/decide", app.base);
    for kind in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let response = client
            .post(&decide)
            .header("content-type", kind)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{kind}"
        );
        let error: Value = response.json().await.unwrap();
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{error}"
        );
    }
    let json = client
        .post(&decide)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_ne!(json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// The value of `nonce-...` in a Content-Security-Policy.
fn nonce_of(csp: &str) -> String {
    let start = csp.find("'nonce-").expect("a nonce") + "'nonce-".len();
    csp[start..].split('\'').next().unwrap().to_owned()
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn pages_carry_a_policy_whose_nonce_only_their_own_scripts_have(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = plain_client();
    let mut nonces = Vec::new();
    for path in ["/", "/settings", "/no-such-page"] {
        let response = client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let nonce = nonce_of(csp);
        assert!(nonce.len() >= 16, "{nonce}");
        let scripts = html.matches("<script").count();
        assert!(scripts > 0, "{path} hydrates with a script");
        assert_eq!(
            html.matches(&format!("nonce=\"{nonce}\"")).count(),
            scripts,
            "{path}: every script carries this response's nonce: {html}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert!(
            headers.get("strict-transport-security").is_none(),
            "no HSTS over plain http"
        );
        nonces.push(nonce);
    }
    nonces.dedup();
    assert_eq!(nonces.len(), 3, "a new nonce for every response");
    let api = client
        .post(format!("{}/api/auth/me", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn over_https_cookies_are_host_only_and_browsers_keep_to_https(pool: PgPool) {
    let (listener, _) = listener().await;
    let idp_like = format!("http://{}", listener.local_addr().unwrap());
    let app = start_app(
        pool,
        listener,
        &[
            "--auth-providers",
            "idp",
            "--public-url",
            "https://chat.example.com",
            "--allowed-hosts",
            "127.0.0.1",
        ],
        &[
            // Discovery is never reached by this test.
            ("SWITCHBOARD_AUTH_IDP_ISSUER", idp_like),
            ("SWITCHBOARD_AUTH_IDP_CLIENT_ID", "c".to_owned()),
            ("SWITCHBOARD_AUTH_IDP_CLIENT_SECRET", "s".to_owned()),
        ],
    )
    .await;
    let response = plain_client()
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let state = support::state_of(&app);
    assert_eq!(state.auth.session_cookie(), "__Host-sb_session");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_script_firing_hundreds_of_requests_is_slowed_and_others_are_not(pool: PgPool) {
    // The defaults: 10 a second, bursts of 60.
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &["--rate-limit-per-second", "10"], &[]).await;
    let (_, alice) = support::person(&app, "alice", "Alice").await;
    let (_, bob) = support::person(&app, "bob", "Bob").await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let statuses: Vec<(StatusCode, Option<String>)> = futures_util::stream::iter(0..600)
        .map(|_| {
            let request = client
                .post(format!("{}/api/auth/me", app.base))
                .bearer_auth(&alice);
            async move {
                let response = request.send().await.unwrap();
                let retry = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (response.status(), retry)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let served = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    let slowed: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(served + slowed.len(), 600);
    let most = 60.0 + 10.0 * elapsed + 2.0;
    assert!(
        served >= 60 && (served as f64) <= most,
        "{served} served in {elapsed:.2} s"
    );
    assert!(
        slowed.iter().all(|(_, retry)| retry
            .as_deref()
            .is_some_and(|r| r.parse::<u64>().unwrap() >= 1)),
        "every 429 says when to retry"
    );
    let (status, body) = api(&app, &alice, "auth/me", &[]).await;
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(body["error"], "rate_limited");
        assert!(body["message"].as_str().unwrap().contains("Wait"), "{body}");
    }
    // Someone else is served meanwhile.
    let (status, _) = api(&app, &bob, "auth/me", &[]).await;
    assert_eq!(status, StatusCode::OK);
    // A person clicking around (a page load's requests, a second apart) is never slowed.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for _ in 0..3 {
        for _ in 0..8 {
            let (status, _) = api(&app, &alice, "auth/me", &[]).await;
            assert_eq!(status, StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_person_has_a_bounded_number_of_event_streams(pool: PgPool) {
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &["--max-event-streams", "3"], &[]).await;
    let (_, token) = support::person(&app, "alice", "Alice").await;
    let (_, chat) = api(&app, &token, "chats/create", &[]).await;
    let chat = chat["id"].as_str().unwrap().to_owned();
    let open = |token: String| {
        let url = format!("{}/api/chats/{chat}/events", app.base);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let mut streams = Vec::new();
    for _ in 0..3 {
        let response = open(token.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        streams.push(response);
    }
    let refused = open(token.clone()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "too_many_streams");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Close some tabs")
    );
    // Closing one makes room.
    drop(streams.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = open(token.clone()).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "a closed stream frees its place");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_message_too_long_is_refused_with_how_long_and_a_huge_body_is_not_read(pool: PgPool) {
    let app = start_local_app(pool).await;
    let client = plain_client();
    let (status, chat) = support::call(&client, &app.base, "chats/create", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let id = chat["id"].as_str().unwrap();
    let send = |text: String| {
        let client = client.clone();
        let url = app.base.clone();
        let id = id.to_owned();
        async move {
            support::call(
                &client,
                &url,
                "chats/send",
                None,
                &[("id", &id), ("text", &text)],
            )
            .await
        }
    };

    let long = "a".repeat(100_001);
    let (status, body) = send(long).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("100001 characters") && message.contains("at most 100000"),
        "{message}"
    );
    assert_eq!(count(&app, "messages").await, 0, "nothing stored");

    // At the limit, the length is fine (the send fails later, for want of a model).
    let most = "a".repeat(100_000);
    let (_, body) = send(most).await;
    assert!(
        !body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("characters long"),
        "{body}"
    );

    for size in [1_500_000, 2_000_000] {
        let huge = "a".repeat(size);
        let (status, body) = send(huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{size}");
        assert_eq!(body["error"], "too_large");
        assert!(body["message"].as_str().unwrap().contains("KB"), "{body}");
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_client_too_slow_to_send_its_request_is_disconnected(pool: PgPool) {
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &["--client-timeout", "1s"], &[]).await;
    let address = app.base.trim_start_matches("http://").to_owned();

    // Headers sent a little, then nothing more.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed, not held");
    assert!(started.elapsed() < Duration::from_secs(4));
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A body promised and never sent.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/chats/create HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nmodel="
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed, not held");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(count(&app, "chats").await, 0);

    // A prompt client is served as always.
    let response = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Whether a response's body ends within `within`.
async fn ends_within(response: reqwest::Response, within: Duration) -> bool {
    let mut body = response.bytes_stream();
    tokio::time::timeout(within, async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await
    .is_ok()
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_revoked_token_or_a_deactivated_person_loses_their_open_streams(pool: PgPool) {
    let app = start_local_app(pool).await;
    let (alice_id, alice) = support::person(&app, "alice", "Alice").await;
    let (bob_id, bob) = support::person(&app, "bob", "Bob").await;
    let mut chats = Vec::new();
    for token in [&alice, &bob] {
        let (_, chat) = api(&app, token, "chats/create", &[]).await;
        chats.push(chat["id"].as_str().unwrap().to_owned());
    }
    let stream = |token: &str, chat: &str| {
        reqwest::Client::new()
            .get(format!("{}/api/chats/{chat}/events", app.base))
            .bearer_auth(token)
            .send()
    };
    let alices = stream(&alice, &chats[0]).await.unwrap();
    let bobs = stream(&bob, &chats[1]).await.unwrap();
    assert_eq!(alices.status(), StatusCode::OK);
    assert_eq!(bobs.status(), StatusCode::OK);

    let tokens = domain::tokens::list(&app.db, alice_id).await.unwrap();
    assert!(
        domain::tokens::revoke(&app.db, alice_id, tokens[0].id)
            .await
            .unwrap()
    );
    assert!(
        ends_within(alices, Duration::from_secs(1)).await,
        "a revoked token's stream ends within a second"
    );
    let (status, body) = api(&app, &alice, "auth/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");

    assert!(domain::users::deactivate(&app.db, bob_id).await.unwrap());
    assert!(
        ends_within(bobs, Duration::from_secs(1)).await,
        "a deactivated person's stream ends within a second"
    );
    let (status, _) = api(&app, &bob, "auth/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "their tokens stop too");
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_flood_of_made_up_tokens_is_refused_before_they_are_looked_up(pool: PgPool) {
    // The defaults: 10 a second, bursts of 60; failed sign-ins five times that by address.
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &["--rate-limit-per-second", "10"], &[]).await;
    let client = reqwest::Client::new();
    let statuses: Vec<StatusCode> = futures_util::stream::iter(0..600)
        .map(|i| {
            let request = client
                .post(format!("{}/api/auth/me", app.base))
                .bearer_auth(format!("sb_made-up-{i}"));
            async move { request.send().await.unwrap().status() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let looked_up = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(looked_up + refused, 600);
    assert!(
        (300..450).contains(&looked_up),
        "the burst (300) and what the rate refills are looked up, the rest refused: {looked_up}"
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off(pool: PgPool) {
    let (listener, _) = listener().await;
    let app = start_app(pool, listener, &["--client-timeout", "1s"], &[]).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/chats/create HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = [0u8; 1024];
    // A byte every 200 ms: never long between bytes, far too long for the whole body.
    let answered = loop {
        tokio::select! {
            read = slow.read(&mut answer) => break read.unwrap_or(0),
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if slow.write_all(b"a").await.is_err() {
                    break 0;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still reading the body after 5 s"
        );
    };
    assert!(started.elapsed() < Duration::from_secs(4));
    let text = String::from_utf8_lossy(&answer[..answered]);
    assert!(answered == 0 || text.starts_with("HTTP/1.1 "), "{text}");
    assert_eq!(count(&app, "chats").await, 0);
}
