//! MCP connections against the official reference servers, installed by scripts/setup:
//! `@modelcontextprotocol/server-everything` over stdio and over Streamable HTTP,
//! `@modelcontextprotocol/server-memory` over stdio (npm) and `mcp-server-time` over stdio (PyPI).

mod support;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use domain::Database;
use domain::mcp::{Mcp, Registry, ServerSpec, ServerView, Settings, Status, Transport};
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
        },
        enabled: true,
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
        },
        enabled: true,
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
    }
}

fn mcp(pool: &PgPool, servers: Vec<ServerSpec>) -> Mcp {
    Mcp::new(
        Database::from_pool(pool.clone()),
        Registry::new(servers).unwrap(),
        settings(),
    )
}

/// Waits until the server's status for the user matches.
async fn until(
    mcp: &Mcp,
    user: Uuid,
    server: &str,
    wanted: impl Fn(&Status) -> bool,
) -> ServerView {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let views = mcp.servers(user).await.unwrap();
        let view = views.into_iter().find(|v| v.id == server).unwrap();
        if wanted(&view.status) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "{server} is still {:?}",
            view.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

    let _back = EverythingHttp::start(port);
    until(&mcp, alice, "everything-http", connected).await;
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
