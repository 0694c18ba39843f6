//! MCP connections against the official reference servers, installed by scripts/setup:
//! `@modelcontextprotocol/server-everything` over stdio and over Streamable HTTP,
//! `@modelcontextprotocol/server-memory` over stdio (npm) and `mcp-server-time` over stdio (PyPI).

mod support;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use domain::Database;
use domain::mcp::{
    AddressPolicy, Mcp, Registry, ServerSpec, ServerView, Settings, Source, Status, Transport,
};
use domain::secrets::SecretKey;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use support::{node, start_script_with_env, user, workspace_root};
use uuid::Uuid;

fn path(relative: &str) -> String {
    workspace_root().join(relative).display().to_string()
}

fn stdio(id: &str, command: &str, args: &[&str], env: &[(&str, &str)]) -> ServerSpec {
    ServerSpec {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        transport: Transport::Stdio {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret_env: BTreeMap::new(),
        },
        enabled: true,
        groups: Vec::new(),
        source: Source::File,
        problem: None,
    }
}

fn everything_stdio(id: &str, marker: &str) -> ServerSpec {
    // Through a shell, as `npx` would: the server is a grandchild, and must still not outlive
    // its connection. The marker (an argument the server ignores) finds its processes.
    let node = node().display().to_string();
    let script = path("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    stdio(
        id,
        "sh",
        &["-c", &format!("'{node}' '{script}' stdio {marker}")],
        &[],
    )
}

fn http(id: &str, url: &str) -> ServerSpec {
    ServerSpec {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        transport: Transport::Http {
            url: url.into(),
            headers: BTreeMap::new(),
            bearer_token: None,
            oauth_client_id: None,
            oauth_client_secret: None,
        },
        enabled: true,
        groups: Vec::new(),
        source: Source::File,
        problem: None,
    }
}

/// server-everything over Streamable HTTP on 127.0.0.1 (`port` 0: a free one).
struct EverythingHttp {
    child: Child,
    url: String,
}

impl EverythingHttp {
    fn start(port: u16) -> Self {
        let port = port.to_string();
        let (child, ready) =
            start_script_with_env("end2end/mcp/everything-http.mjs", &[], &[("PORT", &port)]);
        Self {
            child,
            url: ready["url"].as_str().unwrap().to_owned(),
        }
    }

    fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches("/mcp").parse().ok())
            .unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EverythingHttp {
    fn drop(&mut self) {
        self.kill();
    }
}

fn settings() -> Settings {
    Settings {
        connect_timeout: Duration::from_secs(30),
        call_timeout: Duration::from_secs(2),
        max_backoff: Duration::from_secs(1),
        idle_timeout: None,
        addresses: AddressPolicy::default(),
        ..Settings::default()
    }
}

/// One key for every instance a test starts, as instances sharing a database must have.
fn key() -> SecretKey {
    SecretKey::from_bytes(&[7; 32]).unwrap()
}

fn mcp(pool: &PgPool, servers: Vec<ServerSpec>) -> Mcp {
    mcp_with(pool, servers, settings())
}

fn mcp_with(pool: &PgPool, servers: Vec<ServerSpec>, settings: Settings) -> Mcp {
    Mcp::new(
        Database::from_pool(pool.clone()),
        Registry::new(servers).unwrap(),
        key(),
        settings,
    )
}

/// Waits until the server's status for the user matches.
async fn until(
    mcp: &Mcp,
    user: Uuid,
    server: &str,
    wanted: impl Fn(&Status) -> bool,
) -> ServerView {
    support::until_mcp(mcp, user, server, || {}, wanted).await
}

fn connected(status: &Status) -> bool {
    *status == Status::Connected
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn tool_names(view: &ServerView) -> Vec<&str> {
    view.tools.iter().map(|t| t.name.as_str()).collect()
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_reference_servers_list_their_tools_and_run_them(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let http_server = EverythingHttp::start(0);
    let memory_file = std::env::temp_dir().join(format!("switchboard-memory-{alice}.jsonl"));
    let node = node().display().to_string();
    let mcp = mcp(
        &pool,
        vec![
            everything_stdio("everything", &format!("marker-{alice}")),
            http("everything-http", &http_server.url),
            stdio(
                "time",
                &path(".tools/mcp-time/bin/mcp-server-time"),
                &["--local-timezone", "UTC"],
                &[],
            ),
            stdio(
                "memory",
                &node,
                &[&path(
                    "node_modules/@modelcontextprotocol/server-memory/dist/index.js",
                )],
                &[("MEMORY_FILE_PATH", &memory_file.display().to_string())],
            ),
        ],
    );
    for server in ["everything", "everything-http", "time", "memory"] {
        assert!(mcp.connect(alice, server).await.unwrap());
    }

    for server in ["everything", "everything-http"] {
        let view = until(&mcp, alice, server, connected).await;
        let names = tool_names(&view);
        for tool in ["echo", "get-sum", "trigger-long-running-operation"] {
            assert!(names.contains(&tool), "{server}: {names:?}");
        }
        let echo = view.tools.iter().find(|t| t.name == "echo").unwrap();
        assert_eq!(echo.input_schema["properties"]["message"]["type"], "string");
        let output = mcp
            .call(alice, server, "echo", args(json!({"message": "hello"})))
            .await
            .unwrap();
        assert!(!output.is_error);
        assert_eq!(output.text(), "Echo: hello");
        let sum = mcp
            .call(alice, server, "get-sum", args(json!({"a": 2, "b": 40})))
            .await
            .unwrap();
        assert!(sum.text().contains("42"), "{}", sum.text());
    }

    let time = until(&mcp, alice, "time", connected).await;
    assert!(tool_names(&time).contains(&"get_current_time"));
    let now = mcp
        .call(
            alice,
            "time",
            "get_current_time",
            args(json!({"timezone": "Europe/Lisbon"})),
        )
        .await
        .unwrap();
    assert!(!now.is_error, "{}", now.text());
    assert!(now.text().contains("Europe/Lisbon"), "{}", now.text());

    let memory = until(&mcp, alice, "memory", connected).await;
    assert!(tool_names(&memory).contains(&"create_entities"));
    mcp.call(
        alice,
        "memory",
        "create_entities",
        args(json!({"entities": [{"name": "Lisbon", "entityType": "city", "observations": ["has trams"]}]})),
    )
    .await
    .unwrap();
    let graph = mcp
        .call(alice, "memory", "read_graph", Map::new())
        .await
        .unwrap();
    assert!(graph.text().contains("has trams"), "{}", graph.text());

    // A tool's own failure is an output, not a broken connection.
    let wrong = mcp
        .call(alice, "everything", "get-sum", args(json!({"a": "two"})))
        .await
        .unwrap();
    assert!(wrong.is_error, "{}", wrong.text());
    mcp.shutdown().await;
    let _ = std::fs::remove_file(memory_file);
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn each_user_has_their_own_connections_and_they_come_back_after_a_restart(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let (alice, bob) = (
        user(&db, "alice", "Alice").await,
        user(&db, "bob", "Bob").await,
    );
    let servers = || vec![everything_stdio("everything", &format!("marker-{alice}"))];
    let first = mcp(&pool, servers());
    assert!(first.connect(alice, "everything").await.unwrap());
    until(&first, alice, "everything", connected).await;
    let bobs = first.servers(bob).await.unwrap();
    assert_eq!(bobs[0].status, Status::Disconnected);
    assert!(bobs[0].tools.is_empty(), "Bob sees no tools of Alice's");
    let refused = first
        .call(bob, "everything", "echo", args(json!({"message": "hi"})))
        .await;
    assert!(refused.is_err(), "Bob cannot use Alice's connection");
    assert!(!first.connect(alice, "no-such-server").await.unwrap());

    // A restart (or another instance): Alice's connection comes back on her first use, Bob's
    // does not appear.
    first.shutdown().await;
    let second = mcp(&pool, servers());
    let view = until(&second, alice, "everything", connected).await;
    assert!(tool_names(&view).contains(&"echo"));
    assert_eq!(
        second.servers(bob).await.unwrap()[0].status,
        Status::Disconnected
    );

    // Disconnecting forgets it: a third start does not reconnect.
    assert!(second.disconnect(alice, "everything").await.unwrap());
    second.shutdown().await;
    let third = mcp(&pool, servers());
    assert_eq!(
        third.servers(alice).await.unwrap()[0].status,
        Status::Disconnected
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_server_that_dies_shows_why_and_is_reconnected_when_it_returns(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let mut server = EverythingHttp::start(0);
    let port = server.port();
    let mcp = mcp(&pool, vec![http("everything-http", &server.url)]);
    mcp.connect(alice, "everything-http").await.unwrap();
    until(&mcp, alice, "everything-http", connected).await;

    server.kill();
    // The next call meets the dead server (HTTP has no open stream to notice it by itself).
    let failed = mcp
        .call(
            alice,
            "everything-http",
            "echo",
            args(json!({"message": "anyone?"})),
        )
        .await;
    assert!(failed.is_err());
    let view = until(&mcp, alice, "everything-http", |s| {
        matches!(s, Status::Failed { .. })
    })
    .await;
    let Status::Failed { reason } = view.status else {
        unreachable!()
    };
    assert!(!reason.is_empty());
    // Operators see it in /readyz's detail.
    assert_eq!(mcp.failing_registry_servers(), ["everything-http"]);

    let _back = EverythingHttp::start(port);
    until(&mcp, alice, "everything-http", connected).await;
    assert!(mcp.failing_registry_servers().is_empty());
    let output = mcp
        .call(
            alice,
            "everything-http",
            "echo",
            args(json!({"message": "back"})),
        )
        .await
        .unwrap();
    assert_eq!(output.text(), "Echo: back");
    mcp.shutdown().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_slow_tool_is_cancelled_at_its_timeout_and_the_connection_goes_on(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let mcp = mcp(
        &pool,
        vec![everything_stdio("everything", &format!("marker-{alice}"))],
    );
    mcp.connect(alice, "everything").await.unwrap();
    until(&mcp, alice, "everything", connected).await;
    let started = Instant::now();
    let slow = mcp
        .call(
            alice,
            "everything",
            "trigger-long-running-operation",
            args(json!({"duration": 10, "steps": 2})),
        )
        .await;
    let error = slow.unwrap_err().to_string();
    assert!(error.contains("did not finish within 2 s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let output = mcp
        .call(
            alice,
            "everything",
            "echo",
            args(json!({"message": "still here"})),
        )
        .await
        .unwrap();
    assert_eq!(output.text(), "Echo: still here");
    mcp.shutdown().await;
}

/// Processes whose command line holds `marker`, and zombies among this process's children.
fn leftovers(marker: &str) -> (Vec<String>, Vec<String>) {
    let me = std::process::id().to_string();
    let (mut alive, mut zombies) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !cmdline.contains("/proc") {
            alive.push(format!("{pid}: {cmdline}"));
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str()) {
            zombies.push(pid);
        }
    }
    (alive, zombies)
}

async fn until_no_leftovers(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (alive, zombies) = leftovers(marker);
        if alive.is_empty() && zombies.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {alive:?}, zombies: {zombies:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn disconnect_and_shutdown_leave_no_process_behind(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let marker = format!("marker-{}", Uuid::new_v4());
    let mcp = mcp(
        &pool,
        vec![
            everything_stdio("one", &format!("{marker}-one")),
            everything_stdio("two", &format!("{marker}-two")),
        ],
    );
    for server in ["one", "two"] {
        mcp.connect(alice, server).await.unwrap();
        until(&mcp, alice, server, connected).await;
    }
    let (alive, _) = leftovers(&marker);
    assert!(alive.len() >= 2, "the servers run under a shell: {alive:?}");

    assert!(mcp.disconnect(alice, "one").await.unwrap());
    until_no_leftovers(&format!("{marker}-one")).await;
    assert!(!leftovers(&format!("{marker}-two")).0.is_empty());

    mcp.shutdown().await;
    until_no_leftovers(&marker).await;
}

#[test]
fn a_registry_file_is_read_and_secrets_are_not_printed() {
    let registry = Registry::from_toml(
        r#"
        [[server]]
        id = "everything"
        name = "Everything"
        description = "The MCP reference server"
        transport = "stdio"
        command = "npx"
        args = ["-y", "@modelcontextprotocol/server-everything"]
        env = { API_KEY = "s3cret-env" }

        [[server]]
        id = "remote"
        name = "Remote"
        transport = "http"
        url = "https://mcp.example.com/mcp"
        bearer_token = "s3cret-token"
        headers = { "X-Api-Key" = "s3cret-header" }
        enabled = false
        "#,
    )
    .unwrap();
    assert_eq!(registry.servers().len(), 2);
    assert_eq!(
        registry.get("everything").unwrap().transport.kind(),
        "stdio"
    );
    assert!(!registry.get("remote").unwrap().enabled);
    let printed = format!("{registry:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("API_KEY") && printed.contains("X-Api-Key"));

    for (bad, why) in [
        (
            "[[server]]\nid = \"Bad Id\"\nname = \"x\"\ntransport = \"http\"\nurl = \"http://x\"",
            "not valid",
        ),
        (
            "[[server]]\nid = \"x\"\nname = \"x\"\ntransport = \"ftp\"",
            "not valid",
        ),
        (
            "[[server]]\nid = \"x\"\nname = \"x\"\ntransport = \"http\"\nurl = \"http://a\"\n[[server]]\nid = \"x\"\nname = \"y\"\ntransport = \"http\"\nurl = \"http://b\"",
            "Two MCP servers",
        ),
    ] {
        let error = Registry::from_toml(bad).unwrap_err().to_string();
        assert!(error.contains(why), "{bad}: {error}");
    }
}

/// The HTTP API, as a script with a personal token drives it.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_api_connects_lists_tools_and_disconnects_per_person(pool: PgPool) {
    use reqwest::StatusCode;
    use support::{call, listener, person, start_app};

    let http_server = EverythingHttp::start(0);
    let file = std::env::temp_dir().join(format!("switchboard-mcp-{}.toml", Uuid::new_v4()));
    std::fs::write(
        &file,
        format!(
            "[[server]]\nid = \"everything\"\nname = \"Everything\"\ndescription = \"The reference server\"\ntransport = \"http\"\nurl = \"{}\"\n",
            http_server.url
        ),
    )
    .unwrap();
    let (listener, _) = listener().await;
    let file_arg = file.display().to_string();
    let app = start_app(pool, listener, &["--mcp-servers-file", &file_arg], &[]).await;
    let (_, alice) = person(&app, "alice", "alice").await;
    let (_, bob) = person(&app, "bob", "bob").await;
    let client = reqwest::Client::new();
    let api = |token: &str, endpoint: &'static str, form: Vec<(&'static str, &'static str)>| {
        let (client, base, token) = (client.clone(), app.base.clone(), token.to_owned());
        async move { call(&client, &base, endpoint, Some(&token), &form).await }
    };

    let (status, servers) = api(&alice, "mcp/servers", vec![]).await;
    assert_eq!(status, StatusCode::OK, "{servers}");
    assert_eq!(servers[0]["status"], "disconnected");
    assert_eq!(servers[0]["transport"], "http");
    let (status, body) = api(&alice, "mcp/connect", vec![("id", "nope")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api(&alice, "mcp/connect", vec![("id", "everything")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let servers = loop {
        let (_, servers) = api(&alice, "mcp/servers", vec![]).await;
        if servers[0]["status"] == "connected" {
            break servers;
        }
        assert!(Instant::now() < deadline, "{servers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tools = servers[0]["tools"].as_array().unwrap();
    let echo = tools.iter().find(|t| t["name"] == "echo").unwrap();
    assert_eq!(
        echo["input_schema"]["properties"]["message"]["type"],
        "string"
    );
    assert!(echo["read_only"].is_boolean());

    let (_, bobs) = api(&bob, "mcp/servers", vec![]).await;
    assert_eq!(bobs[0]["status"], "disconnected");
    assert_eq!(bobs[0]["tools"], json!([]));

    let (status, _) = api(&alice, "mcp/disconnect", vec![("id", "everything")]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, servers) = api(&alice, "mcp/servers", vec![]).await;
    assert_eq!(servers[0]["status"], "disconnected");
    let (status, _) = api(&alice, "mcp/disconnect", vec![("id", "everything")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _ = std::fs::remove_file(file);
}

/// The project's own small stdio server (end2end/mcp/test-server.mjs), for a tool list that
/// changes and a server that crashes.
fn test_server(id: &str) -> ServerSpec {
    let node = node().display().to_string();
    stdio(id, &node, &[&path("end2end/mcp/test-server.mjs")], &[])
}

async fn until_tools(mcp: &Mcp, user: Uuid, server: &str, wanted: impl Fn(&[&str]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views = mcp.servers(user).await.unwrap();
        let view = views.into_iter().find(|v| v.id == server).unwrap();
        if wanted(&tool_names(&view)) {
            return;
        }
        assert!(Instant::now() < deadline, "{:?}", tool_names(&view));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_changed_tool_list_is_fetched_again(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let mcp = mcp(&pool, vec![test_server("test")]);
    mcp.connect(alice, "test").await.unwrap();
    let view = until(&mcp, alice, "test", connected).await;
    assert!(!tool_names(&view).contains(&"shiny"));
    let added = mcp
        .call(alice, "test", "add-tool", args(json!({"name": "shiny"})))
        .await
        .unwrap();
    assert_eq!(added.text(), "added shiny");
    // notifications/tools/list_changed → tools/list again.
    until_tools(&mcp, alice, "test", |names| names.contains(&"shiny")).await;
    let ran = mcp.call(alice, "test", "shiny", Map::new()).await.unwrap();
    assert_eq!(ran.text(), "shiny ran");
    mcp.shutdown().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_stdio_server_that_crashes_shows_why_and_is_started_again(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let mcp = mcp(&pool, vec![test_server("test")]);
    mcp.connect(alice, "test").await.unwrap();
    until(&mcp, alice, "test", connected).await;
    let first = mcp
        .call(alice, "test", "pid", Map::new())
        .await
        .unwrap()
        .text();

    let crashed = mcp.call(alice, "test", "crash", Map::new()).await;
    assert!(crashed.is_err(), "the call dies with the server");
    let view = until(&mcp, alice, "test", |s| matches!(s, Status::Failed { .. })).await;
    let Status::Failed { reason } = view.status else {
        unreachable!()
    };
    assert!(
        reason.contains("closed") || reason.contains("ended"),
        "{reason}"
    );

    until(&mcp, alice, "test", connected).await;
    let second = mcp
        .call(alice, "test", "pid", Map::new())
        .await
        .unwrap()
        .text();
    assert_ne!(first, second, "a new process serves");
    assert_eq!(
        mcp.call(alice, "test", "echo", args(json!({"message": "back"})))
            .await
            .unwrap()
            .text(),
        "Echo: back"
    );
    mcp.shutdown().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_idle_connection_closes_and_opens_again_when_a_tool_is_used(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let marker = format!("marker-{}", Uuid::new_v4());
    let mcp = mcp_with(
        &pool,
        vec![everything_stdio("everything", &marker)],
        Settings {
            idle_timeout: Some(Duration::from_millis(1500)),
            ..settings()
        },
    );
    mcp.connect(alice, "everything").await.unwrap();
    until(&mcp, alice, "everything", connected).await;
    assert!(!leftovers(&marker).0.is_empty());

    let idle = until(&mcp, alice, "everything", |s| *s == Status::Idle).await;
    assert!(tool_names(&idle).contains(&"echo"), "its tools are kept");
    until_no_leftovers(&marker).await;

    let output = mcp
        .call(
            alice,
            "everything",
            "echo",
            args(json!({"message": "awake"})),
        )
        .await
        .unwrap();
    assert_eq!(output.text(), "Echo: awake");
    assert_eq!(
        mcp.servers(alice).await.unwrap()[0].status,
        Status::Connected
    );
    mcp.shutdown().await;
    until_no_leftovers(&marker).await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn personal_servers_are_checked_where_they_point_and_seen_by_their_owner_alone(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let (alice, bob) = (
        user(&db, "alice", "Alice").await,
        user(&db, "bob", "Bob").await,
    );
    let http_server = EverythingHttp::start(0);
    let strict = mcp(&pool, vec![]);
    for (url, why) in [
        (http_server.url.as_str(), "loopback"),
        ("http://localhost:9/mcp", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.8/mcp", "private"),
        ("ftp://example.com/", "http://"),
    ] {
        let error = strict
            .add_personal(alice, "Mine", "", url, None, BTreeMap::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(why), "{url}: {error}");
    }
    assert!(
        strict.servers(alice).await.unwrap().is_empty(),
        "nothing refused is stored"
    );

    // An administrator allows loopback (as a deployment with tools on the same host might).
    let allowing = mcp_with(
        &pool,
        vec![],
        Settings {
            addresses: AddressPolicy::parse("127.0.0.1/32").unwrap(),
            ..settings()
        },
    );
    let id = allowing
        .add_personal(
            alice,
            "My Everything",
            "Alice's own",
            &http_server.url,
            Some("t0ken".into()),
            BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(id, "my-my-everything");
    let mine = allowing.servers(alice).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].source, Source::Personal);
    assert_eq!(mine[0].url.as_deref(), Some(http_server.url.as_str()));
    assert!(
        allowing.servers(bob).await.unwrap().is_empty(),
        "Bob sees none of Alice's"
    );
    assert!(
        !allowing.connect(bob, &id).await.unwrap(),
        "Bob cannot connect to it"
    );
    assert!(
        !allowing.delete_personal(bob, &id).await.unwrap(),
        "nor remove it"
    );
    assert!(
        allowing
            .call(bob, &id, "echo", args(json!({"message": "hi"})))
            .await
            .is_err()
    );

    assert!(allowing.connect(alice, &id).await.unwrap());
    until(&allowing, alice, &id, connected).await;
    let output = allowing
        .call(alice, &id, "echo", args(json!({"message": "mine"})))
        .await
        .unwrap();
    assert_eq!(output.text(), "Echo: mine");
    allowing.shutdown().await;

    // The check is made again at connect time, on the resolved address: without the allowance,
    // the stored server is refused when it would connect.
    let view = until(&strict, alice, &id, |s| matches!(s, Status::Failed { .. })).await;
    let Status::Failed { reason } = view.status else {
        unreachable!()
    };
    assert!(reason.contains("loopback"), "{reason}");
    // A person's own server is theirs: its id is not told to operators.
    assert!(strict.failing_registry_servers().is_empty());
    strict.shutdown().await;

    assert!(strict.delete_personal(alice, &id).await.unwrap());
    assert!(strict.servers(alice).await.unwrap().is_empty());

    // A person's own servers are limited in number.
    for n in 0..domain::mcp::MAX_PERSONAL_SERVERS {
        let added = allowing
            .add_personal(
                alice,
                "Same name",
                "",
                &http_server.url,
                None,
                BTreeMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            added,
            if n == 0 {
                "my-same-name".to_owned()
            } else {
                format!("my-same-name-{}", n + 1)
            }
        );
    }
    let error = allowing
        .add_personal(
            alice,
            "One more",
            "",
            &http_server.url,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("Remove one"), "{error}");
    assert!(allowing.servers(bob).await.unwrap().is_empty());
}

/// A Streamable HTTP endpoint that records the headers of every request and refuses it, to see
/// what a connection sends.
async fn recording_server() -> (String, support::Seen) {
    let (base, seen) = support::recorder(axum::Router::new(), "/mcp").await;
    (format!("{base}/mcp"), seen)
}

/// The server with this id in a `mcp/servers` or `mcp/admin/servers` answer.
fn entry<'a>(servers: &'a Value, id: &str) -> &'a Value {
    servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {servers}"))
}

/// An administrator who has signed in once.
async fn admin(db: &Database) -> domain::users::User {
    use domain::users::{self, Identity, Role, RoleDecision};
    let identity = Identity {
        issuer: "https://id.example.com".into(),
        subject: "root".into(),
        name: "Ada Admin".into(),
        ..Identity::default()
    };
    users::sign_in(db, &identity, RoleDecision::Fixed(Role::Admin))
        .await
        .unwrap()
}

/// The registry over the HTTP API: administrators keep it, secrets are stored encrypted and never
/// shown back, everyone else may only connect.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn administrators_keep_the_registry_and_its_secrets_stay_secret(pool: PgPool) {
    use reqwest::StatusCode;
    use support::{call, listener, person, start_app};

    let (listener, _) = listener().await;
    let app = start_app(pool.clone(), listener, &[], &[]).await;
    let admin_id = admin(&app.db).await.id;
    let admin = domain::tokens::create(&app.db, admin_id, "script")
        .await
        .unwrap()
        .secret;
    let (_, bob) = person(&app, "bob", "bob").await;
    let client = reqwest::Client::new();
    let api = |token: &str, endpoint: &'static str, form: Vec<(&'static str, String)>| {
        let (client, base, token) = (client.clone(), app.base.clone(), token.to_owned());
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(&client, &base, endpoint, Some(&token), &form).await
        }
    };
    // Bob's servers, once `wanted` holds of them.
    let bobs_servers_once = |wanted: fn(&Value) -> bool| {
        let api = &api;
        let bob = bob.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (_, servers) = api(&bob, "mcp/servers", vec![]).await;
                if wanted(&servers) {
                    return servers;
                }
                assert!(Instant::now() < deadline, "{servers}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (recorder, seen) = recording_server().await;
    let node = node().display().to_string();
    let script = path("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let stdio_form = |id: &str, secret: &str| {
        vec![
            ("id", id.to_owned()),
            ("name", "Everything".to_owned()),
            ("transport", "stdio".to_owned()),
            ("command", node.clone()),
            ("args", format!("{script}\nstdio")),
            ("env", "PLAIN=visible".to_owned()),
            ("secret_env", format!("API_KEY={secret}")),
        ]
    };

    // Not an administrator: no registry, no stdio server (it would start a process here).
    let (status, body) = api(&bob, "mcp/admin/servers", vec![]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    let (status, _) = api(&bob, "mcp/admin/save", stdio_form("sneaky", "x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, servers) = api(&bob, "mcp/servers", vec![]).await;
    assert_eq!(servers, json!([]), "nothing was added");

    let (status, body) = api(
        &admin,
        "mcp/admin/save",
        stdio_form("everything", "s3cret-env"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let remote = vec![
        ("id", "remote".into()),
        ("name", "Remote".into()),
        ("transport", "http".into()),
        ("url", recorder.clone()),
        ("bearer_token", "s3cret-token".into()),
        ("headers", "X-Api-Key: s3cret-header".into()),
    ];
    let (status, body) = api(&admin, "mcp/admin/save", remote).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let personal_id = vec![
        ("id", "my-thing".into()),
        ("name", "Mine".into()),
        ("transport", "http".into()),
        ("url", recorder.clone()),
    ];
    let (status, body) = api(&admin, "mcp/admin/save", personal_id).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Shown back by name only, and stored encrypted.
    let (status, registry) = api(&admin, "mcp/admin/servers", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let text = registry.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("API_KEY") && text.contains("X-Api-Key") && text.contains("visible"));
    assert_eq!(entry(&registry, "remote")["bearer_token"], true);
    let rows: Vec<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT transport::text, secrets FROM mcp_servers")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    for (transport, secrets) in rows {
        assert!(!transport.contains("s3cret"), "{transport}");
        let secrets = secrets.expect("secrets are stored");
        assert!(!String::from_utf8_lossy(&secrets).contains("s3cret"));
    }

    // Bob connects to both; the HTTP one is sent its token and header (and refused by it).
    for id in ["everything", "remote"] {
        let (status, body) = api(&bob, "mcp/connect", vec![("id", id.into())]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let servers = bobs_servers_once(|servers| {
        entry(servers, "everything")["status"] == "connected"
            && entry(servers, "remote")["status"] == "failed"
    })
    .await;
    let tools = entry(&servers, "everything")["tools"].as_array().unwrap();
    assert!(tools.iter().any(|t| t["name"] == "get-env"));
    let why = entry(&servers, "remote")["error"].as_str().unwrap();
    assert!(
        why.contains("401") || why.to_lowercase().contains("unauthori"),
        "{why}"
    );
    let headers = seen
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("a request came");
    assert_eq!(headers["authorization"], "Bearer s3cret-token");
    assert_eq!(headers["x-api-key"], "s3cret-header");

    // Switched off: Bob's connection closes and he cannot connect.
    let mut off = stdio_form("everything", "");
    off.push(("previous", "everything".into()));
    off.push(("disabled", "true".into()));
    let (status, body) = api(&admin, "mcp/admin/save", off).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, servers) = api(&bob, "mcp/servers", vec![]).await;
    assert_eq!(entry(&servers, "everything")["enabled"], false);
    assert_eq!(entry(&servers, "everything")["status"], "disconnected");
    let (status, body) = api(&bob, "mcp/connect", vec![("id", "everything".into())]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("switched off"),
        "{body}"
    );

    // Back on (the empty secret keeps its value): Bob, who still wants it, is connected again.
    let mut on = stdio_form("everything", "");
    on.push(("previous", "everything".into()));
    let (status, _) = api(&admin, "mcp/admin/save", on).await;
    assert_eq!(status, StatusCode::OK);
    bobs_servers_once(|servers| entry(servers, "everything")["status"] == "connected").await;

    // Removing a server removes it for everyone; members cannot.
    let (status, _) = api(&bob, "mcp/admin/delete", vec![("id", "everything".into())]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(&admin, "mcp/admin/delete", vec![("id", "remote".into())]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, servers) = api(&bob, "mcp/servers", vec![]).await;
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != "remote")
    );
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn stdio_secrets_reach_the_process_and_another_key_cannot_read_them(pool: PgPool) {
    use domain::mcp::ServerInput;

    let db = Database::from_pool(pool.clone());
    let admin = admin(&db).await;
    let bob = user(&db, "bob", "Bob").await;
    let key_text = SecretKey::generate();
    let open = |key: &str| {
        Mcp::new(
            db.clone(),
            Registry::default(),
            SecretKey::from_base64(key).unwrap(),
            settings(),
        )
    };
    let mcp = open(&key_text);
    let node = node().display().to_string();
    let input = ServerInput {
        id: "everything".into(),
        name: "Everything".into(),
        description: String::new(),
        enabled: true,
        groups: Vec::new(),
        transport: Transport::Stdio {
            command: node,
            args: vec![
                path("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
                "stdio".into(),
            ],
            env: BTreeMap::new(),
            secret_env: BTreeMap::from([("SWITCHBOARD_TEST_SECRET".into(), "s3cret-env".into())]),
        },
    };
    let bob_user = domain::users::find(&db, bob).await.unwrap().unwrap();
    assert!(
        mcp.save_server(&bob_user, None, input.clone())
            .await
            .is_err(),
        "members cannot"
    );
    assert!(mcp.save_server(&admin, None, input).await.unwrap());
    mcp.connect(bob, "everything").await.unwrap();
    until(&mcp, bob, "everything", connected).await;
    let env = mcp
        .call(bob, "everything", "get-env", Map::new())
        .await
        .unwrap();
    assert!(
        env.text().contains("s3cret-env"),
        "the process gets its secret"
    );
    mcp.shutdown().await;

    // Another instance with another key: the server is listed, says why it cannot be used.
    let other = open(&SecretKey::generate());
    let view = until(&other, bob, "everything", |s| {
        matches!(s, Status::Failed { .. })
    })
    .await;
    let Status::Failed { reason } = view.status else {
        unreachable!()
    };
    assert!(reason.contains("SWITCHBOARD_SECRET_KEY"), "{reason}");
    let registry = other.admin_servers(&admin).await.unwrap();
    assert!(
        registry[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("SWITCHBOARD_SECRET_KEY")
    );
    other.shutdown().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn tools_can_be_switched_off_per_chat_by_the_chat_owner_alone(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let (alice, bob) = (
        user(&db, "alice", "Alice").await,
        user(&db, "bob", "Bob").await,
    );
    let chat = domain::chats::create(&db, alice, None).await.unwrap();
    let other_chat = domain::chats::create(&db, alice, None).await.unwrap();
    let mcp = mcp(&pool, vec![test_server("test")]);
    assert_eq!(mcp.chat_tools(alice, chat.id).await.unwrap(), Some(vec![]));
    mcp.connect(alice, "test").await.unwrap();
    until(&mcp, alice, "test", connected).await;

    let tools = mcp.chat_tools(alice, chat.id).await.unwrap().unwrap();
    assert!(
        tools
            .iter()
            .any(|t| t.tool.name == "echo" && t.enabled && t.server_id == "test")
    );
    assert!(tools.iter().all(|t| t.enabled), "all on by default");

    assert!(
        mcp.set_chat_tool(alice, chat.id, "test", "echo", false)
            .await
            .unwrap()
    );
    let tools = mcp.chat_tools(alice, chat.id).await.unwrap().unwrap();
    assert!(tools.iter().any(|t| t.tool.name == "echo" && !t.enabled));
    assert!(tools.iter().any(|t| t.tool.name == "pid" && t.enabled));
    let elsewhere = mcp.chat_tools(alice, other_chat.id).await.unwrap().unwrap();
    assert!(elsewhere.iter().all(|t| t.enabled), "only that chat");

    assert!(
        !mcp.set_chat_tool(bob, chat.id, "test", "pid", false)
            .await
            .unwrap()
    );
    assert_eq!(mcp.chat_tools(bob, chat.id).await.unwrap(), None);
    assert!(
        mcp.set_chat_tool(alice, chat.id, "test", "echo", true)
            .await
            .unwrap()
    );
    let tools = mcp.chat_tools(alice, chat.id).await.unwrap().unwrap();
    assert!(tools.iter().all(|t| t.enabled));
    mcp.shutdown().await;
}

/// What a tool returns reaches the model and the person as it is: text, an image (inline for the
/// person, in words for the model), structured content (given to the model too), a resource link
/// and an embedded resource, and a tool's own failure.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn what_a_tool_returns_is_kept_in_every_kind(pool: PgPool) {
    use protocol::ResultPart;
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let mcp = mcp(&pool, vec![test_server("test")]);
    mcp.connect(alice, "test").await.unwrap();
    until(&mcp, alice, "test", connected).await;
    let call = |tool: &'static str, arguments: Value| {
        let mcp = mcp.clone();
        async move {
            mcp.call(alice, "test", tool, args(arguments))
                .await
                .unwrap()
        }
    };

    let picture = call("picture", json!({})).await;
    let parts = picture.parts();
    assert_eq!(
        parts[0],
        ResultPart::Text {
            text: "Here is the picture.".into()
        }
    );
    let ResultPart::Image { mime_type, data } = &parts[1] else {
        panic!("{parts:?}")
    };
    assert_eq!(mime_type, "image/png");
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let told = picture.for_model();
    assert!(
        told.contains("[The tool returned an image (image/png"),
        "{told}"
    );
    assert!(!told.contains(data.as_str()), "no base64 for the model");

    let weather = call("weather", json!({"city": "Paris"})).await;
    let told = weather.for_model();
    assert!(told.starts_with("Paris: 21.5 °C, clear"), "{told}");
    assert!(told.contains("Structured result:\n{"), "{told}");
    assert!(told.contains("\"celsius\": 21.5"), "{told}");
    assert!(weather.parts().iter().any(
        |p| matches!(p, ResultPart::Structured { json } if json.contains("\"sky\": \"clear\""))
    ));

    let references = call("references", json!({})).await;
    let parts = references.parts();
    assert_eq!(
        parts[0],
        ResultPart::Link {
            uri: "https://example.com/handbook.pdf".into(),
            name: "handbook.pdf".into(),
            description: Some("The handbook".into()),
        }
    );
    assert!(
        matches!(&parts[1], ResultPart::Resource { uri, text, .. } if uri == "file:///notes/today.md" && text == "Buy milk.")
    );
    let told = references.for_model();
    assert!(
        told.contains("Resource link: handbook.pdf <https://example.com/handbook.pdf>"),
        "{told}"
    );
    assert!(told.contains("Buy milk."), "{told}");

    let oops = call("oops", json!({})).await;
    assert!(oops.is_error);
    assert_eq!(oops.for_model(), "The disk is full.");
    mcp.shutdown().await;
}

/// One person may have so many servers connected at once: one more is refused with a message
/// that says what to do; connecting one already connected again is no new connection.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn the_servers_one_person_connects_are_capped(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let (alice, bob) = (
        user(&db, "alice", "Alice").await,
        user(&db, "bob", "Bob").await,
    );
    let mcp = mcp_with(
        &pool,
        vec![test_server("one"), test_server("two")],
        Settings {
            max_connections: 1,
            ..settings()
        },
    );
    assert!(mcp.connect(alice, "one").await.unwrap());
    assert!(
        mcp.connect(alice, "one").await.unwrap(),
        "again: the same one"
    );
    let refused = mcp.connect(alice, "two").await.unwrap_err().to_string();
    assert!(
        refused.contains("You have 1 tool servers connected, the most"),
        "{refused}"
    );
    assert!(refused.contains("Disconnect one"), "{refused}");
    assert!(
        mcp.settled(alice, "two", Duration::from_millis(10))
            .await
            .is_none()
    );
    // Bob's count is his own.
    assert!(mcp.connect(bob, "two").await.unwrap());
    // Many at once cannot pass the cap together.
    mcp.disconnect(alice, "one").await.unwrap();
    let (a, b) = tokio::join!(mcp.connect(alice, "one"), mcp.connect(alice, "two"));
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    mcp.shutdown().await;
}

/// The requests a Streamable HTTP test server logged (`{http, session}`), in order.
fn http_log(log: &std::path::Path) -> Vec<(String, Option<String>)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["http"].is_string())
        .map(|v| {
            (
                v["http"].as_str().unwrap().to_owned(),
                v["session"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

async fn until_deleted(log: &std::path::Path, after: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = http_log(log);
        if let Some((_, Some(session))) = seen[after.min(seen.len())..]
            .iter()
            .find(|(method, _)| method == "DELETE")
        {
            return session.clone();
        }
        assert!(Instant::now() < deadline, "no DELETE: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The project's test server over Streamable HTTP (end2end/mcp/test-server.mjs), logging each
/// request it gets to a file; stopped when dropped.
struct LoggingHttp {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl LoggingHttp {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let mut env = env.to_vec();
        env.push(("TOOL_LOG", log.to_str().unwrap()));
        let (child, ready) = start_script_with_env("end2end/mcp/test-server.mjs", &["http"], &env);
        let url = ready["url"].as_str().unwrap().to_owned();
        Self {
            child,
            url,
            log,
            _dir: dir,
        }
    }
}

impl Drop for LoggingHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server of an earlier protocol that fails the newest one's discovery outright (a 500, not
/// "method not found") is met with the `initialize` handshake alone, and works.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_server_that_fails_discovery_is_met_with_the_handshake(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let server = LoggingHttp::start(&[("DISCOVER_FAILS", "1")]);
    let mcp = mcp_with(&pool, vec![http("old", &server.url)], settings());
    mcp.connect(alice, "old").await.unwrap();
    until(&mcp, alice, "old", connected).await;
    let output = mcp
        .call(alice, "old", "echo", args(json!({"message": "hi"})))
        .await
        .unwrap();
    assert_eq!(output.text(), "Echo: hi");
    let failed = std::fs::read_to_string(&server.log).unwrap();
    assert!(failed.contains(r#""discover":"failed""#), "{failed}");
    mcp.shutdown().await;
}

/// A remote session is ended on the server (`DELETE` with its session id) when the person
/// disconnects and when the connection idles out; the next use opens a new one.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn remote_sessions_are_deleted_on_disconnect_and_idle_close(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let server = LoggingHttp::start(&[]);
    let log = &server.log;
    let mcp = mcp_with(
        &pool,
        vec![http("remote", &server.url)],
        Settings {
            idle_timeout: Some(Duration::from_millis(1500)),
            ..settings()
        },
    );
    mcp.connect(alice, "remote").await.unwrap();
    until(&mcp, alice, "remote", connected).await;
    let first = http_log(log)
        .into_iter()
        .find_map(|(_, session)| session)
        .expect("a session");

    // Idle: the session is deleted, and the next call opens another.
    until(&mcp, alice, "remote", |s| *s == Status::Idle).await;
    assert_eq!(until_deleted(log, 0).await, first);
    let seen = http_log(log).len();
    let output = mcp
        .call(alice, "remote", "echo", args(json!({"message": "again"})))
        .await
        .unwrap();
    assert_eq!(output.text(), "Echo: again");

    // Disconnect: that one is deleted too.
    mcp.disconnect(alice, "remote").await.unwrap();
    let second = until_deleted(log, seen).await;
    assert_ne!(second, first);
    mcp.shutdown().await;
}

/// A call that asks for progress hears what its server reports, as it comes.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_calls_progress_is_heard_as_its_server_reports_it(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let mcp = mcp(&pool, vec![test_server("test")]);
    mcp.connect(alice, "test").await.unwrap();
    until(&mcp, alice, "test", connected).await;
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hear = heard.clone();
    let sink: domain::mcp::ProgressSink =
        std::sync::Arc::new(move |p: protocol::Progress| hear.lock().unwrap().push(p.words()));
    let output = mcp
        .call_reporting(
            alice,
            "test",
            "steps",
            args(json!({"count": 3})),
            domain::mcp::Hooks {
                progress: Some(sink),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let domain::mcp::Called::Output(output) = output else {
        panic!("the tool asked instead of answering")
    };
    assert_eq!(output.text(), "did 3 steps");
    assert_eq!(
        *heard.lock().unwrap(),
        ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    );
    mcp.shutdown().await;
}

/// A server's resources and prompts are listed at connect, read and run for the person, and
/// listed again when the server says they changed; server-everything's too.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn resources_and_prompts_are_listed_read_run_and_followed(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let (alice, bob) = (
        user(&db, "alice", "Alice").await,
        user(&db, "bob", "Bob").await,
    );
    let mcp = mcp(
        &pool,
        vec![
            test_server("test"),
            everything_stdio("everything", "offerings"),
        ],
    );
    mcp.connect(alice, "test").await.unwrap();
    mcp.connect(alice, "everything").await.unwrap();
    let view = until(&mcp, alice, "test", connected).await;
    assert_eq!(view.resources.len(), 1, "{:?}", view.resources);
    assert_eq!(view.resources[0].uri, "test://notes");
    assert_eq!(view.resources[0].title.as_deref(), Some("Notes"));
    let greet = &view.prompts[0];
    assert_eq!(greet.name, "greet");
    assert_eq!(greet.arguments[0].name, "who");
    assert!(greet.arguments[0].required);

    let read = mcp
        .read_resource(alice, "test", "test://notes")
        .await
        .unwrap();
    assert_eq!(read.text, "The meeting is at noon.");
    assert!(!read.cut);
    let prompt = mcp
        .get_prompt(alice, "test", "greet", args(json!({"who": "Ada"})))
        .await
        .unwrap();
    assert_eq!(prompt, "Please greet Ada warmly.");
    let missing = mcp
        .get_prompt(alice, "test", "greet", Map::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("could not give the prompt 'greet'"),
        "{missing}"
    );
    // Bob is not connected: nothing of Alice's connection is his.
    let refused = mcp
        .read_resource(bob, "test", "test://notes")
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not connected"), "{refused}");

    // notifications/resources/list_changed → listed again.
    mcp.call(
        alice,
        "test",
        "add-resource",
        args(json!({"name": "later"})),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let views = mcp.servers(alice).await.unwrap();
        let test = views.iter().find(|v| v.id == "test").unwrap();
        if test.resources.iter().any(|r| r.uri == "test://later") {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", test.resources);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The reference server's documents and prompts.
    let everything = until(&mcp, alice, "everything", connected).await;
    let document = everything
        .resources
        .iter()
        .find(|r| r.uri.starts_with("demo://resource/static/document/"))
        .unwrap_or_else(|| panic!("{:?}", everything.resources));
    let read = mcp
        .read_resource(alice, "everything", &document.uri)
        .await
        .unwrap();
    assert!(!read.text.trim().is_empty());
    let weather = mcp
        .get_prompt(
            alice,
            "everything",
            "args-prompt",
            args(json!({"city": "Oslo"})),
        )
        .await
        .unwrap();
    assert_eq!(weather, "What's weather in Oslo?");
    mcp.shutdown().await;
}

/// A server's question during a call reaches the call's asker, and its reply the server; a call
/// that cannot ask has the question declined.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_servers_question_reaches_the_calls_asker_and_its_reply_the_server(pool: PgPool) {
    use domain::mcp::elicitation::{Asker, Question, Reply};
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let mcp = mcp(&pool, vec![test_server("test")]);
    mcp.connect(alice, "test").await.unwrap();
    until(&mcp, alice, "test", connected).await;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Question>::new()));
    let heard = asked.clone();
    let asker: Asker = std::sync::Arc::new(move |question: Question| {
        heard.lock().unwrap().push(question);
        Box::pin(async {
            Reply {
                action: "accept".into(),
                content: Some(json!({"name": "Ada"})),
            }
        })
    });
    let output = mcp
        .call_reporting(
            alice,
            "test",
            "ask",
            Map::new(),
            domain::mcp::Hooks {
                ask: Some(asker),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let domain::mcp::Called::Output(output) = output else {
        panic!("the tool asked instead of answering")
    };
    assert_eq!(output.text(), r#"accept: {"name":"Ada"}"#);
    let question = asked.lock().unwrap()[0].clone();
    assert_eq!(question.message, "Who are you?");
    assert_eq!(question.schema.unwrap()["required"], json!(["name"]));

    let unasked = mcp.call(alice, "test", "ask", Map::new()).await.unwrap();
    assert_eq!(unasked.text(), "decline: null");
    mcp.shutdown().await;
}
