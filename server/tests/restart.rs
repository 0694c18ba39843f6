//! Durable approvals with the real `switchboard` binary: a pending approval survives the process
//! being killed (decided on the next process, the answer completes), a call that was running
//! when the process died is shown interrupted and never runs again, and a remote server's question
//! (a multi round-trip call) is answered after a crash and the call goes on. The tools are the
//! project's stdio test server, which logs every call that reaches it, and the tests' own remote
//! server of the newest protocol (`support::later_server`).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use domain::Database;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::later_server::{self, LaterServer};
use support::{FakeLlm, SseReader, http_server_entry, test_server_entry, user};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

struct Setup {
    _dir: tempfile::TempDir,
    site: PathBuf,
    servers: PathBuf,
    log: PathBuf,
    database_url: String,
    port: u16,
    key: String,
}

/// A running `switchboard` process, killed (SIGKILL, as a crash) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn setup(pool: &PgPool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("pkg/switchboard.css"), "").unwrap();
    let log = dir.path().join("calls.jsonl");
    let servers = dir.path().join("servers.toml");
    let log_path = log.display().to_string();
    std::fs::write(&servers, test_server_entry(&[("TOOL_LOG", &log_path)])).unwrap();
    // The test's own database, on the server DATABASE_URL names (which may be a socket: `?host=`).
    let mut database_url: reqwest::Url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL")
        .parse()
        .unwrap();
    database_url.set_path(pool.connect_options().get_database().unwrap());
    let database_url = database_url.to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Setup {
        _dir: dir,
        site,
        servers,
        log,
        database_url,
        port,
        key: domain::secrets::SecretKey::generate(),
    }
}

impl Setup {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the binary and waits until it is ready.
    async fn start(&self, llm: &FakeLlm) -> Process {
        let (_, vars) = llm.settings();
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("SWITCHBOARD_SITE_ROOT", &self.site)
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("SWITCHBOARD_SECRET_KEY", &self.key)
            .env("SWITCHBOARD_MCP_SERVERS_FILE", &self.servers)
            .env("SWITCHBOARD_LLM_PROVIDERS", "fake")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(self.site.parent().unwrap())
            .stdin(Stdio::null());
        let process = Process(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{}/readyz", self.base())).await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return process;
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A new person's API token.
async fn token_of(db: &Database, login: &str, name: &str) -> String {
    let id = user(db, login, name).await;
    domain::tokens::create(db, id, "script")
        .await
        .unwrap()
        .secret
}

async fn api(base: &str, token: &str, endpoint: &str, form: &[(&str, &str)]) -> Value {
    let (status, body) =
        support::call(&reqwest::Client::new(), base, endpoint, Some(token), form).await;
    assert_eq!(status, StatusCode::OK, "{endpoint}: {body}");
    body
}

/// Approves the one call that `pending` (an `approval_needed` event) says waits.
async fn decide(base: &str, token: &str, chat: &str, pending: &Value) {
    let approve = json!([{"call_id": pending["call_ids"][0], "approve": true}]);
    decide_with(base, token, chat, pending, approve).await;
}

/// Decides on calls of the answer and turn that `pending` (an `approval_needed` event) says wait.
async fn decide_with(base: &str, token: &str, chat: &str, pending: &Value, decisions: Value) {
    let body = json!({"id": chat, "answer_id": pending["answer_id"], "turn": pending["turn"],
                      "decisions": decisions});
    let response = reqwest::Client::new()
        .post(format!("{base}/api/chats/decide"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
}

async fn events(base: &str, token: &str, chat: &str) -> SseReader {
    let response = reqwest::Client::new()
        .get(format!("{base}/api/chats/{chat}/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    SseReader::new(response)
}

async fn until(events: &mut SseReader, name: &str) -> Value {
    loop {
        let event = events.next().await;
        if event.event == name {
            return event.data;
        }
    }
}

async fn answer(base: &str, token: &str, chat: &str) -> Value {
    api(base, token, "chats/get", &[("id", chat)]).await["messages"][1].clone()
}

async fn connected(base: &str, token: &str) {
    api(base, token, "mcp/connect", &[("id", "test")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while api(base, token, "mcp/servers", &[]).await[0]["status"] != "connected" {
        assert!(Instant::now() < deadline, "the test server did not connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool, within: Duration) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A new chat of the token's owner, asked for `tool` with `arguments`: returns the chat, its event
/// stream and what waits for approval (the `approval_needed` event).
async fn ask_for_tool(
    base: &str,
    token: &str,
    tool: &str,
    arguments: Value,
) -> (String, SseReader, Value) {
    let chat = api(base, token, "chats/create", &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = events(base, token, &chat).await;
    let text = format!("tool:test__{tool} {arguments}");
    api(base, token, "chats/send", &[("id", &chat), ("text", &text)]).await;
    let pending = until(&mut stream, "approval_needed").await;
    (chat, stream, pending)
}

#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn approvals_survive_a_crash_and_a_call_cut_off_by_one_is_not_run_again(pool: PgPool) {
    let s = setup(&pool);
    let llm = FakeLlm::start();
    let db = Database::from_pool(pool);
    let token = token_of(&db, "alice", "Alice").await;
    let base = s.base();

    // An approval pending when the process dies...
    let first = s.start(&llm).await;
    connected(&base, &token).await;
    let (chat, stream, pending) =
        ask_for_tool(&base, &token, "echo", json!({"message": "after the crash"})).await;
    drop(stream);
    drop(first);

    // ...is there on the next one, and approving it there completes the answer.
    let second = s.start(&llm).await;
    let waiting = answer(&base, &token, &chat).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["tool_calls"][0]["state"], "waiting");
    assert!(s.calls().is_empty(), "nothing ran before the decision");
    let mut stream = events(&base, &token, &chat).await;
    decide(&base, &token, &chat, &pending).await;
    let end = until(&mut stream, "run_finished").await;
    assert_eq!(end["status"], "complete", "{end}");
    let done = answer(&base, &token, &chat).await;
    assert_eq!(done["content"], "The tool said: Echo: after the crash.");
    assert_eq!(
        s.calls(),
        [json!({"tool": "echo", "args": {"message": "after the crash"}})]
    );

    // A rejected call never reaches the server.
    let (chat, mut stream, pending) =
        ask_for_tool(&base, &token, "echo", json!({"message": "rejected"})).await;
    let decisions = json!([{"call_id": pending["call_ids"][0], "approve": false, "reason": "no"}]);
    decide_with(&base, &token, &chat, &pending, decisions).await;
    until(&mut stream, "run_finished").await;
    assert_eq!(
        s.calls().len(),
        1,
        "the rejected call did not run: {:?}",
        s.calls()
    );

    // A call running when the process dies is shown interrupted afterwards, and never re-run.
    let (chat, stream, pending) = ask_for_tool(&base, &token, "wait", json!({"ms": 60000})).await;
    decide(&base, &token, &chat, &pending).await;
    wait_for(
        "the wait tool to start",
        async || s.calls().len() == 2,
        Duration::from_secs(20),
    )
    .await;
    drop(stream);
    drop(second);

    let _third = s.start(&llm).await;
    // The answer's last sign of life was before the crash: within the stale interval (30 s) it is
    // shown interrupted, and so is its call.
    wait_for(
        "the cut-off answer to show as interrupted",
        async || answer(&base, &token, &chat).await["status"] == "interrupted",
        Duration::from_secs(45),
    )
    .await;
    let cut = answer(&base, &token, &chat).await;
    assert_eq!(cut["tool_calls"][0]["state"], "interrupted", "{cut}");
    // A running instance settles it: the answer and its call are interrupted for good, and the
    // call is in the audit as such (the chat's only call).
    let audited = async || {
        let audit = api(&base, &token, "agent/audit", &[]).await;
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["chat_id"] == chat.as_str() && e["outcome"] == "interrupted")
    };
    wait_for(
        "the cut-off call to be audited as interrupted",
        audited,
        Duration::from_secs(30),
    )
    .await;
    let settled = answer(&base, &token, &chat).await;
    assert_eq!(settled["status"], "interrupted", "{settled}");
    assert_eq!(
        settled["tool_calls"][0]["state"], "interrupted",
        "{settled}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.calls().len(), 2, "the cut-off call did not run again");
    // The chat takes new messages again.
    api(
        &base,
        &token,
        "chats/send",
        &[("id", &chat), ("text", "hello again")],
    )
    .await;
}

/// A chat of the token's owner in which the model calls the remote server's `greet`, approved:
/// the chat, its events, and the question the server answered the call with.
async fn greeted(base: &str, token: &str) -> (String, SseReader, String) {
    let chat = api(base, token, "chats/create", &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = events(base, token, &chat).await;
    let text = "tool:later__greet {}";
    api(base, token, "chats/send", &[("id", &chat), ("text", text)]).await;
    let pending = until(&mut stream, "approval_needed").await;
    decide(base, token, &chat, &pending).await;
    let asked = until(&mut stream, "question").await;
    assert_eq!(
        asked["question"]["message"], "What is your name?",
        "{asked}"
    );
    // The answer waits for the reply, as for a decision.
    let paused = until(&mut stream, "approval_needed").await;
    assert_eq!(paused["call_ids"], json!([]), "{paused}");
    let id = asked["question"]["id"].as_str().unwrap().to_owned();
    (chat, stream, id)
}

/// Replies to a question; the status and body.
async fn reply(base: &str, token: &str, body: Value) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/chats/answer"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A question a remote server asked in answer to a call (MCP 2026-07-28, "input required") is kept
/// with the paused answer: answered on the same process, the call is made again with the reply and
/// the answer completes; after the process is killed, the next one shows it, takes the reply
/// (checked against the form first), makes the call again with the reply and the server's state,
/// and the answer completes with what the tool then said. Answered once; nobody else's.
#[sqlx::test(migrator = "domain::db::MIGRATOR")]
async fn a_remote_servers_question_is_answered_after_a_crash_and_the_call_goes_on(pool: PgPool) {
    let s = setup(&pool);
    let later = LaterServer::start().await;
    let mut servers = std::fs::read_to_string(&s.servers).unwrap();
    servers.push_str(&http_server_entry("later", "Later", &later.url));
    std::fs::write(&s.servers, servers).unwrap();
    let llm = FakeLlm::start();
    let db = Database::from_pool(pool);
    let token = token_of(&db, "alice", "Alice").await;
    let bob = token_of(&db, "bob", "Bob").await;
    let base = s.base();

    let first = s.start(&llm).await;
    api(&base, &token, "mcp/connect", &[("id", "later")]).await;
    wait_for(
        "the remote server to connect",
        async || {
            let servers = api(&base, &token, "mcp/servers", &[]).await;
            servers
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == "later" && s["status"] == "connected")
        },
        Duration::from_secs(30),
    )
    .await;

    // Answered where it was asked: the call goes on with the reply.
    let (chat, mut stream, id) = greeted(&base, &token).await;
    let waiting = answer(&base, &token, &chat).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["tool_calls"][0]["state"], "approved", "{waiting}");
    let body = json!({"id": chat, "question": id, "action": "decline"});
    let (status, body) = reply(&base, &token, body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let end = until(&mut stream, "run_finished").await;
    assert_eq!(end["status"], "complete", "{end}");
    let done = answer(&base, &token, &chat).await;
    assert_eq!(
        done["content"], "The tool said: No name (decline).",
        "{done}"
    );
    assert_eq!(later.calls().len(), 2, "{:?}", later.calls());

    // Asked, then the process dies.
    let (chat, stream, id) = greeted(&base, &token).await;
    assert_eq!(later.calls()[2], json!({"state": null, "replies": null}));
    drop(stream);
    drop(first);

    // The next process shows the question where the answer waits...
    let _second = s.start(&llm).await;
    let waiting = answer(&base, &token, &chat).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(
        waiting["tool_calls"][0]["question"]["id"],
        id.as_str(),
        "{waiting}"
    );
    // ...answered by nobody else, and only as its form says...
    let mallory =
        json!({"id": chat, "question": id, "action": "accept", "content": {"name": "Mallory"}});
    let (status, _) = reply(&base, &bob, mallory).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let short = json!({"id": chat, "question": id, "action": "accept", "content": {"name": "A"}});
    let (status, body) = reply(&base, &token, short).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // ...and the call goes on with the reply and the server's state.
    let mut stream = events(&base, &token, &chat).await;
    let ada = json!({"id": chat, "question": id, "action": "accept", "content": {"name": "Ada"}});
    let (status, body) = reply(&base, &token, ada).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let end = until(&mut stream, "run_finished").await;
    assert_eq!(end["status"], "complete", "{end}");
    let done = answer(&base, &token, &chat).await;
    assert_eq!(done["content"], "The tool said: Hello, Ada!.", "{done}");
    assert_eq!(done["tool_calls"][0]["state"], "ok", "{done}");
    assert!(done["tool_calls"][0]["question"].is_null(), "{done}");
    assert_eq!(
        later.calls()[3],
        json!({"state": later_server::STATE, "replies": {"who": {"action": "accept", "content": {"name": "Ada"}}}})
    );
    let again = json!({"id": chat, "question": id, "action": "decline"});
    let (status, _) = reply(&base, &token, again).await;
    assert_eq!(status, StatusCode::CONFLICT, "answered once");
    let kept: Vec<(String, bool)> =
        sqlx::query_as("SELECT state, kept FROM tool_questions WHERE id = $1::uuid")
            .bind(&id)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(kept, [("accept".to_owned(), true)]);
}
