//! The LLM client against a scripted OpenAI-compatible server on loopback: streamed text, tool-call
//! deltas, and each way a provider fails. The model name picks the script.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use domain::llm::{
    ClientOptions, FinishReason, LlmClient, LlmError, Message, Provider, Request, StreamEvent,
    Tool, ToolCall,
};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use url::Url;

#[derive(Clone, Default)]
struct Script {
    calls: Arc<AtomicU32>,
}

fn sse(chunks: Vec<String>, then: Tail) -> Response {
    let body = stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, Infallible>(Bytes::from(format!("data: {c}\n\n")))),
    );
    let body: futures_util::stream::BoxStream<'static, Result<Bytes, Infallible>> = match then {
        Tail::Done => body
            .chain(stream::once(async { Ok(Bytes::from("data: [DONE]\n\n")) }))
            .boxed(),
        Tail::Hang => body.chain(stream::pending()).boxed(),
        Tail::Close => body.boxed(),
    };
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

enum Tail {
    Done,
    Hang,
    Close,
}

fn text_chunk(text: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        .to_string()
}

fn finish_chunk(reason: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}).to_string()
}

async fn completions(
    State(script): State<Script>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let call = script.calls.fetch_add(1, Ordering::SeqCst);
    assert_eq!(body["stream"], true);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-key") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "Incorrect API key provided"}})),
        )
            .into_response();
    }
    let hello = || {
        vec![
            text_chunk("Hello"),
            text_chunk(", world"),
            finish_chunk("stop"),
        ]
    };
    match body["model"].as_str().unwrap() {
        "text" => {
            assert_eq!(
                body["messages"][0],
                json!({"role": "user", "content": "Hi"})
            );
            sse(hello(), Tail::Done)
        }
        "tools" => {
            assert_eq!(body["tools"][0]["type"], "function");
            assert_eq!(body["tools"][0]["function"]["name"], "get_time");
            let chunks = [
                json!({"choices": [{"delta": {"role": "assistant", "content": "Let me check."}}]}),
                json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}}]}),
                json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"timezone\": "}}]}}]}),
                json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Europe/Paris\"}"}}]}}]}),
                json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            ];
            sse(chunks.iter().map(Value::to_string).collect(), Tail::Done)
        }
        "rate-limited" => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {"message": "Rate limit reached"}})),
        )
            .into_response(),
        "flaky" if call == 0 => (StatusCode::BAD_GATEWAY, "upstream hiccup").into_response(),
        "flaky" => sse(hello(), Tail::Done),
        "broken" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "internal error"}})),
        )
            .into_response(),
        "stall" => sse(vec![text_chunk("Hello")], Tail::Hang),
        "cut-off" => sse(vec![text_chunk("Hello")], Tail::Close),
        "garbled" => sse(vec![text_chunk("Hello"), "{not json".into()], Tail::Done),
        // Validates strictly, as Mistral's API does: no field it does not know.
        "strict" if body.get("stream_options").is_some() => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {"message": "stream_options: Extra inputs are not permitted"}})),
        )
            .into_response(),
        "strict" => sse(hello(), Tail::Done),
        // A stream without end: 64 KB tokens, forever.
        "endless" => {
            let token = text_chunk(&"x".repeat(64 << 10));
            let body = stream::repeat(token)
                .map(|c| Ok::<_, Infallible>(Bytes::from(format!("data: {c}\n\n"))));
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(body),
            )
                .into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": "The model does not exist"}})),
        )
            .into_response(),
    }
}

async fn server() -> (Url, Script) {
    let script = Script::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/v1", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, script)
}

fn client() -> LlmClient {
    LlmClient::new(ClientOptions {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_millis(500),
        attempts: 3,
        backoff: Duration::from_millis(20),
        cool_off: Duration::from_millis(300),
    })
}

fn provider(base_url: Url, key: &str) -> Provider {
    Provider::new("fake", base_url, Some(key.into()))
}

fn ask(model: &str) -> Request {
    Request {
        model: model.into(),
        messages: vec![Message::User {
            content: "Hi".into(),
        }],
        tools: vec![],
    }
}

/// Everything the stream yields, up to and including the first error.
async fn collect(
    client: &LlmClient,
    provider: &Provider,
    request: &Request,
) -> Result<Vec<StreamEvent>, (Vec<StreamEvent>, LlmError)> {
    let mut stream = client
        .stream(provider, request)
        .await
        .map_err(|e| (vec![], e))?;
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => return Err((events, error)),
        }
    }
    Ok(events)
}

#[tokio::test]
async fn text_streams_token_by_token() {
    let (url, _) = server().await;
    let events = collect(&client(), &provider(url, "test-key"), &ask("text"))
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            StreamEvent::Token("Hello".into()),
            StreamEvent::Token(", world".into()),
            StreamEvent::Finished {
                reason: FinishReason::Stop,
                tool_calls: vec![],
                usage: None,
                signature: None,
            },
        ]
    );
}

#[tokio::test]
async fn tool_call_deltas_are_assembled() {
    let (url, _) = server().await;
    let mut request = ask("tools");
    request.tools.push(Tool {
        name: "get_time".into(),
        description: "The current time in a timezone".into(),
        parameters: json!({"type": "object", "properties": {"timezone": {"type": "string"}}}),
    });
    let events = collect(&client(), &provider(url, "test-key"), &request)
        .await
        .unwrap();
    assert_eq!(events[0], StreamEvent::Token("Let me check.".into()));
    assert_eq!(
        events[1],
        StreamEvent::Finished {
            reason: FinishReason::ToolCalls,
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "get_time".into(),
                arguments: r#"{"timezone": "Europe/Paris"}"#.into(),
            }],
            usage: None,
            signature: None,
        }
    );
}

#[tokio::test]
async fn a_bad_key_is_reported_without_retrying() {
    let (url, script) = server().await;
    let (_, error) = collect(&client(), &provider(url, "wrong"), &ask("text"))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Unauthorized { .. }), "{error:?}");
    assert!(error.to_string().contains("refused the API key"), "{error}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_model_is_reported() {
    let (url, _) = server().await;
    let (_, error) = collect(&client(), &provider(url, "test-key"), &ask("gpt-nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LlmError::UnknownModel { ref model, .. } if model == "gpt-nope"),
        "{error:?}"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_then_reported() {
    let (url, script) = server().await;
    let (_, error) = collect(&client(), &provider(url, "test-key"), &ask("rate-limited"))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::RateLimited { .. }), "{error:?}");
    assert!(error.to_string().contains("Wait a moment"), "{error}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 3, "three attempts");
}

#[tokio::test]
async fn a_5xx_before_the_first_token_is_retried() {
    let (url, script) = server().await;
    let events = collect(&client(), &provider(url, "test-key"), &ask("flaky"))
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(script.calls.load(Ordering::SeqCst), 2);
    let (url, _) = server().await;
    let (_, error) = collect(&client(), &provider(url, "test-key"), &ask("broken"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LlmError::Server { status: 500, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_stalled_stream_ends_with_what_came_before() {
    let (url, _) = server().await;
    let (events, error) = collect(&client(), &provider(url, "test-key"), &ask("stall"))
        .await
        .unwrap_err();
    assert_eq!(events, [StreamEvent::Token("Hello".into())]);
    assert!(matches!(error, LlmError::Stalled { .. }), "{error:?}");
}

#[tokio::test]
async fn a_cut_off_stream_is_reported() {
    let (url, _) = server().await;
    let (events, error) = collect(&client(), &provider(url, "test-key"), &ask("cut-off"))
        .await
        .unwrap_err();
    assert_eq!(events, [StreamEvent::Token("Hello".into())]);
    assert!(matches!(error, LlmError::CutOff { .. }), "{error:?}");
}

#[tokio::test]
async fn a_garbled_stream_is_reported() {
    let (url, _) = server().await;
    let (events, error) = collect(&client(), &provider(url, "test-key"), &ask("garbled"))
        .await
        .unwrap_err();
    assert_eq!(events, [StreamEvent::Token("Hello".into())]);
    assert!(matches!(error, LlmError::Garbled { .. }), "{error:?}");
}

#[tokio::test]
async fn a_provider_that_is_down_is_reported_after_retries() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}/v1", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let (_, error) = collect(&client(), &provider(url, "test-key"), &ask("text"))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("Cannot reach"), "{error}");
}

#[tokio::test]
async fn a_stream_without_end_is_cut_off_at_the_limit() {
    let (url, _) = server().await;
    let (events, error) = collect(&client(), &provider(url, "test-key"), &ask("endless"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LlmError::TooLarge { megabytes: 8, .. }),
        "{error:?}"
    );
    let received: usize = events
        .iter()
        .map(|e| match e {
            StreamEvent::Token(t) => t.len(),
            _ => 0,
        })
        .sum();
    assert!((7 << 20..=8 << 20).contains(&received), "{received}");
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_marked_down_then_tried_again() {
    let (url, script) = server().await;
    let client = client();
    let provider = provider(url, "test-key");
    for _ in 0..3 {
        let (_, error) = collect(&client, &provider, &ask("broken"))
            .await
            .unwrap_err();
        assert!(matches!(error, LlmError::Server { .. }), "{error:?}");
    }
    let asked = script.calls.load(Ordering::SeqCst);
    assert_eq!(asked, 9, "three tries each");
    // Down: refused at once, without asking it, saying so.
    let (_, error) = collect(&client, &provider, &ask("text")).await.unwrap_err();
    assert!(matches!(error, LlmError::Down { .. }), "{error:?}");
    assert!(error.to_string().contains("marked down"), "{error}");
    assert_eq!(script.calls.load(Ordering::SeqCst), asked);
    assert_eq!(client.down(), ["fake"]);
    // After its cool-off it is tried again, and an answer closes the circuit.
    tokio::time::sleep(Duration::from_millis(350)).await;
    collect(&client, &provider, &ask("text")).await.unwrap();
    assert!(client.down().is_empty());
}

#[tokio::test]
async fn a_server_that_takes_no_stream_options_is_asked_again_without() {
    let (url, script) = server().await;
    let events = collect(&client(), &provider(url, "test-key"), &ask("strict"))
        .await
        .unwrap();
    assert_eq!(events[0], StreamEvent::Token("Hello".into()));
    assert_eq!(script.calls.load(Ordering::SeqCst), 2);
}
