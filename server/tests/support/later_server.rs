//! A remote MCP server of the tests' own that speaks the newest protocol (2026-07-28, on rmcp's
//! server side) and asks the person with multi round-trip requests: its `greet` tool answers the
//! first call with a question ("input required", with a state to give back) and the call made
//! again with the reply with a greeting. It runs in the test's process, so it outlives an app
//! instance the test kills, as a remote server does. Every call it gets is recorded.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ElicitRequest,
    ElicitRequestParams, ErrorData, InputRequest, InputRequests, InputRequiredResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The state `greet` asks to be given back.
pub const STATE: &str = "greet/round-1";

#[derive(Clone, Default)]
struct Later {
    calls: Arc<Mutex<Vec<Value>>>,
}

impl ServerHandler for Later {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.protocol_version = ProtocolVersion::V_2026_07_28;
        info
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&[ProtocolVersion::V_2026_07_28])
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {}});
        let schema = schema.as_object().unwrap().clone();
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "greet",
            "Greets the person, by the name they give when asked.",
            schema,
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.calls.lock().unwrap().push(json!({
            "state": request.request_state,
            "replies": request.input_responses,
        }));
        let Some(STATE) = request.request_state.as_deref() else {
            let question = ElicitRequest::new(ElicitRequestParams::FormElicitationParams {
                meta: None,
                message: "What is your name?".into(),
                requested_schema: serde_json::from_value(json!({
                    "type": "object",
                    "properties": {"name": {"type": "string", "title": "Name", "minLength": 2}},
                    "required": ["name"]
                }))
                .unwrap(),
            });
            let mut questions = InputRequests::new();
            questions.insert("who".into(), InputRequest::Elicitation(question));
            return Ok(InputRequiredResult::new(Some(questions), Some(STATE.into())).into());
        };
        let reply = request
            .input_responses
            .as_ref()
            .and_then(|r| r.get("who"))
            .cloned()
            .unwrap_or(Value::Null);
        let text = match (reply["action"].as_str(), reply["content"]["name"].as_str()) {
            (Some("accept"), Some(name)) => format!("Hello, {name}!"),
            (Some(action), _) => format!("No name ({action})"),
            _ => "No reply".to_owned(),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

/// The server, listening on loopback until dropped.
pub struct LaterServer {
    pub url: String,
    calls: Arc<Mutex<Vec<Value>>>,
    stop: CancellationToken,
}

impl LaterServer {
    pub async fn start() -> Self {
        let later = Later::default();
        let calls = later.calls.clone();
        let stop = CancellationToken::new();
        let service: StreamableHttpService<Later, LocalSessionManager> = StreamableHttpService::new(
            move || Ok(later.clone()),
            Default::default(),
            StreamableHttpServerConfig::default()
                .with_legacy_session_mode(false)
                .with_json_response(true)
                .with_cancellation_token(stop.child_token()),
        );
        let router = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { until.cancelled_owned().await })
                .await;
        });
        Self { url, calls, stop }
    }

    /// The calls it got: the state each gave back, and the replies it brought.
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for LaterServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
