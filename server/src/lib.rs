//! The `switchboard` server: configuration, start-up, the HTTP router and the embedded database.
//! `main.rs` only calls [`run`]; tests drive [`router`] in-process.

// Leptos views are deeply nested types; the chat page needs more than the default 128.
#![recursion_limit = "256"]

pub mod api_errors;
pub mod auth;
pub mod config;
pub mod embedded_pg;
pub mod error;
pub mod events;
pub mod guard;
pub mod headers;
pub mod health;
pub mod limits;
pub mod llm_settings;
pub mod metrics;
pub mod serve;
pub mod telemetry;
pub mod tool_sign_in;
pub mod usage_export;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use app::{App, shell};
use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::routing::get;
use domain::Database;
use domain::llm::{ClientOptions, LlmClient};
use domain::local_models::Offer;
use domain::mcp::{self, Mcp};
use domain::runs::Runs;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use leptos::config::{Env, LeptosOptions};
use leptos::prelude::provide_context;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::Auth;
use crate::auth::settings::AuthSettings;
use crate::config::{Command, Config, DatabaseConfig};
use crate::embedded_pg::EmbeddedPostgres;
use crate::error::StartupError;

/// Everything a request handler or server function may need.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub db: Database,
    pub auth: Auth,
    /// The answers being written, and the models on offer.
    pub runs: Runs,
    /// Every user's MCP tool-server connections.
    pub mcp: Mcp,
    /// Which hosts, origins and bodies may reach the app.
    pub boundary: Arc<guard::Boundary>,
    pub security_headers: headers::SecurityHeaders,
    /// Each person's request rate (None: unlimited).
    pub rate_limit: Option<Arc<limits::RateLimit>>,
    /// Each person's open event streams.
    pub streams: Arc<limits::OpenStreams>,
    /// What operators see at `/metrics`, and the secret it is served with (None: not served).
    pub metrics: Arc<metrics::Metrics>,
    pub metrics_token: Option<String>,
}

impl AppState {
    /// Everything the server needs, offering `models`; in local mode this creates the local user.
    pub async fn new(
        config: &Config,
        auth: AuthSettings,
        models: impl Into<Offer>,
        db: Database,
    ) -> Result<Self, StartupError> {
        let boundary = guard::Boundary::new(
            &auth.public_url,
            auth.is_local(),
            &config::list(config.allowed_hosts.as_deref()),
        )
        .with_limits(config.max_message_chars, *config.client_timeout);
        let security_headers =
            headers::SecurityHeaders::new(auth.secure_cookies(), dev_reload_port());
        let auth = Auth::new(auth, &db, config.secret_key()?)
            .await
            .map_err(|e| StartupError::LocalUser(root_cause(&e)))?;
        // Roles follow the admin rule as it is now, for everyone who signed in before too.
        let changed = domain::users::apply_admin_rule(&db, &auth.settings().admins)
            .await
            .map_err(|e| StartupError::Roles(root_cause(&e)))?;
        if changed > 0 {
            tracing::info!(
                people = changed,
                "roles changed to follow SWITCHBOARD_ADMIN_EMAILS and SWITCHBOARD_ADMIN_GROUPS"
            );
        }
        let registry = mcp_registry(config)?;
        let mut mcp_settings = config.mcp_settings()?;
        // Where tool servers' sign-in services send people back, and Switchboard's client
        // document (its own address is its client id: only over https).
        let public = &auth.settings().public_url;
        mcp_settings.sign_in_redirect = public
            .join(tool_sign_in::CALLBACK.trim_start_matches('/'))
            .ok()
            .map(String::from);
        mcp_settings.client_document = public
            .join(tool_sign_in::CLIENT_DOCUMENT.trim_start_matches('/'))
            .ok()
            .filter(|u| u.scheme() == "https")
            .map(String::from);
        let mcp = Mcp::new(db.clone(), registry, config.secret_key()?, mcp_settings);
        // Until the pool closes: while it hears of revoked tokens, scripts' tokens need no query.
        tokio::spawn(domain::tokens::watch(db.clone()));
        let runs = Runs::new(
            db.clone(),
            LlmClient::new(ClientOptions::default()),
            models,
            mcp.clone(),
        );
        // The models administrators added in the app, beside the environment's.
        if let Err(e) = runs.reload_models().await {
            tracing::warn!("the models added in the app are not on offer: {e}");
        }
        // Until the pool closes: pages here follow runs on the other instances on this database,
        // and theirs follow the runs here.
        tokio::spawn(runs.clone().share_with_other_instances());
        // Until the pool closes: answers cut off by a dead server while their tools ran are
        // settled (their calls interrupted and audited), whichever instance finds them first, and
        // the pages following them are told.
        tokio::spawn(runs.clone().settle_abandoned_runs());
        Ok(Self {
            leptos_options: leptos_options(config),
            runs,
            mcp,
            db,
            auth,
            boundary: Arc::new(boundary),
            security_headers,
            rate_limit: limits::RateLimit::new(limits::RateSettings {
                per_second: config.rate_limit_per_second,
                burst: config.rate_limit_burst,
            }),
            streams: limits::OpenStreams::new(config.max_event_streams),
            metrics: metrics::Metrics::new(),
            metrics_token: config
                .metrics_token
                .clone()
                .filter(|t| !t.trim().is_empty()),
        })
    }

    /// What the UI shows on the login page (public: no secrets).
    fn login_options(&self) -> app::auth::LoginOptions {
        app::auth::LoginOptions {
            providers: self
                .auth
                .settings()
                .providers
                .iter()
                .map(|p| app::auth::ProviderButton {
                    id: p.id.clone(),
                    label: p.label.clone(),
                })
                .collect(),
        }
    }
}

/// The MCP servers file, read and checked (none: an empty registry).
fn mcp_registry(config: &Config) -> Result<mcp::Registry, StartupError> {
    let Some(path) = &config.mcp_servers_file else {
        return Ok(mcp::Registry::default());
    };
    let failed = |cause: String| StartupError::McpServers {
        path: path.display().to_string(),
        cause,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    mcp::Registry::from_toml(&text).map_err(|e| failed(e.to_string()))
}

/// Whether this is a development build served by `cargo leptos watch` (which sets `LEPTOS_ENV`).
fn is_dev() -> bool {
    std::env::var("LEPTOS_ENV").as_deref() == Ok("DEV")
}

/// The live-reload port of a development build.
fn dev_reload_port() -> Option<u16> {
    is_dev().then(|| {
        std::env::var("LEPTOS_RELOAD_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(3001)
    })
}

/// Leptos's options from our configuration (plus the live-reload settings `cargo leptos watch` sets).
pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(app::SITE_NAME)
        .site_root(config.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .env(if is_dev() { Env::DEV } else { Env::PROD })
        .reload_port(u32::from(dev_reload_port().unwrap_or(3001)))
        .build()
}

/// The whole HTTP application: health checks, sign-in, the Leptos pages and server functions,
/// static files.
pub fn router(state: AppState) -> Router {
    with_layers(routes(state))
}

/// The routes behind the sign-in gate, without the cross-cutting layers (tests add routes of their
/// own in between).
pub fn routes(state: AppState) -> Router {
    let leptos_routes = route_list().to_vec();
    let options = state.leptos_options.clone();
    let context_state = state.clone();
    let login_options = state.login_options();
    let message_limit = app::ssr::MessageLimit(state.boundary.max_message_chars);
    let session_layer = state.auth.session_layer(&state.db);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::scrape))
        .merge(auth::routes::routes())
        .merge(tool_sign_in::routes())
        .route("/admin/usage.csv", get(usage_export::csv))
        .route("/api/chats/{id}/events", get(events::chat_events))
        .leptos_routes_with_context(
            &state,
            leptos_routes,
            move || {
                headers::provide_nonce();
                provide_context(context_state.db.clone());
                provide_context(context_state.runs.clone());
                provide_context(context_state.mcp.clone());
                provide_context(login_options.clone());
                provide_context(message_limit);
            },
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(headers::provide_nonce, shell))
        .layer(axum::middleware::from_fn(api_errors::error_status))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::middleware::authenticate,
        ))
        .layer(session_layer)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// The app's pages, found once per process by rendering the app with its resources held back.
///
/// Leptos holds resources back for the whole process while it does this (a global flag), and a
/// resource first polled in that window never loads: a page another router renders at the same time
/// would hang for good. A server builds one router, but tests build one per test, in parallel.
fn route_list() -> &'static [AxumRouteListing] {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App))
}

/// The header that carries a request's id, taken from a proxy or generated here.
const REQUEST_ID: &str = "x-request-id";

/// Request ids, a request span for the logs, and a styled 500 page for panics.
pub fn with_layers(router: Router) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<Body>| {
                        let id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        // The path only: query strings may one day carry secrets. The person's id
                        // is added once they are known (`auth::middleware`).
                        tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path(), user = tracing::field::Empty)
                    })
                    .on_request(())
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(CatchPanicLayer::custom(panic_page)),
    )
}

fn panic_page(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %message, "a request handler panicked");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Switchboard hit an unexpected error while handling this page. Try again in a moment; if it keeps happening, tell your administrator (the server log has the details).",
    )
}

/// A whole error page (outside the Leptos router) with this status.
pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response<Body> {
    let html = app::error_document(status.as_u16(), title, detail);
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Also outside the router (a panic): the page has no script, and needs nothing but its CSS.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The database, and the embedded cluster behind it when there is one.
pub struct Databases {
    pub db: Database,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Databases {
    /// Connects (starting the embedded cluster first when no `DATABASE_URL` is set).
    pub async fn open(
        database: DatabaseConfig,
        max_connections: u32,
    ) -> Result<Self, StartupError> {
        match database {
            DatabaseConfig::External(options) => {
                let target = format!(
                    "{}:{}/{}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or("")
                );
                let db = Database::connect(*options, max_connections)
                    .await
                    .map_err(|e| StartupError::ExternalDatabase {
                        target,
                        cause: root_cause(&e),
                    })?;
                Ok(Self { db, embedded: None })
            }
            DatabaseConfig::Embedded { dir, bin_dir } => {
                let embedded = EmbeddedPostgres::start(&dir, bin_dir.as_deref()).await?;
                let db = Database::connect(embedded.connect_options(), max_connections)
                    .await
                    .map_err(|e| StartupError::EmbeddedConnect(root_cause(&e)))?;
                Ok(Self {
                    db,
                    embedded: Some(embedded),
                })
            }
        }
    }

    pub async fn close(self) {
        self.db.pool().close().await;
        if let Some(embedded) = self.embedded {
            embedded.stop().await;
        }
    }
}

/// The innermost cause of an error, which is the part that tells a person what went wrong.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Runs the command the configuration asks for (serving, by default).
pub async fn run(config: Config) -> Result<(), StartupError> {
    let command = config.command.clone().unwrap_or(Command::Serve);
    let database = config.database()?;
    let env = |name: &str| std::env::var(name).ok();
    let auth = AuthSettings::from_config(&config, &env)?;
    let models = llm_settings::catalog(&config, &env)?;
    let models = if matches!(command, Command::Serve) {
        config.validate_serve()?;
        llm_settings::or_local(models, &config).await?
    } else {
        Offer::from(models)
    };
    let databases = Databases::open(database, config.database_max_connections).await?;
    let result = async {
        migrate(&databases.db).await?;
        match command {
            Command::Migrate => Ok(()),
            Command::Serve => serve(&config, auth, models, databases.db.clone()).await,
        }
    }
    .await;
    databases.close().await;
    result
}

async fn migrate(db: &Database) -> Result<(), StartupError> {
    db.migrate()
        .await
        .map_err(|e| StartupError::Migrate(root_cause(&e)))?;
    tracing::info!("database migrations are up to date");
    Ok(())
}

async fn serve(
    config: &Config,
    auth: AuthSettings,
    models: Offer,
    db: Database,
) -> Result<(), StartupError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartupError::Listen {
            addr: config.listen,
            source,
        })?;
    let mode = if auth.is_local() {
        "local mode: no sign-in provider is configured, everyone here is the local admin".to_owned()
    } else {
        let ids: Vec<&str> = auth.providers.iter().map(|p| p.id.as_str()).collect();
        format!("sign-in with {}", ids.join(", "))
    };
    for provider in auth.providers.iter().filter(|p| p.admits_anyone()) {
        if auth.admission == domain::users::Admission::Open {
            tracing::warn!(
                provider = %provider.id,
                "anyone with an account at {} can sign in: set SWITCHBOARD_AUTH_{}_ALLOWED_DOMAINS (or _ALLOWED_GROUPS, _ALLOWED_ORGS), or SWITCHBOARD_APPROVE_NEW_USERS=true",
                provider.label,
                provider.id.to_ascii_uppercase().replace('-', "_")
            );
        }
    }
    let public_url = auth.public_url.clone();
    let offered = models.now();
    if offered.is_empty() {
        tracing::warn!(
            "no LLM provider is configured (SWITCHBOARD_LLM_PROVIDERS) and no model server was found on this machine (Ollama, llama.cpp, LM Studio; SWITCHBOARD_LOCAL_MODEL_URLS): chats cannot be answered until one is"
        );
    } else {
        tracing::info!(models = ?offered.choices(), "models on offer");
    }
    let state = AppState::new(config, auth, models, db.clone()).await?;
    let cleanup =
        auth::session_store::PgSessionStore::new(db).spawn_cleanup(Duration::from_secs(600));
    let (runs, mcp) = (state.runs.clone(), state.mcp.clone());
    let app = router(state);
    tracing::info!(
        "Switchboard is serving on http://{} ({mode}); open {public_url}",
        config.listen
    );
    serve::serve(listener, app, *config.client_timeout, async move {
        shutdown_signal().await;
        // Live answers are saved as interrupted and event streams end (browsers reconnect to
        // whichever instance serves next); tool servers are closed, their processes too.
        tokio::join!(runs.shutdown(), mcp.shutdown());
    })
    .await;
    cleanup.abort();
    tracing::info!("Switchboard stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM; open connections then get a few seconds to finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
    // Long-lived streams would otherwise hold the shutdown open forever.
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        tracing::warn!("connections still open after 10 s; exiting anyway");
        std::process::exit(0);
    });
}
