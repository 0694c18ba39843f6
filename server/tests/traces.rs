//! Traces over OpenTelemetry: with a collector named (`OTEL_EXPORTER_OTLP_ENDPOINT`), a chat whose
//! answer calls a tool is sent to it as spans (the requests, the runs, the model calls, the tool
//! call), each under what caused it and carrying the person's, chat's and answer's ids, and
//! nothing secret. The collector here is a test one that reads OTLP/HTTP protobuf as a real one
//! does. (One test in this file: the tracing subscriber is the process's.)

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use support::{FakeLlm, SseEvent, api, person};

/// A span as the collector got it.
#[derive(Clone, Debug)]
struct Span {
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

/// A test collector: keeps the body of every `POST /v1/traces`. Returns its base URL.
async fn collector() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let keep = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, bodies)
}

fn spans(bodies: &[Bytes]) -> Vec<Span> {
    let mut spans = Vec::new();
    for body in bodies {
        let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            let value = match kv.value.as_ref()?.value.as_ref()? {
                                AnyValue::StringValue(s) => s.clone(),
                                AnyValue::IntValue(i) => i.to_string(),
                                AnyValue::BoolValue(b) => b.to_string(),
                                other => format!("{other:?}"),
                            };
                            Some((kv.key.clone(), value))
                        })
                        .collect();
                    spans.push(Span {
                        name: span.name,
                        trace: span.trace_id,
                        id: span.span_id,
                        parent: span.parent_span_id,
                        attributes,
                    });
                }
            }
        }
    }
    spans
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_chat_that_calls_a_tool_is_traced_to_the_collector_without_secrets(pool: PgPool) {
    let (base, bodies) = collector().await;
    let telemetry = Arc::new(
        server::telemetry::init(server::config::LogFormat::Text, "warn", Some(&base)).unwrap(),
    );

    let llm = FakeLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let app = support::start_app_with_test_server(pool, &llm, dir.path()).await;
    let (alice_id, alice) = person(&app, "alice", "Alice").await;
    let (status, body) = api(&app, &alice, "mcp/connect", &[("id", "test")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, servers) = api(&app, &alice, "mcp/servers", &[]).await;
        if servers[0]["status"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "{servers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A chat whose answer calls a tool (with an argument that must not be traced), approved.
    let (_, chat) = api(&app, &alice, "chats/create", &[]).await;
    let chat = chat["id"].as_str().unwrap().to_owned();
    let mut events = support::subscribe(&app, &alice, &chat, None).await;
    let (status, body) = api(
        &app,
        &alice,
        "chats/send",
        &[
            ("id", &chat),
            (
                "text",
                r#"tool:test__echo {"message":"argument-kept-private"}"#,
            ),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut seen: Vec<SseEvent> = Vec::new();
    while seen.last().is_none_or(|e| e.event != "approval_needed") {
        seen.push(events.next().await);
    }
    let needed = seen.last().unwrap().data.clone();
    let call = seen.iter().find(|e| e.event == "tool_call").unwrap().data["call"]["id"].clone();
    let decision = json!({
        "id": chat, "answer_id": needed["answer_id"], "turn": needed["turn"],
        "decisions": [{"call_id": call, "approve": true}],
    });
    let (status, body) = support::post_json(&app.base, "chats/decide", &alice, &decision).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    while events.next().await.event != "run_finished" {}
    let answer = needed["answer_id"].as_str().unwrap().to_owned();

    // Every span ends shortly after; the collector is sent them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        // (Blocking: the exporter's thread sends, to the collector served by this runtime.)
        let flush = telemetry.clone();
        tokio::task::spawn_blocking(move || flush.flush())
            .await
            .unwrap();
        let got = spans(&bodies.lock().unwrap());
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        if ["request", "run", "llm_call", "tool_call"]
            .iter()
            .all(|n| names.contains(n))
            && got.iter().filter(|s| s.name == "run").count() >= 2
        {
            break got;
        }
        assert!(Instant::now() < deadline, "{names:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_id = |id: &[u8]| got.iter().find(|s| s.id == id);
    let alice_id = alice_id.to_string();

    // The send: its request names Alice, and its run (under it) the chat and the answer.
    let send = got
        .iter()
        .find(|s| s.name == "request" && s.attributes["path"] == "/api/chats/send")
        .unwrap();
    assert_eq!(send.attributes["user"], alice_id);
    let first_run = got
        .iter()
        .find(|s| s.name == "run" && s.parent == send.id)
        .unwrap_or_else(|| panic!("no run under the send: {got:#?}"));
    assert_eq!(first_run.attributes["user"], alice_id);
    assert_eq!(first_run.attributes["chat"], chat);
    assert_eq!(first_run.attributes["answer"], answer);
    let model_call = got
        .iter()
        .find(|s| s.name == "llm_call" && s.parent == first_run.id)
        .unwrap();
    assert_eq!(model_call.attributes["provider"], "fake");
    assert_eq!(model_call.attributes["model"], "scripted");

    // The decision: its run goes on under it, and the tool call under that run.
    let tool = got.iter().find(|s| s.name == "tool_call").unwrap();
    assert_eq!(tool.attributes["server"], "test");
    assert_eq!(tool.attributes["tool"], "echo");
    assert_eq!(tool.attributes["user"], alice_id);
    let run = by_id(&tool.parent).unwrap();
    assert_eq!(run.name, "run");
    assert_eq!(run.attributes["answer"], answer);
    assert_eq!(tool.trace, run.trace);
    let decide = by_id(&run.parent).unwrap();
    assert_eq!(decide.attributes["path"], "/api/chats/decide");

    // Nothing secret: not the token, not what was asked, not the tool's argument.
    let everything: Vec<u8> = bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.to_vec())
        .collect();
    let text = String::from_utf8_lossy(&everything);
    for secret in [alice.as_str(), "argument-kept-private", "tool:test__echo"] {
        assert!(!text.contains(secret), "{secret} was traced");
    }
}
