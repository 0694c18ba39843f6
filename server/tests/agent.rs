//! The agent graph with the real parts behind it: the LLM client that talks to OpenAI-compatible
//! servers (against the scripted one in end2end/fake-llm, which streams tool-call deltas), and the
//! person's MCP connections to the reference servers (server-everything over Streamable HTTP,
//! mcp-server-time over stdio). Approve → the tool's result → the answer; edit → what the tool got;
//! reject with a reason → a humane answer, and nothing ran.

mod support;

use std::time::Duration;

use domain::Database;
use domain::agent::decisions;
use domain::agent::live::{LlmModel, McpTools, chat_tools};
use domain::agent::store::{self, Thread};
use domain::agent::{CallState, Decider, Decision, Deps, End, Policies, RunState, Step};
use domain::llm::{ClientOptions, LlmClient, Message, Provider};
use domain::mcp::{Mcp, Registry, ServerSpec, Settings, Status, Transport};
use domain::secrets::SecretKey;
use serde_json::json;
use sqlx::PgPool;
use support::{FakeLlm, start_script_with_env, user, workspace_root};
use tokio::sync::watch;
use uuid::Uuid;

struct World {
    db: Database,
    user: Uuid,
    mcp: Mcp,
    client: LlmClient,
    provider: Provider,
}

impl World {
    /// Runs a new chat's question, or resumes its thread, until it pauses or ends.
    async fn run(&self, chat: Uuid, thread: Uuid, start: Option<RunState>) -> RunState {
        let specs = chat_tools(&self.db, &self.mcp, self.user, chat)
            .await
            .unwrap()
            .unwrap();
        let model = LlmModel {
            client: &self.client,
            provider: &self.provider,
            model: "scripted",
        };
        let tools = McpTools {
            db: &self.db,
            mcp: &self.mcp,
            user_id: self.user,
            progress: None,
            ask: None,
            keep: None,
        };
        let policies = Policies::default();
        // The conversation is the chat's, as a chat's run reads it: here, its questions.
        let history: Vec<Message> = domain::chats::messages(&self.db, self.user, chat)
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .filter(|m| m.role == domain::chats::Role::User)
            .map(|m| Message::User { content: m.content })
            .collect();
        let deps = Deps {
            history: &history,
            model: &model,
            tools: &tools,
            specs: &specs,
            policies: &policies,
            search_over: 0,
        };
        let (state, seq) = match start {
            Some(state) => (state, -1),
            None => {
                let latest = store::latest(&self.db, self.user, thread)
                    .await
                    .unwrap()
                    .unwrap();
                (latest.state, latest.seq)
            }
        };
        let mut saver = Thread::new(self.db.clone(), thread, seq);
        let (_stop, mut stopped) = watch::channel(None);
        domain::agent::run(state, &deps, &mut stopped, &mut saver)
            .await
            .unwrap()
    }

    /// Asks in a new chat; returns the chat, its thread and where the run paused.
    async fn ask(&self, question: &str) -> (Uuid, Uuid, RunState) {
        let chat = domain::chats::create(&self.db, self.user, None)
            .await
            .unwrap();
        let conversation = domain::chats::conversation(&self.db, self.user, chat.id, None)
            .await
            .unwrap()
            .unwrap();
        domain::chats::ask(
            &self.db,
            self.user,
            &conversation,
            question,
            "fake/scripted",
        )
        .await
        .unwrap()
        .unwrap();
        let state = RunState::new(10);
        let paused = self.run(chat.id, chat.thread_id, Some(state)).await;
        (chat.id, chat.thread_id, paused)
    }

    async fn decide_and_finish(&self, chat: Uuid, thread: Uuid, decision: Decision) -> RunState {
        let latest = store::latest(&self.db, self.user, thread).await.unwrap();
        let call_id = latest.unwrap().state.calls[0].id.clone();
        let decided = decisions::decide(&self.db, self.user, thread, &call_id, decision)
            .await
            .unwrap()
            .unwrap();
        assert!(decided.complete);
        self.run(chat, thread, None).await
    }
}

fn answer(state: &RunState) -> String {
    match state.messages.last() {
        Some(Message::Assistant {
            content: Some(text),
            ..
        }) => text.clone(),
        other => panic!("no answer: {other:?}"),
    }
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn approve_edit_and_reject_with_the_real_client_and_the_reference_servers(pool: PgPool) {
    let db = Database::from_pool(pool);
    let alice = user(&db, "alice", "Alice").await;
    let llm = FakeLlm::start();
    let (mut http_server, ready) =
        start_script_with_env("end2end/mcp/everything-http.mjs", &[], &[("PORT", "0")]);
    let time = workspace_root()
        .join(".tools/mcp-time/bin/mcp-server-time")
        .display()
        .to_string();
    let mcp = Mcp::new(
        db.clone(),
        Registry::new(vec![
            ServerSpec::new(
                "everything",
                Transport::Http {
                    url: ready["url"].as_str().unwrap().into(),
                    headers: Default::default(),
                    bearer_token: None,
                    oauth_client_id: None,
                    oauth_client_secret: None,
                },
            ),
            ServerSpec::new(
                "time",
                Transport::Stdio {
                    command: time,
                    args: vec!["--local-timezone".into(), "UTC".into()],
                    env: Default::default(),
                    secret_env: Default::default(),
                },
            ),
        ])
        .unwrap(),
        SecretKey::from_bytes(&[7; 32]).unwrap(),
        Settings {
            idle_timeout: None,
            ..Settings::default()
        },
    );
    for server in ["everything", "time"] {
        mcp.connect(alice, server).await.unwrap();
        assert_eq!(
            mcp.settled(alice, server, Duration::from_secs(30)).await,
            Some(Status::Connected),
            "{server}"
        );
    }
    let world = World {
        db,
        user: alice,
        mcp,
        client: LlmClient::new(ClientOptions::default()),
        provider: Provider::new("fake", llm.url.parse().unwrap(), Some("test-key".into())),
    };

    // Approve: the tool runs on the server, the model answers with its result.
    let (chat, thread, paused) = world
        .ask(r#"Please tool:everything__echo {"message": "hello from the graph"}"#)
        .await;
    assert_eq!(paused.next, Step::AwaitApproval, "{paused:?}");
    assert_eq!(
        (
            paused.calls[0].server.as_str(),
            paused.calls[0].tool.as_str()
        ),
        ("everything", "echo")
    );
    assert_eq!(
        paused.calls[0].arguments,
        json!({"message": "hello from the graph"})
    );
    let approve = Decision::Approve {
        by: Decider::Person,
        arguments: None,
    };
    let done = world.decide_and_finish(chat, thread, approve).await;
    assert_eq!(done.end, Some(End::Answered));
    assert_eq!(answer(&done), "The tool said: Echo: hello from the graph.");

    // Edit: the edited arguments are what the tool received.
    let (chat, thread, _) = world
        .ask(r#"tool:everything__echo {"message": "as the model wrote it"}"#)
        .await;
    let edited = Decision::Approve {
        by: Decider::Person,
        arguments: Some(json!({"message": "as the person edited it"})),
    };
    let done = world.decide_and_finish(chat, thread, edited).await;
    assert_eq!(
        answer(&done),
        "The tool said: Echo: as the person edited it."
    );

    // Reject with a reason: a humane answer that knows why, and the tool never ran.
    let (chat, thread, paused) = world
        .ask(r#"tool:time__get_current_time {"timezone": "Europe/Lisbon"}"#)
        .await;
    assert_eq!(paused.calls[0].server, "time");
    let reject = Decision::Reject {
        by: Decider::Person,
        reason: Some("no clocks today".into()),
    };
    let done = world.decide_and_finish(chat, thread, reject).await;
    assert_eq!(done.end, Some(End::Declined));
    assert_eq!(done.calls[0].state, CallState::Waiting, "never ran");
    let text = answer(&done);
    assert!(text.starts_with("Understood, I did not use it."), "{text}");
    assert!(text.contains("no clocks today"), "{text}");

    world.mcp.shutdown().await;
    let _ = http_server.kill();
    let _ = http_server.wait();
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn an_approved_call_does_not_run_on_a_server_redefined_before_it_runs(pool: PgPool) {
    use domain::agent::{Call, End, ToolResult};
    use domain::mcp::ServerInput;
    use domain::users::{self, Identity, Role, RoleDecision};

    let db = Database::from_pool(pool);
    let admin = users::sign_in(
        &db,
        &Identity {
            issuer: "https://id.example.com".into(),
            subject: "admin".into(),
            name: "Admin".into(),
            ..Identity::default()
        },
        RoleDecision::Fixed(Role::Admin),
    )
    .await
    .unwrap();
    let alice = user(&db, "alice", "Alice").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let server = |marker: &str| ServerInput {
        id: "test".into(),
        name: "Test".into(),
        description: String::new(),
        enabled: true,
        groups: Vec::new(),
        transport: Transport::Stdio {
            command: support::node().display().to_string(),
            args: vec![
                workspace_root()
                    .join("end2end/mcp/test-server.mjs")
                    .display()
                    .to_string(),
                marker.into(),
            ],
            env: [("TOOL_LOG".to_owned(), log.display().to_string())].into(),
            secret_env: Default::default(),
        },
    };
    let mcp = Mcp::new(
        db.clone(),
        Registry::default(),
        SecretKey::from_bytes(&[7; 32]).unwrap(),
        Settings {
            idle_timeout: None,
            ..Settings::default()
        },
    );
    assert!(
        mcp.save_server(&admin, None, server("first"))
            .await
            .unwrap()
    );
    mcp.connect(alice, "test").await.unwrap();
    assert_eq!(
        mcp.settled(alice, "test", Duration::from_secs(30)).await,
        Some(Status::Connected)
    );

    // A call the person approved on the server as it was, about to run...
    let keys = domain::agent::server_key::server_keys(&db, &mcp, alice)
        .await
        .unwrap();
    let mut state = RunState::new(10);
    state.steps = 1;
    state.next = Step::RunTools;
    state.calls = vec![Call {
        id: "call_0123".into(),
        turn: 1,
        server: "test".into(),
        server_key: keys["test"].clone(),
        tool: "echo".into(),
        arguments: json!({"message": "approved for the first"}),
        annotations: Default::default(),
        decision: Some(Decision::Approve {
            by: Decider::Person,
            arguments: None,
        }),
        state: CallState::Running,
        sign_in: None,
        asking: None,
    }];
    // ... when an administrator redefines the server: its connection starts again, and until it
    // is up the run's tools list nothing of it.
    assert!(
        mcp.save_server(&admin, Some("test"), server("second"))
            .await
            .unwrap()
    );
    let unreachable = Provider::new("none", "http://127.0.0.1:9/v1".parse().unwrap(), None);
    let client = LlmClient::new(ClientOptions::default());
    let model = LlmModel {
        client: &client,
        provider: &unreachable,
        model: "none",
    };
    let tools = McpTools {
        db: &db,
        mcp: &mcp,
        user_id: alice,
        progress: None,
        ask: None,
        keep: None,
    };
    let policies = Policies::default();
    let deps = Deps {
        history: &[],
        model: &model,
        tools: &tools,
        specs: &[],
        policies: &policies,
        search_over: 0,
    };
    domain::agent::step(&mut state, &deps).await;
    let CallState::Finished {
        result: ToolResult { is_error, text, .. },
    } = &state.calls[0].state
    else {
        panic!("{:?}", state.calls[0].state);
    };
    assert!(*is_error);
    assert!(text.contains("was changed"), "{text}");
    assert_eq!(state.end, None::<End>);
    // Had it run, the redefined server (up by now) would have logged it.
    assert_eq!(
        mcp.settled(alice, "test", Duration::from_secs(30)).await,
        Some(Status::Connected)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(calls.is_empty(), "nothing ran: {calls}");
    mcp.shutdown().await;
}
