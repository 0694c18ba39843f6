//! What a tool-server connection costs: connect + list tools through Switchboard's connection
//! manager (`domain::mcp::Mcp`, the code every user's connection runs: the stored intent, the
//! supervisor, the MCP handshake, every page of `tools/list`), for the reference server
//! `@modelcontextprotocol/server-everything` over stdio and over Streamable HTTP; then the memory
//! of idle connected users (this process's RSS growth over many users connected to one HTTP
//! server; the server's own process is not counted).
//!
//!     DATABASE_URL=postgres://... cargo bench -p server --bench mcp_connect [-- USERS]
//!
//! Needs the npm packages of scripts/setup. DATABASE_URL must let the bench create a database (it
//! makes `switchboard_bench_mcp`, fresh each time). USERS defaults to 500.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use domain::Database;
use domain::mcp::{Mcp, Registry, ServerSpec, Settings, Status, Transport};
use domain::secrets::SecretKey;
use domain::users::{Identity, Role, RoleDecision};
use uuid::Uuid;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Node.js scripts/setup installs, else the one on PATH.
fn node() -> String {
    let pinned = root().join(format!(
        ".tools/node/node_modules/node-linux-{}/bin/node",
        if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "x64"
        }
    ));
    if pinned.exists() {
        pinned.display().to_string()
    } else {
        "node".into()
    }
}

fn everything_script() -> String {
    root()
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
        .display()
        .to_string()
}

/// server-everything over Streamable HTTP on 127.0.0.1; killed when dropped.
struct HttpServer(Child, String);

impl HttpServer {
    fn start() -> Self {
        let mut child = Command::new(node())
            .arg(root().join("end2end/mcp/everything-http.mjs"))
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (run scripts/setup)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value =
            serde_json::from_str(&line).expect("server-everything started (run scripts/setup)");
        let url = ready["url"].as_str().unwrap().to_owned();
        Self(child, url)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn person(db: &Database, n: usize) -> Uuid {
    let identity = Identity {
        issuer: "https://bench.example.com".into(),
        subject: format!("user-{n}"),
        name: format!("User {n}"),
        ..Identity::default()
    };
    domain::users::sign_in(db, &identity, RoleDecision::Fixed(Role::User))
        .await
        .unwrap()
        .id
}

/// Connect + list tools once for a fresh user: the time until the connection is up with its tools.
async fn connect_once(mcp: &Mcp, user: Uuid, server: &str) -> Duration {
    let started = Instant::now();
    assert!(mcp.connect(user, server).await.unwrap());
    let status = mcp
        .settled(user, server, Duration::from_secs(30))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(status, Status::Connected, "{server}");
    took
}

/// `rounds` connects of fresh users, each disconnected again; p50 and p99.
async fn timed(
    mcp: &Mcp,
    db: &Database,
    server: &str,
    rounds: usize,
    first: usize,
) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let user = person(db, first + i).await;
        times.push(connect_once(mcp, user, server).await);
        mcp.disconnect(user, server).await.unwrap();
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

#[tokio::main]
async fn main() {
    let users: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let url = std::env::var("DATABASE_URL")
        .expect("set DATABASE_URL to a PostgreSQL server where the bench may create a database");
    let db = Database::fresh(&url, "switchboard_bench_mcp")
        .await
        .unwrap();

    let http = HttpServer::start();
    let registry = Registry::new(vec![
        ServerSpec::new(
            "stdio",
            Transport::Stdio {
                command: node(),
                args: vec![everything_script(), "stdio".into()],
                env: Default::default(),
                secret_env: Default::default(),
            },
        ),
        ServerSpec::new(
            "http",
            Transport::Http {
                url: http.1.clone(),
                headers: Default::default(),
                bearer_token: None,
                oauth_client_id: None,
                oauth_client_secret: None,
            },
        ),
    ])
    .unwrap();
    let mcp = Mcp::new(
        db.clone(),
        registry,
        SecretKey::from_base64(&SecretKey::generate()).unwrap(),
        Settings {
            idle_timeout: None,
            ..Settings::default()
        },
    );

    // Warm-up: the first connections pay for lazy set-up (TLS provider, pools, the server's JIT).
    timed(&mcp, &db, "http", 20, 1_000_000).await;
    timed(&mcp, &db, "stdio", 2, 1_100_000).await;
    let (http_p50, http_p99) = timed(&mcp, &db, "http", 200, 2_000_000).await;
    let (stdio_p50, stdio_p99) = timed(&mcp, &db, "stdio", 20, 3_000_000).await;
    println!("connect + list tools, through the connection manager (fresh user each time):");
    println!("| transport | connections | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| Streamable HTTP (loopback) | 200 | {} | {} |",
        ms(http_p50),
        ms(http_p99)
    );
    println!(
        "| stdio (starts node) | 20 | {} | {} |",
        ms(stdio_p50),
        ms(stdio_p99)
    );

    // Memory: many users, each with their own idle connection to the one HTTP server.
    let people: Vec<Uuid> = {
        let mut people = Vec::with_capacity(users);
        for n in 0..users {
            people.push(person(&db, n).await);
        }
        people
    };
    // Let freed memory settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    let started = Instant::now();
    for chunk in people.chunks(25) {
        futures_util::future::join_all(chunk.iter().map(|u| connect_once(&mcp, *u, "http"))).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    let tools = mcp.servers(people[0]).await.unwrap()[1].tools.len();
    println!();
    println!(
        "{users} users connected to one Streamable HTTP server ({tools} tools each) in {:.1} s: RSS {} MiB → {} MiB, {:.0} KiB per connected user",
        took.as_secs_f64(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / users as f64
    );
    mcp.shutdown().await;
}
