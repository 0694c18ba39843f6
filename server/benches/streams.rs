//! Event streams at scale: the `switchboard` binary holds N open event streams (spread over some
//! chats) while answers stream into them; reported are the server's memory per idle stream and
//! the delay from a token leaving the model to its arrival at every stream that follows the chat.
//!
//!     DATABASE_URL=postgres://... cargo bench -p server --bench streams [-- STREAMS [CHATS [ACTIVE]]]
//!
//! Defaults: 2,000 streams over 100 chats, answers written in 10 of them at once, 50 tokens each,
//! one every 10 ms. `SWITCHBOARD_BIN` picks the binary to measure (default: this build's), so a
//! change can be measured against a copy of the binary before it. Everything is on loopback, and
//! the whole run is bounded (it gives up after two minutes). DATABASE_URL must let the bench make a
//! database (`switchboard_bench_streams`, fresh each time).
//!
//! A token's model-side time travels in its own text (`t<microseconds since the epoch>`), so the
//! delay is measured on one clock: this process's, which is both the model and the readers.

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::IntoResponse;
use axum::routing::post;
use domain::Database;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const TOKENS: usize = 50;
const TOKEN_EVERY: Duration = Duration::from_millis(10);
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The model: an OpenAI-compatible streamed answer whose tokens say when they were sent.
async fn completions() -> impl IntoResponse {
    let chunks = futures_util::stream::unfold(0, |i| async move {
        if i > TOKENS {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(TOKEN_EVERY).await;
        }
        let data = if i == TOKENS {
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_owned()
        } else {
            format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{} \"}},\"finish_reason\":null}}]}}\n\n",
                micros_now()
            )
        };
        Some((Ok::<_, Infallible>(Bytes::from(data)), i + 1))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(chunks),
    )
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One event stream, read until the bench ends: each token's delay goes to `delays`.
async fn follow(
    address: String,
    chat: String,
    opened: mpsc::Sender<()>,
    delays: mpsc::UnboundedSender<u64>,
) {
    let mut tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let request = format!(
        "GET /api/chats/{chat}/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(tcp).lines();
    let status = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "a stream was refused: {status}"
    );
    let _ = opened.send(()).await;
    while let Ok(Some(line)) = lines.next_line().await {
        // `data: {"id":...,"type":"token",...,"text":"t1733400000000000 "}`
        let Some(at) = line.find("\"text\":\"t") else {
            continue;
        };
        let sent: String = line[at + 9..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(sent) = sent.parse::<u64>() {
            let _ = delays.send(micros_now().saturating_sub(sent));
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let streams = numbers.first().copied().unwrap_or(2_000);
    let chats = numbers.get(1).copied().unwrap_or(100).clamp(1, streams);
    let active = numbers.get(2).copied().unwrap_or(10).clamp(1, chats);
    let url = std::env::var("DATABASE_URL")
        .expect("set DATABASE_URL to a PostgreSQL server where the bench may create a database");
    let db_name = "switchboard_bench_streams";
    Database::fresh(&url, db_name).await.unwrap();
    let mut db_url: url::Url = url.parse().unwrap();
    db_url.set_path(db_name);

    let llm = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let llm_url = format!("http://{}/v1", llm.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            llm,
            Router::new().route("/v1/chat/completions", post(completions)),
        )
        .await
        .unwrap()
    });

    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("pkg")).unwrap();
    std::fs::write(site.path().join("pkg/switchboard.css"), "").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let bin = std::env::var_os("SWITCHBOARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_switchboard")));
    let server = Server(
        Command::new(&bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", db_url.as_str())
            .env("SWITCHBOARD_SITE_ROOT", site.path())
            .env("SWITCHBOARD_LISTEN", &address)
            .env(
                "SWITCHBOARD_SECRET_KEY",
                domain::secrets::SecretKey::generate(),
            )
            .env("SWITCHBOARD_LLM_PROVIDERS", "bench")
            .env("SWITCHBOARD_LLM_BENCH_BASE_URL", &llm_url)
            .env("SWITCHBOARD_LLM_BENCH_MODELS", "scripted")
            // The bench is one person with many streams, asking as fast as it can.
            .env("SWITCHBOARD_MAX_EVENT_STREAMS", (streams + 10).to_string())
            .env("SWITCHBOARD_RATE_LIMIT_PER_SECOND", "0")
            .env("SWITCHBOARD_DATABASE_MAX_CONNECTIONS", "32")
            .env("RUST_LOG", "warn")
            .current_dir(site.path())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display())),
    );
    let pid = server.0.id();
    let base = format!("http://{address}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api = |endpoint: &str, form: Vec<(&'static str, String)>| {
        let request = http.post(format!("{base}/api/{endpoint}")).form(&form);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let mut chat_ids = Vec::new();
    for _ in 0..chats {
        let chat = api("chats/create", vec![]).await;
        chat_ids.push(chat["id"].as_str().unwrap().to_owned());
    }
    let bench_started = Instant::now();
    let (delays_tx, mut delays_rx) = mpsc::unbounded_channel();
    let (opened_tx, mut opened_rx) = mpsc::channel(streams);

    // Warm up: one stream and one answer, so that what is measured next is the streams alone.
    tokio::spawn(follow(
        address.clone(),
        chat_ids[0].clone(),
        opened_tx.clone(),
        delays_tx.clone(),
    ));
    opened_rx.recv().await;
    api(
        "chats/send",
        vec![("id", chat_ids[0].clone()), ("text", "warm up".into())],
    )
    .await;
    tokio::time::sleep(TOKEN_EVERY * (TOKENS as u32 + 20)).await;
    while delays_rx.try_recv().is_ok() {}
    let before = rss_kib(pid);

    for i in 1..streams {
        tokio::spawn(follow(
            address.clone(),
            chat_ids[i % chats].clone(),
            opened_tx.clone(),
            delays_tx.clone(),
        ));
    }
    for _ in 1..streams {
        tokio::time::timeout(
            GIVE_UP_AFTER.saturating_sub(bench_started.elapsed()),
            opened_rx.recv(),
        )
        .await
        .expect("every stream opened in time");
    }
    // Let the server settle (buffers released, tasks parked).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per_stream = (after.saturating_sub(before) as f64 * 1024.0) / (streams - 1) as f64;

    // Answers in `active` chats at once, each followed by streams/chats streams.
    let sends = (0..active).map(|c| {
        api(
            "chats/send",
            vec![("id", chat_ids[c].clone()), ("text", "go".into())],
        )
    });
    futures_util::future::join_all(sends).await;
    let followers: usize = (0..active)
        .map(|c| (0..streams).filter(|i| i % chats == c).count())
        .sum();
    let expected = followers * TOKENS;
    let mut delays = Vec::with_capacity(expected);
    let wait = GIVE_UP_AFTER.saturating_sub(bench_started.elapsed());
    let collected = tokio::time::timeout(wait, async {
        while delays.len() < expected {
            match delays_rx.recv().await {
                Some(d) => delays.push(d),
                None => break,
            }
        }
    })
    .await;
    let peak = rss_kib(pid);
    drop(server);
    assert!(
        collected.is_ok(),
        "only {} of {expected} token arrivals within {GIVE_UP_AFTER:?}",
        delays.len()
    );
    delays.sort_unstable();
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    println!(
        "{streams} streams over {chats} chats; answers of {TOKENS} tokens (one every {} ms) in {active} chats at once, {expected} token arrivals\n",
        TOKEN_EVERY.as_millis()
    );
    println!(
        "| server memory per idle stream | token delay p50 | p99 | max | server RSS idle → all open → streaming |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} KB | {} ms | {} ms | {} ms | {} → {} → {} MB |",
        per_stream / 1000.0,
        ms(percentile(&delays, 0.5)),
        ms(percentile(&delays, 0.99)),
        ms(*delays.last().unwrap()),
        before / 1024,
        after / 1024,
        peak / 1024
    );
}
