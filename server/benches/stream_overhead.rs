//! What Switchboard adds to a streamed completion: time to first token and to last token through
//! Switchboard (send a message, read its answer from the chat's event stream) minus the same asked
//! of the LLM server directly, over many completions.
//!
//!     DATABASE_URL=postgres://... cargo bench -p server --bench stream_overhead [-- COMPLETIONS]
//!
//! The LLM server is a scripted OpenAI-compatible one in this process that streams 32 tokens with
//! no delay, so what is measured is Switchboard's own work: the HTTP call, storing the message and
//! the answer, the run, the event fan-out and the SSE encoding. DATABASE_URL must let the bench
//! create a database (it makes `switchboard_bench`, fresh each time).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::serve::ListenerExt;
use clap::Parser;
use domain::Database;
use domain::users::{Identity, Role, RoleDecision};
use futures_util::StreamExt;
use server::auth::settings::AuthSettings;
use server::config::Config;
use server::{AppState, router};

const TOKENS: usize = 32;

async fn completions() -> impl IntoResponse {
    let chunk = |text: &str| {
        Ok::<_, Infallible>(Bytes::from(format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
        )))
    };
    let mut chunks: Vec<Result<Bytes, Infallible>> =
        (0..TOKENS).map(|i| chunk(&format!("tok{i} "))).collect();
    chunks.push(Ok(Bytes::from(
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    )));
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As the real server does (server::serve), and as an LLM server should.
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Reads an event-stream body until `done` says so; returns (first token, end) times.
async fn timed(
    start: Instant,
    mut body: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin,
    first: &str,
    last: &str,
) -> (Duration, Duration) {
    let mut buffer = String::new();
    let mut ttft = None;
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if ttft.is_none() && buffer.contains(first) {
            ttft = Some(start.elapsed());
        }
        if buffer.contains(last) {
            return (ttft.unwrap(), start.elapsed());
        }
        // Keep only the tail that may hold a marker split across chunks.
        if buffer.len() > 4096 {
            buffer.drain(..buffer.len() - 64);
        }
    }
    panic!("the stream ended early");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let completions_wanted: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let url = std::env::var("DATABASE_URL")
        .expect("set DATABASE_URL to a PostgreSQL server where the bench may create a database");
    let db = Database::fresh(&url, "switchboard_bench").await.unwrap();

    let llm = serve(Router::new().route("/v1/chat/completions", post(completions))).await;
    let config = Config::try_parse_from([
        "switchboard",
        "--llm-providers",
        "bench",
        "--log-filter",
        "warn",
        // One script asking as fast as it can is what a rate limit is for; the bench measures
        // the work of an answer, not the limit.
        "--rate-limit-per-second",
        "0",
        "--secret-key",
        &domain::secrets::SecretKey::generate(),
    ])
    .unwrap();
    let env = |name: &str| match name {
        "SWITCHBOARD_LLM_BENCH_BASE_URL" => Some(format!("{llm}/v1")),
        "SWITCHBOARD_LLM_BENCH_MODELS" => Some("scripted".into()),
        _ => None,
    };
    let auth = AuthSettings::from_config(&config, &env).unwrap();
    let models = server::llm_settings::catalog(&config, &env).unwrap();
    let state = AppState::new(&config, auth, models, db.clone())
        .await
        .unwrap();
    let app = serve(router(state)).await;

    let user = domain::users::sign_in(&db, &Identity::local(), RoleDecision::Fixed(Role::Admin))
        .await
        .unwrap();
    let token = domain::tokens::create(&db, user.id, "bench")
        .await
        .unwrap()
        .secret;
    let http = reqwest::Client::new();
    let chat: serde_json::Value = http
        .post(format!("{app}/api/chats/create"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat_id = chat["id"].as_str().unwrap().to_owned();

    // The page's event stream is open before the message is sent, and stays open across the
    // chat's messages, as in the browser (opening one per completion also made each send open a
    // new connection, which the direct path, reusing its own, did not pay).
    let events = http
        .get(format!("{app}/api/chats/{chat_id}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut events = events.bytes_stream();
    let body = serde_json::json!({"model": "scripted", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut direct = (Vec::new(), Vec::new());
    let mut through = (Vec::new(), Vec::new());
    let warmup = 20;
    for i in 0..completions_wanted + warmup {
        // Directly.
        let start = Instant::now();
        let response = http
            .post(format!("{llm}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (first, last) = timed(start, response.bytes_stream(), "tok0", "[DONE]").await;
        if i >= warmup {
            direct.0.push(first);
            direct.1.push(last);
        }

        // Through Switchboard: send, and read the answer on the chat's event stream. Regenerating
        // from position 0 keeps the chat short, as a fresh chat is.
        let start = Instant::now();
        let send = http
            .post(format!("{app}/api/chats/send"))
            .bearer_auth(&token)
            .form(&[
                ("id", chat_id.as_str()),
                ("text", "hi"),
                ("from_position", "0"),
            ])
            .send();
        let read = timed(start, &mut events, "event: token", "event: run_finished");
        let (sent, (first, last)) = tokio::join!(send, read);
        let sent = sent.unwrap();
        assert!(sent.status().is_success());
        // Read whole, so that the next send reuses its connection, as a browser's would.
        sent.bytes().await.unwrap();
        if i >= warmup {
            through.0.push(first);
            through.1.push(last);
        }
    }

    let mut rows = Vec::new();
    for (name, (d, t)) in [
        ("time to first token", (&mut direct.0, &mut through.0)),
        ("time to last token", (&mut direct.1, &mut through.1)),
    ] {
        d.sort();
        t.sort();
        let (d50, d99, t50, t99) = (
            percentile(d, 0.5),
            percentile(d, 0.99),
            percentile(t, 0.5),
            percentile(t, 0.99),
        );
        rows.push(format!(
            "| {name} | {} | {} | {} | {} | **{}** | {} |",
            ms(d50),
            ms(d99),
            ms(t50),
            ms(t99),
            ms(t50.saturating_sub(d50)),
            ms(t99.saturating_sub(d99))
        ));
    }
    println!(
        "{completions_wanted} completions of {TOKENS} tokens each (after {warmup} for warm-up); milliseconds\n"
    );
    println!(
        "| | direct p50 | direct p99 | through Switchboard p50 | p99 | overhead p50 | overhead p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
