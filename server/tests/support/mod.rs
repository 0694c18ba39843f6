//! Helpers shared by the integration tests: the app on a real port, and a real OpenID provider
//! (panva's `oidc-provider`, run by Node from the project's own npm packages).

#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]

pub mod later_server;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use clap::Parser;
use domain::Database;
use server::auth::settings::AuthSettings;
use server::config::Config;
use server::{AppState, router};
use sqlx::PgPool;

/// A port nothing listens on (free when asked; a test binds it, or tells a server to, next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The workspace root (where `node_modules/` and `.tools/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Node.js that scripts/setup installs (see scripts/lib/env.sh), else the one on PATH.
pub fn node() -> PathBuf {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x64"
    };
    let pinned = workspace_root().join(format!(
        ".tools/node/node_modules/node-linux-{arch}/bin/node"
    ));
    if pinned.exists() {
        pinned
    } else {
        PathBuf::from("node")
    }
}

/// Starts a Node script of end2end/ that prints one JSON line when ready; returns the child and
/// that line.
pub fn start_script(script: &str, args: &[&str]) -> (Child, serde_json::Value) {
    start_script_with_env(script, args, &[])
}

/// [`start_script`] with environment variables of its own.
pub fn start_script_with_env(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, serde_json::Value) {
    let mut child = Command::new(node())
        .arg(workspace_root().join(script))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {script} with {:?} (run scripts/setup --test): {e}",
                node()
            )
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!("{script} did not start (run scripts/setup --test); it said: {line:?}")
    });
    (child, ready)
}

/// The scripted model server (end2end/fake-llm/server.mjs), speaking OpenAI's Chat Completions
/// and Anthropic's Messages API; its API key is `test-key`.
pub struct FakeLlm {
    child: Child,
    pub url: String,
}

impl FakeLlm {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Asking for no API key, as a local Ollama or llama.cpp server does.
    pub fn start_keyless() -> Self {
        Self::start_with(&["--key", "none"])
    }

    /// Keyless, on `port`.
    pub fn start_keyless_on(port: u16) -> Self {
        Self::start_with(&["--key", "none", "--port", &port.to_string()])
    }

    fn start_with(args: &[&str]) -> Self {
        let any_port: &[&str] = if args.contains(&"--port") {
            &[]
        } else {
            &["--port", "0"]
        };
        let args: Vec<&str> = any_port.iter().chain(args).copied().collect();
        let (child, ready) = start_script("end2end/fake-llm/server.mjs", &args);
        Self {
            child,
            url: ready["url"].as_str().unwrap().to_owned(),
        }
    }

    /// The settings that offer its model as `fake/scripted`, in OpenAI's format.
    pub fn settings(&self) -> (Vec<&'static str>, Vec<(&'static str, String)>) {
        self.settings_speaking(Wire::OpenAi)
    }

    /// The settings that offer its model as `fake/scripted`, in the format `wire`.
    pub fn settings_speaking(
        &self,
        wire: Wire,
    ) -> (Vec<&'static str>, Vec<(&'static str, String)>) {
        let mut vars = vec![
            ("SWITCHBOARD_LLM_FAKE_BASE_URL", self.url.clone()),
            ("SWITCHBOARD_LLM_FAKE_API_KEY", "test-key".to_owned()),
            ("SWITCHBOARD_LLM_FAKE_MODELS", "scripted".to_owned()),
        ];
        if wire == Wire::Anthropic {
            vars.push(("SWITCHBOARD_LLM_FAKE_KIND", "anthropic".to_owned()));
            // Its model then thinks before each turn, in signed blocks that must come back.
            vars.push(("SWITCHBOARD_LLM_FAKE_THINKING_BUDGET", "1024".to_owned()));
        }
        (vec!["--llm-providers", "fake"], vars)
    }
}

/// The wire format a test's model provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    /// Anthropic's Messages API, with extended thinking.
    Anthropic,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server-sent event as a client sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads server-sent events from a streaming response.
pub struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "{}",
            response.url()
        );
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), waiting at most 10 s.
    pub async fn next(&mut self) -> SseEvent {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
            let chunk =
                tokio::time::timeout(std::time::Duration::from_secs(10), self.stream.next())
                    .await
                    .expect("an event within 10 s")
                    .expect("the stream is open")
                    .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A client registered at the test provider.
pub struct Client<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
}

/// The test OpenID provider: users `alice` (admin group) and `bob`, passwords `<name>-password`.
pub struct Idp {
    child: Child,
    pub issuer: String,
}

impl Idp {
    pub fn start(clients: &[Client<'_>], extra_args: &[&str]) -> Self {
        let clients: Vec<serde_json::Value> = clients
            .iter()
            .map(|c| {
                serde_json::json!({
                    "client_id": c.id,
                    "client_secret": c.secret,
                    "redirect_uris": [c.redirect_uri],
                    "post_logout_redirect_uris": [c.post_logout_redirect_uri],
                })
            })
            .collect();
        let clients = serde_json::to_string(&clients).unwrap();
        let mut args = vec!["--port", "0", "--clients", clients.as_str()];
        args.extend_from_slice(extra_args);
        let (child, ready) = start_script("end2end/oidc/provider.mjs", &args);
        Self {
            child,
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
        }
    }

    /// Stops the provider, as if it went down.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Switchboard serving on 127.0.0.1 on a port of its own, until dropped.
pub struct TestApp {
    pub base: String,
    pub db: Database,
    pub state: AppState,
    task: tokio::task::JoinHandle<()>,
}

/// The state `app` serves with.
pub fn state_of(app: &TestApp) -> &AppState {
    &app.state
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A free port on loopback, with its listener (kept, so nobody else takes it).
pub async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// Starts the app on `listener` with these command-line arguments and provider variables. Requests
/// are not rate-limited unless `args` set `--rate-limit-per-second` (tests poll quickly).
pub async fn start_app(
    pool: PgPool,
    listener: tokio::net::TcpListener,
    args: &[&str],
    vars: &[(&str, String)],
) -> TestApp {
    let base = format!("http://{}", listener.local_addr().unwrap());
    // A key of its own, so that no test writes a key file into the source tree.
    let key = domain::secrets::SecretKey::generate();
    let unlimited: &[&str] = if args.contains(&"--rate-limit-per-second") {
        &[]
    } else {
        &["--rate-limit-per-second", "0"]
    };
    // No looking for a model server on this machine unless a test asks: what runs here must not
    // change what a test sees.
    let nowhere: &[&str] = if args.contains(&"--local-model-urls") {
        &[]
    } else {
        &["--local-model-urls", "off"]
    };
    // Instances that share stored secrets are given the same key.
    let own_key: &[&str] = if args.contains(&"--secret-key") {
        &[]
    } else {
        &["--secret-key", &key]
    };
    let config = Config::try_parse_from(
        [
            "switchboard",
            "--database-url",
            "",
            "--listen",
            &base["http://".len()..],
        ]
        .into_iter()
        .chain(own_key.iter().copied())
        .chain(unlimited.iter().copied())
        .chain(nowhere.iter().copied())
        .chain(args.iter().copied()),
    )
    .unwrap();
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let settings = AuthSettings::from_config(&config, &|name| vars.get(name).cloned()).unwrap();
    let models = server::llm_settings::catalog(&config, &|name| vars.get(name).cloned()).unwrap();
    let models = server::llm_settings::or_local(models, &config)
        .await
        .unwrap();
    let db = Database::from_pool(pool);
    let state = AppState::new(&config, settings, models, db.clone())
        .await
        .unwrap();
    let app = router(state.clone());
    let client_timeout = *config.client_timeout;
    let task = tokio::spawn(server::serve::serve(
        listener,
        app,
        client_timeout,
        std::future::pending(),
    ));
    TestApp {
        base,
        db,
        state,
        task,
    }
}

/// Local mode: no provider.
pub async fn start_local_app(pool: PgPool) -> TestApp {
    let (listener, _) = listener().await;
    start_app(pool, listener, &[], &[]).await
}

/// Waits (up to 10 s) until each of `apps`, instances on one database, hears of all the others.
pub async fn hear_each_other(apps: &[&TestApp]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for app in apps {
        loop {
            let ready: serde_json::Value = reqwest::get(format!("{}/readyz", app.base))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if ready["other_instances"] == apps.len() - 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never heard of the others: {ready}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The app with the scripted model of `llm` and, in a servers file written in `dir`, the project's
/// test MCP server (end2end/mcp/test-server.mjs, over stdio) as `test`.
pub async fn start_app_with_test_server(
    pool: PgPool,
    llm: &FakeLlm,
    dir: &std::path::Path,
) -> TestApp {
    let file = dir.join("servers.toml");
    std::fs::write(&file, test_server_entry(&[])).unwrap();
    let (listener, _) = listener().await;
    let (mut args, vars) = llm.settings();
    let file_arg = file.display().to_string();
    args.extend(["--mcp-servers-file", file_arg.as_str()]);
    start_app(pool, listener, &args, &vars).await
}

/// The servers-file entry (TOML) of the project's test MCP server over stdio
/// (end2end/mcp/test-server.mjs) as `test`, with these environment variables.
pub fn test_server_entry(env: &[(&str, &str)]) -> String {
    let node = node().display().to_string();
    let script = workspace_root()
        .join("end2end/mcp/test-server.mjs")
        .display()
        .to_string();
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    format!(
        "[[server]]\nid = \"test\"\nname = \"Test\"\ntransport = \"stdio\"\ncommand = {node:?}\nargs = [{script:?}]\nenv = {{ {} }}\n",
        env.join(", ")
    )
}

/// The servers-file entry (TOML) of a Streamable HTTP server.
pub fn http_server_entry(id: &str, name: &str, url: &str) -> String {
    format!("[[server]]\nid = {id:?}\nname = {name:?}\ntransport = \"http\"\nurl = {url:?}\n")
}

/// `POST /api/<endpoint>` on `app` with `token`: the status and the JSON answer.
pub async fn api(
    app: &TestApp,
    token: &str,
    endpoint: &str,
    form: &[(&str, &str)],
) -> (reqwest::StatusCode, serde_json::Value) {
    call(
        &reqwest::Client::new(),
        &app.base,
        endpoint,
        Some(token),
        form,
    )
    .await
}

/// The chat's event stream on `app`, from after `last_event_id` when given.
pub async fn subscribe(
    app: &TestApp,
    token: &str,
    chat: &str,
    last_event_id: Option<&str>,
) -> SseReader {
    let mut request = reqwest::Client::new()
        .get(format!("{}/api/chats/{chat}/events", app.base))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    SseReader::new(request.send().await.unwrap())
}

/// Reads events until one named in `last`, inclusive; returns them all.
pub async fn until_one_of(events: &mut SseReader, last: &[&str]) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    loop {
        let event = events.next().await;
        let done = last.contains(&event.event.as_str());
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// Reads events until the run finishes; returns them all.
pub async fn until_finished(events: &mut SseReader) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    loop {
        let event = events.next().await;
        let done = event.event == "run_finished";
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// A browser stand-in: keeps cookies, does not follow redirects (tests step through them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client that keeps no cookies and follows no redirects: tests set its cookies by hand.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `Location` of a redirect, resolved against the request's URL.
pub fn location(response: &reqwest::Response) -> String {
    assert!(
        response.status().is_redirection(),
        "expected a redirect from {}, got {}",
        response.url(),
        response.status()
    );
    let raw = response.headers()["location"].to_str().unwrap();
    response.url().join(raw).unwrap().to_string()
}

/// At the test provider: opens `authorize`, signs in as `user` (password `<user>-password`) and
/// returns where the provider then sends the browser (the client's callback); when the provider
/// remembers the browser's sign-in, that is at once.
pub async fn at_the_provider(browser: &reqwest::Client, authorize: &str, user: &str) -> String {
    let interaction = location(&browser.get(authorize).send().await.unwrap());
    if !interaction.contains("/interaction/") {
        return interaction;
    }
    let form = browser.get(&interaction).send().await.unwrap();
    assert_eq!(form.status(), reqwest::StatusCode::OK);
    assert!(form.text().await.unwrap().contains("Sign in"));
    let password = format!("{user}-password");
    let after_login = browser
        .post(format!("{interaction}/login"))
        .form(&[("login", user), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    let resume = location(&after_login);
    location(&browser.get(&resume).send().await.unwrap())
}

/// A request for a page, its answer (redirects not followed).
pub async fn get(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    browser.get(url).send().await.unwrap()
}

/// Calls a server function the way the browser and scripts do: a form-encoded POST.
pub async fn call(
    client: &reqwest::Client,
    base: &str,
    endpoint: &str,
    bearer: Option<&str>,
    form: &[(&str, &str)],
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = client.post(format!("{base}/api/{endpoint}")).form(form);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// The body of a page, fetched with the browser's cookies.
pub async fn page(browser: &reqwest::Client, url: &str) -> String {
    browser.get(url).send().await.unwrap().text().await.unwrap()
}

/// A person signed in at some provider, with a personal API token: (their id, the token).
pub async fn person(app: &TestApp, subject: &str, name: &str) -> (uuid::Uuid, String) {
    let user = user(&app.db, subject, name).await;
    let token = domain::tokens::create(&app.db, user, "script")
        .await
        .unwrap();
    (user, token.secret)
}

/// A person (not an admin) who has signed in once.
pub async fn user(db: &Database, subject: &str, name: &str) -> uuid::Uuid {
    use domain::users::{self, Identity, Role, RoleDecision};
    let identity = Identity {
        issuer: "https://id.example.com".into(),
        subject: subject.into(),
        name: name.into(),
        ..Identity::default()
    };
    users::sign_in(db, &identity, RoleDecision::Fixed(Role::User))
        .await
        .unwrap()
        .id
}

/// Waits (up to 40 s) until `user`'s connection to an MCP server has a status that `wanted`
/// accepts; `each` runs before every look (a watchdog may fail the test there).
pub async fn until_mcp(
    mcp: &domain::mcp::Mcp,
    user: uuid::Uuid,
    server: &str,
    each: impl Fn(),
    wanted: impl Fn(&domain::mcp::Status) -> bool,
) -> domain::mcp::ServerView {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        each();
        let views = mcp.servers(user).await.unwrap();
        let view = views.into_iter().find(|v| v.id == server).unwrap();
        if wanted(&view.status) {
            return view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{server} is still {:?}",
            view.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Headers of the requests a [`recorder`] saw.
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<http::HeaderMap>>>;

/// `app` served on a free loopback port, with `path` recording the headers of every request and
/// refusing it (401), to see what a connection sends. Returns its base URL.
pub async fn recorder(app: axum::Router, path: &'static str) -> (String, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = app.route(
        path,
        axum::routing::any(move |headers: http::HeaderMap| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(headers);
                (http::StatusCode::UNAUTHORIZED, "no")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// An administrator of `app`, with a personal API token.
pub async fn admin(app: &TestApp) -> String {
    use domain::users::{self, Identity, Role, RoleDecision};
    let identity = Identity {
        issuer: "https://id.example.com".into(),
        subject: "admin".into(),
        name: "Admin".into(),
        ..Identity::default()
    };
    let admin = users::sign_in(&app.db, &identity, RoleDecision::Fixed(Role::Admin))
        .await
        .unwrap();
    domain::tokens::create(&app.db, admin.id, "script")
        .await
        .unwrap()
        .secret
}

/// `POST /api/{endpoint}` on `base` with a JSON body, as `token`: the status and the answer (JSON,
/// or its text).
pub async fn post_json(
    base: &str,
    endpoint: &str,
    token: &str,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/{endpoint}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}
