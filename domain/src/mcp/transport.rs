//! Opening a session with a server over its transport: a stdio process ([`super::stdio`]) or
//! Streamable HTTP ([`super::remote`], pinned to checked addresses for personal servers), then its
//! tools fetched through the limits.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::ClientServiceExt;
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use uuid::Uuid;

use super::offerings::{self, Prompt, Resource};
use super::sign_in::{self, SignIns};
use super::supervisor::Client;
use super::{ServerSpec, Settings, Source, Tool, Transport, limits, registry, remote, stdio};
use rmcp::transport::auth::AuthClient;

/// How long a server may take to list its resources, and its prompts, at connect.
const OFFERINGS_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a session could not be opened.
pub(super) enum Refused {
    /// The server asks the person to sign in (again), and says where: the message says so.
    SignIn(String),
    /// Anything else: the message says what.
    Failed(String),
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused::Failed(reason)
    }
}

/// What a server offers, as listed at connect.
pub(super) struct Lists {
    pub(super) tools: Vec<Tool>,
    pub(super) resources: Vec<Resource>,
    pub(super) prompts: Vec<Prompt>,
}

/// Starts a session with the server and fetches its tools, resources and prompts (a server that
/// cannot list its resources or prompts is connected with none: its tools are what matters most).
pub(super) async fn open(
    user_id: Uuid,
    spec: &ServerSpec,
    client: Client,
    settings: &Settings,
    shared_http: &rmcp_reqwest::Client,
    sign_ins: &SignIns,
) -> std::result::Result<(RunningService<RoleClient, Client>, Lists), Refused> {
    if let Some(problem) = &spec.problem {
        return Err(problem.clone().into());
    }
    let limits = &settings.limits;
    let shared = client.shared.clone();
    // What a failure says: the transport's own reason when it gave one, else rmcp's (cut).
    let failed = |what: &str, e: &(dyn std::error::Error + 'static)| {
        shared.fault().unwrap_or_else(|| {
            format!(
                "{what}: {}.",
                limits::cut(&crate::error::chain(e), limits.max_error_chars)
            )
        })
    };
    let service = match &spec.transport {
        Transport::Stdio {
            command,
            args,
            env,
            secret_env,
        } => {
            let dir = stdio::work_dir(&settings.work_dir, &spec.id, user_id)?;
            let transport = stdio::spawn(
                stdio::Launch {
                    command,
                    args,
                    env,
                    secret_env,
                    dir: &dir,
                },
                limits.max_message_bytes,
                shared.report_fault(),
            )?;
            client
                .serve(transport)
                .await
                .map_err(|e| failed("The server did not complete the MCP handshake", &e))?
        }
        Transport::Http {
            url,
            headers,
            bearer_token,
            ..
        } => {
            // Checked when saved; again here for servers stored or listed before these checks.
            registry::check_url(url)?;
            registry::check_headers(headers)?;
            let http = if spec.source == Source::Personal {
                remote::pinned_client(&settings.addresses, url).await?
            } else {
                shared_http.clone()
            };
            let mut config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                )
                .max_sse_event_size(limits.max_message_bytes);
            if let Some(token) = bearer_token {
                config = config.auth_header(token.clone());
            }
            let mut custom = HashMap::new();
            for (name, value) in headers {
                let name = http::HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("The header name '{name}' is not valid."))?;
                let value = http::HeaderValue::try_from(value.as_str())
                    .map_err(|_| format!("The value of the header '{name}' is not valid."))?;
                custom.insert(name, value);
            }
            config = config.custom_headers(custom);
            let http = remote::Capped {
                client: http,
                fault: Arc::new(shared.report_fault()),
                challenge: Arc::new(shared.report_challenge()),
                refused: Arc::new(shared.report_refused()),
            };
            // A person signed in to the server: their token goes with every request (refreshed
            // before it expires, and once after a 401).
            let tried = chrono::Utc::now();
            let authorization = sign_ins
                .authorization(user_id, spec, &settings.addresses)
                .await?;
            let signed_in = authorization.is_some();
            let meet = |lifecycle, authorization| {
                let (client, http, config) = (client.clone(), http.clone(), config.clone());
                meet(client, http, config, authorization, lifecycle)
            };
            let mut served = meet(newest_or_legacy(), authorization).await;
            // A server of an earlier protocol may fail the newest one's discovery outright (a
            // 5xx, where "method not found" was due): met again with the handshake alone.
            if let Err(e) = &served
                && discovery_failed(e)
            {
                tracing::info!(server = %spec.id, "the server failed discovery ({e}): met with the handshake");
                shared.fault.lock().expect("not poisoned").take();
                let authorization = sign_ins
                    .authorization(user_id, spec, &settings.addresses)
                    .await?;
                served = meet(rmcp::ClientLifecycleMode::Initialize, authorization).await;
            }
            match served {
                Ok(service) => service,
                Err(e) => {
                    if let Some(challenge) = remote::challenge(&e) {
                        return Err(refused_for_sign_in(
                            user_id,
                            spec,
                            settings,
                            sign_ins,
                            signed_in.then_some(tried),
                            &challenge,
                        )
                        .await);
                    }
                    return Err(match remote::http_cause(&e) {
                        Some(cause) => format!(
                            "Cannot reach {url}: {}.",
                            limits::cut(&cause, limits.max_error_chars)
                        ),
                        None => failed(&format!("Cannot reach {url}"), &e),
                    }
                    .into());
                }
            }
        }
    };
    // Tool lists are fetched fresh, and only through the limits: no copies in rmcp's cache.
    service
        .peer()
        .set_response_cache_config(rmcp::ClientCacheConfig::disabled())
        .await;
    let tools = limits::list_tools(service.peer(), limits)
        .await
        .map_err(|reason| shared.fault().unwrap_or(reason))?;
    // A server slow to list them is connected without: its tools are what matters most.
    let (resources, prompts) = tokio::join!(
        within(offerings::list_resources(service.peer(), limits)),
        within(offerings::list_prompts(service.peer(), limits))
    );
    let lists = Lists {
        tools,
        resources: listed(spec, "resources", resources),
        prompts: listed(spec, "prompts", prompts),
    };
    Ok((service, lists))
}

/// What a 401 at connect means: the person is asked to sign in when the server says where (a
/// sign-in of theirs it refused is forgotten: it is over); else the connection failed.
async fn refused_for_sign_in(
    user_id: Uuid,
    spec: &ServerSpec,
    settings: &Settings,
    sign_ins: &SignIns,
    // When the person's sign-in was tried (when they had one).
    tried: Option<chrono::DateTime<chrono::Utc>>,
    challenge: &str,
) -> Refused {
    if let Err(why) = sign_in::asks_for_sign_in(spec, &settings.addresses, challenge).await {
        return Refused::Failed(why);
    }
    if let Some(tried) = tried {
        sign_ins.forget_refused(user_id, &spec.id, tried).await;
        Refused::SignIn(format!(
            "Your sign-in to {} has expired or was revoked: sign in again.",
            spec.name
        ))
    } else {
        Refused::SignIn(format!("{} asks you to sign in.", spec.name))
    }
}

/// A list fetched within [`OFFERINGS_WITHIN`], or why not.
async fn within<T>(
    list: impl Future<Output = std::result::Result<Vec<T>, String>>,
) -> std::result::Result<Vec<T>, String> {
    tokio::time::timeout(OFFERINGS_WITHIN, list)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the server did not list them within {} s",
                OFFERINGS_WITHIN.as_secs()
            ))
        })
}

/// A list as fetched, or none (and a warning) when it could not be.
fn listed<T>(spec: &ServerSpec, what: &str, list: std::result::Result<Vec<T>, String>) -> Vec<T> {
    list.unwrap_or_else(|why| {
        tracing::warn!(server = %spec.id, "cannot list the {what}: {why}");
        Vec::new()
    })
}

/// Meets a remote server as `lifecycle` says, with the person's sign-in when they have one.
async fn meet(
    client: Client,
    http: remote::Capped,
    config: rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig,
    authorization: Option<rmcp::transport::auth::AuthorizationManager>,
    lifecycle: rmcp::ClientLifecycleMode,
) -> Result<RunningService<RoleClient, Client>, rmcp::service::ClientInitializeError> {
    match authorization {
        Some(manager) => {
            let http = AuthClient::new(http, manager);
            let transport = StreamableHttpClientTransport::with_client(http, config);
            client.serve_with_lifecycle(transport, lifecycle).await
        }
        None => {
            let transport = StreamableHttpClientTransport::with_client(http, config);
            client.serve_with_lifecycle(transport, lifecycle).await
        }
    }
}

/// The newest protocol's discovery itself was answered with a server error (a 5xx, where "method
/// not found" was due), not an overloaded server's 503 or a busy one's 429: a server of an earlier
/// protocol may do that, and takes the handshake. Anything else (a sign-in asked for, a timeout
/// after which rmcp tried the handshake already, an address or TLS refused) is the answer.
fn discovery_failed(error: &rmcp::service::ClientInitializeError) -> bool {
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    let rmcp::service::ClientInitializeError::TransportError { error, context } = error else {
        return false;
    };
    let status = match error
        .error
        .downcast_ref::<StreamableHttpError<rmcp_reqwest::Error>>()
    {
        Some(StreamableHttpError::HttpStatus(failed)) => failed.status,
        _ => return false,
    };
    context.contains("discover") && (500..=599).contains(&status) && status != 503
}

/// How a remote server is met: the newest protocol first (MCP 2026-07-28: no handshake, and a
/// server's questions come back as "input required", so a call waiting for the person holds no
/// connection open), and the `initialize` handshake of earlier versions when the server does not
/// know it. A local (stdio) server keeps the handshake: its process ends with the instance, so
/// nothing it asks could outlive a restart anyway.
fn newest_or_legacy() -> rmcp::ClientLifecycleMode {
    rmcp::ClientLifecycleMode::Auto {
        preferred_versions: vec![rmcp::model::ProtocolVersion::LATEST],
        legacy_version: None,
    }
}
