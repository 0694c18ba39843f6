//! The trust boundary around MCP tool servers: what a stdio server is given (environment canaries,
//! its own directory), what a hostile server can make Switchboard hold (end2end/mcp/hostile-server.mjs),
//! where registry servers' requests may be redirected, and the personal-server cap under
//! concurrent adds.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use domain::Database;
use domain::mcp::{
    AddressPolicy, MAX_PERSONAL_SERVERS, Mcp, Registry, ServerSpec, ServerView, Settings, Source,
    Status, Transport,
};
use domain::secrets::SecretKey;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use support::{node, recorder, user, workspace_root};
use uuid::Uuid;

fn path(relative: &str) -> String {
    workspace_root().join(relative).display().to_string()
}

fn stdio(id: &str, args: &[&str], env: &[(&str, &str)], secret_env: &[(&str, &str)]) -> ServerSpec {
    let pairs = |list: &[(&str, &str)]| -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    ServerSpec::new(
        id,
        Transport::Stdio {
            command: node().display().to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: pairs(env),
            secret_env: pairs(secret_env),
        },
    )
}

fn hostile(id: &str, mode: &str) -> ServerSpec {
    stdio(
        id,
        &[&path("end2end/mcp/hostile-server.mjs"), mode],
        &[],
        &[],
    )
}

fn http(id: &str, url: &str, headers: &[(&str, &str)]) -> ServerSpec {
    ServerSpec::new(
        id,
        Transport::Http {
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bearer_token: None,
            oauth_client_id: None,
            oauth_client_secret: None,
        },
    )
}

/// Settings for tests, with stdio servers' directories below `work_dir/mcp` (Switchboard makes
/// that one private itself).
fn settings(work_dir: &Path) -> Settings {
    Settings {
        connect_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(20),
        max_backoff: Duration::from_secs(1),
        idle_timeout: None,
        work_dir: work_dir.join("mcp"),
        ..Settings::default()
    }
}

fn mcp(pool: &PgPool, servers: Vec<ServerSpec>, settings: Settings) -> Mcp {
    Mcp::new(
        Database::from_pool(pool.clone()),
        Registry::new(servers).unwrap(),
        SecretKey::from_bytes(&[7; 32]).unwrap(),
        settings,
    )
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// The highest resident memory seen since it started, sampled every 20 ms.
struct PeakMemory {
    start: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeakMemory {
    fn watch() -> Self {
        let start = rss();
        let (peak, stop) = (
            Arc::new(AtomicU64::new(start)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { start, peak, stop }
    }

    fn growth(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).saturating_sub(self.start)
    }

    /// Fails the test at once when memory grew past `limit` (so an unbounded server is caught
    /// before it takes the machine down).
    fn assert_within(&self, limit: u64) {
        let growth = self.growth();
        assert!(
            growth <= limit,
            "memory grew by {} MB, more than {} MB",
            growth / 1_000_000,
            limit / 1_000_000
        );
    }
}

impl Drop for PeakMemory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Memory a hostile server may add to Switchboard's, all told: a few messages of the 16 MiB cap
/// in flight, and what the allocator keeps of them (an unbounded tool list grows 1 GB in 4 s).
const MEMORY_LIMIT: u64 = 200_000_000;

/// Waits until the server's status for the user matches, watching memory meanwhile.
async fn until(
    mcp: &Mcp,
    user: Uuid,
    server: &str,
    memory: Option<&PeakMemory>,
    wanted: impl Fn(&Status) -> bool,
) -> ServerView {
    let watch = || {
        if let Some(memory) = memory {
            memory.assert_within(MEMORY_LIMIT);
        }
    };
    support::until_mcp(mcp, user, server, watch, wanted).await
}

fn connected(status: &Status) -> bool {
    *status == Status::Connected
}

fn failed(view: &ServerView) -> &str {
    match &view.status {
        Status::Failed { reason } => reason,
        other => panic!("{} is {other:?}", view.id),
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_stdio_server_gets_only_what_it_is_given(pool: PgPool) {
    // A canary every test process has: the database's URL with its password.
    let database_url = std::env::var("DATABASE_URL").expect("tests run with DATABASE_URL");
    let db = Database::from_pool(pool.clone());
    let (alice, bob) = (
        user(&db, "alice", "Alice").await,
        user(&db, "bob", "Bob").await,
    );
    let work = tempfile::tempdir().unwrap();
    let everything = path("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let mcp = mcp(
        &pool,
        vec![
            stdio(
                "everything",
                &[&everything, "stdio"],
                &[("PLAIN", "given"), ("LANG", "en_GB.UTF-8")],
                &[("API_KEY", "s3cret-env")],
            ),
            stdio("test", &[&path("end2end/mcp/test-server.mjs")], &[], &[]),
        ],
        settings(work.path()),
    );
    for server in ["everything", "test"] {
        mcp.connect(alice, server).await.unwrap();
        until(&mcp, alice, server, None, connected).await;
    }

    let printed = mcp
        .call(alice, "everything", "get-env", Map::new())
        .await
        .unwrap()
        .text();
    assert!(
        !printed.contains("DATABASE_URL") && !printed.contains(&database_url),
        "{printed}"
    );
    let env: BTreeMap<String, String> = serde_json::from_str(&printed).unwrap();
    let own_dir = work.path().join("mcp/everything").join(alice.to_string());
    let expected = BTreeMap::from([
        ("PATH".to_owned(), std::env::var("PATH").unwrap()),
        ("HOME".to_owned(), own_dir.display().to_string()),
        // The server's own variables win over Switchboard's.
        ("LANG".to_owned(), "en_GB.UTF-8".to_owned()),
        ("PLAIN".to_owned(), "given".to_owned()),
        ("API_KEY".to_owned(), "s3cret-env".to_owned()),
    ]);
    assert_eq!(env, expected, "nothing but what it is given");

    // Its working directory is its own: private, per server and person, not Switchboard's.
    let pid = mcp
        .call(alice, "test", "pid", Map::new())
        .await
        .unwrap()
        .text();
    let proc = Path::new("/proc").join(pid.trim());
    let cwd = std::fs::read_link(proc.join("cwd")).unwrap();
    assert_eq!(cwd, work.path().join("mcp/test").join(alice.to_string()));
    assert_ne!(cwd, std::env::current_dir().unwrap());
    let mode = std::fs::metadata(&cwd).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    let environ = std::fs::read(proc.join("environ")).unwrap();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            String::from_utf8_lossy(v)
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names.len(), 3, "PATH, LANG and HOME alone: {names:?}");

    mcp.connect(bob, "test").await.unwrap();
    until(&mcp, bob, "test", None, connected).await;
    let bobs = mcp
        .call(bob, "test", "pid", Map::new())
        .await
        .unwrap()
        .text();
    let bobs_cwd = std::fs::read_link(Path::new("/proc").join(bobs.trim()).join("cwd")).unwrap();
    assert_eq!(bobs_cwd, work.path().join("mcp/test").join(bob.to_string()));
    mcp.shutdown().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_hostile_server_cannot_exhaust_memory_and_others_keep_being_served(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let (alice, bob) = (
        user(&db, "alice", "Alice").await,
        user(&db, "bob", "Bob").await,
    );
    let work = tempfile::tempdir().unwrap();
    let mcp = mcp(
        &pool,
        vec![
            hostile("endless", "endless"),
            hostile("many", "many"),
            hostile("wordy", "huge-descriptions"),
            hostile("hostile", "normal"),
            stdio("test", &[&path("end2end/mcp/test-server.mjs")], &[], &[]),
        ],
        settings(work.path()),
    );
    let watched = PeakMemory::watch();
    let memory = Some(&watched);
    mcp.connect(bob, "test").await.unwrap();
    until(&mcp, bob, "test", memory, connected).await;
    let bob_is_served = || async {
        let echo = mcp
            .call(bob, "test", "echo", args(json!({"message": "still here"})))
            .await
            .unwrap();
        assert_eq!(echo.text(), "Echo: still here");
    };

    for server in ["endless", "many", "wordy", "hostile"] {
        mcp.connect(alice, server).await.unwrap();
    }
    // A tool list without end, or too long, is refused with a reason.
    let endless = until(&mcp, alice, "endless", memory, |s| {
        matches!(s, Status::Failed { .. })
    })
    .await;
    assert!(
        failed(&endless).contains("did not end after 100 pages"),
        "{}",
        failed(&endless)
    );
    let many = until(&mcp, alice, "many", memory, |s| {
        matches!(s, Status::Failed { .. })
    })
    .await;
    assert!(
        failed(&many).contains("more than 1000 tools"),
        "{}",
        failed(&many)
    );
    // Descriptions of a megabyte are cut, with a note.
    let wordy = until(&mcp, alice, "wordy", memory, connected).await;
    let described = wordy.tools.iter().find(|t| t.name == "wordy-0").unwrap();
    let description = described.description.as_deref().unwrap();
    assert!(description.chars().count() < 4_100, "{}", description.len());
    assert!(description.contains("cut by Switchboard"));
    bob_is_served().await;

    // A result larger than a message may be ends the connection, which says why.
    until(&mcp, alice, "hostile", memory, connected).await;
    let flood = mcp
        .call(alice, "hostile", "flood", args(json!({"mb": 64})))
        .await
        .unwrap_err()
        .to_string();
    assert!(flood.contains("larger than 16.8 MB"), "{flood}");
    let flooded = until(&mcp, alice, "hostile", memory, |s| {
        matches!(s, Status::Failed { .. })
    })
    .await;
    assert!(
        failed(&flooded).contains("larger than 16.8 MB"),
        "{}",
        failed(&flooded)
    );
    bob_is_served().await;

    // It comes back; a large result that fits in a message reaches the model cut, with a note.
    until(&mcp, alice, "hostile", memory, connected).await;
    let big = mcp
        .call(alice, "hostile", "big", args(json!({"kb": 2000})))
        .await
        .unwrap()
        .text();
    assert!(big.len() < 101_000, "{}", big.len());
    assert!(big.contains("[Switchboard cut this result"), "{big:.200}");

    // A flood of list_changed notices makes a few fetches, not one each.
    let spam = mcp
        .call(alice, "hostile", "spam", args(json!({"count": 5000})))
        .await
        .unwrap();
    assert_eq!(spam.text(), "sent 5000");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls: u32 = mcp
        .call(alice, "hostile", "list-calls", Map::new())
        .await
        .unwrap()
        .text()
        .parse()
        .unwrap();
    assert!(calls <= 4, "{calls} tools/list requests");
    bob_is_served().await;
    eprintln!("memory grew by {} MB at most", watched.growth() / 1_000_000);
    watched.assert_within(MEMORY_LIMIT);
    mcp.shutdown().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn registry_servers_follow_no_redirect_to_another_origin(pool: PgPool) {
    use axum::response::Redirect;
    use axum::routing::any;

    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let (elsewhere, elsewhere_saw) = recorder(axum::Router::new(), "/mcp").await;
    let away = format!("{elsewhere}/mcp");
    let (base, here_saw) = recorder(
        axum::Router::new()
            .route(
                "/away",
                any(move || async move { Redirect::temporary(&away) }),
            )
            .route("/here", any(|| async { Redirect::temporary("/mcp") })),
        "/mcp",
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let mcp = mcp(
        &pool,
        vec![
            http("away", &format!("{base}/away"), &[("X-Api-Key", "s3cret")]),
            http("here", &format!("{base}/here"), &[("X-Api-Key", "s3cret")]),
        ],
        settings(work.path()),
    );
    for server in ["away", "here"] {
        mcp.connect(alice, server).await.unwrap();
    }
    let is_failed = |s: &Status| matches!(s, Status::Failed { .. });
    let away = until(&mcp, alice, "away", None, is_failed).await;
    assert!(
        failed(&away).contains("another origin"),
        "{}",
        failed(&away)
    );
    assert!(
        elsewhere_saw.lock().unwrap().is_empty(),
        "no request (nor its key) went to the other origin"
    );
    // Within the origin (`/mcp` to `/mcp/`, as some servers answer), the redirect is followed.
    let here = until(&mcp, alice, "here", None, is_failed).await;
    assert!(failed(&here).contains("401"), "{}", failed(&here));
    let seen = here_saw.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the redirect was followed");
    assert_eq!(seen[0]["x-api-key"], "s3cret");
    mcp.shutdown().await;
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn concurrent_adds_cannot_pass_the_personal_server_cap(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let work = tempfile::tempdir().unwrap();
    let mcp = mcp(
        &pool,
        vec![],
        Settings {
            addresses: AddressPolicy::parse("127.0.0.1/32").unwrap(),
            ..settings(work.path())
        },
    );
    let adds = (0..MAX_PERSONAL_SERVERS + 10).map(|n| {
        let mcp = mcp.clone();
        tokio::spawn(async move {
            mcp.add_personal(
                alice,
                &format!("Server {n}"),
                "",
                "http://127.0.0.1:9/mcp",
                None,
                BTreeMap::new(),
            )
            .await
        })
    });
    let results = futures_util::future::join_all(adds).await;
    let refused: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.unwrap().err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(refused.len(), 10, "{refused:?}");
    assert!(
        refused.iter().all(|e| e.contains("Remove one")),
        "{refused:?}"
    );
    let own = mcp
        .servers(alice)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.source == Source::Personal)
        .count();
    assert_eq!(own, MAX_PERSONAL_SERVERS);
}

/// The hostile server over Streamable HTTP, until dropped.
struct HostileHttp {
    child: std::process::Child,
    url: String,
}

impl HostileHttp {
    /// `over`: `http` (answers as event streams) or `http-json` (as JSON bodies).
    fn start(over: &str) -> Self {
        let (child, ready) =
            support::start_script("end2end/mcp/hostile-server.mjs", &["normal", over]);
        Self {
            child,
            url: ready["url"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for HostileHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_message_over_http_is_capped_too(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    let alice = user(&db, "alice", "Alice").await;
    let (events, json) = (HostileHttp::start("http"), HostileHttp::start("http-json"));
    let work = tempfile::tempdir().unwrap();
    let mcp = mcp(
        &pool,
        vec![
            http("events", &events.url, &[]),
            http("json", &json.url, &[]),
        ],
        settings(work.path()),
    );
    let watched = PeakMemory::watch();
    for server in ["events", "json"] {
        mcp.connect(alice, server).await.unwrap();
        until(&mcp, alice, server, Some(&watched), connected).await;
        let started = std::time::Instant::now();
        let flood = mcp
            .call(alice, server, "flood", args(json!({"mb": 64})))
            .await
            .unwrap_err()
            .to_string();
        assert!(flood.contains("larger than 16.8 MB"), "{flood}");
        assert!(started.elapsed() < Duration::from_secs(10), "at once");
        watched.assert_within(MEMORY_LIMIT);
        let view = until(&mcp, alice, server, Some(&watched), |s| !connected(s)).await;
        assert!(failed(&view).contains("larger than 16.8 MB"), "{view:?}");
        until(&mcp, alice, server, Some(&watched), connected).await;
        let big = mcp
            .call(alice, server, "big", args(json!({"kb": 2000})))
            .await
            .unwrap()
            .text();
        assert!(big.contains("[Switchboard cut this result"), "{big:.200}");
    }
    mcp.shutdown().await;
}
