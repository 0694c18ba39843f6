//! Configuration: one struct from command-line flags and environment variables (and `.env`),
//! validated at start-up with errors that say what to set. `.env.example` lists every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Parser, Subcommand, ValueEnum};
use domain::secrets::SecretKey;
use sqlx::postgres::PgConnectOptions;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: a self-hosted, multi-user AI chat platform"
)]
pub struct Config {
    /// Address and port to serve on.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// PostgreSQL to use, as a URL (postgres://user:password@host:5432/database). When unset,
    /// Switchboard runs its own PostgreSQL cluster in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Most connections the server opens to PostgreSQL.
    #[arg(
        long,
        env = "SWITCHBOARD_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub database_max_connections: u32,

    /// Where Switchboard keeps its own files (the embedded PostgreSQL cluster, under `postgres/`).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Directory with PostgreSQL's `initdb` and `postgres`, for the embedded cluster. Found
    /// automatically under /usr/lib/postgresql/<version>/bin or on PATH when unset.
    #[arg(long, env = "SWITCHBOARD_POSTGRES_BIN_DIR")]
    pub postgres_bin_dir: Option<PathBuf>,

    /// Directory with the built site (`pkg/` with the CSS, JS and wasm, plus the public assets).
    #[arg(long, env = "SWITCHBOARD_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// The address people use to reach Switchboard (https://chat.example.com). Identity providers
    /// send people back to it, and cookies are marked Secure when it is https. Defaults to
    /// http://localhost:<port> when listening on loopback.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Sign-in providers by id, comma-separated, in the order of their buttons (each one is set up
    /// with SWITCHBOARD_AUTH_<ID>_* variables). None: local mode, one local admin, loopback only.
    #[arg(long, env = "SWITCHBOARD_AUTH_PROVIDERS")]
    pub auth_providers: Option<String>,

    /// Other host names people reach Switchboard by, comma-separated, beyond the public URL's
    /// (and, in local mode, localhost, 127.0.0.1 and [::1]). A request for any other host is
    /// refused, so that a web page whose name points at Switchboard (DNS rebinding) gets nothing.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_HOSTS")]
    pub allowed_hosts: Option<String>,

    /// The secret that `/metrics` (Prometheus) is served with, as a bearer token. Unset: metrics
    /// are not served.
    #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// An OpenTelemetry collector's OTLP/HTTP address (`http://collector:4318`): traces of
    /// requests, runs, model calls and tool calls are sent there. Unset: no traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Requests each person may make per second, on average (`0`: no limit). Over it, requests
    /// get `429 Too Many Requests` with `Retry-After`.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_PER_SECOND", default_value_t = 10)]
    pub rate_limit_per_second: u32,

    /// ... and how many at once above that average (a page load, a burst of clicks).
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_BURST", default_value_t = 60)]
    pub rate_limit_burst: u32,

    /// Event streams (open chat pages and scripts following chats) each person may have open on
    /// one instance at once.
    #[arg(long, env = "SWITCHBOARD_MAX_EVENT_STREAMS", default_value_t = 30)]
    pub max_event_streams: usize,

    /// How long a client may take to send a request's headers, or its body (`30s`); a slower one
    /// is disconnected.
    #[arg(long, env = "SWITCHBOARD_CLIENT_TIMEOUT", default_value = "30s")]
    pub client_timeout: humantime::Duration,

    /// The longest message a person may send, in characters.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_CHARS", default_value_t = 100_000)]
    pub max_message_chars: usize,

    /// E-mail addresses of admins, comma-separated (verified addresses only).
    #[arg(long, env = "SWITCHBOARD_ADMIN_EMAILS")]
    pub admin_emails: Option<String>,

    /// New people wait for an administrator's approval (on the admin page) before they can use
    /// Switchboard; administrators by rule, and the very first person, do not.
    #[arg(long, env = "SWITCHBOARD_APPROVE_NEW_USERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub approve_new_users: bool,

    /// Groups or roles whose members are admins, comma-separated (from SWITCHBOARD_GROUPS_CLAIM).
    #[arg(long, env = "SWITCHBOARD_ADMIN_GROUPS")]
    pub admin_groups: Option<String>,

    /// The ID-token claim with a person's groups or roles; dots reach into objects
    /// (`realm_access.roles` for Keycloak, `roles` for Entra app roles).
    #[arg(long, env = "SWITCHBOARD_GROUPS_CLAIM", default_value = "groups")]
    pub groups_claim: String,

    /// A session ends after this long without a request (`30m`, `8h`, `7d`).
    #[arg(long, env = "SWITCHBOARD_SESSION_IDLE_TIMEOUT", default_value = "7d")]
    pub session_idle_timeout: humantime::Duration,

    /// A session ends this long after sign-in, however active (`12h`, `30d`).
    #[arg(long, env = "SWITCHBOARD_SESSION_MAX_AGE", default_value = "30d")]
    pub session_max_age: humantime::Duration,

    /// LLM providers by id, comma-separated (each set up with SWITCHBOARD_LLM_<ID>_BASE_URL,
    /// _API_KEY and _MODELS). None: the app runs, and the composer says how to add one.
    #[arg(long, env = "SWITCHBOARD_LLM_PROVIDERS")]
    pub llm_providers: Option<String>,

    /// Where to look for a model server on this machine when no provider is configured: its API
    /// bases, comma-separated (`http://127.0.0.1:11434/v1`), or `off`. Unset: Ollama, llama.cpp's
    /// server and LM Studio at their usual addresses.
    #[arg(long, env = "SWITCHBOARD_LOCAL_MODEL_URLS")]
    pub local_model_urls: Option<String>,

    /// Short names for models, comma-separated: `fast=ollama/llama3.2,smart=openai/gpt-4o`.
    #[arg(long, env = "SWITCHBOARD_LLM_ALIASES")]
    pub llm_aliases: Option<String>,

    /// The model a new chat uses (`<provider>/<model>` or an alias); the first model when unset.
    #[arg(long, env = "SWITCHBOARD_LLM_DEFAULT_MODEL")]
    pub llm_default_model: Option<String>,

    /// The registry of MCP tool servers people may connect to: a TOML file with one `[[server]]`
    /// table per server (see docs/tool-servers.md). None: no tool servers.
    #[arg(long, env = "SWITCHBOARD_MCP_SERVERS_FILE")]
    pub mcp_servers_file: Option<PathBuf>,

    /// How long one tool call may take before it is cancelled (`60s`, `5m`).
    #[arg(long, env = "SWITCHBOARD_MCP_CALL_TIMEOUT", default_value = "60s")]
    pub mcp_call_timeout: humantime::Duration,

    /// A tool-server connection unused for this long closes, and opens again when next used
    /// (`30m`, `2h`; `0` keeps connections open).
    #[arg(long, env = "SWITCHBOARD_MCP_IDLE_TIMEOUT", default_value = "30m")]
    pub mcp_idle_timeout: humantime::Duration,

    /// The most tool servers one person may have connected at once.
    #[arg(long, env = "SWITCHBOARD_MCP_MAX_CONNECTIONS", default_value_t = 20)]
    pub mcp_max_connections: usize,

    /// Over this many tools in a chat, its model is offered a tool search and the few tools that
    /// match the question best, rather than all of them (`0`: always all).
    #[arg(
        long,
        env = "SWITCHBOARD_MCP_TOOL_SEARCH_THRESHOLD",
        default_value_t = 40
    )]
    pub mcp_tool_search_threshold: usize,

    /// Networks that people's personal tool servers may reach although they are loopback,
    /// private or link-local, comma-separated (`10.0.0.0/8,127.0.0.1`). None: such addresses are
    /// refused.
    #[arg(long, env = "SWITCHBOARD_MCP_ALLOWED_NETWORKS")]
    pub mcp_allowed_networks: Option<String>,

    /// Where stdio tool servers run: each person's process of each server gets a private
    /// directory of its own below this one (its working directory and HOME). Default: the
    /// system's temporary directory's `switchboard-mcp/`.
    #[arg(long, env = "SWITCHBOARD_MCP_WORK_DIR")]
    pub mcp_work_dir: Option<PathBuf>,

    /// The key that encrypts stored secrets (tools servers' tokens, header values, secret
    /// environment variables): 32 random bytes in base64 (`openssl rand -base64 32`). Instances
    /// that share a database need the same key. Unset: a key is generated into
    /// `<data dir>/secret.key` on the first start and used from there.
    #[arg(long, env = "SWITCHBOARD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which logs to show, in tracing's filter syntax (`info`, `switchboard=debug,info`, ...).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the app (what happens with no command).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the database comes from.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// `DATABASE_URL` was given.
    External(Box<PgConnectOptions>),
    /// Switchboard runs its own cluster in this directory.
    Embedded {
        dir: PathBuf,
        bin_dir: Option<PathBuf>,
    },
}

/// A setting with a value that cannot work, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "DATABASE_URL is not a valid PostgreSQL URL ({0}). Set it to postgres://USER:PASSWORD@HOST:5432/DATABASE, or unset it to use the embedded database."
    )]
    DatabaseUrl(String),
    #[error("SWITCHBOARD_DATABASE_MAX_CONNECTIONS must be at least 1.")]
    MaxConnections,
    #[error(
        "the built site is missing: {0} does not exist. Build it with `cargo leptos build --release` (scripts/run does), or set SWITCHBOARD_SITE_ROOT to the directory that holds pkg/."
    )]
    SiteRoot(String),
    #[error("RUST_LOG is not a valid log filter ({0}). Try RUST_LOG=info.")]
    LogFilter(String),
    #[error(
        "traces cannot be sent to OTEL_EXPORTER_OTLP_ENDPOINT: {0}. Give the collector's OTLP/HTTP address, such as http://collector:4318, or unset it."
    )]
    Traces(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Llm(String),
    #[error(
        "SWITCHBOARD_MCP_ALLOWED_NETWORKS is not valid: {0}. List networks such as 10.0.0.0/8 or single addresses, comma-separated."
    )]
    AllowedNetworks(String),
    #[error(
        "SWITCHBOARD_SECRET_KEY is not usable: {0} Generate one with `openssl rand -base64 32`."
    )]
    SecretKey(String),
    #[error(
        "cannot use the secret key file {path}: {cause}. Set SWITCHBOARD_SECRET_KEY, or make SWITCHBOARD_DATA_DIR writable."
    )]
    SecretKeyFile { path: String, cause: String },
}

impl Config {
    /// Reads `.env` (if present), the environment and the command line.
    pub fn load() -> Self {
        // A missing .env is normal; a malformed one is reported by clap's parse below as missing values.
        let _ = dotenvy::dotenv();
        Self::parse()
    }

    pub fn database(&self) -> Result<DatabaseConfig, ConfigError> {
        if self.database_max_connections == 0 {
            return Err(ConfigError::MaxConnections);
        }
        match self.database_url.as_deref().map(str::trim) {
            Some(url)
                if !url.is_empty()
                    && !url.starts_with("postgres://")
                    && !url.starts_with("postgresql://") =>
            {
                Err(ConfigError::DatabaseUrl(
                    "it must start with postgres:// or postgresql://".into(),
                ))
            }
            Some(url) if !url.is_empty() => PgConnectOptions::from_str(url)
                .map(|options| DatabaseConfig::External(Box::new(options)))
                .map_err(|e| ConfigError::DatabaseUrl(e.to_string())),
            _ => Ok(DatabaseConfig::Embedded {
                dir: self.data_dir.join("postgres"),
                bin_dir: self.postgres_bin_dir.clone(),
            }),
        }
    }

    /// Checks the settings that `serve` needs beyond the database.
    pub fn validate_serve(&self) -> Result<(), ConfigError> {
        let css = self
            .site_root
            .join("pkg")
            .join(format!("{}.css", app::SITE_NAME));
        if !css.is_file() {
            return Err(ConfigError::SiteRoot(display(&css)));
        }
        Ok(())
    }
}

impl Config {
    /// The MCP connection settings.
    pub fn mcp_settings(&self) -> Result<domain::mcp::Settings, ConfigError> {
        let addresses = domain::mcp::AddressPolicy::parse(
            self.mcp_allowed_networks.as_deref().unwrap_or_default(),
        )
        .map_err(ConfigError::AllowedNetworks)?;
        let idle = *self.mcp_idle_timeout;
        let defaults = domain::mcp::Settings::default();
        Ok(domain::mcp::Settings {
            call_timeout: *self.mcp_call_timeout,
            idle_timeout: (!idle.is_zero()).then_some(idle),
            max_connections: self.mcp_max_connections,
            tool_search_over: self.mcp_tool_search_threshold,
            addresses,
            work_dir: self
                .mcp_work_dir
                .clone()
                .unwrap_or(defaults.work_dir.clone()),
            ..defaults
        })
    }

    /// The key for secrets at rest: SWITCHBOARD_SECRET_KEY, or the data directory's key file
    /// (created, readable by this user only, on the first start).
    pub fn secret_key(&self) -> Result<SecretKey, ConfigError> {
        if let Some(text) = self.secret_key.as_deref().filter(|t| !t.trim().is_empty()) {
            return SecretKey::from_base64(text).map_err(|e| ConfigError::SecretKey(e.to_string()));
        }
        let path = self.data_dir.join("secret.key");
        let failed = |cause: String| ConfigError::SecretKeyFile {
            path: display(&path),
            cause,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::create_dir_all(&self.data_dir).map_err(|e| failed(e.to_string()))?;
                let key = SecretKey::generate();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| failed(e.to_string()))?;
                file.write_all(key.as_bytes())
                    .map_err(|e| failed(e.to_string()))?;
                tracing::info!(path = %path.display(), "generated the key for stored secrets; instances that share this database need the same key (SWITCHBOARD_SECRET_KEY)");
                key
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        SecretKey::from_base64(&text).map_err(|e| failed(e.to_string()))
    }
}

/// A comma- or space-separated setting, without empty items.
pub fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The provider ids listed in `setting` (comma- or space-separated), each at most once.
pub fn provider_ids(setting: &str, value: Option<&str>) -> Result<Vec<String>, String> {
    let ids = list(value);
    let repeated = ids
        .iter()
        .enumerate()
        .find_map(|(i, id)| ids[..i].contains(id).then_some(id));
    if let Some(id) = repeated {
        return Err(format!("{setting} lists '{id}' twice."));
    }
    Ok(ids)
}

/// The variables of one provider listed by id in a setting such as `SWITCHBOARD_AUTH_PROVIDERS`:
/// `<family>_<ID>_<NAME>` (the id upper-cased, `-` as `_`). Empty values count as unset.
pub struct ProviderVars<'a> {
    /// `<family>_<ID>_`, for messages that name a variable.
    pub prefix: String,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl ProviderVars<'_> {
    /// Checks an id listed in `setting` and reads its variables from `env`.
    pub fn new<'a>(
        setting: &str,
        family: &str,
        id: &str,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Result<ProviderVars<'a>, String> {
        let valid = !id.is_empty()
            && id.len() <= 32
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "{setting}: '{id}' is not a usable provider id: use lower-case letters, digits and '-' (at most 32)."
            ));
        }
        Ok(ProviderVars {
            prefix: format!("{family}_{}_", id.to_ascii_uppercase().replace('-', "_")),
            env,
        })
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.env)(&format!("{}{name}", self.prefix))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

/// For tests of settings read from the environment: a config from `args`, and `vars` as the
/// environment.
#[cfg(test)]
pub fn parse_with_vars(
    args: &[&str],
    vars: &[(&str, &str)],
) -> (Config, impl Fn(&str) -> Option<String>) {
    let config =
        Config::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied())).unwrap();
    let vars: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (config, move |name: &str| vars.get(name).cloned())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_serve_on_loopback_port_3000_with_the_embedded_database() {
        let config = parse(&["--database-url", ""]);
        assert_eq!(config.listen, "127.0.0.1:3000".parse().unwrap());
        assert!(matches!(
            config.database().unwrap(),
            DatabaseConfig::Embedded { .. }
        ));
    }

    #[test]
    fn a_database_url_selects_an_external_database() {
        let config = parse(&["--database-url", "postgres://u:p@db.example:5433/sb"]);
        let DatabaseConfig::External(options) = config.database().unwrap() else {
            panic!("expected an external database");
        };
        assert_eq!(options.get_host(), "db.example");
        assert_eq!(options.get_port(), 5433);
    }

    #[test]
    fn a_malformed_database_url_names_the_setting() {
        let config = parse(&["--database-url", "mysql://nope"]);
        let message = config.database().unwrap_err().to_string();
        assert!(
            message.starts_with("DATABASE_URL is not a valid PostgreSQL URL"),
            "{message}"
        );
    }

    #[test]
    fn env_example_lists_every_setting() {
        use clap::CommandFactory;
        let example = include_str!("../../.env.example");
        let missing: Vec<String> = Config::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .filter(|env| {
                !example.lines().any(|line| {
                    line.trim_start_matches("# ")
                        .starts_with(&format!("{env}="))
                })
            })
            .collect();
        assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    }

    #[test]
    fn the_secret_key_is_generated_once_into_the_data_dir_unless_set() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_arg = data.display().to_string();
        let config = parse(&["--data-dir", &data_arg]);
        let first = config.secret_key().unwrap();
        let file = data.join("secret.key");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = first.seal(b"row", b"value");
        let again = config.secret_key().unwrap();
        assert_eq!(
            again.open(b"row", &sealed).unwrap(),
            b"value",
            "the same key"
        );

        let message = parse(&["--secret-key", "too-short"])
            .secret_key()
            .unwrap_err()
            .to_string();
        assert!(message.contains("SWITCHBOARD_SECRET_KEY"), "{message}");
        assert!(message.contains("openssl rand -base64 32"), "{message}");
        let bad = parse(&["--mcp-allowed-networks", "10.0.0.0/8,intranet"])
            .mcp_settings()
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("SWITCHBOARD_MCP_ALLOWED_NETWORKS") && bad.contains("intranet"),
            "{bad}"
        );
    }

    #[test]
    fn stdio_servers_work_in_the_configured_directory() {
        let set = parse(&["--mcp-work-dir", "/srv/switchboard-mcp"])
            .mcp_settings()
            .unwrap();
        assert_eq!(set.work_dir, Path::new("/srv/switchboard-mcp"));
        let default = parse(&[]).mcp_settings().unwrap();
        assert_eq!(
            default.work_dir,
            std::env::temp_dir().join("switchboard-mcp")
        );
    }

    #[test]
    fn a_missing_site_names_the_setting_and_the_fix() {
        let config = parse(&["--site-root", "/nonexistent/site"]);
        let message = config.validate_serve().unwrap_err().to_string();
        assert!(message.contains("SWITCHBOARD_SITE_ROOT"), "{message}");
        assert!(message.contains("cargo leptos build"), "{message}");
    }
}
